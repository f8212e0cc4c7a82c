package device

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/asynkron/protoactor-go/actor"
	"go.opentelemetry.io/otel/trace"

	"github.com/sprout-iot/sprout/messages"
	"github.com/sprout-iot/sprout/messages/actorpb"
	"github.com/sprout-iot/sprout/messages/devicepb"
)

// conn is one device socket from accept to close. Server.serveConn runs the handshake on a
// short-lived goroutine; a plain TCP connection is then handed to the poller (poll_linux.go), which
// reads and decodes its frames when the socket is readable, so an idle connection holds no
// goroutine and no read buffer. A TLS connection (or any with Options.GoroutinePerConn) keeps a
// goroutine that reads (readLoop). Every frame to the device (Challenge, Welcome, acks, Pongs,
// commands, Close) goes through the bounded outbound queue (outq.go), drained by one writer that
// exists only while there is something to write. The connection is its own actor.Process
// (process.go): grains send it Deliver and answer its reports without a mailbox.
type conn struct {
	s  *Server
	nc net.Conn
	r  *bufio.Reader // the handshake's (pooled), kept by a connection that reads on a goroutine

	// Set by the handshake, read by the cleanup (after the handshake has ended).
	device   string
	session  string
	pid      *actor.PID // the connection's process, once registered
	grainPID *actor.PID // the device's grain, once looked up
	asked    bool       // Authenticate was sent: the grain may have attached this connection
	welcomed bool
	firmware string // the firmware version from Hello

	ota otaConn // firmware update state (ota.go)

	out outq

	inflight  atomic.Int32  // reports awaiting their grain's answer (at most MaxInFlight)
	paused    atomic.Bool   // the poller stopped reading: all in-flight slots are taken
	freed     chan struct{} // readLoop's wake-up when a slot frees (goroutine path only)
	closing   chan struct{} // closed when the connection starts to close
	closeOnce sync.Once
	cleanOnce sync.Once
	waiting   atomic.Int64 // clock unix ns since when a report has awaited its grain (0: none)
	reason    atomic.Int32 // the first close reason
	// cmdTraces holds, for traced commands written to the device, their trace (trace.go).
	cmdTraces sync.Map

	proc procState // the actor.Process side (process.go)

	// The poller's side (poll_linux.go): set before the connection is registered.
	polled  atomic.Bool
	pollID  uint64
	rc      syscall.RawConn
	rmu     sync.Mutex   // held while frames are read and dispatched; the cleanup takes it to stop that
	partial []byte       // bytes of a frame split across reads (or not yet dispatched while paused)
	rstop   bool         // reading has ended (under rmu)
	seen    atomic.Int64 // coarse unix ns of the last complete frame (idle timeout)
}

func (c *conn) remote() string {
	if a := c.nc.RemoteAddr(); a != nil {
		return a.String()
	}
	return ""
}

// readers are the handshake's buffered readers; a polled connection returns its reader once the
// handshake is over, so an idle connection keeps none.
var readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 512) }}

// serveConn is a connection's start: the handshake, then either the hand-off to the poller or the
// read loop on this goroutine. On every way out the one cleanup runs, which detaches the grain,
// ends the connection's process and releases the slot.
func (s *Server) serveConn(nc net.Conn) {
	r := readers.Get().(*bufio.Reader)
	r.Reset(nc)
	c := &conn{s: s, nc: nc, r: r, closing: make(chan struct{})}
	c.out.init()
	if !s.track(c) {
		c.close(devicepb.CloseReason_CLOSE_REASON_SERVER_SHUTDOWN, "server shutting down; reconnect elsewhere", 0)
		c.cleanup()
		return
	}
	// The handshake runs the deep cluster-request path, which grows a goroutine's stack. A polled
	// connection runs it here (this goroutine ends with the hand-off); one that keeps reading on
	// this goroutine (TLS) runs it on another, so that this one keeps a small stack.
	p := s.pollerFor(nc)
	var ok bool
	if p != nil {
		ok = c.handshake()
	} else {
		done := make(chan bool, 1)
		go func() { done <- c.handshake() }()
		ok = <-done
	}
	if !ok {
		c.cleanup()
		return
	}
	c.welcomed = true
	s.connected.Add(1)
	if s.opts.OTA != nil {
		go c.otaWelcomed()
	}
	if p != nil {
		c.handOff(p)
		return
	}
	c.freed = make(chan struct{}, 1)
	reason, detail := c.readLoop()
	c.close(reason, detail, 0)
	c.cleanup()
}

// cleanup ends the connection, once: it waits for the writer to close the socket, stops reading,
// tells the grain (Detach with the reason; the grain also watches the connection's process, so
// ending it tells a grain whose PID was never found, or on another member, as well), ends the
// process, and frees the slot.
func (c *conn) cleanup() {
	c.cleanOnce.Do(c.cleanupOnce)
}

