// Package device is the device edge: the TCP listener plant pots connect to. It runs the handshake,
// then gives each socket a connection actor whose PID (valid across cluster members) the device's
// grain uses to reach it. It holds no device state: every decision is the grain's.
package device

import (
	"bufio"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"
	"go.opentelemetry.io/otel/trace"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/cluster/observe"
	"github.com/sprout-iot/sprout/messages"
	"github.com/sprout-iot/sprout/messages/actorpb"
	"github.com/sprout-iot/sprout/messages/devicepb"
	"github.com/sprout-iot/sprout/store"
)

// Options are the edge's limits. Every field has a default (see defaults) and is reachable from
// `sprout serve` flags and SPROUT_* variables.
type Options struct {
	// HandshakeTimeout bounds Hello..Welcome (default 10 s).
	HandshakeTimeout time.Duration
	// IdleTimeout drops a device that sent nothing (not even Ping) for this long (default 90 s,
	// three of the default 30 s heartbeat intervals). The device goes offline.
	IdleTimeout time.Duration
	// WriteTimeout bounds one write; a device that does not drain its socket in time is closed as a
	// slow consumer, so it stalls nothing but itself (default 10 s).
	WriteTimeout time.Duration
	// MaxFrameBytes is the largest frame accepted (default 1024).
	MaxFrameBytes int
	// MaxPendingFrames bounds frames queued for one device before it has read them; past it the
	// connection is closed as a slow consumer (default 64).
	MaxPendingFrames int
	// MaxInFlight bounds one device's frames awaiting their grain's answer; past it the edge stops
	// reading that socket until answers come (default 32).
	MaxInFlight int
	// MaxConnections bounds concurrent sockets; past it new ones get Close(TOO_MANY_CONNECTIONS)
	// (default 10000; one process can hold about 19,990 on these machines).
	MaxConnections int
	// GrainTimeout bounds one request to a device grain (default 5 s).
	GrainTimeout time.Duration
	// ShutdownReconnectMs is the most a device is told to wait before reconnecting elsewhere on a
	// graceful shutdown; each gets a random delay up to it, so they do not all return at once (default 5000).
	ShutdownReconnectMs uint32

	Logger *slog.Logger
}

func (o *Options) defaults() {
	if o.HandshakeTimeout == 0 {
		o.HandshakeTimeout = 10 * time.Second
	}
	if o.IdleTimeout == 0 {
		o.IdleTimeout = 90 * time.Second
	}
	if o.WriteTimeout == 0 {
		o.WriteTimeout = 10 * time.Second
	}
	if o.MaxFrameBytes == 0 {
		o.MaxFrameBytes = messages.DefaultMaxFrameBytes
	}
	if o.MaxPendingFrames == 0 {
		o.MaxPendingFrames = 64
	}
	if o.MaxInFlight == 0 {
		o.MaxInFlight = 32
	}
	if o.MaxConnections == 0 {
		o.MaxConnections = 10000
	}
	if o.GrainTimeout == 0 {
		o.GrainTimeout = 5 * time.Second
	}
	if o.ShutdownReconnectMs == 0 {
		o.ShutdownReconnectMs = 5000
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Stats are the edge's counters, read with Server.Stats.
type Stats struct {
	Connected int64            // sockets past the handshake
	Accepted  int64            // sockets accepted, ever
	FramesIn  int64            // frames read after the handshake
	FramesOut int64            // frames written
	Closed    map[string]int64 // closes by reason (CloseReason names)
}

// Server accepts device connections.
type Server struct {
	opts    Options
	cluster *pcluster.Cluster

	mu     sync.Mutex
	conns  map[*conn]struct{}
	stop   chan struct{}
	lns    []net.Listener
	closed bool

	accepted, framesIn, framesOut, connected atomic.Int64
	sockets                                  atomic.Int64
	reasons                                  sync.Map // string -> *atomic.Int64
	wg                                       sync.WaitGroup
	listening                                atomic.Int32 // Serve calls accepting now
}

// NewServer returns an edge that reaches device grains through c.
func NewServer(c *pcluster.Cluster, opts Options) *Server {
	opts.defaults()
	s := &Server{opts: opts, cluster: c, conns: map[*conn]struct{}{}, stop: make(chan struct{})}
	go s.watchdog()
	return s
}

// watchdog closes connections whose reports have waited longer than GrainTimeout for their grain
// (its member died, or it is stuck): the device reconnects, reaches the grain's new activation,
// and resends what was not acked. One goroutine checks every connection once a second.
func (s *Server) watchdog() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case now := <-t.C:
			limit := now.Add(-s.opts.GrainTimeout).UnixNano()
			s.mu.Lock()
			var late []*conn
			for c := range s.conns {
				if w := c.waiting.Load(); w != 0 && w < limit {
					late = append(late, c)
				}
			}
			s.mu.Unlock()
			for _, c := range late {
				s.opts.Logger.Warn("device grain did not answer a report in time; closing", "device", c.device)
				c.close(devicepb.CloseReason_CLOSE_REASON_UNAVAILABLE, "server did not store the frame in time; reconnect and resend", 0)
			}
		}
	}
}

