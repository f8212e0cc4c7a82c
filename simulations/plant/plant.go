// Package plant simulates Sprout's plant pots: Plant puts a soil, tank and pump model behind a
// device connection (messages/deviceclient, the wire protocol's client) that reports, keeps
// unacked frames for resending, obeys commands and reconnects. `sprout sim` runs thousands of
// Plants against a server.
package plant

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/sprout-iot/sprout/messages/deviceclient"
	"github.com/sprout-iot/sprout/messages/devicepb"
)

// Flood, as Config.ReportInterval, makes a plant send a new reading whenever its window has room:
// a closed-loop load generator rather than a pot on a schedule.
const Flood time.Duration = -1

// Defaults for Config's zero fields.
const (
	DefaultWindow           = 1
	DefaultRingSize         = 128
	DefaultMinBackoff       = 100 * time.Millisecond
	DefaultMaxBackoff       = 30 * time.Second
	DefaultRefusedBackoff   = 5 * time.Minute
	DefaultDialTimeout      = 5 * time.Second
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultAckTimeout       = 30 * time.Second
	DefaultWriteTimeout     = 10 * time.Second
	DefaultDrainTimeout     = 2 * time.Second
	DefaultRebootTime       = time.Second
	DefaultResultMemory     = 256
	DefaultStartMoisture    = 60
	DefaultStartTank        = 100
	DefaultFirmware         = "sim-1.0.0"
)

// Config describes one virtual pot. Only ID, Secret and Servers are required.
type Config struct {
	ID       string
	Secret   []byte
	Servers  []string // edge addresses, tried in order
	LocalIP  string   // source address for the socket ("" = any); spreads clients over 127.0.0.x
	Firmware string   // Hello.firmware_version (default DefaultFirmware)
	// Transport is TransportTCP (default: Sprout's frames, docs/protocol.md) or TransportMQTT
	// (docs/mqtt.md); Servers are then MQTT listeners.
	Transport string
	// TLS, if set, connects over TLS verified with it (its RootCAs: the CA the pot trusts).
	TLS *tls.Config

	// ReportInterval overrides the server's report_interval_s, in real time, for load tests.
	// 0 follows Welcome.config (simulated seconds, so scaled by Speed); Flood sends as fast as acks allow.
	ReportInterval time.Duration
	// Window is how many frames may be in flight unacked (default 1: wait for each ack).
	Window int
	// RingSize bounds the unacked frames kept for resending; the oldest is dropped when full
	// (default DefaultRingSize, never below Window).
	RingSize int

	Model ModelParams
	Seed  int64 // seeds noise, faults and jitter (0 derives one from ID)
	// Speed is simulated seconds per real second (default 1): 3600 makes an hour pass in a second.
	// It scales the soil model, pump runs and the server's report interval, not network timeouts.
	Speed float64
	// Start is the simulated clock when Run starts (default now). Telemetry carries simulated time.
	Start time.Time

	IgnoreCommands       bool          // a silent device: commands are read and never answered
	CommandDelay         time.Duration // real time before a command starts (deadline_ms still applies)
	PumpFaultProbability float64       // chance that a WATER command hits a pump fault
	StartMoisture        float64       // % (default DefaultStartMoisture)
	StartTank            float64       // % (default DefaultStartTank; use a small value, not 0, for "empty")

	MinBackoff, MaxBackoff time.Duration // exponential reconnect backoff with jitter
	// RefusedBackoff is the wait after AUTH_FAILED, UNKNOWN_DEVICE or DEVICE_REVOKED, which retrying soon will not fix.
	RefusedBackoff   time.Duration
	DialTimeout      time.Duration
	HandshakeTimeout time.Duration
	AckTimeout       time.Duration // a frame unacked this long drops the connection (it is resent on the next)
	WriteTimeout     time.Duration
	DrainTimeout     time.Duration // on shutdown, wait this long for in-flight acks before Close
	RebootTime       time.Duration // real time a REBOOT keeps the plant offline
	ResultMemory     int           // command ids remembered for at-most-once execution

	// Firmware updates over the air (docs/ota.md). OTAKey, the product's Ed25519 public key built
	// into the pot, turns them on; without it an offer is answered FAILED "updates not supported".
	OTAKey ed25519.PublicKey
	// Product is the plant's product; an offer for another is refused (default DefaultProduct).
	Product string
	// OTASlotBytes is the inactive slot's size: a larger image is refused (default DefaultOTASlotBytes).
	OTASlotBytes int
	// OTAChunkBytes is the most asked for in one ChunkRequest, below the offer's chunk_size if
	// smaller (default DefaultOTAChunkBytes; the Sprout firmware asks 448).
	OTAChunkBytes int
	// OTAProgressStep is how many percent apart DOWNLOADING is reported (default DefaultOTAProgressStep).
	OTAProgressStep int
	// OTACorruptFlash flips one bit of the first chunk written, as failing flash would: the
	// SHA-256 check must refuse the image.
	OTACorruptFlash bool

	// Stats, if set, is where the plant counts (a fleet shares one); otherwise the plant has its own.
	Stats *Stats
	// Observer, if set, is called for every Observation in order, never with the plant's lock held.
	// It must return promptly: the plant's goroutines wait for it.
	Observer func(Observation)
}

