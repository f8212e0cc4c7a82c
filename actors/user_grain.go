package actors

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"github.com/jonboulle/clockwork"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/sprout-iot/sprout/cluster/observe"
	"github.com/sprout-iot/sprout/messages/actorpb"
	"github.com/sprout-iot/sprout/messages/devicepb"
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
	// ServiceWindow is how long after a user's last message customer-service texts may be sent
	// (WeChat: 48 h). Outside it pushes use templates.
	ServiceWindow time.Duration
	// AlertTemplateID and OutcomeTemplateID are the template messages used outside the window
	// (empty: texts are tried anyway, and fail as WeChat refuses them).
	AlertTemplateID, OutcomeTemplateID string
	// AlertBurst alerts per AlertWindow are pushed one by one; past that they wait and go out as
	// one summary when the window ends (defaults 3 per 1 min).
	AlertBurst  int
	AlertWindow time.Duration
	// WaterMs is how long "water now" runs the pump (default 5000); CommandTimeout is its deadline
	// (default 30 s).
	WaterMs        uint32
	CommandTimeout time.Duration
	// RequestTimeout bounds a user grain's own requests to device grains (default 2 s, inside
	// WeChat's 5 s answer budget).
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
	Logger *slog.Logger
}

func (o *UserOptions) defaults() {
	if o.Clock == nil {
		o.Clock = RealClock()
	}
	if o.ServiceWindow == 0 {
		o.ServiceWindow = 48 * time.Hour
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
}

// NewUserKind returns the cluster kind that hosts user grains on this member.
func NewUserKind(opts UserOptions) *cluster.Kind {
	opts.defaults()
	return cluster.NewKind(UserKind, actor.PropsFromProducer(func() actor.Actor {
		return &userGrain{opts: &opts}
	}))
}

// PushPayload is the JSON payload of an outbox push.
type PushPayload struct {
	Text       string            `json:"text,omitempty"`        // PushText, and the fallback of templates
	TemplateID string            `json:"template_id,omitempty"` // PushTemplate
	Data       map[string]string `json:"data,omitempty"`        // template fields
	DeviceID   string            `json:"device_id,omitempty"`   // PushStatus, PushCompel*
	DeviceType string            `json:"device_type,omitempty"`
	Connected  bool              `json:"connected,omitempty"`
	Trace      string            `json:"traceparent,omitempty"` // the W3C trace the push belongs to
}

// userGrain is a WeChat user: their bound devices, language, conversation window, push limits.
type userGrain struct {
	opts    *UserOptions
	openID  string
	st      userState
	devices []Binding
	loaded  bool
	cluster *cluster.Cluster
	summary clockwork.Timer
	log     *slog.Logger
	// the current message's span (trace.go)
	grainTrace
}

type flushSummary struct{}

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
		g.openID = id.Identity
		g.cluster = cluster.GetCluster(ctx.ActorSystem())
		g.log = g.opts.Logger.With("user", g.openID)
		g.st.Lang = LangZH
		g.load()
		ctx.SetReceiveTimeout(30 * time.Minute)
	case *actor.ReceiveTimeout:
		if len(g.st.Summary) == 0 {
			ctx.Stop(ctx.Self())
		}
	case *actorpb.UserMessage:
		ctx.Respond(g.handle(ctx, m))
	case *actorpb.CommandOutcome:
		g.outcome(m)
	case *actorpb.UserNotice:
		g.notice(ctx, m)
	case flushSummary:
		g.flushSummary()
	}
}

func (g *userGrain) load() {
	c, cancel := context.WithTimeout(context.Background(), g.opts.RequestTimeout)
	defer cancel()
	snap, err := g.opts.Store.LoadUser(c, g.openID)
	if err != nil {
		g.log.Warn("loading user failed", "err", err)
		return
	}
	if snap != nil {
		_ = json.Unmarshal(snap, &g.st)
	}
	if g.devices, err = g.opts.Store.UserBindings(c, g.openID); err != nil {
		g.log.Warn("loading user bindings failed", "err", err)
		return
	}
	g.loaded = true
}