// Serve accepts connections on ln until Shutdown. It returns nil after Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errors.New("edge is shut down")
	}
	s.lns = append(s.lns, ln)
	s.mu.Unlock()
	s.listening.Add(1)
	defer s.listening.Add(-1)
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.opts.Logger.Warn("accept failed; backing off", "err", err, "backoff", backoff)
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("accept: %w", err)
		}
		backoff = 0
		s.accepted.Add(1)
		if s.sockets.Add(1) > int64(s.opts.MaxConnections) {
			s.sockets.Add(-1)
			s.count(devicepb.CloseReason_CLOSE_REASON_TOO_MANY_CONNECTIONS)
			go rejectFull(nc, s.opts.WriteTimeout)
			continue
		}
		s.wg.Add(1)
		go s.handle(nc)
	}
}

func rejectFull(nc net.Conn, wt time.Duration) {
	_ = nc.SetWriteDeadline(time.Now().Add(wt))
	b, _ := messages.AppendFrame(nil, closeFrame(devicepb.CloseReason_CLOSE_REASON_TOO_MANY_CONNECTIONS, "edge is full, try another", 5000))
	_, _ = nc.Write(b)
	_ = nc.Close()
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	st := Stats{Connected: s.connected.Load(), Accepted: s.accepted.Load(), FramesIn: s.framesIn.Load(),
		FramesOut: s.framesOut.Load(), Closed: map[string]int64{}}
	s.reasons.Range(func(k, v any) bool {
		st.Closed[k.(string)] = v.(*atomic.Int64).Load()
		return true
	})
	return st
}

func (s *Server) count(r devicepb.CloseReason) {
	v, _ := s.reasons.LoadOrStore(r.String(), new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
}

// Shutdown stops accepting, tells every device to reconnect elsewhere after a random delay, closes
// the sockets, and waits for the connection goroutines (bounded by ctx).
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if !s.closed {
		close(s.stop)
	}
	s.closed = true
	for _, ln := range s.lns {
		_ = ln.Close()
	}
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.close(devicepb.CloseReason_CLOSE_REASON_SERVER_SHUTDOWN, "server shutting down; reconnect elsewhere",
			rand.Uint32N(s.opts.ShutdownReconnectMs+1))
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// conn is one device socket. The read goroutine owns reading; writes (acks, pongs, commands,
// Close) are serialised by wmu and bounded by WriteTimeout.
type conn struct {
	s       *Server
	nc      net.Conn
	r       *bufio.Reader
	session string
	device  string
	remote  string
	pid     *actor.PID

	wmu      sync.Mutex
	wbuf     []byte
	welcomed bool
	queued   []*devicepb.Frame // frames that arrived before Welcome was written
	done     bool

	grainPID *actor.PID
	inflight chan struct{}     // one slot per report awaiting its grain's answer
	acks     []*devicepb.Frame // acks the actor holds to write together
	closed   chan struct{}     // closed with the socket
	pending  atomic.Int32      // frames delivered to the actor and not yet written
	waiting  atomic.Int64      // unix ns since when a report has awaited its grain (0: none)
	reason   atomic.Int32      // the first close reason
	// cmdTraces holds, for traced commands written to the device, their trace (trace.go).
	cmdTraces sync.Map
}

func (s *Server) handle(nc net.Conn) {
	c := &conn{s: s, nc: nc, r: bufio.NewReaderSize(nc, 512), remote: nc.RemoteAddr().String(),
		inflight: make(chan struct{}, s.opts.MaxInFlight), closed: make(chan struct{})}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = nc.Close()
		s.sockets.Add(-1)
		s.wg.Done()
		return
	}
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	if !c.handshake() {
		s.release(c)
		return
	}
	// The handshake ran the deep cluster-request path and grew this goroutine's stack; the
	// connection's long idle life goes on in a fresh goroutine with a small one (memory per device).
	go s.serve(c)
}

