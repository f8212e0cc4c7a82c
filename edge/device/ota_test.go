package device_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pcluster "github.com/asynkron/protoactor-go/cluster"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/actors/actortest"
	"github.com/sprout-iot/sprout/cluster"
	"github.com/sprout-iot/sprout/edge/device"
	"github.com/sprout-iot/sprout/messages/deviceclient"
	"github.com/sprout-iot/sprout/messages/devicepb"
	"github.com/sprout-iot/sprout/store/sqlite"
)

// otaNode is a node with a SQLite store and the rollout service wired to its edge.
type otaNode struct {
	*node
	ota  *actors.OTA
	st   *sqlite.Store
	stop func() // shuts the edge, the member and the store down, once
}

func startOTANode(t *testing.T, dir string, opts device.Options) *otaNode {
	t.Helper()
	st, err := sqlite.Open(dir, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var edge atomic.Pointer[device.Server]
	o := actors.NewOTA(actors.OTAOptions{Store: st, Devices: st, Logger: quietLogger(), StageOpened: func() {
		if e := edge.Load(); e != nil {
			e.OfferNow()
		}
	}})
	opts.OTA = o
	opts.Logger = quietLogger()
	n := &node{store: st}
	grains := actors.DeviceOptions{Store: st, Logger: opts.Logger}
	m, err := cluster.Start(cluster.Options{Kinds: []*pcluster.Kind{actors.NewDeviceKind(grains)}, Logger: opts.Logger})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n.member, n.edge, n.addr = m, device.NewServer(m.Cluster, opts), ln.Addr().String()
	go func() { _ = n.edge.Serve(ln) }()
	edge.Store(n.edge)
	var once sync.Once
	stop := func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = n.edge.Shutdown(ctx)
			m.Stop(true)
			_ = st.Close()
		})
	}
	t.Cleanup(stop)
	return &otaNode{node: n, ota: o, st: st, stop: stop}
}

// otaPot is a pot as docs/ota.md and device.proto describe it, written from them: it checks the
// offer's signature with the product key built into it, downloads into its inactive slot chunk by
// chunk (resuming at what the slot holds), checks the SHA-256, reboots into the new image and
// reports where it got to.
type otaPot struct {
	id       string
	secret   []byte
	pub      ed25519.PublicKey
	firmware string
	slot     []byte // the inactive slot's bytes so far
	slotSHA  []byte // the image they belong to

	stopAfter int  // drop the connection once the slot holds this many bytes (0: never)
	corrupt   bool // flip a byte of the first chunk (a link that corrupts data)
	bootFails bool // the new image never comes back: the bootloader rolls back
	offeredAt time.Time
}

