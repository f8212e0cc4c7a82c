package actors

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"github.com/jonboulle/clockwork"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/sprout-iot/sprout/cluster/observe"
	"github.com/sprout-iot/sprout/messages/actorpb"
)

// UserKind is the cluster kind of WeChat user grains; the identity is the OpenID.
const UserKind = "user"

// UserOptions configures user grains. Zero fields take the defaults documented on each.
type UserOptions struct {
	Store UserStore
	// Clock is the time source: now, and the alert summary's timer (default RealClock).
	Clock Clock
	// VerifyScene turns a scanned Sprout QR scene into a device id, or says why it is invalid.
	VerifyScene func(scene string) (deviceID string, err error)
	// AlertBurst alerts per AlertWindow are pushed one by one; past that they wait and go out as
	// one summary when the window ends (defaults 3 per 1 min).
	AlertBurst  int
	AlertWindow time.Duration
	// WaterMs is how long "water now" runs the pump (default 5000); CommandTimeout is its deadline
	// (default 30 s).
	WaterMs        uint32
	CommandTimeout time.Duration
	// RequestTimeout is the one deadline for the device grains asked about one message, all at
	// once (default 2 s, inside the 4 s callback budget); a pot that has not answered by then is
	// "not answering". It also bounds the grain's storage calls.
	RequestTimeout time.Duration
	// StatusPushes enables transmsg device-status pushes on presence changes.
	StatusPushes bool
	// CompelBind tells WeChat's device platform about bindings made through Sprout's own QR codes
	// (compel_bind / compel_unbind), for accounts with WeChat's device APIs enabled.
	CompelBind bool
	// DeviceType is the WeChat device type (the account's gh_ id) used in status pushes.
	DeviceType string
	// Pushed, if set, is called after pushes are enqueued (wakes the node's pusher at once).
	Pushed func()
	// Join: the press window (told to requesters), the approval link, the join template (join.go).
	Join   JoinOptions
	Logger *slog.Logger
}

