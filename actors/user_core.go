package actors

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/sprout-iot/sprout/messages/actorpb"
	"github.com/sprout-iot/sprout/messages/devicepb"
)

// Menu keys of the official account's menu (CLICK events).
const (
	MenuWater     = "WATER"
	MenuStatus    = "STATUS"
	MenuMyDevices = "MY_DEVICES"
	MenuUnbind    = "UNBIND"
	MenuHelp      = "HELP"
)

// intent is what a user's message asks for.
type intent struct {
	kind string // water, status, list, unbind, help, bind_qr, bind_wechat, unbind_wechat, status_sub, device_text, none
	arg  string // a device number or id; the QR scene; the device id
}

// parseIntent reads a WeChat callback. It is pure: the grain decides what to do with the intent.
func parseIntent(m *actorpb.UserMessage) intent {
	switch m.MsgType {
	case "text":
		return parseText(m.Content)
	case "event":
		switch m.Event {
		case "subscribe", "SCAN":
			if scene := strings.TrimPrefix(m.EventKey, "qrscene_"); scene != "" {
				return intent{kind: "bind_qr", arg: scene}
			}
			return intent{kind: "help"}
		case "CLICK":
			switch m.EventKey {
			case MenuWater:
				return intent{kind: "water"}
			case MenuStatus:
				return intent{kind: "status"}
			case MenuMyDevices:
				return intent{kind: "list"}
			case MenuUnbind:
				return intent{kind: "unbind"}
			}
			return intent{kind: "help"}
		}
		return intent{kind: "none"}
	case "device_event":
		switch m.Event {
		case "bind":
			return intent{kind: "bind_wechat", arg: m.DeviceId}
		case "unbind":
			return intent{kind: "unbind_wechat", arg: m.DeviceId}
		case "subscribe_status", "unsubscribe_status":
			return intent{kind: "status_sub", arg: m.DeviceId}
		}
		return intent{kind: "none"}
	case "device_text":
		return intent{kind: "device_text", arg: m.DeviceId}
	}
	return intent{kind: "none"}
}

func parseText(s string) intent {
	t := strings.TrimSpace(strings.ToLower(s))
	for _, w := range []struct{ prefix, kind string }{
		{"water", "water"}, {"浇水", "water"},
		{"status", "status"}, {"状态", "status"},
		{"my devices", "list"}, {"devices", "list"}, {"我的设备", "list"}, {"我的花盆", "list"},
		{"unbind", "unbind"}, {"解绑", "unbind"},
	} {
		if rest, ok := strings.CutPrefix(t, w.prefix); ok {
			return intent{kind: w.kind, arg: strings.TrimSpace(rest)}
		}
	}
	return intent{kind: "help"}
}

// pickDevice chooses the device a command is for: the only one, the Nth (1-based), or by id.
// ok false with a text to reply when the choice is ambiguous or wrong.
func pickDevice(lang string, devices []Binding, arg string) (string, string, bool) {
	switch {
	case len(devices) == 0:
		return "", say(lang, "no_devices"), false
	case arg == "" && len(devices) == 1:
		return devices[0].DeviceID, "", true
	case arg == "":
		return "", say(lang, "pick_device", deviceList(lang, devices)), false
	}
	if n, err := strconv.Atoi(arg); err == nil && n >= 1 && n <= len(devices) {
		return devices[n-1].DeviceID, "", true
	}
	for _, d := range devices {
		if strings.EqualFold(d.DeviceID, arg) {
			return d.DeviceID, "", true
		}
	}
	return "", say(lang, "not_yours", arg), false
}

func deviceList(lang string, devices []Binding) string {
	var b strings.Builder
	for i, d := range devices {
		fmt.Fprintf(&b, "%d. %s (%s)\n", i+1, d.DeviceID, say(lang, "role_"+d.Role))
	}
	return strings.TrimRight(b.String(), "\n")
}

// commandIDFor derives a command id from the callback that asked for it, so that WeChat's retries
// of one tap name the same command and the device grain runs it once.
func commandIDFor(openID, dedupKey string) string {
	h := sha256.Sum256([]byte(openID + "\x00" + dedupKey))
	return "wx-" + hex.EncodeToString(h[:12])
}

// pushID derives a push's client_msg_id from what decided it, so re-deciding after a crash
// enqueues the same push, which the outbox and WeChat both dedupe.
func pushID(parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return hex.EncodeToString(h[:16])
}