func (c Config) withDefaults() Config {
	if c.Firmware == "" {
		c.Firmware = DefaultFirmware
	}
	if c.Product == "" {
		c.Product = DefaultProduct
	}
	if c.OTASlotBytes <= 0 {
		c.OTASlotBytes = DefaultOTASlotBytes
	}
	if c.OTAChunkBytes <= 0 || c.OTAChunkBytes > DefaultOTAChunkBytes {
		c.OTAChunkBytes = DefaultOTAChunkBytes
	}
	if c.OTAProgressStep <= 0 {
		c.OTAProgressStep = DefaultOTAProgressStep
	}
	if c.Window <= 0 {
		c.Window = DefaultWindow
	}
	if c.RingSize <= 0 {
		c.RingSize = DefaultRingSize
	}
	if c.RingSize < c.Window {
		c.RingSize = c.Window
	}
	if c.Speed <= 0 {
		c.Speed = 1
	}
	if c.Seed == 0 {
		for _, b := range []byte(c.ID) {
			c.Seed = c.Seed*31 + int64(b)
		}
	}
	if c.StartMoisture == 0 {
		c.StartMoisture = DefaultStartMoisture
	}
	if c.StartTank == 0 {
		c.StartTank = DefaultStartTank
	}
	dur := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	dur(&c.MinBackoff, DefaultMinBackoff)
	dur(&c.MaxBackoff, DefaultMaxBackoff)
	if c.MaxBackoff < c.MinBackoff {
		c.MaxBackoff = c.MinBackoff
	}
	dur(&c.RefusedBackoff, DefaultRefusedBackoff)
	dur(&c.DialTimeout, DefaultDialTimeout)
	dur(&c.HandshakeTimeout, DefaultHandshakeTimeout)
	dur(&c.AckTimeout, DefaultAckTimeout)
	dur(&c.WriteTimeout, DefaultWriteTimeout)
	dur(&c.DrainTimeout, DefaultDrainTimeout)
	dur(&c.RebootTime, DefaultRebootTime)
	if c.ResultMemory <= 0 {
		c.ResultMemory = DefaultResultMemory
	}
	c.Model = c.Model.withDefaults()
	return c
}

func (c Config) validate() error {
	switch {
	case c.ID == "" || len(c.ID) > 64:
		return fmt.Errorf("plant: device id must be 1..64 bytes, got %d", len(c.ID))
	case len(c.Secret) == 0:
		return fmt.Errorf("plant %s: no secret", c.ID)
	case len(c.Servers) == 0:
		return fmt.Errorf("plant %s: no servers to connect to", c.ID)
	case c.Transport != "" && c.Transport != TransportTCP && c.Transport != TransportMQTT:
		return fmt.Errorf("plant %s: transport must be tcp or mqtt, got %q", c.ID, c.Transport)
	case len(c.Firmware) > 32:
		return fmt.Errorf("plant %s: firmware version longer than 32 bytes", c.ID)
	case len(c.OTAKey) != 0 && len(c.OTAKey) != ed25519.PublicKeySize:
		return fmt.Errorf("plant %s: OTA key must be %d bytes, got %d", c.ID, ed25519.PublicKeySize, len(c.OTAKey))
	}
	return nil
}

// DefaultDeviceConfig is what a plant assumes before its first Welcome, and fills zero fields from.
func DefaultDeviceConfig() *devicepb.Config {
	return &devicepb.Config{
		ReportIntervalS:    60,
		HeartbeatIntervalS: 30,
		MaxWaterMs:         30000,
		MinWaterIntervalS:  60,
		Thresholds: &devicepb.Thresholds{
			SoilMoistureMinPct: 20, TemperatureMaxC: 35, TankEmptyPct: 5, HysteresisPct: 5,
		},
	}
}