func (o *UserOptions) defaults() {
	if o.Clock == nil {
		o.Clock = RealClock()
	}
	if o.AlertBurst == 0 {
		o.AlertBurst = 3
	}
	if o.AlertWindow == 0 {
		o.AlertWindow = time.Minute
	}
	if o.WaterMs == 0 {
		o.WaterMs = 5000
	}
	if o.CommandTimeout == 0 {
		o.CommandTimeout = 30 * time.Second
	}
	if o.RequestTimeout == 0 {
		o.RequestTimeout = 2 * time.Second
	}
	if o.VerifyScene == nil {
		o.VerifyScene = func(string) (string, error) {
			return "", errors.New("sprout QR codes are not configured (SPROUT_QR_KEYS)")
		}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	o.Join.defaults()
}

// NewUserKind returns the cluster kind that hosts user grains on this member.
func NewUserKind(opts UserOptions) *cluster.Kind {
	opts.defaults()
	return cluster.NewKind(UserKind, actor.PropsFromProducer(func() actor.Actor {
		return &userGrain{opts: &opts}
	}))
}

// Message kinds of PushMessage: each has its template (SPROUT_WECHAT_TEMPLATE_<KIND>) and its
// time to live.
const (
	MsgAlertRaised    = "alert_raised"
	MsgAlertCleared   = "alert_cleared"
	MsgCommandOutcome = "command_outcome"
	MsgDeviceNotice   = "device_notice" // offline, flapping
	MsgJoinRequest    = "join_request"
	MsgJoinResult     = "join_result"
	MsgReplyLater     = "reply_later" // the grain's answer after WeChat's time ran out
)

// MessageKinds lists every message kind.
var MessageKinds = []string{MsgAlertRaised, MsgAlertCleared, MsgCommandOutcome, MsgDeviceNotice, MsgJoinRequest, MsgJoinResult, MsgReplyLater}

// MessageFields are a message's meaning, from which the pusher fills a template's keys.
type MessageFields struct {
	Pot    string `json:"pot,omitempty"`    // the pot's name (its id)
	What   string `json:"what,omitempty"`   // what happened, short: 土壤太干 / soil too dry, 浇水
	Value  string `json:"value,omitempty"`  // the reading, e.g. 12.0%
	State  string `json:"state,omitempty"`  // a short Chinese state word: 告警, 已恢复, 成功, 离线
	Who    string `json:"who,omitempty"`    // a person (join requests)
	Detail string `json:"detail,omitempty"` // a longer explanation
	AtMs   int64  `json:"at_ms,omitempty"`  // when it happened (Unix ms)
	// AlertKey pairs an alert's raised and cleared messages (pot and alert kind).
	AlertKey string `json:"alert_key,omitempty"`
}

// PushPayload is the JSON payload of an outbox push.
type PushPayload struct {
	// MessageKind and Fields: PushMessage (Text is its customer-service form).
	MessageKind string         `json:"message_kind,omitempty"`
	Fields      *MessageFields `json:"fields,omitempty"`
	Text        string         `json:"text,omitempty"` // PushText, PushMessage, and the fallback of templates
	// Combined is an alert_cleared message's text for when its raised message was never sent
	// (it cleared first): one message saying it happened and is over.
	Combined   string            `json:"combined,omitempty"`
	TemplateID string            `json:"template_id,omitempty"` // PushTemplate
	Data       map[string]string `json:"data,omitempty"`        // template fields
	DeviceID   string            `json:"device_id,omitempty"`   // PushStatus, PushCompel*
	DeviceType string            `json:"device_type,omitempty"`
	Connected  bool              `json:"connected,omitempty"`
	Trace      string            `json:"traceparent,omitempty"` // the W3C trace the push belongs to
}

// userGrain is the actor shell around the user core: it loads the user, asks device grains what
// an intent needs (in parallel, off the receive), calls the core, stores the decided state once,
// then performs the effects and answers.
type userGrain struct {
	opts    *UserOptions
	core    userCore
	loaded  bool
	corrupt bool   // the stored snapshot cannot be decoded: kept as it is, nothing is written
	saved   []byte // the snapshot as last loaded or stored
	cluster *cluster.Cluster
	summary clockwork.Timer
	// unbindTimer: the earliest WeChat unbind to try again (user_join.go)
	unbindTimer clockwork.Timer
	log         *slog.Logger
	// jobs are the callbacks waiting for device answers, by dedup key; watering by the pot a tap
	// is for, so that another tap for that pot meanwhile joins it.
	jobs     map[string]*job
	watering map[string]*job
	pending  map[uint64]*job // every job waiting for its answers, by id
	nextJob  uint64
	// the current message's span (trace.go)
	grainTrace
}

// job is one callback waiting for its device answers, and every caller waiting for its reply (a
// retry of the callback, or another tap for the same pot, joins it).
type job struct {
	id      uint64
	msg     *actorpb.UserMessage
	in      intent
	asks    []ask
	waiters []waiter
	water   string // the pot of a water tap
	tctx    context.Context
}

// waiter is a caller waiting for a reply: if it comes later than the caller waits, it is pushed.
type waiter struct {
	pid    *actor.PID
	key    string
	start  time.Time
	within time.Duration
}

// answered brings a job's device answers back to the grain.
type answered struct {
	job uint64
	ans map[string]answer
}

type summaryDue struct{}

func (g *userGrain) Receive(ctx actor.Context) {
	g.beginSpan(ctx)
	defer g.endSpan()
	switch m := ctx.Message().(type) {
	case *actor.Started:
		id := cluster.GetClusterIdentity(ctx)
		if id == nil {
			ctx.Stop(ctx.Self())
			return
		}
		g.core.openID = id.Identity
		g.cluster = cluster.GetCluster(ctx.ActorSystem())
		g.log = g.opts.Logger.With("user", g.core.openID)
		g.core.st.Lang = LangZH
		g.load(ctx)
		ctx.SetReceiveTimeout(30 * time.Minute)
	case *actor.Stopping:
		if g.summary != nil {
			g.summary.Stop()
		}
	case *actor.ReceiveTimeout:
		if len(g.core.st.Summary) == 0 && len(g.pending) == 0 && len(g.core.st.UnbindRetries) == 0 {
			ctx.Stop(ctx.Self())
		}
	case *actorpb.UserMessage:
		g.handle(ctx, m)
	case *answered:
		g.finish(ctx, m)
	case *actorpb.CommandOutcome:
		// Pushed even if the state could not be loaded: the outbox dedupes it by its id.
		g.ready(ctx)
		next, fx := outcome(&g.core, m, g.opts.Clock.Now(), g.opts)
		g.commit(ctx, next, fx)
	case *actorpb.UserNotice:
		if g.ready(ctx) {
			next, fx := notice(&g.core, m, g.opts.Clock.Now(), g.opts)
			g.commit(ctx, next, fx)
		} else {
			g.log.Warn("a notice was not pushed: the user's state could not be loaded", "notice", m.NoticeId)
		}
	case unbindRetryDue:
		g.retryUnbinds(ctx)
	case *unbindRetried:
		g.unbindDone(ctx, m)
	case summaryDue:
		if g.ready(ctx) {
			next, fx := flushSummary(&g.core, g.opts.Clock.Now(), g.opts)
			g.commit(ctx, next, fx)
		}
	case *actorpb.BindingChanged:
		// The pots come from the bindings when the state loads; a grain that has not loaded
		// reads them then.
		if g.loaded {
			g.core.setBinding(Binding{DeviceID: m.DeviceId, OpenID: g.core.openID, Role: m.Role,
				BoundAt: time.UnixMilli(m.AtMs)}, m.Bound)
		}
	}
}

// load reads the user's state and bindings. A failure leaves the grain unloaded: it answers
// "busy" and writes nothing until a later message loads it. A corrupt snapshot is logged,
// counted and kept for an operator; the grain never overwrites it.
func (g *userGrain) load(ctx actor.Context) {
	if g.corrupt {
		return
	}
	c, cancel := context.WithTimeout(context.Background(), g.opts.RequestTimeout)
	defer cancel()
	snap, err := g.opts.Store.LoadUser(c, g.core.openID)
	if err != nil {
		g.log.Warn("loading user failed; answering busy until it loads", "err", err)
		return
	}
	st := userState{Lang: LangZH}
	if snap != nil {
		if err := json.Unmarshal(snap, &st); err != nil {
			g.corrupt = true
			corruptUserSnapshots.Add(1)
			g.log.Error("user snapshot is corrupt; it is kept as it is and the user is answered busy until an operator repairs or deletes it",
				"err", err, "bytes", len(snap))
			return
		}
	}
	devices, err := g.opts.Store.UserBindings(c, g.core.openID)
	if err != nil {
		g.log.Warn("loading user bindings failed; answering busy until they load", "err", err)
		return
	}
	g.core.st, g.core.devices, g.saved, g.loaded = st, devices, snap, true
	if len(st.Summary) > 0 {
		due := st.SummaryDue
		if due.IsZero() {
			due = g.opts.Clock.Now().Add(g.opts.AlertWindow)
		}
		g.armSummary(ctx, due)
	}
	g.armUnbindRetry(ctx)
}

// ready loads the state if it is not loaded yet, and reports whether it is.
func (g *userGrain) ready(ctx actor.Context) bool {
	if !g.loaded {
		g.load(ctx)
	}
	return g.loaded
}

// handle takes one callback: a repeat gets the first answer; one whose devices must be asked
// waits for them off the receive (finish answers it); the rest is decided at once.
func (g *userGrain) handle(ctx actor.Context, m *actorpb.UserMessage) {
	w := waiter{pid: ctx.Sender(), key: m.DedupKey, start: g.opts.Clock.Now(),
		within: time.Duration(m.ReplyWithinMs) * time.Millisecond}
	if !g.ready(ctx) {
		g.respond(ctx, w, text(say(g.core.st.Lang, "unavailable")))
		return
	}
	if m.DedupKey != "" {
		if b, ok := g.core.st.reply(m.DedupKey); ok {
			r := &actorpb.UserReply{}
			if protojson.Unmarshal(b, r) == nil {
				g.respond(ctx, w, r)
				return
			}
		}
		if j, ok := g.jobs[m.DedupKey]; ok { // WeChat's retry while the first attempt waits
			j.waiters = append(j.waiters, w)
			return
		}
	}
	g.recordContact(m)
	in := parseIntent(m)
	if in.kind == "bind_qr" {
		id, err := g.opts.VerifyScene(in.arg)
		if err != nil {
			g.log.Info("refused a Sprout QR", "err", err)
			in = intent{kind: "bad_qr"}
		} else {
			in = intent{kind: "bind_sprout", arg: id}
		}
	}
	now := g.opts.Clock.Now()
	water := ""
	if in.kind == "water" {
		if id, _, ok := pickDevice(g.core.st.Lang, g.core.devices, in.arg); ok {
			water = id
			if j, ok := g.watering[id]; ok { // another tap for a pot whose first tap is still being decided
				j.waiters = append(j.waiters, w)
				g.track(m.DedupKey, j)
				return
			}
		}
	}
	asks := plan(&g.core, in, now)
	if len(asks) == 0 {
		d := decide(&g.core, m, in, nil, now, g.opts)
		g.reply(ctx, d, m.DedupKey, []waiter{w})
		return
	}
	g.nextJob++
	j := &job{id: g.nextJob, msg: m, in: in, asks: asks, waiters: []waiter{w}, water: water, tctx: g.tctx}
	g.track(m.DedupKey, j)
	if g.pending == nil {
		g.pending = map[uint64]*job{}
	}
	g.pending[j.id] = j
	if water != "" {
		if g.watering == nil {
			g.watering = map[string]*job{}
		}
		g.watering[water] = j
	}
	g.fanOut(ctx, j)
}

// recordContact records the user's own action (once per callback: WeChat's retries were
// answered above) so that the pusher knows the customer-service allowance it opened. The window
// starts when the user acted (CreateTime), never later than now. A failure is logged: the
// pusher then sends templates, which need no window.
func (g *userGrain) recordContact(m *actorpb.UserMessage) {
	kind := contactKind(m)
	if kind == "" {
		return
	}
	at := g.opts.Clock.Now()
	if m.CreateTime > 0 {
		if t := time.Unix(m.CreateTime, 0); t.Before(at) {
			at = t
		}
	}
	c, cancel := context.WithTimeout(g.tctx, g.opts.RequestTimeout)
	defer cancel()
	if err := g.opts.Store.RecordContact(c, g.core.openID, ContactEvent{Kind: kind, At: at}); err != nil {
		g.log.Warn("recording the user's action failed; pushes use templates until the next one", "kind", kind, "err", err)
	}
}

func (g *userGrain) track(key string, j *job) {
	if key == "" {
		return
	}
	if g.jobs == nil {
		g.jobs = map[string]*job{}
	}
	g.jobs[key] = j
}

// fanOut asks every device of a job at once under one deadline, off the receive, and sends the
// answers back to the grain; a device that did not answer by then has errNoAnswer.
func (g *userGrain) fanOut(ctx actor.Context, j *job) {
	c, root, self := g.cluster, ctx.ActorSystem().Root, ctx.Self()
	openID, timeout := g.core.openID, g.opts.RequestTimeout
	asks := j.asks
	go func() {
		// The deadline is kept here rather than by each request: a request can wait longer than
		// its timeout (finding the grain's activation is not bounded by it).
		type result struct {
			i int
			a answer
		}
		results := make(chan result, len(asks))
		for i, a := range asks {
			go func() { results <- result{i, request(c, openID, a, timeout)} }()
		}
		ans := make(map[string]answer, len(asks))
		deadline := time.NewTimer(timeout)
		defer deadline.Stop()
		for range asks {
			select {
			case r := <-results:
				ans[asks[r.i].device] = r.a
			case <-deadline.C:
				root.Send(self, &answered{job: j.id, ans: ans}) // the rest: errNoAnswer
				return
			}
		}
		root.Send(self, &answered{job: j.id, ans: ans})
	}()
}

// request puts one ask to its device grain.
func request(c *cluster.Cluster, openID string, a ask, timeout time.Duration) answer {
	var msg any
	switch a.kind {
	case askState:
		msg = &actorpb.GetState{OpenId: openID}
	case askBind:
		msg = &actorpb.BindDevice{OpenId: openID, Via: a.via}
	case askUnbind:
		msg = &actorpb.UnbindDevice{OpenId: openID}
	}
	if timeout <= 0 {
		return answer{err: errNoAnswer}
	}
	res, err := c.Request(a.device, DeviceKind, msg, cluster.WithTimeout(timeout))
	if err != nil {
		return answer{err: fmt.Errorf("%w: %v", errNoAnswer, err)}
	}
	switch r := res.(type) {
	case *actorpb.DeviceState:
		return answerState(r)
	case *actorpb.BindResult:
		return answerBind(r)
	}
	return answer{err: fmt.Errorf("%w: unexpected answer %T", ErrUnavailable, res)}
}

// finish decides a job whose device answers are in and answers everyone waiting for it.
func (g *userGrain) finish(ctx actor.Context, a *answered) {
	j, ok := g.pending[a.job]
	if !ok {
		return
	}
	delete(g.pending, a.job)
	for _, w := range j.waiters {
		if g.jobs[w.key] == j {
			delete(g.jobs, w.key)
		}
	}
	if g.watering[j.water] == j {
		delete(g.watering, j.water)
	}
	g.tctx = j.tctx
	d := decide(&g.core, j.msg, j.in, a.ans, g.opts.Clock.Now(), g.opts)
	g.reply(ctx, d, j.msg.DedupKey, j.waiters)
}

// reply stores a decided callback (every waiter's retry key answers the same from now on),
// performs its effects and answers the waiters.
func (g *userGrain) reply(ctx actor.Context, d decision, key string, ws []waiter) {
	for _, w := range ws {
		if w.key != key { // decide remembered key; the others joined it
			d.next.st.remember(w.key, d.reply)
		}
	}
	reply := d.reply
	if !g.commit(ctx, d.next, d.fx) {
		reply = text(say(g.core.st.Lang, "unavailable"))
	}
	for _, w := range ws {
		g.respond(ctx, w, reply)
	}
}

// respond answers a caller, or, when the caller has stopped waiting (it told the user they would
// hear the result), pushes the answer.
func (g *userGrain) respond(ctx actor.Context, w waiter, r *actorpb.UserReply) {
	late := w.within > 0 && g.opts.Clock.Now().Sub(w.start) >= w.within
	if !late {
		if w.pid != nil {
			ctx.Send(w.pid, r)
		}
		return
	}
	if r.Kind != actorpb.UserReply_KIND_TEXT || r.Text == "" || !g.loaded {
		return
	}
	now := g.opts.Clock.Now()
	pot := ""
	if len(g.core.devices) == 1 {
		pot = g.core.devices[0].DeviceID
	}
	g.enqueue([]Push{messagePush(g.core.openID, MsgReplyLater, pushID("late", g.core.openID, w.key), "", r.Text,
		MessageFields{Pot: pot, What: say(g.core.st.Lang, "reply_later"), State: "已处理", Detail: r.Text, AtMs: now.UnixMilli()})})
}

// commit keeps the decided state once it is stored (one write, only when it changed and only
// over a state that was loaded), then performs the effects. It reports whether the state is kept.
func (g *userGrain) commit(ctx actor.Context, next userCore, fx userEffects) bool {
	if g.loaded {
		b, _ := json.Marshal(&next.st)
		if !bytes.Equal(b, g.saved) {
			c, cancel := context.WithTimeout(g.tctx, g.opts.RequestTimeout)
			err := g.opts.Store.SaveUser(c, next.openID, b)
			cancel()
			if err != nil {
				g.log.Warn("saving user failed; nothing of this message was done", "err", err)
				g.keepUnbindRetries(next)
				g.armUnbindRetry(ctx)
				return false
			}
			g.saved = b
		}
		g.core = next
	}
	for _, sc := range fx.commands {
		pid := g.cluster.Get(sc.device, DeviceKind)
		if pid == nil {
			g.log.Warn("device grain unreachable; the command was not sent", "device", sc.device, "command", sc.cmd.CommandId)
			continue
		}
		sc.cmd.Trace = observe.Inject(g.tctx)
		// Sent without a reply address: the outcome comes back through the cluster to whichever
		// activation of this user grain exists then (see deviceGrain.tellRequester).
		ctx.Send(pid, sc.cmd)
	}
	g.enqueue(fx.pushes)
	if !fx.summaryAt.IsZero() {
		g.armSummary(ctx, fx.summaryAt)
	}
	g.armUnbindRetry(ctx)
	return true
}

// armSummary sends summaryDue to the grain at due.
func (g *userGrain) armSummary(ctx actor.Context, due time.Time) {
	if g.summary != nil {
		g.summary.Stop()
	}
	root, self := ctx.ActorSystem().Root, ctx.Self()
	g.summary = g.opts.Clock.AfterFunc(max(due.Sub(g.opts.Clock.Now()), 0), func() { root.Send(self, summaryDue{}) })
}

// enqueue makes pushes durable in the outbox; the pusher sends them even if this node dies now.
func (g *userGrain) enqueue(ps []Push) {
	if len(ps) == 0 {
		return
	}
	ectx, span := observe.Child(g.tctx, "outbox.enqueue")
	defer span.End()
	now := g.opts.Clock.Now()
	for i := range ps {
		ps[i].OpenID, ps[i].CreatedAt, ps[i].Status = g.core.openID, now, PushPending
		ps[i].Payload = tracedPayload(ectx, ps[i].Payload)
	}
	c, cancel := context.WithTimeout(ectx, g.opts.RequestTimeout)
	defer cancel()
	if err := g.opts.Store.EnqueuePushes(c, ps); err != nil {
		g.log.Error("enqueuing pushes failed; they are lost", "push", ps[0].ID, "count", len(ps), "err", err)
		return
	}
	if g.opts.Pushed != nil {
		g.opts.Pushed()
	}
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

// corruptUserSnapshots counts user snapshots that could not be decoded (CorruptUserSnapshots).
var corruptUserSnapshots atomic.Int64

// CorruptUserSnapshots is how many user grain snapshots this process found corrupt since it
// started. Such a snapshot is kept as it is for an operator; its user is answered "busy".
func CorruptUserSnapshots() int64 { return corruptUserSnapshots.Load() }