// session connects once and follows the update protocol until the pot has nothing left to do on
// this connection; it returns what happened.
func (p *otaPot) session(t *testing.T, addr string, wait time.Duration) (string, error) {
	c, err := deviceclient.Dial(addr, "", 2*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if _, err := c.Handshake(deviceclient.Hello{DeviceID: p.id, Secret: p.secret, Firmware: p.firmware}, 5*time.Second); err != nil {
		return "", err
	}
	send := func(st devicepb.UpdateState, pct uint32, reason string) error {
		return c.Send(&devicepb.Frame{Body: &devicepb.Frame_UpdateProgress{UpdateProgress: &devicepb.UpdateProgress{
			Sha256: p.slotSHA, State: st, Percent: pct, Reason: reason, Version: p.firmware}}})
	}
	var offer *devicepb.UpdateOffer
	request := func() error {
		n := min(offer.ChunkSize, offer.Size-uint32(len(p.slot)))
		return c.Send(&devicepb.Frame{Body: &devicepb.Frame_ChunkRequest{ChunkRequest: &devicepb.ChunkRequest{
			Sha256: offer.Sha256, Offset: uint32(len(p.slot)), Length: n}}})
	}
	deadline := time.Now().Add(wait)
	for {
		f, err := c.Recv(time.Until(deadline))
		if err != nil {
			return "no offer", err
		}
		switch b := f.Body.(type) {
		case *devicepb.Frame_UpdateOffer:
			offer = b.UpdateOffer
			if p.offeredAt.IsZero() {
				p.offeredAt = time.Now()
			}
			manifest := actors.Manifest(offer.Product, offer.Version, int(offer.Size), offer.Sha256)
			if !ed25519.Verify(p.pub, manifest, offer.Signature) {
				p.slotSHA = offer.Sha256
				return "refused", send(devicepb.UpdateState_UPDATE_STATE_FAILED, 0, "bad signature")
			}
			if !bytes.Equal(p.slotSHA, offer.Sha256) {
				p.slot, p.slotSHA = nil, offer.Sha256
			}
			if err := request(); err != nil {
				return "", err
			}
		case *devicepb.Frame_Chunk:
			ch := b.Chunk
			if offer == nil || int(ch.Offset) != len(p.slot) || len(ch.Data) == 0 {
				return "", fmt.Errorf("unexpected chunk at %d (slot %d, %d bytes)", ch.Offset, len(p.slot), len(ch.Data))
			}
			data := ch.Data
			if p.corrupt && ch.Offset == 0 {
				data = append([]byte{data[0] ^ 0xff}, data[1:]...)
			}
			p.slot = append(p.slot, data...)
			if err := send(devicepb.UpdateState_UPDATE_STATE_DOWNLOADING, uint32(100*len(p.slot)/int(offer.Size)), ""); err != nil {
				return "", err
			}
			if p.stopAfter > 0 && len(p.slot) >= p.stopAfter {
				p.stopAfter = 0
				return "killed", nil
			}
			if len(p.slot) < int(offer.Size) {
				if err := request(); err != nil {
					return "", err
				}
				continue
			}
			_ = send(devicepb.UpdateState_UPDATE_STATE_VERIFYING, 100, "")
			if sum := sha256.Sum256(p.slot); !bytes.Equal(sum[:], offer.Sha256) {
				p.slot = nil
				return "refused", send(devicepb.UpdateState_UPDATE_STATE_FAILED, 100, "sha256 mismatch")
			}
			if err := send(devicepb.UpdateState_UPDATE_STATE_REBOOTING, 100, ""); err != nil {
				return "", err
			}
			if !p.bootFails {
				p.firmware = offer.Version
			}
			p.slot = nil
			return "rebooted", nil
		}
	}
}

// boot is the first session after a reboot: the new image (or the old one, rolled back) reports.
func (p *otaPot) boot(addr string) error {
	c, err := deviceclient.Dial(addr, "", 2*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Handshake(deviceclient.Hello{DeviceID: p.id, Secret: p.secret, Firmware: p.firmware}, 5*time.Second); err != nil {
		return err
	}
	st, reason := devicepb.UpdateState_UPDATE_STATE_RUNNING, ""
	if p.bootFails {
		st, reason = devicepb.UpdateState_UPDATE_STATE_ROLLED_BACK, "new image did not boot"
	}
	if err := c.Send(&devicepb.Frame{Body: &devicepb.Frame_UpdateProgress{UpdateProgress: &devicepb.UpdateProgress{
		Sha256: p.slotSHA, State: st, Reason: reason, Version: p.firmware}}}); err != nil {
		return err
	}
	// A Ping answered means the edge has read the progress before the pot goes.
	if err := c.Send(&devicepb.Frame{Body: &devicepb.Frame_Ping{Ping: &devicepb.Ping{Nonce: 1}}}); err != nil {
		return err
	}
	for {
		f, err := c.Recv(5 * time.Second)
		if err != nil {
			return err
		}
		if f.GetPong() != nil {
			return nil
		}
	}
}

func otaImage(t *testing.T, n *otaNode, product, version string, size int) (ed25519.PublicKey, actors.FirmwareImage, []byte) {
	t.Helper()
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	data := make([]byte, size)
	_, _ = rand.Read(data)
	img, err := n.ota.AddFirmware(context.Background(), product, version, data, priv)
	if err != nil {
		t.Fatal(err)
	}
	return pub, img, data
}

func targetStates(t *testing.T, n *otaNode, rollout string) map[string]actors.RolloutTarget {
	ts, err := n.st.RolloutTargets(context.Background(), rollout)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]actors.RolloutTarget{}
	for _, x := range ts {
		out[x.DeviceID] = x
	}
	return out
}

func TestOTAStagedRolloutUpdatesEveryPotStageByStage(t *testing.T) {
	n := startOTANode(t, t.TempDir(), device.Options{})
	pub, img, _ := otaImage(t, n, "pot", "2.0.0", 5000)
	pots := make([]*otaPot, 10)
	for i := range pots {
		id := fmt.Sprintf("pot-%02d", i)
		pots[i] = &otaPot{id: id, secret: n.addDevice(t, id), pub: pub, firmware: "1.0.0"}
	}
	r, err := n.ota.StartRollout(context.Background(), actors.RolloutSpec{ID: "r1", Product: "pot", Version: img.Version, Stages: []int{10, 50, 100}})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(pots))
	var mu sync.Mutex
	doneAt := map[string]time.Time{}
	for _, p := range pots {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := p.session(t, n.addr, 30*time.Second)
			// The server can count the pot done only once it comes back on the new image: take the
			// moment it starts booting as its "done" (after boot returns, the server may already
			// have opened the next stage).
			mu.Lock()
			doneAt[p.id] = time.Now()
			mu.Unlock()
			if err == nil && res == "rebooted" {
				err = p.boot(n.addr)
			} else if err == nil {
				err = fmt.Errorf("%s: %s", p.id, res)
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			ro, _ := n.st.GetRollout(context.Background(), r.ID)
			t.Fatalf("%v; rollout %+v; targets %+v", err, ro, targetStates(t, n, r.ID))
		}
	}
	actortest.Eventually(t, 5*time.Second, "the rollout state", func() bool {
		got, _ := n.st.GetRollout(context.Background(), r.ID)
		return got.State == actors.RolloutCompleted
	})
	targets := targetStates(t, n, r.ID)
	counts := map[int]int{}
	for _, p := range pots {
		tg := targets[p.id]
		counts[tg.Stage]++
		if tg.State != actors.TargetRunning || p.firmware != "2.0.0" {
			t.Errorf("%s: state %s, firmware %s", p.id, tg.State, p.firmware)
		}
		// No pot of a later stage was offered the image before every pot of the earlier ones ran it.
		for _, q := range pots {
			if targets[q.id].Stage < tg.Stage && !doneAt[q.id].Before(p.offeredAt) {
				t.Errorf("%s (stage %d) was offered the image before %s (stage %d) was done", p.id, tg.Stage, q.id, targets[q.id].Stage)
			}
		}
	}
	if counts[0] != 1 || counts[1] != 4 || counts[2] != 5 {
		t.Errorf("stage sizes %v, want 1, 4, 5 of 10 pots for 10%%, 50%%, 100%%", counts)
	}
}