// deviceConfig fills c's zero fields from the defaults (proto3 cannot tell 0 from unset, and 0 is
// never a useful interval or limit); c is not modified.
func deviceConfig(c *devicepb.Config) *devicepb.Config {
	d := DefaultDeviceConfig()
	if c == nil {
		return d
	}
	if c.ReportIntervalS != 0 {
		d.ReportIntervalS = c.ReportIntervalS
	}
	if c.HeartbeatIntervalS != 0 {
		d.HeartbeatIntervalS = c.HeartbeatIntervalS
	}
	if c.MaxWaterMs != 0 {
		d.MaxWaterMs = c.MaxWaterMs
	}
	if c.MinWaterIntervalS != 0 {
		d.MinWaterIntervalS = c.MinWaterIntervalS
	}
	if t := c.Thresholds; t != nil {
		d.Thresholds = proto.Clone(t).(*devicepb.Thresholds)
	}
	return d
}

// Plant is a virtual pot: a soil, tank and pump model behind a device connection that reports,
// keeps unacked frames for resending, obeys commands with the pump's safety rules, and
// reconnects until its context ends.
type Plant struct {
	cfg     Config
	stats   *Stats
	started atomic.Bool

	mu          sync.Mutex
	ctx         context.Context
	realStart   time.Time
	simStart    time.Time
	rng         *rand.Rand
	dev         *devicepb.Config // current device config
	cfgChanged  chan struct{}
	wake        chan struct{} // observer goroutine
	seq         uint64        // last seq used
	ring        ring
	soil        soil
	pumping     bool
	lastPumpEnd time.Time // simulated; zero: never
	tankEmpty   bool      // TANK_EMPTY sent and not yet refilled
	results     map[string]*devicepb.CommandResult
	resultOrder []string
	running     map[string]bool
	unsent      []*devicepb.CommandResult // results finished while offline
	s           *session
	welcomed    bool
	closing     bool
	notes       []Observation
	wg          sync.WaitGroup
	firmware    string  // the version running now
	slot        otaSlot // the update being downloaded
	confirm     []byte  // the sha256 of a new image booted and not yet confirmed
}

// New prepares a plant; Run starts it.
func New(cfg Config) *Plant {
	cfg = cfg.withDefaults()
	p := &Plant{cfg: cfg, stats: cfg.Stats, firmware: cfg.Firmware}
	if p.stats == nil {
		p.stats = &Stats{}
	}
	p.rng = rand.New(rand.NewPCG(uint64(cfg.Seed), uint64(cfg.Seed)^0x9e3779b97f4a7c15))
	p.dev = DefaultDeviceConfig()
	p.cfgChanged = make(chan struct{}, 1)
	p.wake = make(chan struct{}, 1)
	p.ring.limit = cfg.RingSize
	start := cfg.Start
	if start.IsZero() {
		start = time.Now()
	}
	p.realStart, p.simStart = time.Now(), start
	p.soil = soil{p: cfg.Model, at: start, moisture: cfg.StartMoisture, tank: cfg.StartTank}
	p.results = make(map[string]*devicepb.CommandResult)
	p.running = make(map[string]bool)
	return p
}

// ID is the device id.
func (p *Plant) ID() string { return p.cfg.ID }

// Stats are the plant's counters (shared with others if Config.Stats was set).
func (p *Plant) Stats() *Stats { return p.stats }

// simNow is the simulated time: Start plus real time since New, times Speed.
func (p *Plant) simNow() time.Time {
	return p.simStart.Add(time.Duration(float64(time.Since(p.realStart)) * p.cfg.Speed))
}

// simToReal converts a simulated duration to real time.
func (p *Plant) simToReal(d time.Duration) time.Duration {
	return time.Duration(float64(d) / p.cfg.Speed)
}

// Level is what the plant's sensors would read now, without noise.
type Level struct {
	At          time.Time // simulated
	MoisturePct float64
	TankPct     float64
	TempC       float64
	Pumping     bool
	Seq         uint64 // last seq used
	Unacked     int    // frames in the ring
}

// Level reports the model's state now.
func (p *Plant) Level() Level {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.soil.advance(p.simNow())
	return Level{At: p.soil.at, MoisturePct: p.soil.moisture, TankPct: p.soil.tank,
		TempC: p.soil.temperature(p.soil.at), Pumping: p.pumping, Seq: p.seq, Unacked: p.ring.len()}
}