// userState is the persisted part of a user grain.
type userState struct {
	Lang        string        `json:"lang"`
	Replies     []cachedReply `json:"replies"` // for WeChat's retries of one callback
	Notices     []string      `json:"notices"` // notice ids already pushed
	AlertPushes []time.Time   `json:"alert_pushes"`
	Summary     []string      `json:"summary"`               // alert lines held back by the rate limit
	SummaryDue  time.Time     `json:"summary_due,omitempty"` // when the held summary goes out
	// Watering is the water commands this user started that have not ended yet: a tap for the
	// same pot meanwhile joins the command instead of watering again.
	Watering []watering `json:"watering,omitempty"`
	userJoin            // status subscriptions, WeChat unbinds to retry (user_join.go)
}

type cachedReply struct {
	Key   string          `json:"key"`
	Reply json.RawMessage `json:"reply"`
}

// watering is a water command in flight, until its outcome comes back or Until passes (the
// command's deadline, plus the time its outcome takes to come back).
type watering struct {
	DeviceID  string    `json:"device_id"`
	CommandID string    `json:"command_id"`
	Until     time.Time `json:"until"`
}

const (
	maxCachedReplies = 32
	maxSeenNotices   = 128
)

func (s *userState) clone() userState {
	c := *s
	c.Replies = slices.Clone(s.Replies)
	c.Notices = slices.Clone(s.Notices)
	c.AlertPushes = slices.Clone(s.AlertPushes)
	c.Summary = slices.Clone(s.Summary)
	c.Watering = slices.Clone(s.Watering)
	c.userJoin = s.userJoin.clone()
	return c
}

func (s *userState) reply(key string) ([]byte, bool) {
	for _, r := range s.Replies {
		if r.Key == key {
			return r.Reply, true
		}
	}
	return nil, false
}

func (s *userState) remember(key string, reply *actorpb.UserReply) {
	if key == "" {
		return
	}
	b, _ := protojson.Marshal(reply)
	s.Replies = append(s.Replies, cachedReply{Key: key, Reply: b})
	if len(s.Replies) > maxCachedReplies {
		s.Replies = s.Replies[len(s.Replies)-maxCachedReplies:]
	}
}

func (s *userState) seen(id string) bool {
	for _, n := range s.Notices {
		if n == id {
			return true
		}
	}
	s.Notices = append(s.Notices, id)
	if len(s.Notices) > maxSeenNotices {
		s.Notices = s.Notices[len(s.Notices)-maxSeenNotices:]
	}
	return false
}

// allowAlert applies the alert rate limit: at most max alert pushes in any window; the rest wait
// for one summary.
func (s *userState) allowAlert(now time.Time, window time.Duration, max int) bool {
	keep := s.AlertPushes[:0]
	for _, t := range s.AlertPushes {
		if now.Sub(t) < window {
			keep = append(keep, t)
		}
	}
	s.AlertPushes = keep
	if len(keep) >= max {
		return false
	}
	s.AlertPushes = append(s.AlertPushes, now)
	return true
}

// wateringFor returns the water command in flight for a pot (one whose time is not over).
func (s *userState) wateringFor(deviceID string, now time.Time) (watering, bool) {
	for _, w := range s.Watering {
		if w.DeviceID == deviceID && now.Before(w.Until) {
			return w, true
		}
	}
	return watering{}, false
}

// userCore is what a user grain decides over: the persisted state and the user's pots (read
// from the bindings on activation, kept true by BindingChanged and the grain's own binds).
type userCore struct {
	openID  string
	st      userState
	devices []Binding
}

func (c *userCore) clone() userCore {
	return userCore{openID: c.openID, st: c.st.clone(), devices: slices.Clone(c.devices)}
}

// setBinding applies a binding change: added (or its role updated) or removed.
func (c *userCore) setBinding(b Binding, bound bool) {
	for i, d := range c.devices {
		if d.DeviceID == b.DeviceID {
			if bound {
				if b.Role != "" {
					c.devices[i].Role = b.Role
				}
				return
			}
			c.devices = append(c.devices[:i:i], c.devices[i+1:]...)
			return
		}
	}
	if bound {
		c.devices = append(c.devices, b)
	}
}

// askKind is what a user grain asks a device grain for an intent.
type askKind int

const (
	askState  askKind = iota // GetState on the user's behalf
	askBind                  // BindDevice
	askUnbind                // UnbindDevice
)

// ask is one question to a device grain. The shell asks them all at once under one deadline.
type ask struct {
	device string
	kind   askKind
	via    string // askBind: "wechat_qr" or "sprout_qr"
}

