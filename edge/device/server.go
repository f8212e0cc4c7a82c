// Package device is the device edge: the TCP listener plant pots connect to. It runs the handshake,
// then registers each connection as a light actor.Process whose PID (valid across cluster members)
// the device's grain uses to reach it. It holds no device state: every decision is the grain's.
//
// The listener (this file) accepts sockets, holds the connection slots and shuts down; a
// connection (conn.go) has one cleanup, is read by the edge's epoll poller once welcomed
// (poll_linux.go; a TLS connection on a goroutine of its own), and writes through a bounded queue
// drained by one writer (outq.go); the handshake is in handshake.go, the process in process.go.
package device

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	pcluster "github.com/asynkron/protoactor-go/cluster"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/edge/devicelink"
	"github.com/sprout-iot/sprout/messages"
	"github.com/sprout-iot/sprout/messages/devicepb"
)

// Defaults of Options' zero fields.
const (
	DefaultHandshakeTimeout = 10 * time.Second
	// DefaultIdleTimeout is three of the default 30 s heartbeat intervals.
	DefaultIdleTimeout  = 90 * time.Second
	DefaultWriteTimeout = 10 * time.Second
	// DefaultMaxPendingFrames and DefaultMaxPendingBytes bound one pot's outbound queue. A pot that
	// reads keeps it near empty: the writer hands what is queued to the socket in one write.
	DefaultMaxPendingFrames = 64
	DefaultMaxPendingBytes  = 16 << 10
	DefaultMaxInFlight      = 32
	// DefaultMaxConnections: one process can hold about 19,990 on these machines.
	DefaultMaxConnections      = 10000
	DefaultGrainTimeout        = 5 * time.Second
	DefaultShutdownReconnectMs = 5000
	// DefaultMaxHandshakes bounds the handshakes waiting for their grain at once (see Options).
	DefaultMaxHandshakes = 256
	// DefaultBusyRetry is the mean wait a pot refused as busy is told (see Options).
	DefaultBusyRetry = 5 * time.Second
)

// Options are the edge's limits. Every field has a default (the Default* constants) and is
// reachable from `sprout serve` flags and SPROUT_* variables.
type Options struct {
	// HandshakeTimeout bounds Hello..Auth (a socket deadline; default 10 s).
	HandshakeTimeout time.Duration
	// IdleTimeout drops a device that sent nothing (not even Ping) for this long (a socket
	// deadline; default 90 s). The device goes offline.
	IdleTimeout time.Duration
	// WriteTimeout bounds one write to the socket; a device that does not drain it in time is
	// closed as a slow consumer, so it stalls nothing but itself (a socket deadline; default 10 s).
	WriteTimeout time.Duration
	// MaxFrameBytes is the largest frame accepted (default 1024).
	MaxFrameBytes int
	// MaxPendingFrames and MaxPendingBytes bound one device's outbound queue: the frames (acks,
	// Pongs, commands) waiting for the writer while the socket is full. Queuing a frame past either
	// closes the connection as a slow consumer (CLOSE_REASON_SLOW_CONSUMER): the node's memory for
	// a pot that stops reading stays bounded (defaults 64 frames and 16 KiB).
	MaxPendingFrames int
	MaxPendingBytes  int
	// MaxInFlight bounds one device's frames awaiting their grain's answer; past it the edge stops
	// reading that socket until answers come (default 32).
	MaxInFlight int
	// MaxConnections bounds concurrent sockets; past it new ones get Close(TOO_MANY_CONNECTIONS)
	// (default 10000).
	MaxConnections int
	// GrainTimeout bounds one request to a device grain: the handshake's, and how long reports may
	// wait for their grain before the watchdog closes the connection (default 5 s).
	GrainTimeout time.Duration
	// ShutdownReconnectMs is the most a device is told to wait before reconnecting elsewhere on a
	// graceful shutdown; each gets a random delay up to it, so they do not all return at once (default 5000).
	ShutdownReconnectMs uint32

	// OTA is the firmware rollout service (docs/ota.md); nil disables updates over the air.
	OTA devicelink.OTA
	// OTAChunksPerSecond bounds the firmware chunks the whole edge sends per second, so a rollout
	// never crowds out telemetry; each pot has at most one chunk request in flight (default 400).
	OTAChunksPerSecond int
	// OTAPace, when set, is the node-wide pace this edge shares with the node's other device edges
	// (the MQTT edge); OTAChunksPerSecond is then not used. Nil: a pace of the edge's own.
	OTAPace *devicelink.Pace
	// OTARecheck is how often connected pots without an offer are checked against rollouts whose
	// stage another member opened (default 30 s; stages opened on this member are offered at once).
	OTARecheck time.Duration

	// GoroutinePerConn reads every connection on a goroutine of its own, as TLS connections always
	// are. Off (the default on Linux), a welcomed plain-TCP connection is read by the edge's poller
	// (epoll): an idle connection then holds no goroutine and no read buffer (docs/performance.md).
	GoroutinePerConn bool

	// MaxHandshakes bounds this edge's handshakes waiting for their device grain at once (the
	// grain loads the device and stores the connect). A pot that completes Auth while all are
	// taken is refused at once with Close(UNAVAILABLE, "server busy ...") and a reconnect_after_ms
	// spread between BusyRetry/2 and 3*BusyRetry/2, before anything is read or written for it: a
	// fleet reconnecting at once (a router's or a node's restart) is let in at the rate the
	// node and its store can take, instead of every handshake timing out together and each
	// retry adding to the pile. Default 256; negative: no limit.
	MaxHandshakes int
	// BusyRetry is the mean reconnect hint of a pot refused as busy (default 5 s).
	BusyRetry time.Duration

	// SingleReports sends each report to its grain on its own (Report) instead of batching a
	// read's consecutive reports (Reports, one store append for the lot). Members older than
	// report batching do not know Reports: set it on new nodes during a rolling upgrade from such
	// a version, and unset it once every member runs this one (docs/cluster.md, "Rolling upgrades").
	SingleReports bool

	// Clock drives the edge's timers that are not socket deadlines (the watchdog); default
	// actors.RealClock(). Tests pass a fake clock and advance it.
	Clock  actors.Clock
	Logger *slog.Logger
}