func (s *Server) serve(c *conn) {
	defer s.release(c)
	s.connected.Add(1)
	reason, detail := c.readLoop()
	s.connected.Add(-1)
	c.close(reason, detail, 0)
	// The grain learns of the end both from Detach (with the reason) and from the actor's
	// termination (which it watches, so it also learns when this whole member dies).
	s.cluster.ActorSystem.Root.Send(s.grain(c.device), &actorpb.Detach{SessionId: c.session, Reason: devicepb.CloseReason(c.reason.Load())})
	s.cluster.ActorSystem.Root.Stop(c.pid)
}

// release forgets a finished connection.
func (s *Server) release(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.sockets.Add(-1)
	s.wg.Done()
}

func (s *Server) grain(id string) *actor.PID {
	if pid, ok := s.cluster.PidCache.Get(id, actors.DeviceKind); ok {
		return pid
	}
	pid := s.cluster.Get(id, actors.DeviceKind)
	if pid != nil {
		s.cluster.PidCache.Set(id, actors.DeviceKind, pid)
	}
	return pid
}

func (c *conn) handshake() bool {
	s := c.s
	deadline := time.Now().Add(s.opts.HandshakeTimeout)
	_ = c.nc.SetReadDeadline(deadline)
	f := &devicepb.Frame{}
	if err := messages.ReadFrame(c.r, s.opts.MaxFrameBytes, f); err != nil {
		c.fail(readErrReason(err))
		return false
	}
	hello := f.GetHello()
	if hello == nil {
		c.fail(devicepb.CloseReason_CLOSE_REASON_PROTOCOL_ERROR, "expected Hello first")
		return false
	}
	if err := validHello(hello); err != nil {
		c.fail(devicepb.CloseReason_CLOSE_REASON_PROTOCOL_ERROR, err.Error())
		return false
	}
	c.device = hello.DeviceId
	serverNonce := make([]byte, messages.NonceBytes)
	_, _ = crand.Read(serverNonce)
	if !c.write(&devicepb.Frame{Body: &devicepb.Frame_Challenge{Challenge: &devicepb.Challenge{ServerNonce: serverNonce}}}) {
		return false
	}
	f.Reset()
	if err := messages.ReadFrame(c.r, s.opts.MaxFrameBytes, f); err != nil {
		c.fail(readErrReason(err))
		return false
	}
	auth := f.GetAuth()
	if auth == nil {
		c.fail(devicepb.CloseReason_CLOSE_REASON_PROTOCOL_ERROR, "expected Auth after Challenge")
		return false
	}
	sid := make([]byte, 16)
	_, _ = crand.Read(sid)
	c.session = hex.EncodeToString(sid)
	c.pid = s.cluster.ActorSystem.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return &connActor{c: c} }))
	hctx, span := observe.StartRoot(context.Background(), "edge.handshake", trace.SpanKindServer)
	defer span.End()
	res, err := s.cluster.Request(c.device, actors.DeviceKind, &actorpb.Authenticate{Trace: observe.Inject(hctx),
		DeviceId: hello.DeviceId, DeviceNonce: hello.DeviceNonce, ServerNonce: serverNonce, Mac: auth.Mac,
		FirmwareVersion: hello.FirmwareVersion, ProtocolVersion: hello.ProtocolVersion, RemoteAddr: c.remote,
		Conn: &actorpb.ConnRef{Address: c.pid.Address, Id: c.pid.Id, SessionId: c.session, Edge: c.nc.LocalAddr().String()},
	}, pcluster.WithTimeout(s.opts.GrainTimeout))
	ar, _ := res.(*actorpb.AuthResult)
	if err != nil || ar == nil {
		s.cluster.ActorSystem.Root.Stop(c.pid)
		s.opts.Logger.Warn("handshake: device grain did not answer", "device", c.device, "err", err)
		c.fail(devicepb.CloseReason_CLOSE_REASON_UNAVAILABLE, "server busy, try later")
		return false
	}
	if !ar.Ok {
		s.cluster.ActorSystem.Root.Stop(c.pid)
		c.failAfter(ar.Reason, ar.Detail, ar.RetryAfterMs)
		return false
	}
	c.grainPID = s.grain(c.device)
	if c.grainPID == nil {
		c.fail(devicepb.CloseReason_CLOSE_REASON_UNAVAILABLE, "server busy, try later")
		return false
	}
	_ = c.nc.SetReadDeadline(time.Time{})
	// Welcome first, then the open commands the grain handed back, then anything the actor queued.
	c.wmu.Lock()
	frames := append([]*devicepb.Frame{{Body: &devicepb.Frame_Welcome{Welcome: ar.Welcome}}}, ar.AfterWelcome...)
	frames = append(frames, c.queued...)
	c.queued = nil
	c.welcomed = true
	ok := c.writeLocked(frames...)
	c.wmu.Unlock()
	if ok {
		s.opts.Logger.Debug("device connected", "device", c.device, "session", c.session, "remote", c.remote)
	}
	return ok
}

