package device

import (
	"bytes"
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sprout-iot/sprout/messages"
	"github.com/sprout-iot/sprout/messages/devicepb"
)

// Firmware updates over the air on the device edge (docs/ota.md). The rollout service
// (actors.OTA) decides what a pot is offered; the edge sends the offer after the Welcome and
// again when a stage opens, answers the pot's chunk requests from the store, one in flight per
// pot and at most OTAChunksPerSecond for the whole node, so a rollout never crowds out telemetry,
// and hands the pot's progress to the service.

// Defaults of the OTA fields of Options.
const (
	DefaultOTAChunksPerSecond = 400
	DefaultOTARecheck         = 30 * time.Second
)

// otaConn is a connection's update state.
type otaConn struct {
	mu    sync.Mutex
	offer *devicepb.UpdateOffer // the offer sent on this connection, nil if none
	busy  atomic.Bool           // a chunk request is being served
	ready atomic.Bool           // the pot is welcomed and its connect-time offer settled
}

func (c *conn) currentOffer() *devicepb.UpdateOffer {
	c.ota.mu.Lock()
	defer c.ota.mu.Unlock()
	return c.ota.offer
}

// otaWelcomed runs once the pot is welcomed: it settles an update the pot came back from and
// sends the offer, if any.
func (c *conn) otaWelcomed() {
	s := c.s
	if s.opts.OTA == nil {
		return
	}
	defer c.ota.ready.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.GrainTimeout)
	defer cancel()
	offer, err := s.opts.OTA.OnConnect(ctx, c.device, c.firmware)
	if err != nil {
		s.opts.Logger.Warn("ota: could not look up the pot's rollout", "device", c.device, "err", err)
		return
	}
	c.sendOffer(offer)
}

func (c *conn) sendOffer(offer *devicepb.UpdateOffer) {
	if offer == nil {
		return
	}
	c.ota.mu.Lock()
	c.ota.offer = offer
	c.ota.mu.Unlock()
	c.send(&devicepb.Frame{Body: &devicepb.Frame_UpdateOffer{UpdateOffer: offer}})
}

// otaFrame handles a ChunkRequest or an UpdateProgress. A non-zero reason ends the connection.
func (c *conn) otaFrame(f *devicepb.Frame) (devicepb.CloseReason, string) {
	s := c.s
	switch b := f.Body.(type) {
	case *devicepb.Frame_UpdateProgress:
		p := b.UpdateProgress
		if len(p.Reason) > messages.MaxDetailBytes || len(p.Version) > messages.MaxFirmwareBytes {
			return devicepb.CloseReason_CLOSE_REASON_PROTOCOL_ERROR, "update progress field too long"
		}
		if s.opts.OTA == nil {
			return 0, ""
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.opts.GrainTimeout)
		defer cancel()
		if err := s.opts.OTA.Progress(ctx, c.device, p); err != nil {
			s.opts.Logger.Warn("ota: could not record the pot's progress", "device", c.device, "err", err)
		}
	case *devicepb.Frame_ChunkRequest:
		req := b.ChunkRequest
		offer := c.currentOffer()
		if offer == nil || !bytes.Equal(req.Sha256, offer.Sha256) {
			// Not offered on this connection (a withdrawn rollout, an old image): an empty Chunk
			// tells the pot to drop it.
			c.send(&devicepb.Frame{Body: &devicepb.Frame_Chunk{Chunk: &devicepb.Chunk{Sha256: req.Sha256, Offset: req.Offset}}})
			return 0, ""
		}
		if req.Length == 0 || req.Length > offer.ChunkSize || req.Offset >= offer.Size {
			return devicepb.CloseReason_CLOSE_REASON_PROTOCOL_ERROR, "chunk request out of range"
		}
		if !c.ota.busy.CompareAndSwap(false, true) {
			s.refuse("chunk_request: one already in flight")
			return 0, ""
		}
		go c.serveChunk(offer, req)
	}
	return 0, ""
}

// serveChunk reads one chunk, paced by the node-wide limit, and queues it.
func (c *conn) serveChunk(offer *devicepb.UpdateOffer, req *devicepb.ChunkRequest) {
	s := c.s
	if !s.chunks.Wait(int(req.Length), c.closing) {
		c.ota.busy.Store(false)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.GrainTimeout)
	defer cancel()
	data, err := s.opts.OTA.ReadChunk(ctx, offer.Sha256, int(req.Offset), int(req.Length))
	if err != nil {
		c.ota.busy.Store(false)
		s.opts.Logger.Warn("ota: could not read a chunk", "device", c.device, "err", err)
		c.close(devicepb.CloseReason_CLOSE_REASON_UNAVAILABLE, "firmware image unavailable; reconnect later", 0)
		return
	}
	s.chunksOut.Add(1)
	// Free the pot's slot before the Chunk goes out: the pot may ask for the next one the moment
	// it arrives, and that request must not find this one still in flight (it would be refused,
	// never answered, and the pot would wait for it forever).
	c.ota.busy.Store(false)
	c.send(&devicepb.Frame{Body: &devicepb.Frame_Chunk{Chunk: &devicepb.Chunk{Sha256: offer.Sha256, Offset: req.Offset, Data: data}}})
}

// otaLoop offers the image to connected pots without an offer when a stage opens (OTA's
// StageOpened, through OfferNow) and every OTARecheck (stages opened by another member).
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
		var idle []*conn
		for c := range s.conns {
			if c.ota.ready.Load() && c.currentOffer() == nil {
				idle = append(idle, c)
			}
		}
		s.mu.Unlock()
		for _, c := range idle {
			ctx, cancel := context.WithTimeout(context.Background(), s.opts.GrainTimeout)
			offer, err := s.opts.OTA.Pending(ctx, c.device, c.firmware)
			cancel()
			if err != nil {
				s.opts.Logger.Warn("ota: could not look up the pot's rollout", "device", c.device, "err", err)
				continue
			}
			c.sendOffer(offer)
		}
	}
}

// OfferNow makes the edge offer the image of newly opened stages to connected pots (set it as
// actors.OTAOptions.StageOpened). It does not block.
func (s *Server) OfferNow() {
	select {
	case s.otaPoke <- struct{}{}:
	default:
	}
}

// ChunksSent is the number of firmware chunks this edge has sent.
func (s *Server) ChunksSent() int64 { return s.chunksOut.Load() }
