package actors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"github.com/jonboulle/clockwork"

	"github.com/sprout-iot/sprout/cluster/observe"
	"github.com/sprout-iot/sprout/messages/actorpb"
	"github.com/sprout-iot/sprout/messages/devicepb"
)

// DeviceKind is the cluster kind of device grains; the identity is the device id.
const DeviceKind = "device"

// loadTimeout bounds reading a device's registry entry and state on activation.
const loadTimeout = 5 * time.Second

// Step retries: a step no one waits for whose write failed is tried again after StepRetry,
// doubling up to maxStepRetry.
const (
	DefaultStepRetry = time.Second
	maxStepRetry     = 30 * time.Second
)

// DeviceOptions configures device grains. Zero fields take the defaults documented on each.
type DeviceOptions struct {
	Store Store
	// Users, if set, holds bindings: WeChat users who may see and control the device, and who
	// hear its alerts. Nil: no bindings (every WeChat request is refused as not bound).
	Users UserStore
	// Clock is the time source of command deadlines, passivation, the flapping ban and step
	// retries (default RealClock()).
	Clock Clock
	// IdleTimeout passivates a grain that is offline, has no open command and received nothing
	// for this long (default 10 min).
	IdleTimeout time.Duration
	// StepRetry: a step no one waits for (a command's deadline, a result from the pot, the end of
	// a connection) whose write fails leaves the grain's state as storage has it and is handled
	// again after StepRetry, doubling up to 30 s, until it is stored (default 1 s). Steps someone
	// waits for (a handshake, a report, a command) answer "unavailable" instead.
	StepRetry time.Duration
	// FlapConnects, FlapWindow and FlapBan stop a pot that reconnects in a loop (a firmware bug, a
	// WiFi link that drops every few seconds) from flooding its event log, its users' presence
	// notices and the edge with handshakes: after more than FlapConnects authenticated connects
	// within FlapWindow the device is refused for FlapBan (Close with CLOSE_REASON_UNAVAILABLE and
	// reconnect_after_ms set to the time left), and the event log records it once. Defaults 15,
	// 1 min, 5 min; a negative FlapConnects turns it off. Only connects that passed the MAC
	// check count, so no one without the secret can lock a pot out.
	FlapConnects        int
	FlapWindow, FlapBan time.Duration
	// Notify, if set, is called on the grain's goroutine for every notice (alerts, outcomes, presence).
	// It must not block; node-local consumers (the WeChat notifier) hand notices to their own queue.
	Notify func(*actorpb.DeviceNotice)
	// Courier carries what grains tell user grains (outcomes, notices, binding changes) without
	// blocking them on cluster look-ups (default: one per member, made on first use, with the
	// default CourierOptions).
	Courier *Courier
	// Join configures who may join a pot after its owner (join.go).
	Join JoinOptions
	// Queued commands (docs/fleet.md): MaxQueued bounds the commands queued for one pot (default
	// 32; past it a queued command is answered BUSY); a queued command's ttl defaults to
	// DefaultQueueTTL (24 h) and may be at most MaxQueueTTL (7 days); a queued command the pot
	// answered BUSY goes again after QueueBusyRetry (30 s). A grain holding queued commands does
	// not passivate, so their ttl ends on time.
	MaxQueued                    int
	DefaultQueueTTL, MaxQueueTTL time.Duration
	QueueBusyRetry               time.Duration
	Logger                       *slog.Logger
}

