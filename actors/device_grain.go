package actors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/scheduler"

	"github.com/sprout-iot/sprout/cluster/observe"
	"github.com/sprout-iot/sprout/messages/actorpb"
	"github.com/sprout-iot/sprout/messages/devicepb"
)

// DeviceKind is the cluster kind of device grains; the identity is the device id.
const DeviceKind = "device"

// loadTimeout bounds reading a device's registry entry and state on activation.
const loadTimeout = 5 * time.Second

// DeviceOptions configures device grains. Zero fields take the defaults documented on each.
type DeviceOptions struct {
	Store Store
	// Users, if set, holds bindings: WeChat users who may see and control the device, and who
	// hear its alerts. Nil: no bindings (every WeChat request is refused as not bound).
	Users UserStore
	// Now is the clock (default time.Now).
	Now func() time.Time
	// IdleTimeout passivates a grain that is offline, has no open command and received nothing
	// for this long (default 10 min).
	IdleTimeout time.Duration
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
	Logger *slog.Logger
}

func (o *DeviceOptions) defaults() {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.IdleTimeout == 0 {
		o.IdleTimeout = 10 * time.Minute
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
}

// NewDeviceKind returns the cluster kind that hosts device grains on this member.
func NewDeviceKind(opts DeviceOptions) *cluster.Kind {
	opts.defaults()
	return cluster.NewKind(DeviceKind, actor.PropsFromProducer(func() actor.Actor {
		return &deviceGrain{opts: &opts}
	}))
}

// deviceGrain is the actor shell around deviceCore: it receives, calls the core, and performs the
// effects (persist, reply, deliver to the connection, publish, arm timers).
type deviceGrain struct {
	opts   *DeviceOptions
	core   *deviceCore
	device Device
	loaded bool
	// epoch fences this activation's writes: claimed on its first write, so a duplicate activation
	// elsewhere (a membership change race) makes this one's writes fail with ErrFenced.
	epoch   uint64
	claimed bool
	fenced  bool // another activation owns the device now: this one stops after the current message

	connPID *actor.PID
	// The maps are made on first use: most grains never hold a command or a subscriber.
	waiters     map[string][]*actor.PID // command id -> requesters waiting for its outcome
	timers      map[string]scheduler.CancelFunc
	subscribers map[string]*actor.PID
	sched       *scheduler.TimerScheduler
	idleTimer   scheduler.CancelFunc // armed only while idle() (see idleCheck)
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

func (g *deviceGrain) Receive(ctx actor.Context) {
	g.beginSpan(ctx)
	defer g.endSpan()
	if _, ok := ctx.Message().(idleCheck); !ok && g.core != nil {
		g.lastActive = g.opts.Now()
	}
	defer func() {
		if g.fenced {
			g.fenced = false
			g.logger().Warn("another activation of this device claimed it; this one stops")
			ctx.Stop(ctx.Self())
			return
		}
		g.armIdle(ctx)
	}()
	switch m := ctx.Message().(type) {
	case *actor.Started:
		id := cluster.GetClusterIdentity(ctx)
		if id == nil {
			g.opts.Logger.Error("device grain started outside the cluster")
			ctx.Stop(ctx.Self())
			return
		}
		g.core = newDeviceCore(id.Identity)
		g.core.flap = flapLimit{connects: g.opts.FlapConnects, window: g.opts.FlapWindow, ban: g.opts.FlapBan}
		g.epoch = uint64(rand.Int64()) | 1
		g.sched = scheduler.NewTimerScheduler(ctx)
		g.lastActive = g.opts.Now()
		g.load(ctx)
	case *actor.Stopping:
		g.stopping = true
		for _, cancel := range g.timers {
			cancel()
		}
		if g.idleTimer != nil {
			g.idleTimer()
			g.idleTimer = nil
		}
	case idleCheck:
		// Passivate an offline grain with nothing to do; its state is in storage.
		g.idleTimer = nil
		if g.idle() && g.opts.Now().Sub(g.lastActive) >= g.opts.IdleTimeout {
			ctx.Stop(ctx.Self())
		}
		return
	case *actor.Terminated:
		g.terminated(ctx, m.Who)
	case *actorpb.Authenticate:
		g.authenticate(ctx, m)
	case *actorpb.Report:
		g.report(ctx, m)
	case *actorpb.DeliverResult:
		if !g.ready(ctx) {
			return
		}
		g.apply(ctx, g.core.result(m, g.opts.Now()))
	case *actorpb.Detach:
		if !g.ready(ctx) {
			return
		}
		g.apply(ctx, g.core.detach(m.SessionId, m.Reason, g.opts.Now()))
	case *actorpb.SendCommand:
		g.sendCommand(ctx, m)
	case *commandDeadline:
		delete(g.timers, m.commandID)
		g.apply(ctx, g.core.expire(m.commandID, g.opts.Now()))
	case *actorpb.GetState:
		g.ready(ctx)
		if m.OpenId != "" && !g.core.bound(m.OpenId) {
			ctx.Respond(&actorpb.DeviceState{DeviceId: g.core.id, Known: g.core.known, Denied: true})
			return
		}
		st := g.core.state()
		st.Users = g.core.userIDs()
		ctx.Respond(st)
	case *actorpb.BindDevice:
		g.bind(ctx, m)
	case *actorpb.UnbindDevice:
		g.unbind(ctx, m)
	case *actorpb.Subscribe:
		pid := actor.NewPID(m.Address, m.Id)
		if g.subscribers == nil {
			g.subscribers = map[string]*actor.PID{}
		}
		g.subscribers[pid.String()] = pid
		ctx.Watch(pid)
		if ctx.Sender() != nil {
			ctx.Respond(g.core.state())
		}
	case *actorpb.Unsubscribe:
		pid := actor.NewPID(m.Address, m.Id)
		delete(g.subscribers, pid.String())
		ctx.Unwatch(pid)
	}
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

// idle reports whether the grain could passivate: offline with no open command.
func (g *deviceGrain) idle() bool {
	return g.core != nil && !g.core.online && len(g.core.open) == 0
}

// armIdle runs after every message: it holds an idle timer exactly while the grain is idle.
func (g *deviceGrain) armIdle(ctx actor.Context) {
	switch {
	case g.stopping || g.sched == nil:
	case g.idle() && g.idleTimer == nil:
		wait := max(g.opts.IdleTimeout-g.opts.Now().Sub(g.lastActive), time.Millisecond)
		g.idleTimer = g.sched.SendOnce(wait, ctx.Self(), idleCheck{})
	case !g.idle() && g.idleTimer != nil:
		g.idleTimer()
		g.idleTimer = nil
	}
}

// load reads the device from storage. A storage failure leaves the grain unloaded; the next
// message retries, and until then handshakes and reports are refused as unavailable.
func (g *deviceGrain) load(ctx actor.Context) {
	c, cancel := context.WithTimeout(context.Background(), loadTimeout)
	defer cancel()
	d, err := g.opts.Store.GetDevice(c, g.core.id)
	if errors.Is(err, ErrUnknownDevice) {
		g.loaded = true // an unknown device is a known answer
		return
	}
	if err != nil {
		g.logger().Warn("loading device failed", "err", err)
		return
	}
	r, err := g.opts.Store.LoadDevice(c, g.core.id)
	if err != nil {
		g.logger().Warn("loading device state failed", "err", err)
		return
	}
	fx, err := g.core.recover(d, r, g.opts.Now())
	if err != nil {
		g.logger().Error("recovering device state failed", "err", err)
		return
	}
	if g.opts.Users != nil {
		users, err := g.opts.Users.DeviceBindings(c, g.core.id)
		if err != nil {
			g.logger().Warn("loading device bindings failed", "err", err)
			return
		}
		g.core.users = users
	}
	// Claim the device now, not at the first change: a duplicate activation elsewhere (created by
	// a read during a membership change) must fence the old one before it serves another frame.
	if err := g.opts.Store.Append(c, g.core.id, Batch{Epoch: g.epoch, Claim: true}); err != nil {
		g.logger().Warn("claiming the device failed", "err", err)
		return
	}
	g.claimed = true
	g.device, g.loaded = d, true
	g.apply(ctx, fx)
}

func (g *deviceGrain) ready(ctx actor.Context) bool {
	if !g.loaded {
		g.load(ctx)
	}
	return g.loaded
}

func (g *deviceGrain) authenticate(ctx actor.Context, m *actorpb.Authenticate) {
	if !g.ready(ctx) {
		ctx.Respond(&actorpb.AuthResult{Reason: devicepb.CloseReason_CLOSE_REASON_UNAVAILABLE, Detail: "storage unavailable, try later"})
		return
	}
	now := g.opts.Now()
	cp := g.core.checkpoint()
	res, fx := g.core.authenticate(m, g.device.Secret, m.Conn.GetSessionId(), now)
	if !res.Ok {
		g.logger().Info("handshake refused", "reason", res.Reason.String(), "detail", res.Detail, "remote", m.RemoteAddr)
		if fx.persists() { // the start of a flapping ban: recorded once, its users told once
			if err := g.persist(fx); err != nil {
				g.logger().Warn("recording a flapping ban failed", "err", err)
			}
			g.perform(ctx, fx)
		}
		ctx.Respond(res)
		return
	}
	if err := g.persist(fx); err != nil {
		g.core.restore(cp)
		ctx.Respond(&actorpb.AuthResult{Reason: devicepb.CloseReason_CLOSE_REASON_UNAVAILABLE, Detail: "storage unavailable, try later"})
		return
	}
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
	if !g.ready(ctx) {
		ctx.Respond(&actorpb.ReportAck{Close: devicepb.CloseReason_CLOSE_REASON_UNAVAILABLE, Detail: "storage unavailable"})
		return
	}
	cp := g.core.checkpoint()
	ack, fx := g.core.report(m, g.opts.Now())
	if err := g.persist(fx); err != nil {
		g.core.restore(cp)
		ctx.Respond(&actorpb.ReportAck{Close: devicepb.CloseReason_CLOSE_REASON_UNAVAILABLE, Detail: "storage unavailable"})
		return
	}
	ctx.Respond(ack)
	g.perform(ctx, fx)
}

func (g *deviceGrain) sendCommand(ctx actor.Context, m *actorpb.SendCommand) {
	now := g.opts.Now()
	if !g.ready(ctx) {
		g.respondOutcome(ctx, &actorpb.CommandOutcome{DeviceId: g.core.id, CommandId: m.CommandId,
			Outcome: actorpb.Outcome_OUTCOME_FAILED, Detail: "storage unavailable, try later", AtMs: now.UnixMilli()})
		return
	}
	cp := g.core.checkpoint()
	decision, out, fx := g.core.sendCommand(m, now)
	if err := g.persist(fx); err != nil {
		g.core.restore(cp)
		g.respondOutcome(ctx, &actorpb.CommandOutcome{DeviceId: g.core.id, CommandId: m.CommandId,
			Outcome: actorpb.Outcome_OUTCOME_FAILED, Detail: "storage unavailable, try later", AtMs: now.UnixMilli()})
		return
	}
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

// tellRequester delivers an outcome to the WeChat user who asked, through the cluster: their
// user grain may live on any member, and may have been reactivated since they asked (the command
// itself may have survived a failover in this grain's snapshot).
func (g *deviceGrain) tellRequester(ctx actor.Context, out *actorpb.CommandOutcome) {
	openID, ok := strings.CutPrefix(out.RequestedBy, wechatRequester)
	if !ok {
		return
	}
	if pid := cluster.GetCluster(ctx.ActorSystem()).Get(openID, UserKind); pid != nil {
		ctx.Send(pid, g.traced(out))
	} else {
		g.logger().Warn("user grain unreachable; outcome not pushed", "user", openID, "command", out.CommandId)
	}
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
			g.apply(ctx, g.core.detach(g.core.conn.GetSessionId(), devicepb.CloseReason_CLOSE_REASON_UNSPECIFIED, g.opts.Now()))
		}
		return
	}
	delete(g.subscribers, who.String())
}

// apply persists a step's effects and performs them; on a storage failure the step is undone where
// possible and logged (timer- and disconnect-driven steps have no one to answer).
func (g *deviceGrain) apply(ctx actor.Context, fx effects) {
	if err := g.persist(fx); err != nil {
		g.logger().Error("persisting device step failed; retrying once", "err", err)
		if err = g.persist(fx); err != nil {
			g.logger().Error("persisting device step failed again; the step is kept in memory", "err", err)
		}
	}
	g.perform(ctx, fx)
}

func (g *deviceGrain) persist(fx effects) error {
	if !fx.persists() {
		return nil
	}
	b := Batch{Readings: fx.readings, Events: fx.events, Epoch: g.epoch, Claim: !g.claimed}
	if fx.snapshot {
		b.Snapshot = g.core.snapshot()
	}
	// The store bounds every Append itself (its WriteTimeout), and guarantees a timed-out step is
	// never written later; a context deadline here would only cost a timer per frame.
	actx, span := g.appendSpan()
	err := g.opts.Store.Append(actx, g.core.id, b)
	observe.End(span, err)
	if err != nil {
		if errors.Is(err, ErrFenced) {
			g.fenced = true
		}
		return fmt.Errorf("device %s: %w", g.core.id, err)
	}
	g.claimed = true
	return nil
}

// perform carries out the non-durable effects of a persisted step.
func (g *deviceGrain) perform(ctx actor.Context, fx effects) {
	if fx.closeConn != nil {
		old := actor.NewPID(fx.closeConn.Address, fx.closeConn.Id)
		ctx.Send(old, &actorpb.Deliver{SessionId: fx.closeConn.SessionId, Close: &devicepb.Close{
			Reason: devicepb.CloseReason_CLOSE_REASON_REPLACED, Detail: "replaced by a newer connection"}})
	}
	if len(fx.frames) > 0 && g.connPID != nil {
		ctx.Send(g.connPID, &actorpb.Deliver{SessionId: g.core.conn.GetSessionId(), Frames: fx.frames, Trace: observe.Inject(g.tctx)})
	}
	for _, t := range fx.timers {
		if cancel, ok := g.timers[t.commandID]; ok {
			cancel()
		}
		if g.timers == nil {
			g.timers = map[string]scheduler.CancelFunc{}
		}
		g.timers[t.commandID] = g.sched.SendOnce(t.at.Sub(g.opts.Now()), ctx.Self(), &commandDeadline{commandID: t.commandID})
	}
	for _, out := range fx.outcomes {
		g.finishCommand(out)
		for _, w := range g.waiters[out.CommandId] {
			ctx.Send(w, out)
		}
		delete(g.waiters, out.CommandId)
		g.tellRequester(ctx, out)
		if cancel, ok := g.timers[out.CommandId]; ok {
			cancel()
			delete(g.timers, out.CommandId)
		}
		g.publish(ctx, &actorpb.DeviceNotice{DeviceId: g.core.id, AtMs: out.AtMs,
			Body: &actorpb.DeviceNotice_Outcome{Outcome: out}})
	}
	for _, n := range fx.notices {
		g.publish(ctx, n)
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
		c := cluster.GetCluster(ctx.ActorSystem())
		for _, b := range g.core.users {
			// Fire and forget: the user grain dedupes by notice id and owns the push from there.
			if pid := c.Get(b.OpenID, UserKind); pid != nil {
				ctx.Send(pid, un)
			} else {
				g.logger().Debug("user grain unreachable; notice dropped", "user", b.OpenID, "notice", un.NoticeId)
			}
		}
	}
}

func (g *deviceGrain) bind(ctx actor.Context, m *actorpb.BindDevice) {
	if !g.ready(ctx) || g.opts.Users == nil {
		ctx.Respond(&actorpb.BindResult{Error: "storage"})
		return
	}
	res, b := g.core.bind(m.OpenId, g.opts.Now())
	if b != nil {
		c, cancel := context.WithTimeout(context.Background(), loadTimeout)
		defer cancel()
		if err := g.opts.Users.Bind(c, *b); err != nil {
			g.logger().Warn("binding failed", "err", err)
			ctx.Respond(&actorpb.BindResult{Error: "storage"})
			return
		}
		g.core.addUser(*b)
		g.apply(ctx, effectsWithEvent(g.opts.Now(), EventKindBound, m))
	}
	ctx.Respond(res)
}

func (g *deviceGrain) unbind(ctx actor.Context, m *actorpb.UnbindDevice) {
	if !g.ready(ctx) || g.opts.Users == nil {
		ctx.Respond(&actorpb.BindResult{Error: "storage"})
		return
	}
	if !g.core.bound(m.OpenId) {
		ctx.Respond(&actorpb.BindResult{Ok: true})
		return
	}
	c, cancel := context.WithTimeout(context.Background(), loadTimeout)
	defer cancel()
	if err := g.opts.Users.Unbind(c, g.core.id, m.OpenId); err != nil {
		g.logger().Warn("unbinding failed", "err", err)
		ctx.Respond(&actorpb.BindResult{Error: "storage"})
		return
	}
	g.core.removeUser(m.OpenId)
	g.apply(ctx, effectsWithEvent(g.opts.Now(), EventKindUnbound, &actorpb.UnbindDevice{OpenId: m.OpenId}))
	ctx.Respond(&actorpb.BindResult{Ok: true})
}
