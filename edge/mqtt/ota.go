package mqtt

import (
	"bytes"
	"context"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/sprout-iot/sprout/messages/devicepb"
)

// Firmware updates over the air on the MQTT edge (docs/ota.md, docs/mqtt.md#firmware-updates):
// the TCP edge's protocol (edge/device/ota.go) on topics. The rollout service decides what a pot
// is offered; the edge publishes the offer on sprout/<id>/ota/offer after the session is
// established and again when a stage opens, answers each request on ota/request with a chunk on
// ota/chunk (one in flight per pot, paced with the TCP edge by the node's shared Pace) and hands
// what the pot publishes on ota/progress to the service. An offer or chunk for a pot not
// subscribed to its topic is held (one of each) until it subscribes.

// otaSession is a session's update state. offer and held are guarded by session.mu.
type otaSession struct {
	offer *devicepb.UpdateOffer    // the offer of this session (with its chunk_size), nil if none
	held  map[string]proto.Message // topic suffix -> what waits for the pot's subscription
	busy  atomic.Bool              // a chunk request is being served
	ready atomic.Bool              // the connect-time offer is settled: the recheck loop may offer
}

func (x *session) currentOffer() *devicepb.UpdateOffer {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.ota.offer
}

// otaWelcomed runs once the session is established: it settles an update the pot came back
// from (the version in its Username) and sends the offer, if any. A pot that named no version
// takes no part in updates.
func (x *session) otaWelcomed() {
	s := x.s
	if s.opts.OTA == nil || x.firmware == "" {
		return
	}
	defer x.ota.ready.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.GrainTimeout)
	defer cancel()
	offer, err := s.opts.OTA.OnConnect(ctx, x.device, x.firmware)
	if err != nil {
		s.opts.Logger.Warn("ota: could not look up the pot's rollout", "device", x.device, "err", err)
		return
	}
	x.sendOffer(offer)
}

// chunkSize is the chunk_size offered to this session: the edge's, or less when the client's
// MQTT 5 Maximum Packet Size would not take a chunk of it (the broker would drop it unseen). The
// bound assumes JSON (base64, the larger encoding) and 128 bytes of packet, topic and fields.
func (x *session) chunkSize() uint32 {
	n := x.s.opts.OTAChunkBytes
	if m := int(x.cl.Properties.Props.MaximumPacketSize); m > 0 {
		n = min(n, (m-len(topic(x.device, topicOTAChunk))-128)*3/4)
	}
	return uint32(max(n, 0))
}

func (x *session) sendOffer(offer *devicepb.UpdateOffer) {
	if offer == nil {
		return
	}
	offer = proto.Clone(offer).(*devicepb.UpdateOffer)
	offer.ChunkSize = x.chunkSize()
	if offer.ChunkSize < 64 {
		x.s.opts.Logger.Warn("ota: the pot's Maximum Packet Size leaves no room for a chunk; not offered", "device", x.device)
		return
	}
	x.mu.Lock()
	x.ota.offer = offer
	x.mu.Unlock()
	x.otaSend(topicOTAOffer, offer)
}

// chunkRequest handles a ChunkRequest; false means it is out of range (the session is closed).
func (x *session) chunkRequest(req *devicepb.ChunkRequest) bool {
	s := x.s
	offer := x.currentOffer()
	if offer == nil || !bytes.Equal(req.Sha256, offer.Sha256) {
		// Not offered on this session (a withdrawn rollout, an old image): an empty chunk tells the
		// pot to drop it.
		x.otaSend(topicOTAChunk, &devicepb.Chunk{Sha256: req.Sha256, Offset: req.Offset})
		return true
	}
	if req.Length == 0 || req.Length > offer.ChunkSize || req.Offset >= offer.Size {
		return false
	}
	if !x.ota.busy.CompareAndSwap(false, true) {
		s.refuse(RefusedOTABusy)
		return true
	}
	go x.serveChunk(offer, req)
	return true
}

// serveChunk reads one chunk, paced node-wide, and publishes (or holds) it.
func (x *session) serveChunk(offer *devicepb.UpdateOffer, req *devicepb.ChunkRequest) {
	s := x.s
	n := min(req.Length, offer.Size-req.Offset)
	if !s.opts.OTAPace.Wait(int(n), x.done) {
		x.ota.busy.Store(false)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.GrainTimeout)
	defer cancel()
	data, err := s.opts.OTA.ReadChunk(ctx, offer.Sha256, int(req.Offset), int(n))
	if err != nil {
		x.ota.busy.Store(false)
		s.opts.Logger.Warn("ota: could not read a chunk", "device", x.device, "err", err)
		x.closeWith(disconnectCode(reasonUnavail), reasonUnavail)
		return
	}
	// Free the pot's slot before the chunk goes out: a pot asking for the next one the moment it
	// arrives must not find this one still in flight (as on the TCP edge).
	x.ota.busy.Store(false)
	x.otaSend(topicOTAChunk, &devicepb.Chunk{Sha256: offer.Sha256, Offset: req.Offset, Data: data})
}