// SetSeq sets the last seq used, as a device restored from flash would (for tests of
// Welcome.last_seq). Call before Run.
func (p *Plant) SetSeq(seq uint64) {
	p.mu.Lock()
	p.seq = seq
	p.mu.Unlock()
}

// Refill sets the tank level (a person filling it). Above the empty threshold it clears the
// tank-empty state and queues a TANK_REFILLED Event.
func (p *Plant) Refill(pct float64) {
	p.mu.Lock()
	p.soil.advance(p.simNow())
	p.soil.tank = clamp(pct, 0, 100)
	if p.tankEmpty && p.soil.tank > float64(p.dev.GetThresholds().GetTankEmptyPct()) {
		p.tankEmpty = false
		p.queueEvent(devicepb.EventKind_EVENT_KIND_TANK_REFILLED, fmt.Sprintf("tank refilled to %.0f%%", p.soil.tank))
	}
	p.pushOut()
	p.mu.Unlock()
	p.emit()
}

// ReadNow queues a Telemetry reading now, outside the schedule.
func (p *Plant) ReadNow() {
	p.mu.Lock()
	p.takeReading()
	p.pushOut()
	p.mu.Unlock()
	p.emit()
}

// takeReading puts a Telemetry in the ring. Call with p.mu held.
func (p *Plant) takeReading() {
	p.soil.advance(p.simNow())
	m, t, tank, mv := p.soil.reading(p.rng)
	p.seq++
	seq := p.seq
	p.stats.Readings.Add(1)
	p.enqueue(seq, &devicepb.Frame{Body: &devicepb.Frame_Telemetry{Telemetry: &devicepb.Telemetry{
		Seq: seq, DeviceTimeMs: p.soil.at.UnixMilli(),
		SoilMoisturePct: float32(m), TemperatureC: float32(t), TankLevelPct: float32(tank), SupplyMv: mv,
	}}})
}

// queueEvent puts an Event in the ring. Call with p.mu held.
func (p *Plant) queueEvent(kind devicepb.EventKind, detail string) {
	p.seq++
	seq := p.seq
	p.stats.Events.Add(1)
	p.enqueue(seq, &devicepb.Frame{Body: &devicepb.Frame_Event{Event: &devicepb.Event{
		Seq: seq, DeviceTimeMs: p.simNow().UnixMilli(), Kind: kind, Detail: truncate(detail),
	}}})
	p.note(Observation{Kind: EventQueued, Seq: seq, EventKind: kind})
}

func (p *Plant) enqueue(seq uint64, f *devicepb.Frame) {
	dropped, ok := p.ring.push(entry{seq: seq, frame: f})
	if !ok {
		return
	}
	p.stats.FramesDropped.Add(1)
	if s := p.s; s != nil && s.next > 0 {
		s.next--
		if !dropped.sentAt.IsZero() && !dropped.acked {
			s.inflight--
		}
	}
}

func truncate(s string) string {
	if len(s) > 64 {
		s = s[:64]
	}
	return s
}

// Run connects, handshakes, reports, obeys commands and reconnects until ctx ends; then it waits
// for in-flight acks (DrainTimeout), sends Close and returns nil. A plant runs once.
func (p *Plant) Run(ctx context.Context) error {
	if err := p.cfg.validate(); err != nil {
		return err
	}
	if !p.started.CompareAndSwap(false, true) {
		return fmt.Errorf("plant %s: Run called twice", p.cfg.ID)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	p.mu.Lock()
	p.ctx = ctx
	p.mu.Unlock()
	if p.cfg.Observer != nil {
		stop, done := make(chan struct{}), make(chan struct{})
		go p.observerLoop(stop, done)
		defer func() { close(stop); <-done }()
		p.emit()
	}
	if p.cfg.ReportInterval != Flood {
		p.wg.Add(1)
		go p.sampleLoop(ctx)
	}
	defer p.wg.Wait()

	server, failures := 0, 0
	for ctx.Err() == nil {
		addr := p.cfg.Servers[server%len(p.cfg.Servers)]
		s, err := p.connect(ctx, addr)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			failures++
			wait := p.backoff(failures)
			var ce *deviceclient.ErrClosed
			if errors.As(err, &ce) {
				wait = p.waitAfterClose(&devicepb.Close{Reason: ce.Reason, ReconnectAfterMs: ce.ReconnectAfterMs}, failures)
			}
			p.stats.Error(errorKind(err))
			p.observe(Observation{Kind: Closed, Server: addr, Err: err, Reason: closeReason(err)})
			server++
			sleep(ctx, wait)
			continue
		}
		began := time.Now()
		end := p.serve(ctx, s)
		if ctx.Err() != nil {
			break
		}
		if time.Since(began) > 10*time.Second {
			failures = 0
		}
		failures++
		wait := p.backoff(failures)
		switch {
		case end.reboot:
			wait = p.cfg.RebootTime
		case end.close != nil:
			wait = p.waitAfterClose(end.close, failures)
			if end.close.Reason == devicepb.CloseReason_CLOSE_REASON_SERVER_SHUTDOWN {
				server++
			}
		}
		sleep(ctx, wait)
	}
	return nil
}

