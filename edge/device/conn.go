package device

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/messages"
	"github.com/sprout-iot/sprout/messages/actorpb"
	"github.com/sprout-iot/sprout/messages/devicepb"
)

// conn is one device socket from accept to close. Server.serveConn owns its life, reading on
// that goroutine; every frame to the device (Challenge, Welcome, acks, Pongs, commands, Close)
// goes through the bounded outbound queue (outq.go), drained by one writer.
type conn struct {
	s      *Server
	nc     net.Conn
	r      *bufio.Reader
	remote string

	// Set by the handshake, read by the cleanup (same goroutine, or after it has ended).
	device   string
	session  string
	pid      *actor.PID // the connection actor, once spawned
	grainPID *actor.PID // the device's grain, once looked up
	asked    bool       // Authenticate was sent: the grain may have attached this connection
	welcomed bool
	firmware string // the firmware version from Hello

	ota otaConn // firmware update state (ota.go)

	out outq

	inflight  chan struct{} // one slot per report awaiting its grain's answer
	closing   chan struct{} // closed when the connection starts to close
	closeOnce sync.Once
	waiting   atomic.Int64 // clock unix ns since when a report has awaited its grain (0: none)
	reason    atomic.Int32 // the first close reason
	// cmdTraces holds, for traced commands written to the device, their trace (trace.go).
	cmdTraces sync.Map
}

// serveConn is a connection's whole life: the handshake, the read loop, and on every way out the
// one cleanup, which detaches the grain, stops the connection actor and releases the slot.
func (s *Server) serveConn(nc net.Conn) {
	c := &conn{s: s, nc: nc, r: bufio.NewReaderSize(nc, 512), remote: nc.RemoteAddr().String(),
		inflight: make(chan struct{}, s.opts.MaxInFlight), closing: make(chan struct{})}
	c.out.init()
	defer c.cleanup()
	if !s.track(c) {
		c.close(devicepb.CloseReason_CLOSE_REASON_SERVER_SHUTDOWN, "server shutting down; reconnect elsewhere", 0)
		return
	}
	// The handshake runs the deep cluster-request path, which grows a goroutine's stack; it runs
	// on its own goroutine so that the connection's long idle life keeps a small one (memory per
	// device). This goroutine waits for it: the life, and its cleanup, stay here.
	ok := make(chan bool, 1)
	go func() { ok <- c.handshake() }()
	if !<-ok {
		return
	}
	c.welcomed = true
	s.connected.Add(1)
	go c.otaWelcomed()
	reason, detail := c.readLoop()
	c.close(reason, detail, 0)
}

// cleanup ends the connection: it waits for the writer to close the socket, tells the grain
// (Detach with the reason; the grain also watches the connection actor, so stopping it tells a
// grain whose PID was never found, or on another member, as well), stops the actor, and frees the
// slot. It runs once, whatever ended the connection.
func (c *conn) cleanup() {
	s := c.s
	c.close(devicepb.CloseReason_CLOSE_REASON_UNSPECIFIED, "", 0)
	<-c.out.done
	reason := devicepb.CloseReason(c.reason.Load())
	root := s.cluster.ActorSystem.Root
	if c.pid != nil {
		if c.grainPID != nil && c.asked {
			root.Send(c.grainPID, &actorpb.Detach{SessionId: c.session, Reason: reason})
		}
		root.Stop(c.pid)
	}
	s.count(reason)
	switch {
	case c.welcomed:
		s.connected.Add(-1)
		s.opts.Logger.Debug("device disconnected", "device", c.device, "session", c.session, "reason", reason.String())
	case c.asked:
		s.opts.Logger.Info("connection ended during the handshake; device detached", "device", c.device,
			"session", c.session, "reason", reason.String(), "remote", c.remote)
	}
	s.release(c)
}

