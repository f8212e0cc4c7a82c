// Package mqtt is the MQTT device edge: pots (and off-the-shelf WiFi modules running their vendor's
// AT firmware, or ESP-IDF's esp-mqtt) connect with a standard MQTT 3.1.1 or 5 client instead of
// Sprout's own protobuf-over-TCP. It embeds a broker library (mochi-mqtt) for the wire protocol and
// turns each authenticated session into a connection to the device's grain, exactly like the TCP
// edge (edge/device): the grain owns presence, dedupe, thresholds, commands, replacement and the
// flapping rule. It is not a general-purpose broker: a device may publish and subscribe only under
// its own topics (docs/mqtt.md), and nothing is relayed between devices.
//
// The server (this file) holds the broker and the listeners; a session's life (auth, reports,
// commands, cleanup) is in session.go; the payload encodings are in codec.go.
package mqtt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	pcluster "github.com/asynkron/protoactor-go/cluster"
	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/edge/devicelink"
)

// Defaults of Options' zero fields.
const (
	// DefaultMaxPayloadBytes matches the TCP edge's largest frame.
	DefaultMaxPayloadBytes = 1024
	// DefaultMaxPacketBytes bounds a whole MQTT packet (topic, properties, payload); a larger one
	// is malformed input and closes the session.
	DefaultMaxPacketBytes = 4096
	// DefaultMaxKeepAlive: a session asking for no keep-alive, or a longer one, gets this (MQTT 5
	// clients are told in the CONNACK); the broker drops a session silent for 1.5 times it.
	DefaultMaxKeepAlive = 60 * time.Second
	DefaultGrainTimeout = 5 * time.Second
	DefaultMaxSessions  = 10000
	// DefaultMaxHandshakes bounds the CONNECTs waiting for their grain at once (see Options).
	DefaultMaxHandshakes  = 256
	DefaultMaxHeldCommand = 16
	// DefaultMaxPendingWrites bounds the packets queued for one device's socket.
	DefaultMaxPendingWrites = 64
	// DefaultOTAChunkBytes is the chunk_size offered over MQTT: without the TCP protocol's
	// 1024-byte frame, eight times the TCP edge's 512 bytes, so a 1 MiB image takes 256 round
	// trips instead of 2,048. A pot may always ask for less (docs/mqtt.md#firmware-updates).
	DefaultOTAChunkBytes = 4096
	// MaxOTAChunkBytes is the largest OTAChunkBytes allowed (actors.MaxReadChunkBytes).
	MaxOTAChunkBytes = actors.MaxReadChunkBytes
	// DefaultOTAChunksPerSecond is the pace of an edge without a shared one (OTAPace), in chunks
	// of devicelink.PaceChunkBytes, the TCP edge's default.
	DefaultOTAChunksPerSecond = 400
	// DefaultOTARecheck is how often sessions without an offer are checked against rollouts another
	// member changed.
	DefaultOTARecheck = 30 * time.Second
)

// Options are the MQTT edge's limits. Every field has a default (the Default* constants) and is
// reachable from `sprout serve` flags and SPROUT_* variables.
type Options struct {
	// MaxPayloadBytes is the largest telemetry, event or command-result payload accepted; a larger
	// one is refused and counted (default 1024).
	MaxPayloadBytes int
	// MaxPacketBytes is the largest MQTT packet read; a larger one closes the session (default 4096).
	MaxPacketBytes int
	// MaxKeepAlive is the keep-alive a session gets when it asks for none or for more (default 60 s).
	MaxKeepAlive time.Duration
	// GrainTimeout bounds one request to a device grain: authentication, and a report's wait for
	// its durable store before the session is closed without PUBACK (default 5 s).
	GrainTimeout time.Duration
	// MaxSessions bounds concurrent sessions on this node; past it CONNACK says server unavailable
	// (default 10000).
	MaxSessions int
	// MaxHandshakes bounds this edge's CONNECTs waiting for their device grain at once; past it a
	// CONNECT is refused at once, before the grain is asked, with Server Busy (MQTT 5) or Server
	// Unavailable (3.1.1), and the pot comes back after its own backoff: a fleet reconnecting at
	// once is let in at the rate the node can take (the TCP edge's limit, docs/protocol.md).
	// Default 256; negative: no limit.
	MaxHandshakes int
	// MaxHeldCommands bounds the commands held for a session that has not subscribed to its
	// commands topic yet; past it the session is closed (default 16).
	MaxHeldCommands int
	// MaxPendingWrites bounds the packets queued for one session's socket (default 64).
	MaxPendingWrites int

	// OTA is the firmware rollout service (docs/ota.md); nil disables updates over the air.
	OTA devicelink.OTA
	// OTAChunkBytes is the chunk_size offered (default 4096, at most 65536); a session whose
	// MQTT 5 Maximum Packet Size is smaller is offered what fits in it.
	OTAChunkBytes int
	// OTAPace is the node-wide pace of firmware chunks, shared with the TCP edge; a chunk costs one
	// token per started 512 bytes. Nil: a pace of the edge's own, of OTAChunksPerSecond.
	OTAPace *devicelink.Pace
	// OTAChunksPerSecond is the pace when OTAPace is nil (default 400).
	OTAChunksPerSecond int
	// OTARecheck is how often sessions without an offer are checked against rollouts whose stage
	// another member opened (default 30 s; stages opened on this member are offered at once,
	// through OfferNow).
	OTARecheck time.Duration

	Logger *slog.Logger
}