// waitAfterClose turns a server's Close into a wait before the next attempt.
func (p *Plant) waitAfterClose(c *devicepb.Close, failures int) time.Duration {
	switch c.Reason {
	case devicepb.CloseReason_CLOSE_REASON_AUTH_FAILED,
		devicepb.CloseReason_CLOSE_REASON_UNKNOWN_DEVICE,
		devicepb.CloseReason_CLOSE_REASON_DEVICE_REVOKED:
		return p.jitter(p.cfg.RefusedBackoff)
	}
	if c.ReconnectAfterMs > 0 {
		hint := time.Duration(c.ReconnectAfterMs) * time.Millisecond
		p.mu.Lock()
		// Up to a quarter more, so that a fleet told the same hint does not return in one burst.
		hint += time.Duration(p.rng.Int64N(int64(hint)/4 + 1))
		p.mu.Unlock()
		return hint
	}
	return p.backoff(failures)
}

// backoff is exponential from MinBackoff to MaxBackoff with jitter in [d/2, d].
func (p *Plant) backoff(failures int) time.Duration {
	d := p.cfg.MinBackoff
	for i := 1; i < failures && d < p.cfg.MaxBackoff; i++ {
		d *= 2
	}
	if d > p.cfg.MaxBackoff {
		d = p.cfg.MaxBackoff
	}
	return p.jitter(d)
}

func (p *Plant) jitter(d time.Duration) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return d/2 + time.Duration(p.rng.Int64N(int64(d)/2+1))
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// sampleLoop takes readings on the report schedule, connected or not (readings taken offline wait
// in the ring).
func (p *Plant) sampleLoop(ctx context.Context) {
	defer p.wg.Done()
	p.mu.Lock()
	every := p.reportEvery()
	first := time.Duration(p.rng.Int64N(int64(every) + 1)) // spread a fleet's readings
	p.mu.Unlock()
	t := time.NewTimer(first)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.cfgChanged:
		case <-t.C:
			p.mu.Lock()
			if !p.closing {
				p.takeReading()
				p.pushOut()
			}
			p.mu.Unlock()
			p.emit()
		}
		p.mu.Lock()
		every = p.reportEvery()
		p.mu.Unlock()
		t.Stop()
		t.Reset(every)
	}
}

// reportEvery is the real interval between readings. Call with p.mu held.
func (p *Plant) reportEvery() time.Duration {
	if p.cfg.ReportInterval > 0 {
		return p.cfg.ReportInterval
	}
	d := p.simToReal(time.Duration(p.dev.GetReportIntervalS()) * time.Second)
	if d < time.Millisecond {
		d = time.Millisecond
	}
	return d
}

func closeReason(err error) devicepb.CloseReason {
	var ce *deviceclient.ErrClosed
	if errors.As(err, &ce) {
		return ce.Reason
	}
	return devicepb.CloseReason_CLOSE_REASON_UNSPECIFIED
}

func errorKind(err error) string {
	var ce *deviceclient.ErrClosed
	switch {
	case errors.As(err, &ce):
		return "closed: " + ReasonName(ce.Reason)
	case errors.Is(err, errAckTimeout):
		return "ack timeout"
	case errors.Is(err, errDial):
		return "dial"
	case errors.Is(err, deviceclient.ErrServerProof):
		return "server proof"
	case errors.Is(err, errHandshake):
		return "handshake"
	case errors.Is(err, errWrite):
		return "write"
	}
	return "read"
}

// Drop ends the current connection abruptly, as a lost WiFi link would (no Close); the plant
// reconnects after its backoff. It does nothing while the plant is offline.
func (p *Plant) Drop() {
	p.mu.Lock()
	if s := p.s; s != nil {
		s.fail(errors.New("dropped"))
	}
	p.mu.Unlock()
}