func TestOTAKilledDownloadResumesAfterReconnectAndServerRestart(t *testing.T) {
	dir := t.TempDir()
	n := startOTANode(t, dir, device.Options{})
	pub, img, _ := otaImage(t, n, "pot", "2.0.0", 4000)
	p := &otaPot{id: "pot-a", secret: n.addDevice(t, "pot-a"), pub: pub, firmware: "1.0.0", stopAfter: 1500}
	if _, err := n.ota.StartRollout(context.Background(), actors.RolloutSpec{ID: "r1", Product: "pot", Version: img.Version}); err != nil {
		t.Fatal(err)
	}
	if res, err := p.session(t, n.addr, 10*time.Second); err != nil || res != "killed" {
		t.Fatalf("first session: %s, %v", res, err)
	}
	actortest.Eventually(t, 5*time.Second, "the pot's progress", func() bool {
		tg := targetStates(t, n, "r1")["pot-a"]
		return tg.State == actors.TargetDownloading && tg.Percent == 38
	})
	// Again, then the node restarts on the same data directory.
	p.stopAfter = 3000
	if res, err := p.session(t, n.addr, 10*time.Second); err != nil || res != "killed" {
		t.Fatalf("second session: %s, %v", res, err)
	}
	sent := n.edge.ChunksSent()
	n.stop()
	n2 := startOTANode(t, dir, device.Options{})
	if res, err := p.session(t, n2.addr, 10*time.Second); err != nil || res != "rebooted" {
		t.Fatalf("after the restart: %s, %v", res, err)
	}
	if err := p.boot(n2.addr); err != nil {
		t.Fatal(err)
	}
	// Every byte crossed the link once: 4000 bytes in 512-byte chunks is 8 chunks.
	if total := sent + n2.edge.ChunksSent(); total != 8 {
		t.Errorf("%d chunks sent, want 8 (no byte sent twice)", total)
	}
	actortest.Eventually(t, 5*time.Second, "the rollout state", func() bool {
		r, _ := n2.st.GetRollout(context.Background(), "r1")
		return r.State == actors.RolloutCompleted && targetStates(t, n2, "r1")["pot-a"].State == actors.TargetRunning
	})
}