// answer is what a device grain said to an ask: its state or bind result, or why there is none.
type answer struct {
	state *actorpb.DeviceState
	bind  *actorpb.BindResult
	err   error // errNoAnswer, or the taxonomy's errors (ErrUnavailable, ErrNotBound, ...)
}

// errNoAnswer is a device grain that did not answer within the deadline (its member is down or
// overloaded, its storage hangs). Like Akka's DeviceTimedOut: the user hears "not answering".
var errNoAnswer = errors.New("device did not answer in time")

// answerState reads a DeviceState reply into an answer.
func answerState(st *actorpb.DeviceState) answer {
	switch {
	case st == nil:
		return answer{err: ErrUnavailable}
	case st.Error != actorpb.ErrorCode_ERROR_CODE_UNSPECIFIED:
		return answer{err: ErrorOf(st.Error)}
	case st.Denied:
		return answer{err: ErrNotBound}
	case !st.Known:
		return answer{err: ErrUnknownDevice}
	}
	return answer{state: st}
}

// answerBind reads a BindResult into an answer (the typed code, or the older error string).
func answerBind(br *actorpb.BindResult) answer {
	if br == nil {
		return answer{err: ErrUnavailable}
	}
	err := ErrorOf(br.Code)
	if err == nil && br.Error != "" {
		switch br.Error {
		case "unknown_device":
			err = ErrUnknownDevice
		case "revoked":
			err = ErrRevoked
		default:
			err = ErrUnavailable
		}
	}
	if err == nil && !br.Ok {
		err = ErrUnavailable
	}
	return answer{bind: br, err: err}
}

// plan is what the device grains must be asked before in can be decided.
func plan(c *userCore, in intent, now time.Time) []ask {
	switch in.kind {
	case "bind_sprout":
		return []ask{{device: in.arg, kind: askBind, via: "sprout_qr"}}
	case "bind_wechat":
		return []ask{{device: in.arg, kind: askBind, via: "wechat_qr"}}
	case "unbind_wechat":
		return []ask{{device: in.arg, kind: askUnbind}}
	case "unbind":
		if id, _, ok := pickDevice(c.st.Lang, c.devices, in.arg); ok {
			return []ask{{device: id, kind: askUnbind}}
		}
	case "water":
		if id, _, ok := pickDevice(c.st.Lang, c.devices, in.arg); ok {
			if _, busy := c.st.wateringFor(id, now); !busy {
				return []ask{{device: id, kind: askState}}
			}
		}
	case "status":
		asks := make([]ask, len(c.devices))
		for i, d := range c.devices {
			asks[i] = ask{device: d.DeviceID, kind: askState}
		}
		return asks
	case "status_sub", "device_text":
		return []ask{{device: in.arg, kind: askState}}
	}
	return nil
}

// userEffects are what the shell does once the decided state is stored: commands to send, pushes to
// enqueue, and when to send the held alert summary.
type userEffects struct {
	commands  []deviceCommand
	pushes    []Push
	summaryAt time.Time // zero: no timer to arm
}

type deviceCommand struct {
	device string
	cmd    *actorpb.SendCommand
}

// decision is decide's result: the next core, the reply to the callback, and the effects.
type decision struct {
	next  userCore
	reply *actorpb.UserReply
	fx    userEffects
}

// decide answers one callback, given what the device grains answered to plan's asks (missing
// answers count as errNoAnswer). It is pure: no clock, no actors, no storage.
func decide(c *userCore, m *actorpb.UserMessage, in intent, ans map[string]answer, now time.Time, o *UserOptions) decision {
	d := decision{next: c.clone()}
	n := &d.next
	if m.MsgType == "text" {
		n.st.Lang = detectLang(m.Content, n.st.Lang)
	}
	get := func(id string) answer {
		if a, ok := ans[id]; ok {
			return a
		}
		return answer{err: errNoAnswer}
	}
	d.reply = n.act(m, in, get, now, o, &d.fx)
	n.st.remember(m.DedupKey, d.reply)
	return d
}