func (c *conn) cleanupOnce() {
	s := c.s
	c.close(devicepb.CloseReason_CLOSE_REASON_UNSPECIFIED, "", 0)
	<-c.out.done
	if c.polled.Load() {
		// A poller dispatching this connection's frames finishes first: its reports reach the
		// grain before the Detach, as on a reading goroutine.
		c.rmu.Lock()
		c.rstop = true
		c.partial = nil
		c.rmu.Unlock()
		s.poll.remove(c)
	}
	if c.r != nil {
		c.r.Reset(nil)
		readers.Put(c.r)
		c.r = nil
	}
	reason := devicepb.CloseReason(c.reason.Load())
	if c.pid != nil {
		if c.grainPID != nil && c.asked {
			s.cluster.ActorSystem.Root.Send(c.grainPID, &actorpb.Detach{SessionId: c.session, Reason: reason})
		}
		c.terminate()
	}
	s.count(reason)
	switch {
	case c.welcomed:
		s.connected.Add(-1)
		s.opts.Logger.Debug("device disconnected", "device", c.device, "session", c.session, "reason", reason.String())
	case c.asked:
		s.opts.Logger.Info("connection ended during the handshake; device detached", "device", c.device,
			"session", c.session, "reason", reason.String(), "remote", c.remote())
	}
	s.release(c)
}

// readLoop reads frames on the connection's goroutine until it ends (TLS, or GoroutinePerConn).
// Reports go to the grain as requests whose answers come back to the connection's process, which
// queues the acks; the loop itself never waits for the grain, only for a free in-flight slot, and
// never for the socket's writer.
func (c *conn) readLoop() (devicepb.CloseReason, string) {
	s := c.s
	var b batch
	defer c.flush(&b, nil)
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
				c.refused(refused)
				continue
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return devicepb.CloseReason_CLOSE_REASON_IDLE_TIMEOUT, "no frame within the idle timeout"
			}
			return readErrReason(err)
		}
		if !c.reserve(f) {
			c.flush(&b, nil) // the batch holds slots: its answers free them
			for !c.reserve(f) {
				select {
				case <-c.freed:
				case <-c.closing:
					return devicepb.CloseReason_CLOSE_REASON_UNSPECIFIED, ""
				}
			}
		}
		if r, d, ok := c.dispatch(f, &b); !ok {
			return r, d
		}
		if !c.frameBuffered() {
			c.flush(&b, nil) // the next read may wait: what was read goes now
		}
	}
}

// frameBuffered tells whether a whole frame is already in the read buffer (reading it will not
// wait for the device).
func (c *conn) frameBuffered() bool {
	n := c.r.Buffered()
	if n == 0 {
		return false
	}
	p, _ := c.r.Peek(min(n, binary.MaxVarintLen64))
	l, k := binary.Uvarint(p)
	return k > 0 && uint64(n-k) >= l
}

// refused counts a frame refused without ending the session. A result the pot cut in the middle
// of a character is refused (it is not delivered, strings must be UTF-8) and the session, whose
// framing is intact, goes on: dropping it would make the pot reconnect, get the open command again
// and answer the same frame, in a loop.
func (c *conn) refused(r *errRefused) {
	c.s.framesIn.Add(1)
	c.s.refuse(r.what)
	c.s.opts.Logger.Warn("refused a frame from the device; the session goes on", "device", c.device,
		"session", c.session, "why", r.what)
}

// isReport tells the frames that take an in-flight slot: the grain answers each with an ack.
func isReport(f *devicepb.Frame) bool {
	switch f.Body.(type) {
	case *devicepb.Frame_Telemetry, *devicepb.Frame_Event:
		return true
	}
	return false
}