func (g *userGrain) save() {
	b, _ := json.Marshal(&g.st)
	c, cancel := context.WithTimeout(context.Background(), g.opts.RequestTimeout)
	defer cancel()
	if err := g.opts.Store.SaveUser(c, g.openID, b); err != nil {
		g.log.Warn("saving user failed", "err", err)
	}
}

func text(t string) *actorpb.UserReply {
	return &actorpb.UserReply{Kind: actorpb.UserReply_KIND_TEXT, Text: t}
}

// handle answers one callback. A repeat of a callback (WeChat's retry) gets the first answer and
// does nothing again.
func (g *userGrain) handle(ctx actor.Context, m *actorpb.UserMessage) *actorpb.UserReply {
	if !g.loaded {
		g.load()
		if !g.loaded {
			return text(say(g.st.Lang, "unavailable"))
		}
	}
	if m.DedupKey != "" {
		if b, ok := g.st.reply(m.DedupKey); ok {
			r := &actorpb.UserReply{}
			if protojson.Unmarshal(b, r) == nil {
				return r
			}
		}
	}
	now := g.opts.Clock.Now()
	g.st.LastInteraction = now
	if m.MsgType == "text" {
		g.st.Lang = detectLang(m.Content, g.st.Lang)
	}
	reply := g.act(ctx, m, parseIntent(m))
	if m.DedupKey != "" {
		b, _ := protojson.Marshal(reply)
		g.st.remember(m.DedupKey, b)
	}
	g.save()
	return reply
}

func (g *userGrain) act(ctx actor.Context, m *actorpb.UserMessage, in intent) *actorpb.UserReply {
	lang := g.st.Lang
	switch in.kind {
	case "bind_qr":
		id, err := g.opts.VerifyScene(in.arg)
		if err != nil {
			g.log.Info("refused a Sprout QR", "err", err)
			return text(say(lang, "bind_bad_qr"))
		}
		return g.bind(id, "sprout_qr")
	case "bind_wechat":
		return g.bind(in.arg, "wechat_qr")
	case "unbind_wechat":
		g.unbind(in.arg, false)
		return &actorpb.UserReply{}
	case "unbind":
		id, msg, ok := pickDevice(lang, g.devices, in.arg)
		if !ok {
			return text(msg)
		}
		return g.unbind(id, true)
	case "water":
		id, msg, ok := pickDevice(lang, g.devices, in.arg)
		if !ok {
			return text(msg)
		}
		return g.water(ctx, id, commandIDFor(g.openID, m.DedupKey))
	case "status":
		if len(g.devices) == 0 {
			return text(say(lang, "no_devices"))
		}
		var lines []string
		for _, d := range g.devices {
			st, err := g.state(d.DeviceID)
			if err != nil {
				lines = append(lines, d.DeviceID+": "+say(lang, "unavailable"))
				continue
			}
			lines = append(lines, statusText(lang, st))
		}
		return text(strings.Join(lines, "\n"))
	case "list":
		if len(g.devices) == 0 {
			return text(say(lang, "no_devices"))
		}
		return text(say(lang, "device_list", deviceList(lang, g.devices)))
	case "status_sub":
		st, err := g.state(in.arg)
		connected := err == nil && st.Online
		return &actorpb.UserReply{Kind: actorpb.UserReply_KIND_DEVICE_STATUS, Connected: connected}
	case "device_text":
		// Bytes from the device page: "status" asks for the state; anything else is answered with it.
		st, err := g.state(in.arg)
		if err != nil {
			return &actorpb.UserReply{Kind: actorpb.UserReply_KIND_DEVICE_TEXT, DeviceData: []byte(`{"error":"unavailable"}`)}
		}
		b, _ := protojson.Marshal(st)
		return &actorpb.UserReply{Kind: actorpb.UserReply_KIND_DEVICE_TEXT, DeviceData: b}
	case "help":
		return text(say(lang, "help"))
	}
	return &actorpb.UserReply{}
}

func (g *userGrain) request(deviceID string, msg any) (any, error) {
	return g.cluster.Request(deviceID, DeviceKind, msg, cluster.WithTimeout(g.opts.RequestTimeout))
}