func validHello(h *devicepb.Hello) error {
	switch {
	case h.DeviceId == "" || len(h.DeviceId) > messages.MaxDeviceIDBytes:
		return fmt.Errorf("device_id must be 1..%d bytes", messages.MaxDeviceIDBytes)
	case store.ValidID(h.DeviceId) != nil:
		return errors.New("device_id must be UTF-8 without spaces, slashes or control characters")
	case len(h.FirmwareVersion) > messages.MaxFirmwareBytes:
		return fmt.Errorf("firmware_version longer than %d bytes", messages.MaxFirmwareBytes)
	case len(h.DeviceNonce) != messages.NonceBytes:
		return fmt.Errorf("device_nonce must be %d bytes", messages.NonceBytes)
	}
	return nil
}

func readErrReason(err error) (devicepb.CloseReason, string) {
	var ne net.Error
	switch {
	case errors.Is(err, messages.ErrFrameTooLarge):
		return devicepb.CloseReason_CLOSE_REASON_FRAME_TOO_LARGE, err.Error()
	case errors.As(err, &ne) && ne.Timeout():
		return devicepb.CloseReason_CLOSE_REASON_HANDSHAKE_TIMEOUT, "handshake timed out"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		return devicepb.CloseReason_CLOSE_REASON_UNSPECIFIED, "connection closed by device"
	default:
		return devicepb.CloseReason_CLOSE_REASON_PROTOCOL_ERROR, truncate(err.Error(), messages.MaxDetailBytes)
	}
}

// readLoop reads frames until the connection ends. Reports go to the grain as requests whose
// answers come back to the connection actor, which writes the acks (several per write when they
// arrive together); the loop itself never waits for the grain, only for a free in-flight slot.
func (c *conn) readLoop() (devicepb.CloseReason, string) {
	s := c.s
	root := s.cluster.ActorSystem.Root
	for {
		if c.r.Buffered() == 0 {
			// Only a read that may block needs the idle deadline.
			_ = c.nc.SetReadDeadline(time.Now().Add(s.opts.IdleTimeout))
		}
		f := &devicepb.Frame{} // not reused: the grain may still hold its body
		if err := messages.ReadFrame(c.r, s.opts.MaxFrameBytes, f); err != nil {
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
			if !c.write(&devicepb.Frame{Body: &devicepb.Frame_Pong{Pong: &devicepb.Pong{Nonce: b.Ping.Nonce}}}) {
				return devicepb.CloseReason(c.reason.Load()), "write failed"
			}
		case *devicepb.Frame_Pong:
		case *devicepb.Frame_Close:
			return devicepb.CloseReason_CLOSE_REASON_UNSPECIFIED, "closed by device: " + b.Close.Reason.String()
		default:
			return devicepb.CloseReason_CLOSE_REASON_PROTOCOL_ERROR, fmt.Sprintf("unexpected frame %T after handshake", f.Body)
		}
		if report != nil {
			select {
			case c.inflight <- struct{}{}:
			case <-c.closed:
				return devicepb.CloseReason(c.reason.Load()), "closed"
			}
			c.waiting.CompareAndSwap(0, time.Now().UnixNano())
			span := c.frameSpan(report)
			root.RequestWithCustomSender(c.grainPID, report, c.pid)
			span.End()
		}
	}
}

