package plant

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"

	"github.com/sprout-iot/sprout/messages"
	"github.com/sprout-iot/sprout/messages/devicepb"
)

// Firmware updates over the air, the pot's side of docs/ota.md, written from that page: a plant
// with Config.OTAKey takes an UpdateOffer only if the Ed25519 signature over the manifest rebuilt
// from it verifies with that key and the product is its own, downloads one chunk at a time at the
// offset it has (resuming after a reconnect), checks every chunk's offset, hashes the image as it
// arrives, reports DOWNLOADING every OTAProgressStep percent, VERIFYING, REBOOTING, then reboots:
// it reconnects after RebootTime with Hello.firmware_version set to the new version and, after that
// Welcome, says RUNNING. A bad offer or image is answered FAILED with the reason. The slot is
// simulated by a running SHA-256 (a plant keeps no image bytes), so thousands of plants can update
// at once.

// Defaults of the OTA fields of Config.
const (
	DefaultProduct         = "sprout-pot" // what the API provisions a device as when no product is given
	DefaultOTASlotBytes    = 4 << 20
	DefaultOTAChunkBytes   = 512
	DefaultOTAProgressStep = 10
)

// manifestMagic starts the signed manifest (docs/ota.md "Images").
const manifestMagic = "sprout-fw-v1"

// Manifest is what an image's Ed25519 signature covers, as docs/ota.md writes it:
// "sprout-fw-v1" 0x00 product 0x00 version 0x00 size (8 bytes, big-endian) sha256 (32 bytes).
func Manifest(product, version string, size uint64, sum []byte) []byte {
	m := make([]byte, 0, len(manifestMagic)+len(product)+len(version)+3+8+len(sum))
	m = append(m, manifestMagic...)
	m = append(m, 0)
	m = append(m, product...)
	m = append(m, 0)
	m = append(m, version...)
	m = append(m, 0)
	m = binary.BigEndian.AppendUint64(m, size)
	return append(m, sum...)
}

// otaSlot is the plant's inactive slot: which image it holds, how far, and the running hash of the
// bytes written so far. It outlives connections (the offset a pot persists).
type otaSlot struct {
	offer     *devicepb.UpdateOffer // the offer being downloaded, nil if none
	offset    uint32                // bytes written
	sum       hash.Hash
	requested uint32 // length of the request in flight (0: none)
	reported  uint32 // last DOWNLOADING percent said
	corrupted bool   // OTACorruptFlash has flipped a bit already
}

// Firmware is the version the plant runs now (Config.Firmware until an update reboots it).
func (p *Plant) Firmware() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.firmware
}

// progress says an UpdateProgress on the current session (progress frames are not acknowledged:
// offline, it is lost, as on a pot). Call with p.mu held.
func (p *Plant) progress(sum []byte, st devicepb.UpdateState, pct uint32, reason string) {
	s := p.s
	if s == nil {
		return
	}
	p.stats.OTAProgressSent.Add(1)
	s.out, _ = messages.AppendFrame(s.out, &devicepb.Frame{Body: &devicepb.Frame_UpdateProgress{UpdateProgress: &devicepb.UpdateProgress{
		Sha256: sum, State: st, Percent: pct, Reason: truncate(reason), Version: p.firmware}}})
	p.note(Observation{Kind: UpdateReported, UpdateState: st, Percent: pct, Detail: reason})
}

// fail reports FAILED with reason and discards the slot. Call with p.mu held.
func (p *Plant) otaFail(sum []byte, pct uint32, reason string) {
	p.stats.OTAFailed.Add(1)
	p.progress(sum, devicepb.UpdateState_UPDATE_STATE_FAILED, pct, reason)
	p.slot = otaSlot{}
}

// offer handles an UpdateOffer. Call with p.mu held.
func (p *Plant) offer(s *session, o *devicepb.UpdateOffer) {
	p.stats.OTAOffers.Add(1)
	p.note(Observation{Kind: UpdateOffered, Offer: o})
	if len(p.cfg.OTAKey) == 0 {
		// A pot built without updates.
		p.progress(o.GetSha256(), devicepb.UpdateState_UPDATE_STATE_FAILED, 0, "updates not supported")
		p.stats.OTAFailed.Add(1)
		return
	}
	// The checks of docs/ota.md step 2, before anything is written.
	switch {
	case len(o.GetSha256()) != sha256.Size || len(o.GetSignature()) != ed25519.SignatureSize ||
		!ed25519.Verify(p.cfg.OTAKey, Manifest(o.GetProduct(), o.GetVersion(), uint64(o.GetSize()), o.GetSha256()), o.GetSignature()):
		p.otaFail(o.GetSha256(), 0, "bad signature")
		return
	case o.GetProduct() != p.cfg.Product:
		p.otaFail(o.GetSha256(), 0, "wrong product")
		return
	case o.GetSize() == 0 || int(o.GetSize()) > p.cfg.OTASlotBytes:
		p.otaFail(o.GetSha256(), 0, "image does not fit the slot")
		return
	case o.GetChunkSize() == 0 || o.GetChunkSize() > 512:
		p.otaFail(o.GetSha256(), 0, fmt.Sprintf("bad chunk_size %d", o.GetChunkSize()))
		return
	case o.GetVersion() == "" || len(o.GetVersion()) > messages.MaxFirmwareBytes:
		p.otaFail(o.GetSha256(), 0, "bad version")
		return
	case o.GetVersion() == p.firmware:
		// Already running it (the server should not offer it): say so rather than download it again.
		p.progress(o.GetSha256(), devicepb.UpdateState_UPDATE_STATE_RUNNING, 100, "")
		return
	}
	if p.slot.offer != nil && bytes.Equal(p.slot.offer.Sha256, o.Sha256) {
		if p.slot.requested > 0 {
			return // the same offer again while a request is in flight on this connection
		}
		p.slot.offer = o // resume at the offset the slot holds
	} else {
		p.slot = otaSlot{offer: o, sum: sha256.New()}
	}
	p.stats.OTAAccepted.Add(1)
	p.progress(o.Sha256, devicepb.UpdateState_UPDATE_STATE_DOWNLOADING, p.percent(), "")
	p.slot.reported = p.percent()
	p.requestChunk(s)
}