func (c *userCore) act(m *actorpb.UserMessage, in intent, get func(string) answer, now time.Time, o *UserOptions, fx *userEffects) *actorpb.UserReply {
	lang := c.st.Lang
	if r := c.waitingReply(in, now, o); r != nil { // no pot yet, a request to join waiting (user_join.go)
		return r
	}
	switch in.kind {
	case "bad_qr":
		return text(say(lang, "bind_bad_qr"))
	case "bind_sprout", "bind_wechat":
		return c.bound(in.arg, in.kind == "bind_sprout", get(in.arg), now, o, fx)
	case "unbind_wechat":
		c.st.unbindLater(in.arg, get(in.arg), now)
		c.unbound(in.arg, get(in.arg), now, fromWeChat(o), fx)
		return &actorpb.UserReply{}
	case "unbind":
		id, msg, ok := pickDevice(lang, c.devices, in.arg)
		if !ok {
			return text(msg)
		}
		if a := get(id); a.err != nil {
			return text(deviceErrorText(lang, id, a.err))
		}
		c.unbound(id, get(id), now, o, fx)
		return text(say(lang, "unbound", id))
	case "water":
		id, msg, ok := pickDevice(lang, c.devices, in.arg)
		if !ok {
			return text(msg)
		}
		return c.water(id, m.DedupKey, get(id), now, o, fx)
	case "status":
		if len(c.devices) == 0 {
			return text(say(lang, "no_devices"))
		}
		lines := make([]string, len(c.devices))
		for i, d := range c.devices {
			a := get(d.DeviceID)
			if a.err != nil {
				lines[i] = say(lang, "status_error", d.DeviceID, statusErrorText(lang, a.err))
				continue
			}
			lines[i] = statusText(lang, a.state)
		}
		return text(strings.Join(lines, "\n"))
	case "list":
		if len(c.devices) == 0 {
			return text(say(lang, "no_devices"))
		}
		return text(say(lang, "device_list", deviceList(lang, c.devices)))
	case "status_sub":
		a := get(in.arg)
		c.st.setStatusSub(m, a)
		return &actorpb.UserReply{Kind: actorpb.UserReply_KIND_DEVICE_STATUS, Connected: a.err == nil && a.state.Online}
	case "device_text":
		// Bytes from the device page: "status" asks for the state; anything else is answered with it.
		a := get(in.arg)
		if a.err != nil {
			return &actorpb.UserReply{Kind: actorpb.UserReply_KIND_DEVICE_TEXT, DeviceData: []byte(`{"error":"unavailable"}`)}
		}
		b, _ := protojson.Marshal(a.state)
		return &actorpb.UserReply{Kind: actorpb.UserReply_KIND_DEVICE_TEXT, DeviceData: b}
	case "help":
		return text(say(lang, "help"))
	}
	return &actorpb.UserReply{}
}

func (c *userCore) bound(deviceID string, sprout bool, a answer, now time.Time, o *UserOptions, fx *userEffects) *actorpb.UserReply {
	lang := c.st.Lang
	if !sprout {
		c.undoWeChatBind(deviceID, a, now, o, fx)
	}
	switch {
	case errors.Is(a.err, ErrUnknownDevice):
		return text(say(lang, "bind_unknown", deviceID))
	case errors.Is(a.err, ErrRevoked):
		return text(say(lang, "bind_revoked", deviceID))
	case a.err != nil:
		return text(deviceErrorText(lang, deviceID, a.err))
	case a.bind.Role == RolePending:
		return c.joinReply(deviceID, a.bind, now, o)
	}
	c.setBinding(Binding{DeviceID: deviceID, OpenID: c.openID, Role: a.bind.Role, BoundAt: now}, true)
	if a.bind.Already {
		return text(say(lang, "bound_already", deviceID))
	}
	if sprout && o.CompelBind {
		// Tell WeChat's device platform too, so the device shows in the user's WeChat device list.
		fx.pushes = append(fx.pushes, Push{ID: pushID("compel_bind", c.openID, deviceID), Kind: PushCompelBind,
			Payload: mustJSON(PushPayload{DeviceID: deviceID})})
	}
	if a.bind.Role == RoleOwner {
		return text(say(lang, "bound_owner", deviceID))
	}
	return text(say(lang, "bound_member", deviceID))
}

func (c *userCore) unbound(deviceID string, a answer, now time.Time, o *UserOptions, fx *userEffects) {
	if a.err != nil {
		return
	}
	c.setBinding(Binding{DeviceID: deviceID}, false)
	if o.CompelBind {
		fx.pushes = append(fx.pushes, Push{ID: pushID("compel_unbind", c.openID, deviceID, now.String()), Kind: PushCompelUnbind,
			Payload: mustJSON(PushPayload{DeviceID: deviceID})})
	}
}