// readLoop reads frames until the connection ends. Reports go to the grain as requests whose
// answers come back to the connection actor, which queues the acks; the loop itself never waits
// for the grain, only for a free in-flight slot, and never for the socket's writer.
func (c *conn) readLoop() (devicepb.CloseReason, string) {
	s := c.s
	root := s.cluster.ActorSystem.Root
	for {
		if c.r.Buffered() == 0 {
			// Only a read that may block needs the idle deadline.
			_ = c.nc.SetReadDeadline(time.Now().Add(s.opts.IdleTimeout))
		}
		f := &devicepb.Frame{} // not reused: the grain may still hold its body
		if err := c.readFrame(f); err != nil {
			select {
			case <-c.closing: // closed from elsewhere; its reason stands
				return devicepb.CloseReason_CLOSE_REASON_UNSPECIFIED, ""
			default:
			}
			var refused *errRefused
			if errors.As(err, &refused) {
				// A result the pot cut in the middle of a character: refuse that frame (it is
				// not delivered, strings must be UTF-8) and keep the session, whose framing is
				// intact. Dropping it would make the pot reconnect, get the open command again
				// and answer the same frame, in a loop.
				s.framesIn.Add(1)
				s.refuse(refused.what)
				s.opts.Logger.Warn("refused a frame from the device; the session goes on", "device", c.device,
					"session", c.session, "why", refused.what)
				continue
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return devicepb.CloseReason_CLOSE_REASON_IDLE_TIMEOUT, "no frame within the idle timeout"
			}
			return readErrReason(err)
		}
		s.framesIn.Add(1)
		var report *actorpb.Report
		switch b := f.Body.(type) {
		case *devicepb.Frame_Telemetry:
			report = &actorpb.Report{SessionId: c.session, Body: &actorpb.Report_Telemetry{Telemetry: b.Telemetry}}
		case *devicepb.Frame_Event:
			if len(b.Event.Detail) > messages.MaxDetailBytes {
				return devicepb.CloseReason_CLOSE_REASON_PROTOCOL_ERROR, "event detail too long"
			}
			report = &actorpb.Report{SessionId: c.session, Body: &actorpb.Report_Event{Event: b.Event}}
		case *devicepb.Frame_CommandResult:
			if len(b.CommandResult.Detail) > messages.MaxDetailBytes || len(b.CommandResult.CommandId) > messages.MaxCommandIDBytes {
				return devicepb.CloseReason_CLOSE_REASON_PROTOCOL_ERROR, "command result field too long"
			}
			// Same sender, same grain: it sees results and reports in the device's order.
			root.Send(c.grainPID, &actorpb.DeliverResult{SessionId: c.session, Result: b.CommandResult, Trace: c.resultTrace(b.CommandResult.CommandId)})
		case *devicepb.Frame_Ping:
			if !c.send(&devicepb.Frame{Body: &devicepb.Frame_Pong{Pong: &devicepb.Pong{Nonce: b.Ping.Nonce}}}) {
				return devicepb.CloseReason_CLOSE_REASON_UNSPECIFIED, ""
			}
		case *devicepb.Frame_Pong:
		case *devicepb.Frame_ChunkRequest, *devicepb.Frame_UpdateProgress:
			if r, d := c.otaFrame(f); r != devicepb.CloseReason_CLOSE_REASON_UNSPECIFIED {
				return r, d
			}
		case *devicepb.Frame_Close:
			return devicepb.CloseReason_CLOSE_REASON_UNSPECIFIED, "closed by device: " + b.Close.Reason.String()
		default:
			return devicepb.CloseReason_CLOSE_REASON_PROTOCOL_ERROR, fmt.Sprintf("unexpected frame %T after handshake", f.Body)
		}
		if report != nil {
			select {
			case c.inflight <- struct{}{}:
			case <-c.closing:
				return devicepb.CloseReason_CLOSE_REASON_UNSPECIFIED, ""
			}
			c.waiting.CompareAndSwap(0, s.opts.Clock.Now().UnixNano())
			span := c.frameSpan(report)
			root.RequestWithCustomSender(c.grainPID, report, c.pid)
			span.End()
		}
	}
}

// close starts closing the connection once: the first reason stands. With a reason, Close is
// queued after the frames already queued and the writer closes the socket once it has written
// them (within WriteTimeout); without one (the device left or reset), what is queued is dropped
// and the socket closed at once.
func (c *conn) close(r devicepb.CloseReason, detail string, reconnectMs uint32) {
	c.closeOnce.Do(func() {
		c.reason.Store(int32(r))
		close(c.closing)
		if r == devicepb.CloseReason_CLOSE_REASON_UNSPECIFIED {
			c.out.abort(c)
			return
		}
		c.out.finish(c, closeFrame(r, detail, reconnectMs))
	})
}

// drop closes a connection whose socket cannot take more (a slow consumer, a failed write): the
// queue is dropped and the socket closed at once, without a Close frame, which could not be
// written after a partial frame anyway.
func (c *conn) drop(r devicepb.CloseReason, detail string) {
	c.closeOnce.Do(func() {
		c.reason.Store(int32(r))
		close(c.closing)
		c.s.opts.Logger.Info("dropping device connection", "device", c.device, "reason", r.String(), "detail", detail)
		c.out.abort(c)
	})
}

func closeFrame(r devicepb.CloseReason, detail string, reconnectMs uint32) *devicepb.Frame {
	return &devicepb.Frame{Body: &devicepb.Frame_Close{Close: &devicepb.Close{
		Reason: r, Detail: truncate(detail, messages.MaxDetailBytes), ReconnectAfterMs: reconnectMs}}}
}

// truncate cuts s to at most n bytes on a rune boundary (nanopb rejects longer strings).
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// connActor is the connection's address in the cluster: grains send it Deliver, and the answers
// to its reports come back to it.
type connActor struct{ c *conn }

func (a *connActor) Receive(ctx actor.Context) {
	c := a.c
	switch m := ctx.Message().(type) {
	case *actorpb.ReportAck:
		select {
		case <-c.inflight:
		default:
		}
		if len(c.inflight) == 0 {
			c.waiting.Store(0)
		} else {
			c.waiting.Store(c.s.opts.Clock.Now().UnixNano()) // progress: the next answer gets a fresh deadline
		}
		if m.Close != devicepb.CloseReason_CLOSE_REASON_UNSPECIFIED {
			c.close(m.Close, m.Detail, 0)
			return
		}
		c.send(&devicepb.Frame{Body: &devicepb.Frame_Ack{Ack: &devicepb.Ack{Seq: m.Seq}}})
	case *actor.DeadLetterResponse:
		// The grain this connection reports to is gone (its member left): the device reconnects
		// and reaches the grain's new activation.
		c.s.cluster.PidCache.Remove(c.device, actors.DeviceKind)
		c.close(devicepb.CloseReason_CLOSE_REASON_UNAVAILABLE, "device grain moved; reconnect", 0)
	case *actorpb.Deliver:
		if m.SessionId != c.session {
			return
		}
		if len(m.Frames) > 0 {
			span := c.deliverSpan(m)
			c.deliver(m.Frames)
			span.End()
		}
		if m.Close != nil {
			c.close(m.Close.Reason, m.Close.Detail, m.Close.ReconnectAfterMs)
		}
	}
}