func (o *Options) defaults() {
	if o.MaxPayloadBytes == 0 {
		o.MaxPayloadBytes = DefaultMaxPayloadBytes
	}
	if o.MaxPacketBytes == 0 {
		o.MaxPacketBytes = DefaultMaxPacketBytes
	}
	if o.MaxKeepAlive == 0 {
		o.MaxKeepAlive = DefaultMaxKeepAlive
	}
	if o.GrainTimeout == 0 {
		o.GrainTimeout = DefaultGrainTimeout
	}
	if o.MaxSessions == 0 {
		o.MaxSessions = DefaultMaxSessions
	}
	if o.MaxHandshakes == 0 {
		o.MaxHandshakes = DefaultMaxHandshakes
	}
	if o.MaxHeldCommands == 0 {
		o.MaxHeldCommands = DefaultMaxHeldCommand
	}
	if o.MaxPendingWrites == 0 {
		o.MaxPendingWrites = DefaultMaxPendingWrites
	}
	if o.OTAChunkBytes <= 0 {
		o.OTAChunkBytes = DefaultOTAChunkBytes
	}
	o.OTAChunkBytes = min(o.OTAChunkBytes, MaxOTAChunkBytes)
	if o.OTAChunksPerSecond <= 0 {
		o.OTAChunksPerSecond = DefaultOTAChunksPerSecond
	}
	if o.OTAPace == nil {
		o.OTAPace = devicelink.NewPace(o.OTAChunksPerSecond)
	}
	if o.OTARecheck <= 0 {
		o.OTARecheck = DefaultOTARecheck
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Refusal reasons counted in Stats.Refused (and /metrics).
const (
	RefusedAuth         = "auth"          // CONNACK refused: bad credentials, unknown or revoked device, flapping
	RefusedForeignTopic = "foreign_topic" // a publish or subscribe outside the device's own topics
	RefusedTooLarge     = "too_large"     // a payload over MaxPayloadBytes
	RefusedBadPayload   = "bad_payload"   // a body that is neither valid JSON nor valid protobuf for its topic
	RefusedUnavailable  = "unavailable"   // the grain did not answer or could not store
	RefusedBusy         = "busy"          // CONNACK refused: MaxHandshakes CONNECTs already wait for their grains
	RefusedOTARange     = "ota_range"     // a chunk request outside the offered image or chunk_size (closes the session)
	RefusedOTABusy      = "ota_busy"      // a chunk request while the pot's previous one is served (not answered)
)

// Stats are the MQTT edge's counters, read with Server.Stats.
type Stats struct {
	Sessions  int64            // authenticated sessions now
	Accepted  int64            // sockets accepted, ever
	Reports   int64            // telemetry and events stored (acked)
	Commands  int64            // commands published to devices
	Chunks    int64            // firmware chunks published to devices
	Held      int64            // offers and chunks held, ever, for a pot not yet subscribed to their topic
	Refused   map[string]int64 // refusals by reason (Refused* constants)
	Listening int              // listeners serving
}

// Server is the MQTT edge of one node.
type Server struct {
	opts    Options
	cluster *pcluster.Cluster
	broker  *mochi.Server

	mu       sync.Mutex
	sessions map[string]*session // device id -> its session on this node
	started  bool
	closing  atomic.Bool
	lnSeq    int

	encodings sync.Map // device id -> encoding it last used (commands follow it)

	accepted, reports, commands, open, chunks, held atomic.Int64
	stop                                            chan struct{} // closed by Shutdown
	otaPoke                                         chan struct{} // OfferNow
	refused                                         sync.Map      // reason -> *atomic.Int64
	listening                                       atomic.Int32
	handshakes                                      *devicelink.Gate // CONNECTs waiting for their grain (MaxHandshakes)
}

// New returns an MQTT edge that reaches device grains through c. Add listeners with Serve.
func New(c *pcluster.Cluster, opts Options) (*Server, error) {
	opts.defaults()
	caps := mochi.NewDefaultServerCapabilities()
	caps.MaximumPacketSize = uint32(opts.MaxPacketBytes)
	caps.MaximumClientWritesPending = int32(opts.MaxPendingWrites)
	caps.MaximumSessionExpiryInterval = 0 // sessions end with their socket: the grain holds what must survive
	caps.ReceiveMaximum = 32
	caps.MaximumInflight = 64
	caps.SharedSubAvailable = 0
	caps.WildcardSubAvailable = 1
	caps.MaximumClients = int64(opts.MaxSessions)
	caps.Compatibilities.NoInheritedPropertiesOnAck = true
	b := mochi.New(&mochi.Options{Capabilities: caps, InlineClient: true, Logger: brokerLogger(opts.Logger),
		ClientNetReadBufferSize: 512, ClientNetWriteBufferSize: 512, SysTopicResendInterval: 3600})
	s := &Server{opts: opts, cluster: c, broker: b, sessions: map[string]*session{},
		stop: make(chan struct{}), otaPoke: make(chan struct{}, 1), handshakes: devicelink.NewGate(opts.MaxHandshakes)}
	if err := b.AddHook(&hook{s: s}, nil); err != nil {
		return nil, fmt.Errorf("mqtt hook: %w", err)
	}
	if opts.OTA != nil {
		go s.otaLoop()
	}
	return s, nil
}

// brokerLogger quiets the broker library: its per-client lines are debug detail here; the edge
// logs what an operator needs itself.
func brokerLogger(l *slog.Logger) *slog.Logger {
	return slog.New(levelFloor{l.Handler(), slog.LevelError})
}

type levelFloor struct {
	slog.Handler
	min slog.Level
}

func (h levelFloor) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}
func (h levelFloor) WithAttrs(a []slog.Attr) slog.Handler {
	return levelFloor{h.Handler.WithAttrs(a), h.min}
}
func (h levelFloor) WithGroup(n string) slog.Handler {
	return levelFloor{h.Handler.WithGroup(n), h.min}
}

// Serve starts serving MQTT on ln (give it a tls.NewListener for MQTTS). It returns at once;
// the listener is closed by Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing.Load() {
		return errors.New("mqtt edge is shut down")
	}
	s.lnSeq++
	l := &listener{id: fmt.Sprintf("sprout-%d", s.lnSeq), ln: ln, s: s}
	if err := s.broker.AddListener(l); err != nil {
		return err
	}
	if !s.started {
		s.started = true
		return s.broker.Serve()
	}
	// The broker serves listeners added after it started only when asked.
	s.broker.Listeners.Serve(l.id, s.broker.EstablishConnection)
	return nil
}