func TestOTABadSignatureIsRefusedAndPausesTheRollout(t *testing.T) {
	n := startOTANode(t, t.TempDir(), device.Options{})
	_, img, _ := otaImage(t, n, "pot", "2.0.0", 2000)
	otherPub, _, _ := ed25519.GenerateKey(rand.Reader)
	signed := &otaPot{id: "pot-sig", secret: n.addDevice(t, "pot-sig"), pub: otherPub, firmware: "1.0.0"}
	if _, err := n.ota.StartRollout(context.Background(), actors.RolloutSpec{ID: "r1", Product: "pot", Version: img.Version,
		Stages: []int{100}, FailureThreshold: 0.5}); err != nil {
		t.Fatal(err)
	}
	if res, err := signed.session(t, n.addr, 10*time.Second); err != nil || res != "refused" {
		t.Fatalf("pot with another key: %s, %v", res, err)
	}
	actortest.Eventually(t, 5*time.Second, "the rollout state", func() bool {
		tg := targetStates(t, n, "r1")["pot-sig"]
		return tg.State == actors.TargetFailed && tg.Reason == "bad signature"
	})
	// One of one failed: the rollout paused itself (recorded after the target's failure, so it is
	// waited for too).
	actortest.Eventually(t, 5*time.Second, "the rollout paused", func() bool {
		r, _ := n.st.GetRollout(context.Background(), "r1")
		return r.State == actors.RolloutPaused
	})
}

func TestOTACorruptChunkIsRefusedAndReported(t *testing.T) {
	n := startOTANode(t, t.TempDir(), device.Options{})
	pub, img, _ := otaImage(t, n, "pot", "2.0.0", 2000)
	bad := &otaPot{id: "pot-bad", secret: n.addDevice(t, "pot-bad"), pub: pub, firmware: "1.0.0", corrupt: true}
	for i := range 3 {
		n.addDevice(t, fmt.Sprintf("pot-ok-%d", i))
	}
	if _, err := n.ota.StartRollout(context.Background(), actors.RolloutSpec{ID: "r1", Product: "pot", Version: img.Version,
		Stages: []int{100}, FailureThreshold: 0.5}); err != nil {
		t.Fatal(err)
	}
	if res, err := bad.session(t, n.addr, 10*time.Second); err != nil || res != "refused" {
		t.Fatalf("corrupting pot: %s, %v", res, err)
	}
	actortest.Eventually(t, 5*time.Second, "the rollout state", func() bool {
		tg := targetStates(t, n, "r1")["pot-bad"]
		return tg.State == actors.TargetFailed && tg.Reason == "sha256 mismatch"
	})
	// One of four is under the 50 % threshold: the rollout goes on.
	if r, _ := n.st.GetRollout(context.Background(), "r1"); r.State != actors.RolloutRunning {
		t.Fatalf("rollout %s (%s), want running", r.State, r.Reason)
	}
}