func (o *Options) defaults() {
	set := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	set(&o.HandshakeTimeout, DefaultHandshakeTimeout)
	set(&o.IdleTimeout, DefaultIdleTimeout)
	set(&o.WriteTimeout, DefaultWriteTimeout)
	set(&o.GrainTimeout, DefaultGrainTimeout)
	set(&o.OTARecheck, DefaultOTARecheck)
	set(&o.BusyRetry, DefaultBusyRetry)
	if o.MaxHandshakes == 0 {
		o.MaxHandshakes = DefaultMaxHandshakes
	}
	if o.OTAChunksPerSecond <= 0 {
		o.OTAChunksPerSecond = DefaultOTAChunksPerSecond
	}
	if o.MaxFrameBytes == 0 {
		o.MaxFrameBytes = messages.DefaultMaxFrameBytes
	}
	if o.MaxPendingFrames == 0 {
		o.MaxPendingFrames = DefaultMaxPendingFrames
	}
	if o.MaxPendingBytes == 0 {
		o.MaxPendingBytes = DefaultMaxPendingBytes
	}
	if o.MaxInFlight == 0 {
		o.MaxInFlight = DefaultMaxInFlight
	}
	if o.MaxConnections == 0 {
		o.MaxConnections = DefaultMaxConnections
	}
	if o.ShutdownReconnectMs == 0 {
		o.ShutdownReconnectMs = DefaultShutdownReconnectMs
	}
	if o.Clock == nil {
		o.Clock = actors.RealClock()
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Stats are the edge's counters, read with Server.Stats.
type Stats struct {
	Open         int64            // sockets open now: in the handshake or connected
	Connected    int64            // sockets past the handshake
	Accepted     int64            // sockets accepted, ever
	FramesIn     int64            // frames read after the handshake
	FramesOut    int64            // frames written
	Pending      int64            // frames in outbound queues now (all connections)
	PendingBytes int64            // their bytes
	Closed       map[string]int64 // ended connections by reason (CloseReason names)
	// Refused counts frames refused without ending their session, by why (for now only
	// "command_result: invalid UTF-8 in command_id|detail").
	Refused map[string]int64
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
	pending, pendingBytes                    atomic.Int64
	sockets                                  atomic.Int64 // slots taken (MaxConnections)
	reasons                                  sync.Map     // string -> *atomic.Int64
	refused                                  sync.Map     // string -> *atomic.Int64
	wg                                       sync.WaitGroup
	listening                                atomic.Int32 // Serve calls accepting now

	chunks    *devicelink.Pace // firmware chunks, node-wide (ota.go)
	chunksOut atomic.Int64     // firmware chunks sent
	otaPoke   chan struct{}    // OfferNow

	handshakes *devicelink.Gate // handshakes waiting for their grain (MaxHandshakes)

	pollOnce sync.Once
	poll     *poller // started by the first plain-TCP connection welcomed (poll_linux.go)
}

// NewServer returns an edge that reaches device grains through c.
func NewServer(c *pcluster.Cluster, opts Options) *Server {
	opts.defaults()
	s := &Server{opts: opts, cluster: c, conns: map[*conn]struct{}{}, stop: make(chan struct{}),
		chunks: opts.OTAPace, otaPoke: make(chan struct{}, 1), handshakes: devicelink.NewGate(opts.MaxHandshakes)}
	if s.chunks == nil {
		s.chunks = devicelink.NewPace(opts.OTAChunksPerSecond)
	}
	go s.watchdog()
	if opts.OTA != nil {
		go s.otaLoop()
	}
	return s
}

// watchdog closes connections whose reports have waited longer than GrainTimeout for their grain
// (its member died, or it is stuck): the device reconnects, reaches the grain's new activation,
// and resends what was not acked. One goroutine checks every connection once a second.
func (s *Server) watchdog() {
	t := s.opts.Clock.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.Chan():
			limit := s.opts.Clock.Now().Add(-s.opts.GrainTimeout).UnixNano()
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
		go s.serveConn(nc)
	}
}

func rejectFull(nc net.Conn, wt time.Duration) {
	_ = nc.SetWriteDeadline(time.Now().Add(wt))
	b, _ := messages.AppendFrame(nil, closeFrame(devicepb.CloseReason_CLOSE_REASON_TOO_MANY_CONNECTIONS, "edge is full, try another", 5000))
	_, _ = nc.Write(b)
	_ = nc.Close()
}

// track registers a new connection; false once the edge is shutting down.
func (s *Server) track(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

// release forgets a finished connection and frees its slot.
func (s *Server) release(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.sockets.Add(-1)
	s.wg.Done()
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	st := Stats{Open: s.sockets.Load(), Connected: s.connected.Load(), Accepted: s.accepted.Load(),
		FramesIn: s.framesIn.Load(), FramesOut: s.framesOut.Load(), Pending: s.pending.Load(),
		PendingBytes: s.pendingBytes.Load(), Closed: map[string]int64{}, Refused: map[string]int64{}}
	s.reasons.Range(func(k, v any) bool {
		st.Closed[k.(string)] = v.(*atomic.Int64).Load()
		return true
	})
	s.refused.Range(func(k, v any) bool {
		st.Refused[k.(string)] = v.(*atomic.Int64).Load()
		return true
	})
	return st
}

func (s *Server) refuse(why string) {
	v, _ := s.refused.LoadOrStore(why, new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
}

func (s *Server) count(r devicepb.CloseReason) {
	v, _ := s.reasons.LoadOrStore(r.String(), new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
}

// Listening reports whether the edge is accepting device connections on at least one listener.
func (s *Server) Listening() bool { return s.listening.Load() > 0 }

// Shutdown stops accepting, tells every device to reconnect elsewhere after a random delay, closes
// the sockets, and waits for the connections to end (bounded by ctx).
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
	p := s.poll
	s.mu.Unlock()
	for _, c := range conns {
		c.close(devicepb.CloseReason_CLOSE_REASON_SERVER_SHUTDOWN, "server shutting down; reconnect elsewhere",
			rand.Uint32N(s.opts.ShutdownReconnectMs+1))
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	if p != nil {
		p.close()
	}
	return ctx.Err()
}

// ServeTLS is Serve over TLS: the TLS handshake runs on the connection's first read, within
// HandshakeTimeout. Give it a config from edge/tlsconf (TLS 1.2 or newer, reloaded certificates).
func (s *Server) ServeTLS(ln net.Listener, cfg *tls.Config) error {
	return s.Serve(tls.NewListener(ln, cfg))
}