// Listening reports whether at least one listener is accepting.
func (s *Server) Listening() bool { return s.listening.Load() > 0 }

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	st := Stats{Sessions: s.open.Load(), Accepted: s.accepted.Load(), Reports: s.reports.Load(),
		Commands: s.commands.Load(), Chunks: s.chunks.Load(), Held: s.held.Load(), Refused: map[string]int64{}, Listening: int(s.listening.Load())}
	s.refused.Range(func(k, v any) bool {
		st.Refused[k.(string)] = v.(*atomic.Int64).Load()
		return true
	})
	return st
}

func (s *Server) refuse(reason string) {
	v, _ := s.refused.LoadOrStore(reason, new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
}

// Shutdown stops accepting and ends every session (each device goes offline with
// SERVER_SHUTDOWN; MQTT 5 clients are told "server shutting down"), bounded by ctx.
func (s *Server) Shutdown(ctx context.Context) error {
	if s.closing.Swap(true) {
		return nil
	}
	close(s.stop)
	s.mu.Lock()
	started := s.started
	sess := make([]*session, 0, len(s.sessions))
	for _, x := range s.sessions {
		sess = append(sess, x)
	}
	s.mu.Unlock()
	for _, x := range sess {
		x.closeWith(packets.ErrServerShuttingDown, reasonShutdown)
	}
	if !started {
		return nil
	}
	done := make(chan struct{})
	go func() { _ = s.broker.Close(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// listener accepts sockets for the broker and wraps each, so that the one cleanup of a session
// runs when its socket closes, whatever closed it (mochi-mqtt does not call its disconnect hook
// on every way out of a connection).
type listener struct {
	id  string
	ln  net.Listener
	s   *Server
	end atomic.Bool
}

func (l *listener) ID() string              { return l.id }
func (l *listener) Address() string         { return l.ln.Addr().String() }
func (l *listener) Protocol() string        { return "tcp" }
func (l *listener) Init(*slog.Logger) error { return nil }
func (l *listener) Close(closeClients listeners.CloseFn) {
	if !l.end.Swap(true) {
		closeClients(l.id)
	}
	_ = l.ln.Close()
}

func (l *listener) Serve(establish listeners.EstablishFn) {
	l.s.listening.Add(1)
	defer l.s.listening.Add(-1)
	var backoff time.Duration
	for {
		nc, err := l.ln.Accept()
		if err != nil {
			if l.end.Load() {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isFDLimit(err) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				l.s.opts.Logger.Warn("mqtt accept failed; backing off", "err", err, "backoff", backoff)
				time.Sleep(backoff)
				continue
			}
			if !errors.Is(err, net.ErrClosed) {
				l.s.opts.Logger.Error("mqtt listener stopped", "addr", l.Address(), "err", err)
			}
			return
		}
		backoff = 0
		l.s.accepted.Add(1)
		ec := &edgeConn{Conn: nc, s: l.s}
		go func() { _ = establish(l.id, ec) }()
	}
}