// reserve takes an in-flight slot for f if it is a report; false if all MaxInFlight are taken.
func (c *conn) reserve(f *devicepb.Frame) bool {
	if !isReport(f) {
		return true
	}
	limit := int32(c.s.opts.MaxInFlight)
	for {
		n := c.inflight.Load()
		if n >= limit {
			return false
		}
		if c.inflight.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// answered frees the in-flight slots of k answered reports, and wakes the reader that waits for one.
func (c *conn) answered(k int32) {
	for {
		n := c.inflight.Load()
		if n <= 0 {
			break
		}
		if c.inflight.CompareAndSwap(n, max(n-k, 0)) {
			break
		}
	}
	if c.inflight.Load() == 0 {
		c.waiting.Store(0)
	} else {
		c.waiting.Store(c.s.opts.Clock.Now().UnixNano()) // progress: the next answer gets a fresh deadline
	}
	if c.freed != nil {
		select {
		case c.freed <- struct{}{}:
		default:
		}
	}
	if c.paused.CompareAndSwap(true, false) {
		go c.resume()
	}
}

// batch collects consecutive reports read together, for their grain: one message (Report, or
// Reports for several) that the grain stores in one step. It is flushed before any other frame is
// handled (a result or a Close keeps its place after the reports before it) and before the reader
// may wait. It holds at most half of MaxInFlight reports (each holds a slot), so that two batches
// of one pot can be in flight at once.
type batch struct {
	reports []*actorpb.Report
	spans   []trace.Span
}

// flush sends the batch to the grain; its answer comes to the connection's process. result, when
// set, is a command result that followed the reports: it goes in the same message, handled in the
// same step (a pot's read_now reading and its result cost one store append, not two).
func (c *conn) flush(b *batch, result *actorpb.DeliverResult) {
	if len(b.reports) == 0 {
		if result != nil {
			c.s.cluster.ActorSystem.Root.Send(c.grainPID, result)
		}
		return
	}
	c.waiting.CompareAndSwap(0, c.s.opts.Clock.Now().UnixNano())
	root := c.s.cluster.ActorSystem.Root
	switch {
	case c.s.opts.SingleReports:
		for _, r := range b.reports {
			root.RequestWithCustomSender(c.grainPID, r, c.pid)
		}
		if result != nil {
			root.Send(c.grainPID, result)
		}
	case len(b.reports) == 1 && result == nil:
		root.RequestWithCustomSender(c.grainPID, b.reports[0], c.pid)
	default:
		root.RequestWithCustomSender(c.grainPID, &actorpb.Reports{Reports: b.reports, Result: result}, c.pid)
	}
	for _, span := range b.spans {
		span.End()
	}
	b.reports, b.spans = nil, b.spans[:0] // the grain holds the sent slice
}

// dispatch handles one frame after the handshake (a report's in-flight slot is already taken): a
// report joins b; any other frame is handled after b is flushed. ok false ends the connection
// with the reason.
func (c *conn) dispatch(f *devicepb.Frame, b *batch) (_ devicepb.CloseReason, _ string, ok bool) {
	s := c.s
	s.framesIn.Add(1)
	var report *actorpb.Report
	switch x := f.Body.(type) {
	case *devicepb.Frame_Telemetry:
		report = &actorpb.Report{SessionId: c.session, Body: &actorpb.Report_Telemetry{Telemetry: x.Telemetry}}
	case *devicepb.Frame_Event:
		if len(x.Event.Detail) > messages.MaxDetailBytes {
			return devicepb.CloseReason_CLOSE_REASON_PROTOCOL_ERROR, "event detail too long", false
		}
		report = &actorpb.Report{SessionId: c.session, Body: &actorpb.Report_Event{Event: x.Event}}
	}
	if report != nil {
		if span := c.frameSpan(report); span.IsRecording() {
			b.spans = append(b.spans, span)
		}
		b.reports = append(b.reports, report)
		if len(b.reports) >= max(1, s.opts.MaxInFlight/2) {
			// Half the slots at most: the next batch fills while the grain stores this one, so
			// one pot's flood stays pipelined instead of waiting a whole round trip per batch.
			c.flush(b, nil)
		}
		return 0, "", true
	}
	if x, ok := f.Body.(*devicepb.Frame_CommandResult); ok {
		if len(x.CommandResult.Detail) > messages.MaxDetailBytes || len(x.CommandResult.CommandId) > messages.MaxCommandIDBytes {
			c.flush(b, nil)
			return devicepb.CloseReason_CLOSE_REASON_PROTOCOL_ERROR, "command result field too long", false
		}
		// Same sender, same grain: it sees results and reports in the device's order.
		c.flush(b, &actorpb.DeliverResult{SessionId: c.session, Result: x.CommandResult,
			Trace: c.resultTrace(x.CommandResult.CommandId)})
		return 0, "", true
	}
	c.flush(b, nil)
	switch x := f.Body.(type) {
	case *devicepb.Frame_Ping:
		if !c.send(&devicepb.Frame{Body: &devicepb.Frame_Pong{Pong: &devicepb.Pong{Nonce: x.Ping.Nonce}}}) {
			return devicepb.CloseReason_CLOSE_REASON_UNSPECIFIED, "", false
		}
	case *devicepb.Frame_Pong:
	case *devicepb.Frame_ChunkRequest, *devicepb.Frame_UpdateProgress:
		if r, d := c.otaFrame(f); r != devicepb.CloseReason_CLOSE_REASON_UNSPECIFIED {
			return r, d, false
		}
	case *devicepb.Frame_Close:
		return devicepb.CloseReason_CLOSE_REASON_UNSPECIFIED, "closed by device: " + x.Close.Reason.String(), false
	default:
		return devicepb.CloseReason_CLOSE_REASON_PROTOCOL_ERROR, fmt.Sprintf("unexpected frame %T after handshake", f.Body), false
	}
	return 0, "", true
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
		} else {
			c.out.finish(c, closeFrame(r, detail, reconnectMs))
		}
		c.closed()
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
		c.closed()
	})
}

// closed runs the cleanup of a polled connection (no goroutine of its own waits for its end).
func (c *conn) closed() {
	if c.polled.Load() {
		go c.cleanup()
	}
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