func (o *DeviceOptions) defaults() {
	if o.Clock == nil {
		o.Clock = RealClock()
	}
	if o.IdleTimeout == 0 {
		o.IdleTimeout = 10 * time.Minute
	}
	if o.StepRetry <= 0 {
		o.StepRetry = DefaultStepRetry
	}
	if o.FlapConnects == 0 {
		o.FlapConnects = 15
	}
	if o.FlapWindow <= 0 {
		o.FlapWindow = time.Minute
	}
	if o.FlapBan <= 0 {
		o.FlapBan = 5 * time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	o.Join.defaults()
}

// deviceKind is what the device grains of one member share.
type deviceKind struct {
	opts        DeviceOptions
	courierOnce sync.Once
	courier     *Courier
}

// NewDeviceKind returns the cluster kind that hosts device grains on this member.
func NewDeviceKind(opts DeviceOptions) *cluster.Kind {
	opts.defaults()
	k := &deviceKind{opts: opts, courier: opts.Courier}
	return cluster.NewKind(DeviceKind, actor.PropsFromProducer(func() actor.Actor {
		return &deviceGrain{opts: &k.opts, kind: k}
	}))
}

// courierOf is the member's courier, made on first use.
func (k *deviceKind) courierOf(sys *actor.ActorSystem) *Courier {
	k.courierOnce.Do(func() {
		if k.courier == nil {
			k.courier = NewCourier(cluster.GetCluster(sys), CourierOptions{Logger: k.opts.Logger})
		}
	})
	return k.courier
}

// deviceGrain is the actor shell around deviceCore: it receives, runs the core's step on a copy
// of the state, stores the step's effects, keeps the copy only once they are stored, and performs
// the rest (reply, deliver to the connection, publish, arm timers). It never blocks on another
// grain or on the cluster: what it tells user grains goes through the member's Courier.
type deviceGrain struct {
	opts   *DeviceOptions
	kind   *deviceKind
	core   *deviceCore
	device Device
	loaded bool
	// epoch fences this activation's writes: claimed on its first write, so a duplicate activation
	// elsewhere (a membership change race) makes this one's writes fail with ErrFenced.
	epoch   uint64
	claimed bool
	fenced  bool // another activation owns the device now: this one stops after the current message

	self *actor.PID
	root *actor.RootContext // timers send to self through it (they fire on the clock's goroutine)

	connPID *actor.PID
	// The maps are made on first use: most grains never hold a command or a subscriber.
	waiters     map[string][]*actor.PID // command id -> requesters waiting for its outcome
	timers      map[string]clockwork.Timer
	subscribers map[string]*actor.PID
	retries     map[uint64]clockwork.Timer // steps waiting to be tried again (retryStep)
	retrySeq    uint64
	idleTimer   clockwork.Timer // armed only while idle() (see idleCheck)
	joinTimer   clockwork.Timer // the earliest pending request's expiry (join_grain.go)
	lastActive  time.Time
	stopping    bool
	log         *slog.Logger // made on first use (logger): most grains never log
	deviceTrace              // the current message's span and the commands' traces (trace.go)
}

// commandDeadline is sent by the grain to itself when a command's deadline passes.
type commandDeadline struct{ commandID string }

// idleCheck is sent by the grain to itself once IdleTimeout after it last became idle (cheaper
// than a receive timeout, which re-arms a timer on every message). The timer exists only while
// the grain could passivate (offline, no open command): an online grain holds none (memory per
// device).
type idleCheck struct{}

// retryStep is a step whose write failed, sent by the grain to itself to be handled again.
type retryStep struct {
	id      uint64
	msg     any
	attempt int
}

func (g *deviceGrain) now() time.Time { return g.opts.Clock.Now() }

func (g *deviceGrain) Receive(ctx actor.Context) {
	g.beginSpan(ctx)
	defer g.endSpan()
	msg, attempt := ctx.Message(), 0
	if r, ok := msg.(*retryStep); ok {
		delete(g.retries, r.id)
		msg, attempt = r.msg, r.attempt
	}
	if _, ok := msg.(idleCheck); !ok && g.core != nil {
		g.lastActive = g.now()
	}
	defer func() {
		if g.fenced {
			g.fenced = false
			g.logger().Warn("another activation of this device claimed it; this one stops")
			ctx.Stop(ctx.Self())
			return
		}
		g.armIdle()
	}()
	switch m := msg.(type) {
	case *actor.Started:
		id := cluster.GetClusterIdentity(ctx)
		if id == nil {
			g.opts.Logger.Error("device grain started outside the cluster")
			ctx.Stop(ctx.Self())
			return
		}
		g.self, g.root = ctx.Self(), ctx.ActorSystem().Root
		g.core = g.fresh(id.Identity)
		g.epoch = uint64(rand.Int64()) | 1
		g.lastActive = g.now()
		g.load(ctx)
	case *actor.Stopping:
		g.stopping = true
		for _, t := range g.timers {
			t.Stop()
		}
		for _, t := range g.retries {
			t.Stop()
		}
		if g.idleTimer != nil {
			g.idleTimer.Stop()
			g.idleTimer = nil
		}
		if g.joinTimer != nil {
			g.joinTimer.Stop()
		}
	case idleCheck:
		// Passivate an offline grain with nothing to do; its state is in storage.
		g.idleTimer = nil
		if g.idle() && g.now().Sub(g.lastActive) >= g.opts.IdleTimeout {
			ctx.Stop(ctx.Self())
		}
		return
	case *actor.Terminated:
		g.terminated(ctx, m.Who)
	case *actorpb.Authenticate:
		g.authenticate(ctx, m)
	case *actorpb.Report:
		g.report(ctx, m)
	case *actorpb.Reports:
		g.reports(ctx, m)
	case *actorpb.DeliverResult:
		g.step(ctx, m, attempt, func(c *deviceCore, now time.Time) effects { return c.result(m, now) })
	case *actorpb.Detach:
		g.step(ctx, m, attempt, func(c *deviceCore, now time.Time) effects { return c.detach(m.SessionId, m.Reason, now) })
	case *actorpb.SendCommand:
		g.sendCommand(ctx, m)
	case *commandDeadline:
		if attempt == 0 {
			delete(g.timers, m.commandID)
		}
		g.step(ctx, m, attempt, func(c *deviceCore, now time.Time) effects { return c.expire(m.commandID, now) })
	case *actorpb.GetState:
		ctx.Respond(g.stateFor(ctx, m.OpenId))
	case *actorpb.BindDevice:
		g.bind(ctx, m)
	case *actorpb.UnbindDevice:
		g.unbind(ctx, m)
	case *actorpb.JoinDecide:
		g.joinDecide(ctx, m)
	case *actorpb.JoinUnbind:
		g.joinUnbind(ctx, m)
	case joinExpiry:
		g.step(ctx, m, attempt, func(c *deviceCore, now time.Time) effects { return c.expireJoins(now, &g.opts.Join) })
	case *buttonPress:
		g.pressed(ctx, m, attempt)
	case *actorpb.RevokeDevice:
		g.revoke(ctx, m)
	case *actorpb.QueuedCancel:
		g.cancelQueued(ctx, m)
	case *actorpb.DesiredReload:
		g.reloadDesired(ctx)
	case *actorpb.Subscribe:
		pid := actor.NewPID(m.Address, m.Id)
		if g.subscribers == nil {
			g.subscribers = map[string]*actor.PID{}
		}
		g.subscribers[pid.String()] = pid
		ctx.Watch(pid)
		if ctx.Sender() != nil {
			ctx.Respond(g.stateFor(ctx, ""))
		}
	case *actorpb.Unsubscribe:
		pid := actor.NewPID(m.Address, m.Id)
		delete(g.subscribers, pid.String())
		ctx.Unwatch(pid)
	}
}

// fresh is an empty core for the device: what a grain holds until it has loaded.
func (g *deviceGrain) fresh(id string) *deviceCore {
	c := newDeviceCore(id)
	c.flap = flapLimit{connects: g.opts.FlapConnects, window: g.opts.FlapWindow, ban: g.opts.FlapBan}
	c.qlimits = queueLimits{max: g.opts.MaxQueued, defaultTTL: g.opts.DefaultQueueTTL, maxTTL: g.opts.MaxQueueTTL,
		busyRetry: g.opts.QueueBusyRetry}
	return c
}

func (g *deviceGrain) logger() *slog.Logger {
	if g.log == nil {
		id := ""
		if g.core != nil {
			id = g.core.id
		}
		g.log = g.opts.Logger.With("device", id)
	}
	return g.log
}

// idle reports whether the grain could passivate: offline with no open command and no step
// waiting to be stored.
func (g *deviceGrain) idle() bool {
	// A pot with requests to join or queued commands stays active to expire them on time.
	return g.core != nil && !g.core.online && len(g.core.open) == 0 && len(g.core.queue) == 0 && len(g.retries) == 0 &&
		len(g.core.joins) == 0
}

// armIdle runs after every message: it holds an idle timer exactly while the grain is idle.
func (g *deviceGrain) armIdle() {
	switch {
	case g.stopping || g.self == nil:
	case g.idle() && g.idleTimer == nil:
		wait := max(g.opts.IdleTimeout-g.now().Sub(g.lastActive), time.Millisecond)
		g.idleTimer = g.after(wait, idleCheck{})
	case !g.idle() && g.idleTimer != nil:
		g.idleTimer.Stop()
		g.idleTimer = nil
	}
}

// after sends msg to the grain itself after d on the clock.
func (g *deviceGrain) after(d time.Duration, msg any) clockwork.Timer {
	root, self := g.root, g.self
	return g.opts.Clock.AfterFunc(d, func() { root.Send(self, msg) })
}

// load reads the device from storage. A storage failure leaves the grain unloaded; the next
// message retries, and until then every request is answered as unavailable (never as if the
// device were unknown).
func (g *deviceGrain) load(ctx actor.Context) {
	c, cancel := context.WithTimeout(context.Background(), loadTimeout)
	defer cancel()
	id := g.core.id
	d, err := g.opts.Store.GetDevice(c, id)
	if errors.Is(err, ErrUnknownDevice) {
		g.loaded = true // an unknown device is a known answer
		return
	}
	if err != nil {
		g.logger().Warn("loading device failed", "err", err)
		return
	}
	r, err := g.opts.Store.LoadDevice(c, id)
	if err != nil {
		g.logger().Warn("loading device state failed", "err", err)
		return
	}
	next := g.fresh(id)
	fx, err := next.recover(d, r, g.now())
	if err != nil {
		g.logger().Error("recovering device state failed", "err", err)
		return
	}
	if g.opts.Users != nil {
		users, err := g.opts.Users.DeviceBindings(c, id)
		if err != nil {
			g.logger().Warn("loading device bindings failed", "err", err)
			return
		}
		next.users = withOwner(users)
		next.pruneJoins()
	}
	if err := g.loadDesired(c, next, &fx); err != nil {
		g.logger().Warn("loading the desired config failed; the last one known is kept", "err", err)
	}
	// Claim the device now, not at the first change: a duplicate activation elsewhere (created by
	// a read during a membership change) must fence the old one before it serves another frame.
	if err := g.opts.Store.Append(c, id, Batch{Epoch: g.epoch, Claim: true}); err != nil {
		g.logger().Warn("claiming the device failed", "err", err)
		return
	}
	g.claimed = true
	// Commands that ended at recovery (their deadline passed) are stored before they are told.
	if err := g.persist(next, fx); err != nil {
		g.logger().Warn("storing the recovered state failed", "err", err)
		return
	}
	g.core, g.device, g.loaded = next, d, true
	fx.join.arm = true // requests that expired meanwhile expire now
	g.perform(ctx, fx)
}

func (g *deviceGrain) ready(ctx actor.Context) bool {
	if !g.loaded {
		g.load(ctx)
	}
	return g.loaded
}

// stateFor answers GetState (for openID, when set: only a bound user may see the device).
func (g *deviceGrain) stateFor(ctx actor.Context, openID string) *actorpb.DeviceState {
	id := g.core.id
	switch {
	case !g.ready(ctx):
		return &actorpb.DeviceState{DeviceId: id, Error: actorpb.ErrorCode_ERROR_CODE_UNAVAILABLE}
	case !g.core.known:
		return &actorpb.DeviceState{DeviceId: id, Denied: openID != "", Error: actorpb.ErrorCode_ERROR_CODE_UNKNOWN_DEVICE}
	case openID != "" && !g.core.bound(openID):
		// A requester waiting for the owner sees that, and nothing of the pot.
		return &actorpb.DeviceState{DeviceId: id, Known: true, Denied: true, Error: actorpb.ErrorCode_ERROR_CODE_NOT_BOUND,
			JoinPending: g.core.joinByID("", openID)}
	}
	st := g.core.state()
	st.Users = g.core.userIDs()
	if openID == "" || openID == g.core.owner() {
		st.JoinRequests = g.core.joins
	}
	return st
}

// step runs a step no one waits for (a deadline, a result from the pot, the end of a connection)
// on a copy of the state and keeps the copy once its effects are stored. If storing fails the
// state stays what storage has, and the same message is handled again after a backoff until it
// is stored: the step is then decided again against the state as it is by then.
func (g *deviceGrain) step(ctx actor.Context, msg any, attempt int, f func(c *deviceCore, now time.Time) effects) {
	if !g.ready(ctx) {
		g.retry(msg, attempt, ErrUnavailable)
		return
	}
	next := g.core.next()
	fx := f(next, g.now())
	if err := g.persist(next, fx); err != nil {
		g.retry(msg, attempt, err)
		return
	}
	g.core = next
	g.perform(ctx, fx)
}

// retry sends msg to the grain itself again after StepRetry, doubled per attempt up to maxStepRetry.
func (g *deviceGrain) retry(msg any, attempt int, err error) {
	if g.fenced || g.stopping {
		return // another activation owns the device (this one stops): it holds the truth
	}
	wait := g.opts.StepRetry << min(attempt, 16)
	if wait > maxStepRetry || wait <= 0 {
		wait = maxStepRetry
	}
	g.logger().Warn("storing a device step failed; it will be tried again", "step", fmt.Sprintf("%T", msg),
		"attempt", attempt+1, "in", wait, "err", err)
	g.retrySeq++
	r := &retryStep{id: g.retrySeq, msg: msg, attempt: attempt + 1}
	if g.retries == nil {
		g.retries = map[uint64]clockwork.Timer{}
	}
	g.retries[r.id] = g.after(wait, r)
}

func (g *deviceGrain) authenticate(ctx actor.Context, m *actorpb.Authenticate) {
	if !g.ready(ctx) {
		ctx.Respond(&actorpb.AuthResult{Reason: devicepb.CloseReason_CLOSE_REASON_UNAVAILABLE, Detail: "storage unavailable, try later"})
		return
	}
	now := g.now()
	next := g.core.next()
	res, fx := next.authenticate(m, g.device.Secret, m.Conn.GetSessionId(), now)
	if !res.Ok {
		g.logger().Info("handshake refused", "reason", res.Reason.String(), "detail", res.Detail, "remote", m.RemoteAddr)
		// A refusal changes only the count of recent connects and the flapping ban: protection,
		// not durable state, so they hold even when recording the start of a ban fails.
		if fx.persists() { // the start of a flapping ban: recorded once, its users told once
			if err := g.persist(next, fx); err != nil {
				g.logger().Warn("recording a flapping ban failed; the ban holds", "err", err)
			}
		}
		g.core = next
		g.perform(ctx, fx)
		ctx.Respond(res)
		return
	}
	if err := g.persist(next, fx); err != nil {
		ctx.Respond(&actorpb.AuthResult{Reason: devicepb.CloseReason_CLOSE_REASON_UNAVAILABLE, Detail: "storage unavailable, try later"})
		return
	}
	g.core = next
	// Open commands ride on the Welcome so they reach the device after it, never before.
	res.AfterWelcome, fx.frames = fx.frames, nil
	ctx.Respond(res)
	if g.connPID != nil {
		ctx.Unwatch(g.connPID)
	}
	g.connPID = actor.NewPID(m.Conn.Address, m.Conn.Id)
	ctx.Watch(g.connPID)
	g.perform(ctx, fx)
}

func (g *deviceGrain) report(ctx actor.Context, m *actorpb.Report) {
	g.storeReports(ctx, []*actorpb.Report{m}, nil, func(acks []*actorpb.ReportAck) { ctx.Respond(acks[0]) })
}

func (g *deviceGrain) reports(ctx actor.Context, m *actorpb.Reports) {
	g.storeReports(ctx, m.Reports, m.Result, func(acks []*actorpb.ReportAck) { ctx.Respond(&actorpb.ReportAcks{Acks: acks}) })
}

// storeReports handles a session's consecutive frames as one step: each report (then the command
// result that followed them, if any) is applied in order to one next state, their effects are
// stored in one Append, and respond gets one ack per report before the step's effects are
// performed. A failed Append stores none of them and closes the session (the pot resends its
// reports; the result is retried here).
func (g *deviceGrain) storeReports(ctx actor.Context, rs []*actorpb.Report, result *actorpb.DeliverResult, respond func([]*actorpb.ReportAck)) {
	acks := make([]*actorpb.ReportAck, len(rs))
	unavailable := func(err error) {
		for i := range acks {
			acks[i] = &actorpb.ReportAck{Close: devicepb.CloseReason_CLOSE_REASON_UNAVAILABLE, Detail: "storage unavailable"}
		}
		respond(acks)
		if result != nil {
			g.retry(result, 0, err) // the pot resends its reports; the result is this grain's to keep
		}
	}
	if !g.ready(ctx) {
		unavailable(ErrUnavailable)
		return
	}
	next, now := g.core.next(), g.now()
	var fx effects
	for i, r := range rs {
		ack, rfx := next.report(r, now)
		acks[i] = ack
		fx.merge(rfx)
	}
	if result != nil {
		fx.merge(next.result(result, now))
	}
	if err := g.persist(next, fx); err != nil {
		unavailable(err)
		return
	}
	g.core = next
	respond(acks)
	g.perform(ctx, fx)
}

func (g *deviceGrain) sendCommand(ctx actor.Context, m *actorpb.SendCommand) {
	now := g.now()
	unavailable := func() {
		out := &actorpb.CommandOutcome{DeviceId: g.core.id, CommandId: m.CommandId, Outcome: actorpb.Outcome_OUTCOME_UNAVAILABLE,
			Detail: "storage unavailable, try later; nothing was sent", AtMs: now.UnixMilli(), RequestedBy: m.RequestedBy, Kind: m.Kind}
		g.respondOutcome(ctx, out)
		if ctx.Sender() == nil {
			g.tellRequester(ctx, out)
		}
	}
	if !g.ready(ctx) {
		unavailable()
		return
	}
	next := g.core.next()
	decision, out, fx := next.sendCommand(m, now)
	if err := g.persist(next, fx); err != nil {
		unavailable()
		return
	}
	g.core = next
	switch decision {
	case commandAnswered:
		// Answered now; perform publishes it too when it is a new outcome (offline).
		g.respondOutcome(ctx, out)
		if len(fx.outcomes) == 0 && ctx.Sender() == nil {
			g.tellRequester(ctx, out) // a WeChat user's refused or repeated command
		}
	case commandStarted, commandJoined:
		if decision == commandStarted {
			g.startCommand(m)
		}
		if s := ctx.Sender(); s != nil {
			if g.waiters == nil {
				g.waiters = map[string][]*actor.PID{}
			}
			g.waiters[m.CommandId] = append(g.waiters[m.CommandId], s)
		}
	}
	g.perform(ctx, fx)
}

// tellRequester delivers an outcome to the WeChat user who asked, through the member's courier:
// their user grain may live on any member, and may have been reactivated since they asked (the
// command itself may have survived a failover in this grain's snapshot).
func (g *deviceGrain) tellRequester(ctx actor.Context, out *actorpb.CommandOutcome) {
	openID, ok := strings.CutPrefix(out.RequestedBy, wechatRequester)
	if !ok {
		return
	}
	g.kind.courierOf(ctx.ActorSystem()).Send(openID, UserKind, g.traced(out))
}

func (g *deviceGrain) respondOutcome(ctx actor.Context, out *actorpb.CommandOutcome) {
	if ctx.Sender() != nil {
		ctx.Respond(out)
	}
}

func (g *deviceGrain) terminated(ctx actor.Context, who *actor.PID) {
	if g.connPID != nil && who.Equal(g.connPID) {
		g.connPID = nil
		if g.core.online {
			d := &actorpb.Detach{SessionId: g.core.conn.GetSessionId()}
			g.step(ctx, d, 0, func(c *deviceCore, now time.Time) effects { return c.detach(d.SessionId, d.Reason, now) })
		}
		return
	}
	delete(g.subscribers, who.String())
}

// persist stores a step's effects, with a snapshot of next (the state the step made) when the
// step changed what recovery needs.
func (g *deviceGrain) persist(next *deviceCore, fx effects) error {
	if !fx.persists() {
		return nil
	}
	b := Batch{Readings: fx.readings, Events: fx.events, Epoch: g.epoch, Claim: !g.claimed}
	if fx.snapshot {
		b.Snapshot = next.snapshot()
	}
	// The store bounds every Append itself (its WriteTimeout), and guarantees a timed-out step is
	// never written later; a context deadline here would only cost a timer per frame.
	actx, span := g.appendSpan()
	err := g.opts.Store.Append(actx, next.id, b)
	observe.End(span, err)
	if err != nil {
		if errors.Is(err, ErrFenced) {
			g.fenced = true
		}
		return fmt.Errorf("device %s: %w", next.id, err)
	}
	g.claimed = true
	return nil
}

// perform carries out the non-durable effects of a stored step.
func (g *deviceGrain) perform(ctx actor.Context, fx effects) {
	if fx.closeConn != nil {
		old := actor.NewPID(fx.closeConn.Address, fx.closeConn.Id)
		ctx.Send(old, &actorpb.Deliver{SessionId: fx.closeConn.SessionId, Close: &devicepb.Close{
			Reason: fx.closeWhy, Detail: fx.closeText}})
		if g.connPID != nil && !g.core.online && g.connPID.Equal(old) {
			ctx.Unwatch(g.connPID) // closed by this grain (revoked): its end is no news
			g.connPID = nil
		}
	}
	if len(fx.frames) > 0 && g.connPID != nil {
		ctx.Send(g.connPID, &actorpb.Deliver{SessionId: g.core.conn.GetSessionId(), Frames: fx.frames, Trace: observe.Inject(g.tctx)})
	}
	for _, t := range fx.timers {
		if old, ok := g.timers[t.commandID]; ok {
			old.Stop()
		}
		if g.timers == nil {
			g.timers = map[string]clockwork.Timer{}
		}
		g.timers[t.commandID] = g.after(t.at.Sub(g.now()), &commandDeadline{commandID: t.commandID})
	}
	for _, out := range fx.outcomes {
		g.finishCommand(out)
		for _, w := range g.waiters[out.CommandId] {
			ctx.Send(w, out)
		}
		delete(g.waiters, out.CommandId)
		g.tellRequester(ctx, out)
		if t, ok := g.timers[out.CommandId]; ok {
			t.Stop()
			delete(g.timers, out.CommandId)
		}
		g.publish(ctx, &actorpb.DeviceNotice{DeviceId: g.core.id, AtMs: out.AtMs,
			Body: &actorpb.DeviceNotice_Outcome{Outcome: out}})
	}
	for _, n := range fx.notices {
		g.publish(ctx, n)
	}
	for _, b := range fx.bindings {
		g.kind.courierOf(ctx.ActorSystem()).Send(b.openID, UserKind, b.msg)
	}
	g.performJoin(ctx, fx)
	if fx.configReport {
		g.reportConfig()
	}
}

func (g *deviceGrain) publish(ctx actor.Context, n *actorpb.DeviceNotice) {
	nctx, span := g.noticeSpan(n)
	defer span.End()
	for _, s := range g.subscribers {
		ctx.Send(s, n)
	}
	if g.opts.Notify != nil {
		g.opts.Notify(n)
	}
	if len(g.core.users) == 0 {
		return
	}
	if un := g.core.userNotice(n); un != nil {
		un.Trace = observe.Inject(nctx)
		c := g.kind.courierOf(ctx.ActorSystem())
		for _, b := range g.core.users {
			// Fire and forget: the user grain dedupes by notice id and owns the push from there.
			c.Send(b.OpenID, UserKind, un)
		}
	}
}

var bindUnavailable = &actorpb.BindResult{Error: "storage", Code: actorpb.ErrorCode_ERROR_CODE_UNAVAILABLE}

// bind binds a user: stored in the bindings first, then logged, then the user is told. A failed
// log entry does not undo a stored binding (the bindings are the truth; it is logged). A scan
// after the owner's becomes a request to join (join_grain.go).
func (g *deviceGrain) bind(ctx actor.Context, m *actorpb.BindDevice) {
	if !g.ready(ctx) || g.opts.Users == nil {
		ctx.Respond(bindUnavailable)
		return
	}
	now := g.now()
	res, b, ask := g.core.bind(m.OpenId, m.Via, now)
	if ask {
		g.ask(ctx, m, res)
		return
	}
	if b != nil {
		c, cancel := context.WithTimeout(context.Background(), loadTimeout)
		defer cancel()
		if err := g.opts.Users.Bind(c, *b); err != nil {
			g.logger().Warn("binding failed", "err", err)
			ctx.Respond(bindUnavailable)
			return
		}
		next := g.core.next()
		fx := effectsWithEvent(now, EventKindBound, m)
		if j := next.joinByID("", b.OpenID); j != nil { // invited while waiting: the request is answered
			next.admit(j, *b, actorpb.JoinOutcome_JOIN_OUTCOME_APPROVED, now, &g.opts.Join, &fx)
		} else {
			next.addUser(*b, &fx)
		}
		g.keepStored(ctx, next, fx, "binding")
	}
	ctx.Respond(res)
}

func (g *deviceGrain) unbind(ctx actor.Context, m *actorpb.UnbindDevice) {
	if !g.ready(ctx) || g.opts.Users == nil {
		ctx.Respond(bindUnavailable)
		return
	}
	if !g.core.bound(m.OpenId) {
		g.withdraw(ctx, m.OpenId) // a requester who gave up waiting
		return
	}
	c, cancel := context.WithTimeout(context.Background(), loadTimeout)
	defer cancel()
	if err := g.opts.Users.Unbind(c, g.core.id, m.OpenId); err != nil {
		g.logger().Warn("unbinding failed", "err", err)
		ctx.Respond(bindUnavailable)
		return
	}
	now := g.now()
	next := g.core.next()
	fx := effectsWithEvent(now, EventKindUnbound, &actorpb.UnbindDevice{OpenId: m.OpenId})
	next.removeUser(m.OpenId, now, &fx)
	g.keepStored(ctx, next, fx, "unbinding")
	ctx.Respond(&actorpb.BindResult{Ok: true})
}

// keepStored finishes a step whose substance is already stored elsewhere (a binding, the
// registry's revocation): next is kept whether or not its event log entry could be written.
func (g *deviceGrain) keepStored(ctx actor.Context, next *deviceCore, fx effects, what string) {
	if err := g.persist(next, fx); err != nil {
		g.logger().Error("logging a stored change failed; the change holds", "change", what, "err", err)
	}
	g.core = next
	g.perform(ctx, fx)
}

// revoke revokes the device: the registry first (from then on the revocation is in force), then
// every binding ends (each user unbound and told), then the state: the open connection is closed
// with CLOSE_REASON_DEVICE_REVOKED, open commands end as revoked, handshakes, reports, commands
// and binds are refused. Revoking again answers the first time, and ends any binding a failed
// first attempt left.
func (g *deviceGrain) revoke(ctx actor.Context, m *actorpb.RevokeDevice) {
	if !g.ready(ctx) {
		ctx.Respond(&actorpb.RevokeResult{Error: actorpb.ErrorCode_ERROR_CODE_UNAVAILABLE})
		return
	}
	if !g.core.known {
		ctx.Respond(&actorpb.RevokeResult{Error: actorpb.ErrorCode_ERROR_CODE_UNKNOWN_DEVICE})
		return
	}
	now := g.now()
	c, cancel := context.WithTimeout(context.Background(), loadTimeout)
	defer cancel()
	if !g.core.revoked {
		if err := g.opts.Store.RevokeDevice(c, g.core.id, now); err != nil {
			g.logger().Warn("revoking failed", "err", err)
			ctx.Respond(&actorpb.RevokeResult{Error: CodeOf(err)})
			return
		}
		g.logger().Info("device revoked", "by", m.By, "reason", m.Reason)
	}
	var unbound []string
	failed := false
	if g.opts.Users != nil {
		for _, b := range g.core.users {
			if err := g.opts.Users.Unbind(c, g.core.id, b.OpenID); err != nil {
				g.logger().Warn("unbinding a revoked device failed; revoking again finishes it", "user", b.OpenID, "err", err)
				failed = true
				continue
			}
			g.logger().Info("user unbound: the device is revoked", "user", b.OpenID)
			unbound = append(unbound, b.OpenID)
		}
	}
	next := g.core.next()
	fx := next.revoke(m, unbound, now)
	next.revokeJoins(unbound, now, &g.opts.Join, &fx)
	g.keepStored(ctx, next, fx, "revocation")
	res := &actorpb.RevokeResult{RevokedAtMs: g.core.revokedAt.UnixMilli()}
	if failed {
		res.Error = actorpb.ErrorCode_ERROR_CODE_UNAVAILABLE
	}
	ctx.Respond(res)
}