// state reads a device's state on behalf of this user (refused unless bound).
func (g *userGrain) state(deviceID string) (*actorpb.DeviceState, error) {
	res, err := g.request(deviceID, &actorpb.GetState{OpenId: g.openID})
	if err != nil {
		return nil, err
	}
	st, ok := res.(*actorpb.DeviceState)
	if !ok || st.Denied || !st.Known {
		return nil, errors.New("not bound")
	}
	return st, nil
}

func (g *userGrain) bind(deviceID, via string) *actorpb.UserReply {
	lang := g.st.Lang
	res, err := g.request(deviceID, &actorpb.BindDevice{OpenId: g.openID, Via: via})
	br, _ := res.(*actorpb.BindResult)
	if err != nil || br == nil {
		return text(say(lang, "unavailable"))
	}
	switch br.Error {
	case "":
	case "unknown_device":
		return text(say(lang, "bind_unknown", deviceID))
	case "revoked":
		return text(say(lang, "bind_revoked", deviceID))
	default:
		return text(say(lang, "unavailable"))
	}
	if br.Already {
		return text(say(lang, "bound_already", deviceID))
	}
	g.devices = append(g.devices, Binding{DeviceID: deviceID, OpenID: g.openID, Role: br.Role, BoundAt: g.opts.Clock.Now()})
	if via == "sprout_qr" && g.opts.CompelBind {
		// Tell WeChat's device platform too, so the device shows in the user's WeChat device list.
		g.enqueue(Push{ID: pushID("compel_bind", g.openID, deviceID), Kind: PushCompelBind,
			Payload: mustJSON(PushPayload{DeviceID: deviceID})})
	}
	if br.Role == RoleOwner {
		return text(say(lang, "bound_owner", deviceID))
	}
	return text(say(lang, "bound_member", deviceID))
}

func (g *userGrain) unbind(deviceID string, reply bool) *actorpb.UserReply {
	res, err := g.request(deviceID, &actorpb.UnbindDevice{OpenId: g.openID})
	br, _ := res.(*actorpb.BindResult)
	if err != nil || br == nil || !br.Ok {
		return text(say(g.st.Lang, "unavailable"))
	}
	for i, d := range g.devices {
		if d.DeviceID == deviceID {
			g.devices = append(g.devices[:i:i], g.devices[i+1:]...)
			break
		}
	}
	if g.opts.CompelBind {
		g.enqueue(Push{ID: pushID("compel_unbind", g.openID, deviceID, g.opts.Clock.Now().String()), Kind: PushCompelUnbind,
			Payload: mustJSON(PushPayload{DeviceID: deviceID})})
	}
	if !reply {
		return &actorpb.UserReply{}
	}
	return text(say(g.st.Lang, "unbound", deviceID))
}

// water checks the device is online (answering at once if not), then sends the command; the
// outcome comes back to this grain and is pushed.
func (g *userGrain) water(ctx actor.Context, deviceID, commandID string) *actorpb.UserReply {
	lang := g.st.Lang
	st, err := g.state(deviceID)
	if err != nil {
		return text(say(lang, "water_error", deviceID, "unavailable"))
	}
	if !st.Online {
		return text(say(lang, "water_offline", deviceID))
	}
	pid := g.cluster.Get(deviceID, DeviceKind)
	if pid == nil {
		return text(say(lang, "water_error", deviceID, "unavailable"))
	}
	// Sent without a reply address: the outcome comes back through the cluster to whichever
	// activation of this user grain exists then (see deviceGrain.tellRequester).
	ctx.Send(pid, &actorpb.SendCommand{CommandId: commandID, Kind: devicepb.CommandKind_COMMAND_KIND_WATER,
		WaterMs: g.opts.WaterMs, TimeoutMs: uint32(g.opts.CommandTimeout / time.Millisecond),
		RequestedBy: WeChatRequester(g.openID), Trace: observe.Inject(g.tctx)})
	return text(say(lang, "watering", deviceID))
}

// outcome pushes a command's outcome to the user who asked.
func (g *userGrain) outcome(o *actorpb.CommandOutcome) {
	msg := outcomeText(g.st.Lang, o)
	g.enqueue(g.messagePush(pushID("outcome", g.openID, o.DeviceId, o.CommandId), g.opts.OutcomeTemplateID, msg,
		map[string]string{"device": o.DeviceId, "result": msg}))
}