// water decides a tap: a pot already watering for this user joins that command; an offline pot is
// answered at once; otherwise the command is sent, and remembered until it ends.
func (c *userCore) water(deviceID, dedupKey string, a answer, now time.Time, o *UserOptions, fx *userEffects) *actorpb.UserReply {
	lang := c.st.Lang
	if _, busy := c.st.wateringFor(deviceID, now); busy {
		return text(say(lang, "water_joined", deviceID))
	}
	switch {
	case a.err != nil:
		return text(deviceErrorText(lang, deviceID, a.err))
	case !a.state.Online:
		return text(say(lang, "water_offline", deviceID))
	}
	id := commandIDFor(c.openID, dedupKey)
	fx.commands = append(fx.commands, deviceCommand{device: deviceID, cmd: &actorpb.SendCommand{CommandId: id,
		Kind: devicepb.CommandKind_COMMAND_KIND_WATER, WaterMs: o.WaterMs, TimeoutMs: uint32(o.CommandTimeout / time.Millisecond),
		RequestedBy: WeChatRequester(c.openID)}})
	c.st.Watering = slices.DeleteFunc(c.st.Watering, func(w watering) bool { return !now.Before(w.Until) })
	c.st.Watering = append(c.st.Watering, watering{DeviceID: deviceID, CommandID: id,
		Until: now.Add(o.CommandTimeout + o.RequestTimeout)})
	return text(say(lang, "watering", deviceID))
}

// outcome pushes a command's outcome to the user who asked, and ends its watering.
func outcome(c *userCore, out *actorpb.CommandOutcome, now time.Time, o *UserOptions) (userCore, userEffects) {
	n := c.clone()
	n.st.Watering = slices.DeleteFunc(n.st.Watering, func(w watering) bool { return w.CommandID == out.CommandId })
	msg := outcomeText(n.st.Lang, out)
	at := out.AtMs
	if at == 0 {
		at = now.UnixMilli()
	}
	return n, userEffects{pushes: []Push{messagePush(n.openID, MsgCommandOutcome, pushID("outcome", n.openID, out.DeviceId, out.CommandId),
		out.DeviceId, msg, MessageFields{Pot: out.DeviceId, What: say(n.st.Lang, "op_water"), State: outcomeState(out.Outcome),
			Detail: msg, AtMs: at})}}
}

// outcomeState is the outcome as a short Chinese state word (a template's phrase).
func outcomeState(o actorpb.Outcome) string {
	switch o {
	case actorpb.Outcome_OUTCOME_DONE:
		return "成功"
	case actorpb.Outcome_OUTCOME_REJECTED, actorpb.Outcome_OUTCOME_NOT_BOUND:
		return "被拒绝"
	case actorpb.Outcome_OUTCOME_BUSY:
		return "忙碌"
	case actorpb.Outcome_OUTCOME_OFFLINE:
		return "离线"
	case actorpb.Outcome_OUTCOME_TIMED_OUT:
		return "超时"
	}
	return "失败"
}