func (p *Plant) percent() uint32 {
	if p.slot.offer == nil || p.slot.offer.Size == 0 {
		return 0
	}
	return uint32(uint64(p.slot.offset) * 100 / uint64(p.slot.offer.Size))
}

// requestChunk asks for the next chunk of the slot's image. Call with p.mu held.
func (p *Plant) requestChunk(s *session) {
	o := p.slot.offer
	n := min(o.ChunkSize, uint32(p.cfg.OTAChunkBytes), o.Size-p.slot.offset)
	p.slot.requested = n
	p.stats.OTAChunkRequests.Add(1)
	s.out, _ = messages.AppendFrame(s.out, &devicepb.Frame{Body: &devicepb.Frame_ChunkRequest{ChunkRequest: &devicepb.ChunkRequest{
		Sha256: o.Sha256, Offset: p.slot.offset, Length: n}}})
}

// chunk handles a Chunk. Call with p.mu held.
func (p *Plant) chunk(s *session, c *devicepb.Chunk) {
	o := p.slot.offer
	if o == nil || !bytes.Equal(c.GetSha256(), o.Sha256) || p.slot.requested == 0 {
		p.stats.Error("ota: chunk not asked for")
		return
	}
	if len(c.GetData()) == 0 {
		// The image is no longer offered: drop it.
		p.stats.OTADropped.Add(1)
		p.slot = otaSlot{}
		return
	}
	asked := p.slot.requested
	if c.GetOffset() != p.slot.offset || uint32(len(c.GetData())) > asked {
		p.otaFail(o.Sha256, p.percent(), fmt.Sprintf("chunk of %d at %d, asked %d at %d", len(c.GetData()), c.GetOffset(), asked, p.slot.offset))
		return
	}
	p.slot.requested = 0
	data := c.GetData()
	if p.cfg.OTACorruptFlash && !p.slot.corrupted {
		// A flash that flips a bit: the SHA-256 check at the end must catch it.
		data = append([]byte{data[0] ^ 0x01}, data[1:]...)
		p.slot.corrupted = true
	}
	p.slot.sum.Write(data)
	p.slot.offset += uint32(len(data))
	p.stats.OTAChunks.Add(1)
	p.stats.OTABytes.Add(uint64(len(data)))
	if p.slot.offset < o.Size {
		if pct := p.percent(); pct >= p.slot.reported+uint32(p.cfg.OTAProgressStep) {
			p.slot.reported = pct
			p.progress(o.Sha256, devicepb.UpdateState_UPDATE_STATE_DOWNLOADING, pct, "")
		}
		p.requestChunk(s)
		return
	}
	p.progress(o.Sha256, devicepb.UpdateState_UPDATE_STATE_DOWNLOADING, 100, "")
	p.progress(o.Sha256, devicepb.UpdateState_UPDATE_STATE_VERIFYING, 100, "")
	if !bytes.Equal(p.slot.sum.Sum(nil), o.Sha256) {
		p.otaFail(o.Sha256, 100, "sha256 mismatch")
		return
	}
	p.progress(o.Sha256, devicepb.UpdateState_UPDATE_STATE_REBOOTING, 100, "")
	p.stats.OTAReboots.Add(1)
	// Boot the new slot: the next connection says the new version in its Hello, and RUNNING after
	// its Welcome.
	p.firmware = o.Version
	p.confirm = o.Sha256
	p.slot = otaSlot{}
	p.flush()
	s.reboot = true
	_ = s.c.Close()
}

// otaWelcomed runs after a Welcome: the first proven Welcome after booting a new image marks it
// valid and says RUNNING. Call with p.mu held.
func (p *Plant) otaWelcomed() {
	if p.confirm == nil {
		return
	}
	p.progress(p.confirm, devicepb.UpdateState_UPDATE_STATE_RUNNING, 100, "")
	p.stats.OTAConfirmed.Add(1)
	p.confirm = nil
}

// otaDisconnected forgets the request in flight when a connection ends (its answer will not come;
// the next connection's offer resumes at the offset). Call with p.mu held.
func (p *Plant) otaDisconnected() {
	p.slot.requested = 0
}