func TestOTAImageThatDoesNotComeBackRollsBackAndPausesTheRollout(t *testing.T) {
	n := startOTANode(t, t.TempDir(), device.Options{})
	pub, img, _ := otaImage(t, n, "pot", "2.0.0", 1000)
	p := &otaPot{id: "pot-a", secret: n.addDevice(t, "pot-a"), pub: pub, firmware: "1.0.0", bootFails: true}
	q := &otaPot{id: "pot-b", secret: n.addDevice(t, "pot-b"), pub: pub, firmware: "1.0.0"}
	if _, err := n.ota.StartRollout(context.Background(), actors.RolloutSpec{ID: "r1", Product: "pot", Version: img.Version,
		Devices: []string{"pot-a", "pot-b"}, Stages: []int{100}, FailureThreshold: 0.5}); err != nil {
		t.Fatal(err)
	}
	if res, err := p.session(t, n.addr, 10*time.Second); err != nil || res != "rebooted" {
		t.Fatalf("%s, %v", res, err)
	}
	if err := p.boot(n.addr); err != nil {
		t.Fatal(err)
	}
	actortest.Eventually(t, 5*time.Second, "the rollout state", func() bool {
		return targetStates(t, n, "r1")["pot-a"].State == actors.TargetRolledBack
	})
	r, _ := n.st.GetRollout(context.Background(), "r1")
	if r.State != actors.RolloutPaused {
		t.Fatalf("rollout %s, want paused", r.State)
	}
	// A paused rollout offers nothing; resumed, it does.
	if res, err := q.session(t, n.addr, 300*time.Millisecond); res != "no offer" || err == nil {
		t.Fatalf("paused rollout: %s, %v", res, err)
	}
	if _, err := n.ota.SetRolloutState(context.Background(), "r1", actors.RolloutRunning, ""); err != nil {
		t.Fatal(err)
	}
	if res, err := q.session(t, n.addr, 10*time.Second); err != nil || res != "rebooted" {
		t.Fatalf("after resume: %s, %v", res, err)
	}
}

// TestOTAChunksArePacedNodeWideAndTelemetryGoesOn downloads at a node-wide pace of 20 chunks/s
// while the pot keeps reporting: the download takes as long as the pace says, and every reading
// is acknowledged along the way.
func TestOTAChunksArePacedNodeWideAndTelemetryGoesOn(t *testing.T) {
	n := startOTANode(t, t.TempDir(), device.Options{OTAChunksPerSecond: 20})
	_, img, data := otaImage(t, n, "pot", "2.0.0", 12*512)
	secret := n.addDevice(t, "pot-a")
	if _, err := n.ota.StartRollout(context.Background(), actors.RolloutSpec{ID: "r1", Product: "pot", Version: img.Version}); err != nil {
		t.Fatal(err)
	}
	c := n.connect(t, "pot-a", secret)
	var offer *devicepb.UpdateOffer
	for offer == nil {
		f, err := c.Recv(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		offer = f.GetUpdateOffer()
	}
	start := time.Now()
	var got []byte
	var slowestAck time.Duration
	for seq := uint64(1); len(got) < len(data); seq++ {
		if err := c.Send(&devicepb.Frame{Body: &devicepb.Frame_ChunkRequest{ChunkRequest: &devicepb.ChunkRequest{
			Sha256: offer.Sha256, Offset: uint32(len(got)), Length: offer.ChunkSize}}}); err != nil {
			t.Fatal(err)
		}
		sent := time.Now()
		if err := c.Send(&devicepb.Frame{Body: &devicepb.Frame_Telemetry{Telemetry: &devicepb.Telemetry{Seq: seq, SoilMoisturePct: 40}}}); err != nil {
			t.Fatal(err)
		}
		acked, chunk := false, false
		for !acked || !chunk {
			f, err := c.Recv(5 * time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if a := f.GetAck(); a != nil && a.Seq == seq {
				acked = true
				slowestAck = max(slowestAck, time.Since(sent))
			}
			if ch := f.GetChunk(); ch != nil {
				if int(ch.Offset) != len(got) {
					t.Fatalf("chunk at %d, want %d", ch.Offset, len(got))
				}
				got = append(got, ch.Data...)
				chunk = true
			}
		}
	}
	elapsed := time.Since(start)
	if !bytes.Equal(got, data) {
		t.Fatal("the downloaded image differs from the stored one")
	}
	// 12 chunks at 20/s with a burst of 2: at least 10 waits of 50 ms.
	if elapsed < 450*time.Millisecond {
		t.Errorf("12 chunks in %s: faster than 20 chunks/s allows", elapsed)
	}
	t.Logf("12 chunks in %s; slowest telemetry ack %s", elapsed, slowestAck)
}