// notice decides a device's alert or presence change: each notice is pushed at most once, and a
// storm across many devices becomes one summary.
func notice(c *userCore, nt *actorpb.UserNotice, now time.Time, o *UserOptions) (userCore, userEffects) {
	n := c.clone()
	var fx userEffects
	if n.st.seen(nt.NoticeId) {
		return n, fx
	}
	lang := n.st.Lang
	switch b := nt.Body.(type) {
	case *actorpb.UserNotice_Alert:
		a := b.Alert
		at := nt.AtMs
		if at == 0 {
			at = now.UnixMilli()
		}
		kind, f := MsgAlertCleared, MessageFields{Pot: nt.DeviceId, What: alertText(lang, a.Kind), State: "已恢复", AtMs: at,
			AlertKey: nt.DeviceId + "|" + a.Kind.String()}
		if a.Active {
			kind, f.State, f.Value = MsgAlertRaised, "告警", strconv.FormatFloat(float64(a.Value), 'f', 1, 64)
			f.Detail = say(lang, "alert_raised", nt.DeviceId, alertText(lang, a.Kind), a.Value, a.Threshold)
		} else {
			f.Detail = say(lang, "alert_cleared", nt.DeviceId, alertText(lang, a.Kind))
		}
		msg := f.Detail
		combined := ""
		if !a.Active {
			combined = say(lang, "alert_blip", nt.DeviceId, alertText(lang, a.Kind), a.Value)
		}
		if !n.st.allowAlert(now, o.AlertWindow, o.AlertBurst) {
			if len(n.st.Summary) == 0 {
				n.st.SummaryDue = now.Add(o.AlertWindow)
				fx.summaryAt = n.st.SummaryDue
			}
			n.st.Summary = append(n.st.Summary, msg)
			return n, fx
		}
		p := messagePush(n.openID, kind, pushID("notice", n.openID, nt.NoticeId), nt.DeviceId, msg, f)
		if combined != "" {
			p.Payload = mustJSON(PushPayload{MessageKind: kind, Text: msg, Combined: combined, Fields: &f, DeviceID: nt.DeviceId})
		}
		fx.pushes = append(fx.pushes, p)
	case *actorpb.UserNotice_Flapping:
		fl := b.Flapping
		mins := max((fl.UntilMs-now.UnixMilli()+59_999)/60_000, 1)
		msg := say(lang, "flapping", nt.DeviceId, fl.WindowS, fl.Connects, mins)
		fx.pushes = append(fx.pushes, messagePush(n.openID, MsgDeviceNotice, pushID("notice", n.openID, nt.NoticeId), nt.DeviceId, msg,
			MessageFields{Pot: nt.DeviceId, What: say(lang, "flapping_short"), State: "不稳定", Detail: msg, AtMs: now.UnixMilli()}))
	case *actorpb.UserNotice_JoinRequest, *actorpb.UserNotice_JoinResult:
		joinNotice(&n, nt, now, o, &fx)
	case *actorpb.UserNotice_Presence:
		if o.StatusPushes && n.st.subscribedStatus(nt.DeviceId) {
			fx.pushes = append(fx.pushes, Push{ID: pushID("status", n.openID, nt.NoticeId), Kind: PushStatus,
				Payload: mustJSON(PushPayload{DeviceID: nt.DeviceId, DeviceType: o.DeviceType, Connected: b.Presence.Online})})
		}
	}
	return n, fx
}

// flushSummary sends the held alert lines as one push once their window is over.
func flushSummary(c *userCore, now time.Time, o *UserOptions) (userCore, userEffects) {
	n := c.clone()
	if len(n.st.Summary) == 0 {
		return n, userEffects{}
	}
	if now.Before(n.st.SummaryDue) {
		return n, userEffects{summaryAt: n.st.SummaryDue} // an early timer (an older activation's)
	}
	lines := n.st.Summary
	msg := say(n.st.Lang, "alert_summary", len(lines), strings.Join(lines, "\n"))
	p := messagePush(n.openID, MsgAlertRaised, pushID("summary", n.openID, strings.Join(lines, "\n")), "", msg,
		MessageFields{Pot: say(n.st.Lang, "pots_n", len(lines)), What: say(n.st.Lang, "alerts_n", len(lines)), State: "告警",
			Detail: msg, AtMs: now.UnixMilli()})
	n.st.Summary, n.st.SummaryDue = nil, time.Time{}
	return n, userEffects{pushes: []Push{p}}
}

// messagePush is one message to a user: the pusher chooses its channel when it sends it (a
// customer-service text while the user's allowance lasts, else the kind's template), from the
// user's contact state then. Pushes about one pot (deviceID) reach the user in order.
func messagePush(openID, kind, id, deviceID, text string, f MessageFields) Push {
	key := ""
	if deviceID != "" {
		key = openID + "|" + deviceID
	}
	return Push{ID: id, Kind: PushMessage, OrderKey: key,
		Payload: mustJSON(PushPayload{MessageKind: kind, Text: text, Fields: &f, DeviceID: deviceID})}
}

// contactKind classifies a callback as the user's own action for WeChat's customer-service
// allowance (ContactMessage, ContactClick, ...), or "" when it opens no window: VIEW, template
// receipts, location reports, device status subscriptions, device binds (not confirmed by
// WeChat's public docs; taken conservatively) and anything else. Unsubscribe closes it.
func contactKind(m *actorpb.UserMessage) string {
	switch m.MsgType {
	case "text", "image", "voice", "video", "shortvideo", "location", "link":
		return ContactMessage
	case "event":
		switch m.Event {
		case "subscribe":
			return ContactSubscribe
		case "SCAN":
			return ContactScan
		case "CLICK":
			return ContactClick
		case "unsubscribe":
			return ContactUnsubscribe
		}
	}
	return ""
}

func text(t string) *actorpb.UserReply {
	return &actorpb.UserReply{Kind: actorpb.UserReply_KIND_TEXT, Text: t}
}