// notice handles a device's alert or presence change: each notice is pushed at most once, and a
// storm across many devices becomes one summary.
func (g *userGrain) notice(ctx actor.Context, n *actorpb.UserNotice) {
	if g.st.seen(n.NoticeId) {
		return
	}
	lang := g.st.Lang
	now := g.opts.Clock.Now()
	switch b := n.Body.(type) {
	case *actorpb.UserNotice_Alert:
		a := b.Alert
		var msg string
		if a.Active {
			msg = say(lang, "alert_raised", n.DeviceId, alertText(lang, a.Kind), a.Value, a.Threshold)
		} else {
			msg = say(lang, "alert_cleared", n.DeviceId, alertText(lang, a.Kind))
		}
		if !g.st.allowAlert(now, g.opts.AlertWindow, g.opts.AlertBurst) {
			g.st.Summary = append(g.st.Summary, msg)
			if g.summary == nil {
				self, root := ctx.Self(), ctx.ActorSystem().Root
				g.summary = g.opts.Clock.AfterFunc(g.opts.AlertWindow, func() { root.Send(self, flushSummary{}) })
			}
			g.save()
			return
		}
		g.enqueue(g.messagePush(pushID("notice", g.openID, n.NoticeId), g.opts.AlertTemplateID, msg,
			map[string]string{"device": n.DeviceId, "alert": alertText(lang, a.Kind), "detail": msg}))
	case *actorpb.UserNotice_Flapping:
		f := b.Flapping
		mins := max((f.UntilMs-now.UnixMilli()+59_999)/60_000, 1)
		msg := say(lang, "flapping", n.DeviceId, f.WindowS, f.Connects, mins)
		g.enqueue(g.messagePush(pushID("notice", g.openID, n.NoticeId), g.opts.AlertTemplateID, msg,
			map[string]string{"device": n.DeviceId, "alert": say(lang, "flapping_short"), "detail": msg}))
	case *actorpb.UserNotice_Presence:
		if g.opts.StatusPushes {
			g.enqueue(Push{ID: pushID("status", g.openID, n.NoticeId), Kind: PushStatus,
				Payload: mustJSON(PushPayload{DeviceID: n.DeviceId, DeviceType: g.opts.DeviceType, Connected: b.Presence.Online})})
		}
	}
	g.save()
}

func (g *userGrain) flushSummary() {
	g.summary = nil
	if len(g.st.Summary) == 0 {
		return
	}
	lines := g.st.Summary
	msg := say(g.st.Lang, "alert_summary", len(lines), strings.Join(lines, "\n"))
	g.enqueue(g.messagePush(pushID("summary", g.openID, strings.Join(lines, "\n")), g.opts.AlertTemplateID, msg,
		map[string]string{"device": "", "detail": msg}))
	g.st.Summary = nil
	g.save()
}

// messagePush chooses the channel: a customer-service text inside the window, a template outside.
func (g *userGrain) messagePush(id, templateID, msg string, data map[string]string) Push {
	inWindow := g.opts.Clock.Now().Sub(g.st.LastInteraction) < g.opts.ServiceWindow
	if inWindow || templateID == "" {
		return Push{ID: id, Kind: PushText, Payload: mustJSON(PushPayload{Text: msg})}
	}
	return Push{ID: id, Kind: PushTemplate, Payload: mustJSON(PushPayload{Text: msg, TemplateID: templateID, Data: data})}
}

// enqueue makes a push durable in the outbox; the pusher sends it even if this node dies now.
func (g *userGrain) enqueue(p Push) {
	p.OpenID = g.openID
	p.CreatedAt = g.opts.Clock.Now()
	p.Status = PushPending
	ectx, span := observe.Child(g.tctx, "outbox.enqueue")
	defer span.End()
	p.Payload = tracedPayload(ectx, p.Payload)
	c, cancel := context.WithTimeout(ectx, g.opts.RequestTimeout)
	defer cancel()
	if err := g.opts.Store.EnqueuePushes(c, []Push{p}); err != nil {
		g.log.Error("enqueuing a push failed; it is lost", "push", p.ID, "err", err)
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