func (c *conn) write(frames ...*devicepb.Frame) bool {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.writeLocked(frames...)
}

func (c *conn) writeLocked(frames ...*devicepb.Frame) bool {
	if c.done {
		return false
	}
	c.wbuf = c.wbuf[:0]
	for _, f := range frames {
		var err error
		if c.wbuf, err = messages.AppendFrame(c.wbuf, f); err != nil {
			c.s.opts.Logger.Error("encoding a frame failed", "err", err)
			return false
		}
	}
	_ = c.nc.SetWriteDeadline(time.Now().Add(c.s.opts.WriteTimeout))
	if _, err := c.nc.Write(c.wbuf); err != nil {
		c.reason.CompareAndSwap(0, int32(devicepb.CloseReason_CLOSE_REASON_SLOW_CONSUMER))
		c.shutLocked()
		return false
	}
	c.s.framesOut.Add(int64(len(frames)))
	if cap(c.wbuf) > 4096 {
		c.wbuf = nil
	}
	return true
}

// fail ends a connection during the handshake.
func (c *conn) fail(r devicepb.CloseReason, detail string) { c.failAfter(r, detail, 0) }

// failAfter is fail with a reconnect hint for the device (0: its own backoff).
func (c *conn) failAfter(r devicepb.CloseReason, detail string, reconnectMs uint32) {
	c.s.opts.Logger.Info("handshake failed", "reason", r.String(), "detail", detail, "device", c.device, "remote", c.remote)
	observe.HandshakeFailed(r.String())
	c.close(r, detail, reconnectMs)
}

// close writes Close (once, best effort) and closes the socket; the read loop then ends.
func (c *conn) close(r devicepb.CloseReason, detail string, reconnectMs uint32) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.done {
		return
	}
	c.reason.CompareAndSwap(0, int32(r))
	c.s.count(devicepb.CloseReason(c.reason.Load()))
	if r != devicepb.CloseReason_CLOSE_REASON_UNSPECIFIED {
		c.writeLocked(closeFrame(r, detail, reconnectMs))
	}
	c.shutLocked()
}

// shutLocked closes the socket once; wmu is held.
func (c *conn) shutLocked() {
	if c.done {
		return
	}
	c.done = true
	close(c.closed)
	_ = c.nc.Close()
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

// connActor is the connection's address in the cluster: grains send it Deliver.
type connActor struct{ c *conn }

func (a *connActor) Receive(ctx actor.Context) {
	c := a.c
	switch m := ctx.Message().(type) {
	case *actorpb.ReportAck:
		<-c.inflight
		if len(c.inflight) == 0 {
			c.waiting.Store(0)
		} else {
			c.waiting.Store(time.Now().UnixNano()) // progress: the next answer gets a fresh deadline
		}
		if m.Close != devicepb.CloseReason_CLOSE_REASON_UNSPECIFIED {
			c.flushAcks()
			c.close(m.Close, m.Detail, 0)
			return
		}
		c.acks = append(c.acks, &devicepb.Frame{Body: &devicepb.Frame_Ack{Ack: &devicepb.Ack{Seq: m.Seq}}})
		// Write when nothing else is outstanding, or enough acks wait: under load several go in one write.
		if len(c.inflight) == 0 || len(c.acks) >= 16 {
			c.flushAcks()
		}
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
			if c.pending.Add(int32(len(m.Frames))) > int32(c.s.opts.MaxPendingFrames) {
				c.close(devicepb.CloseReason_CLOSE_REASON_SLOW_CONSUMER, "too many frames pending", 0)
				return
			}
			span := c.deliverSpan(m)
			c.wmu.Lock()
			if !c.welcomed {
				c.queued = append(c.queued, m.Frames...)
			} else {
				c.writeLocked(m.Frames...)
			}
			c.wmu.Unlock()
			span.End()
			c.pending.Add(-int32(len(m.Frames)))
		}
		if m.Close != nil {
			c.close(m.Close.Reason, m.Close.Detail, m.Close.ReconnectAfterMs)
		}
	}
}

func (c *conn) flushAcks() {
	if len(c.acks) == 0 {
		return
	}
	c.write(c.acks...)
	clear(c.acks)
	c.acks = c.acks[:0]
}