// progress hands an UpdateProgress to the rollout service; it is not answered (its PUBACK
// follows once it is recorded).
func (x *session) progress(p *devicepb.UpdateProgress) {
	s := x.s
	if s.opts.OTA == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.GrainTimeout)
	defer cancel()
	if err := s.opts.OTA.Progress(ctx, x.device, p); err != nil {
		s.opts.Logger.Warn("ota: could not record the pot's progress", "device", x.device, "err", err)
	}
}

// otaSend publishes m on the session's topic suffix, or holds it (replacing what was held there)
// while the pot is not subscribed to it.
func (x *session) otaSend(suffix string, m proto.Message) {
	t := topic(x.device, suffix)
	x.mu.Lock()
	if !x.subscribedTo(t) {
		if x.ota.held == nil {
			x.ota.held = map[string]proto.Message{}
		}
		x.ota.held[suffix] = m
		x.mu.Unlock()
		x.s.held.Add(1)
		return
	}
	enc := x.enc
	x.mu.Unlock()
	x.otaPublish(suffix, m, enc)
}

func (x *session) otaPublish(suffix string, m proto.Message, enc encoding) {
	var b []byte
	var err error
	switch m := m.(type) {
	case *devicepb.UpdateOffer:
		b, err = encodeOffer(m, enc)
	case *devicepb.Chunk:
		b, err = encodeChunk(m, enc)
	}
	if err != nil {
		x.s.opts.Logger.Error("ota: encoding failed", "device", x.device, "err", err)
		return
	}
	if err := x.s.broker.Publish(topic(x.device, suffix), b, false, 1); err == nil && suffix == topicOTAChunk {
		x.s.chunks.Add(1)
	}
}

// otaFlush publishes what was held for topics the pot has now subscribed to.
func (x *session) otaFlush() {
	type out struct {
		suffix string
		m      proto.Message
	}
	var send []out
	x.mu.Lock()
	enc := x.enc
	for _, suffix := range []string{topicOTAOffer, topicOTAChunk} { // the offer before its chunks
		if m, ok := x.ota.held[suffix]; ok && x.subscribedTo(topic(x.device, suffix)) {
			delete(x.ota.held, suffix)
			send = append(send, out{suffix, m})
		}
	}
	x.mu.Unlock()
	for _, o := range send {
		x.otaPublish(o.suffix, o.m, enc)
	}
}

// subscribedTo reports whether the pot's subscriptions (any filter: exact, + or #) cover t.
func (x *session) subscribedTo(t string) bool {
	_, ok := x.s.broker.Topics.Subscribers(t).Subscriptions[x.cl.ID]
	return ok
}

// otaLoop offers the image to sessions without an offer when a stage opens (OfferNow) and every
// OTARecheck (stages opened by another member).
func (s *Server) otaLoop() {
	t := time.NewTicker(s.opts.OTARecheck)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		case <-s.otaPoke:
		}
		s.mu.Lock()
		var idle []*session
		for _, x := range s.sessions {
			if x.ota.ready.Load() && x.currentOffer() == nil {
				idle = append(idle, x)
			}
		}
		s.mu.Unlock()
		for _, x := range idle {
			ctx, cancel := context.WithTimeout(context.Background(), s.opts.GrainTimeout)
			offer, err := s.opts.OTA.Pending(ctx, x.device, x.firmware)
			cancel()
			if err != nil {
				s.opts.Logger.Warn("ota: could not look up the pot's rollout", "device", x.device, "err", err)
				continue
			}
			x.sendOffer(offer)
		}
	}
}

// OfferNow makes the edge offer the image of newly opened stages to the pots connected over MQTT
// (call it from actors.OTAOptions.StageOpened, beside the TCP edge's). It does not block.
func (s *Server) OfferNow() {
	select {
	case s.otaPoke <- struct{}{}:
	default:
	}
}

// ChunksSent is the number of firmware chunks this edge has published.
func (s *Server) ChunksSent() int64 { return s.chunks.Load() }
