package web

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"google.golang.org/protobuf/proto"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/edge/api"
	wxapi "github.com/sprout-iot/sprout/edge/wechat/api"
	"github.com/sprout-iot/sprout/edge/wechat/qr"
	"github.com/sprout-iot/sprout/messages/actorpb"
	"github.com/sprout-iot/sprout/messages/devicepb"
)

// JSConfig is what wx.config needs on one page: the official account's AppID and a signature
// over the jsapi_ticket, a nonce, a timestamp and the page's URL (without the #fragment):
// signature = sha1("jsapi_ticket=...&noncestr=...&timestamp=...&url=..."). The ticket comes from
// /cgi-bin/ticket/getticket?type=jsapi with the account's access token, lives 7200 s, and must be
// cached (it has a daily quota); the page's domain must be on the account's JS接口安全域名.
type JSConfig struct {
	AppID     string
	Timestamp int64
	NonceStr  string
	Signature string
}

// memberView is one bound user as the owner sees them: a masked OpenID and an opaque reference
// for the remove form, so the page never carries other users' OpenIDs.
type memberView struct {
	Ref    string
	Masked string
	Role   string
	Self   bool
}

// settingsView is the owner's threshold form, filled with the current values.
type settingsView struct {
	MoistureMin, TempMax, TankEmpty string
}

// inviteView is the owner's invite: the link and its QR code (a PNG data URI).
type inviteView struct {
	URL     string
	QR      template.URL
	Expires string
}

// confirmView is a "are you sure" step: one POST form.
type confirmView struct {
	Text   string
	Action string
	Fields map[string]string
	Button string
	Danger bool
}

// link is a follow-up link on a message page.
type link struct {
	Href, Text string
}

func isOwner(st *actorpb.DeviceState, openID string) bool {
	return len(st.Users) > 0 && st.Users[0] == openID
}

// memberRef names a user of a device on a page without revealing the OpenID.
func (h *Handler) memberRef(deviceID, openID string) string {
	return base64.RawURLEncoding.EncodeToString(h.mac("member", deviceID+"|"+openID))[:16]
}

// mask shows enough of an OpenID to tell family members apart and no more.
func mask(openID string) string {
	if len(openID) >= 10 {
		return openID[:4] + "****" + openID[len(openID)-3:]
	}
	if len(openID) > 2 {
		return openID[:2] + "****"
	}
	return "****"
}

func wantsJSON(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "application/json")
}

// reply answers a POST: JSON to the page's script, else a small page.
func (h *Handler) reply(w http.ResponseWriter, r *http.Request, status int, outcome, key string, links ...link) {
	msg := tr(langOf(r), key)
	if wantsJSON(r) {
		b, err := json.Marshal(commandResult{Outcome: outcome, Message: msg}) // before the status
		if err != nil {
			status, b = http.StatusInternalServerError, []byte(`{"outcome":"error"}`)
		}
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(status)
		_, _ = w.Write(append(b, '\n'))
		return
	}
	p := h.newPage(r, sessionFrom(r.Context()))
	p.Message, p.Status, p.Links = msg, status, links
	h.render(w, status, "message.html", p)
}

// boundState checks the user's binding (store, then grain) and returns the plant's state; on
// failure it has answered (404 for not bound, 503 with Retry-After for an unavailable grain).
func (h *Handler) boundState(w http.ResponseWriter, r *http.Request, openID, id string) (*actorpb.DeviceState, bool) {
	_, err := h.binding(r.Context(), openID, id)
	var st *actorpb.DeviceState
	if err == nil {
		st, err = h.state(r.Context(), openID, id)
	}
	if err != nil {
		h.problem(w, r, err)
		return nil, false
	}
	return st, true
}

// postGuard is the start of every state-changing POST: a bounded body and the CSRF token.
func (h *Handler) postGuard(w http.ResponseWriter, r *http.Request) (session, bool) {
	s := sessionFrom(r.Context())
	r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
	if !h.checkCSRF(r, s) {
		h.reply(w, r, http.StatusForbidden, "forbidden", "err_state")
		return s, false
	}
	return s, true
}

// fillManage adds the owner's sections (settings, family, invite) to a plant page.
func (h *Handler) fillManage(r *http.Request, p *page, s session, st *actorpb.DeviceState) {
	p.Device = st.DeviceId
	p.Owner = isOwner(st, s.OpenID)
	if !p.Owner {
		return
	}
	th := st.GetConfig().GetThresholds()
	if th == nil {
		th = actors.DefaultConfig().Thresholds
	}
	p.Settings = &settingsView{MoistureMin: num(th.SoilMoistureMinPct), TempMax: num(th.TemperatureMaxC), TankEmpty: num(th.TankEmptyPct)}
	for i, u := range st.Users {
		role := "member"
		if i == 0 {
			role = "owner"
		}
		p.Members = append(p.Members, memberView{Ref: h.memberRef(st.DeviceId, u), Masked: mask(u), Role: tr(p.Lang, role), Self: u == s.OpenID})
	}
}

func num(f float32) string { return strconv.FormatFloat(float64(f), 'f', -1, 32) }

// settings sets the owner's thresholds: SET_CONFIG with the rest of the current config unchanged.
func (h *Handler) settings(w http.ResponseWriter, r *http.Request) {
	s, ok := h.postGuard(w, r)
	if !ok {
		return
	}
	id := chi.URLParam(r, "id")
	st, ok := h.boundState(w, r, s.OpenID, id)
	if !ok {
		return
	}
	if !isOwner(st, s.OpenID) {
		h.reply(w, r, http.StatusForbidden, "forbidden", "owner_only")
		return
	}
	cfg := actors.DefaultConfig()
	if st.Config != nil {
		cfg = proto.Clone(st.Config).(*devicepb.Config)
	}
	if cfg.Thresholds == nil {
		cfg.Thresholds = actors.DefaultConfig().Thresholds
	}
	moist, ok1 := formFloat(r, "moisture_min", 0, 100)
	temp, ok2 := formFloat(r, "temp_max", -20, 80)
	tank, ok3 := formFloat(r, "tank_empty", 0, 100)
	if !ok1 || !ok2 || !ok3 {
		h.reply(w, r, http.StatusBadRequest, "invalid", "settings_invalid")
		return
	}
	cfg.Thresholds.SoilMoistureMinPct, cfg.Thresholds.TemperatureMaxC, cfg.Thresholds.TankEmptyPct = moist, temp, tank
	if err := actors.ValidateConfig(cfg); err != nil {
		h.opts.Logger.Info("web: config refused", "device", id, "err", err)
		h.reply(w, r, http.StatusBadRequest, "invalid", "settings_invalid")
		return
	}
	if !h.allowCommand(s.OpenID) {
		w.Header().Set("Retry-After", fmt.Sprint(int(h.opts.CommandInterval/time.Second)+1))
		h.reply(w, r, http.StatusTooManyRequests, "rate_limited", "too_many")
		return
	}
	cmd := &actorpb.SendCommand{CommandId: api.NewCommandID(), Kind: devicepb.CommandKind_COMMAND_KIND_SET_CONFIG,
		Config: cfg, TimeoutMs: uint32(h.opts.CommandTimeout / time.Millisecond), RequestedBy: actors.WeChatRequester(s.OpenID)}
	ctx, cancel := context.WithTimeout(r.Context(), h.opts.CommandTimeout+h.opts.GrainTimeout)
	defer cancel()
	out, err := h.devices.Command(ctx, id, cmd)
	if err != nil { // no outcome, or refused by the grain (not bound, revoked, unavailable, ...)
		h.problem(w, r, err)
		return
	}
	name := api.OutcomeName(out.Outcome)
	switch out.Outcome {
	case actorpb.Outcome_OUTCOME_DONE:
		h.reply(w, r, http.StatusOK, name, "settings_done", link{"/app/plants/" + id, tr(langOf(r), "back")})
	case actorpb.Outcome_OUTCOME_OFFLINE:
		h.reply(w, r, http.StatusOK, name, "settings_offline")
	case actorpb.Outcome_OUTCOME_TIMED_OUT, actorpb.Outcome_OUTCOME_BUSY:
		h.reply(w, r, http.StatusOK, name, name)
	default:
		h.reply(w, r, http.StatusOK, name, "settings_failed")
	}
}

func formFloat(r *http.Request, name string, lo, hi float64) (float32, bool) {
	f, err := strconv.ParseFloat(strings.TrimSpace(r.PostFormValue(name)), 32)
	if err != nil || math.IsNaN(f) || f < lo || f > hi {
		return 0, false
	}
	return float32(f), true
}

// unbindGrain removes openID from the device through its grain (the grain updates the store).
func (h *Handler) unbindGrain(ctx context.Context, id, openID string) error {
	ctx, cancel := context.WithTimeout(ctx, h.opts.GrainTimeout)
	defer cancel()
	return h.devices.Unbind(ctx, id, openID)
}

// unbindConfirm is the confirm step before leaving a plant.
func (h *Handler) unbindConfirm(w http.ResponseWriter, r *http.Request) {
	s := sessionFrom(r.Context())
	id := chi.URLParam(r, "id")
	if _, ok := h.boundState(w, r, s.OpenID, id); !ok {
		return
	}
	p := h.newPage(r, s)
	p.Device = id
	p.Confirm = &confirmView{Text: fmt.Sprintf(tr(p.Lang, "unbind_confirm"), id), Action: "/app/plants/" + id + "/unbind" + p.Q,
		Button: tr(p.Lang, "unbind"), Danger: true}
	h.render(w, http.StatusOK, "confirm.html", p)
}

// unbind removes the signed-in user's own binding.
func (h *Handler) unbind(w http.ResponseWriter, r *http.Request) {
	s, ok := h.postGuard(w, r)
	if !ok {
		return
	}
	id := chi.URLParam(r, "id")
	if _, err := h.binding(r.Context(), s.OpenID, id); err != nil {
		h.problem(w, r, err)
		return
	}
	if err := h.unbindGrain(r.Context(), id, s.OpenID); err != nil {
		h.opts.Logger.Warn("web: unbinding", "device", id, "err", err)
		h.problem(w, r, err)
		return
	}
	if wantsJSON(r) {
		h.reply(w, r, http.StatusOK, "done", "unbound")
		return
	}
	http.Redirect(w, r, "/app/"+h.newPage(r, s).Q, http.StatusSeeOther)
}

// removeMember is the owner removing a family member (form field "member" = the member's ref).
func (h *Handler) removeMember(w http.ResponseWriter, r *http.Request) {
	s, ok := h.postGuard(w, r)
	if !ok {
		return
	}
	id := chi.URLParam(r, "id")
	st, ok := h.boundState(w, r, s.OpenID, id)
	if !ok {
		return
	}
	if !isOwner(st, s.OpenID) {
		h.reply(w, r, http.StatusForbidden, "forbidden", "owner_only")
		return
	}
	ref := r.PostFormValue("member")
	target := ""
	for _, u := range st.Users[1:] {
		if u != s.OpenID && h.memberRef(id, u) == ref {
			target = u
		}
	}
	if target == "" {
		h.reply(w, r, http.StatusNotFound, "not_found", "no_member")
		return
	}
	if err := h.unbindGrain(r.Context(), id, target); err != nil {
		h.opts.Logger.Warn("web: removing member", "device", id, "err", err)
		h.problem(w, r, err)
		return
	}
	if wantsJSON(r) {
		h.reply(w, r, http.StatusOK, "done", "member_removed")
		return
	}
	http.Redirect(w, r, "/app/plants/"+id+h.newPage(r, s).Q, http.StatusSeeOther)
}

// Invites: "device|owner-ref|expiry-unix", signed for the purpose "invite" with the cookie key.
// The owner-ref ties the invite to the owner who made it: when they leave, their invites die.

func (h *Handler) inviteToken(deviceID, ownerOpenID string, exp time.Time) string {
	return h.sign("invite", deviceID+"|"+h.memberRef(deviceID, ownerOpenID)+"|"+strconv.FormatInt(exp.Unix(), 10))
}

var errBadInvite = errors.New("bad or expired invite")

// checkInvite verifies an invite and that its maker is still the plant's owner; it returns the
// device id, or errBadInvite, or the grain's error when it could not tell (unavailable).
func (h *Handler) checkInvite(ctx context.Context, tok string) (string, error) {
	payload, ok := h.verify("invite", tok)
	parts := strings.Split(payload, "|")
	if !ok || len(parts) != 3 || parts[0] == "" {
		return "", errBadInvite
	}
	sec, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil || !h.opts.Now().Before(time.Unix(sec, 0)) {
		return "", errBadInvite
	}
	// The joiner is not bound yet: read the state without a user (the grain's unchecked form).
	ctx, cancel := context.WithTimeout(ctx, h.opts.GrainTimeout)
	defer cancel()
	st, err := h.devices.State(ctx, parts[0])
	switch {
	case errors.Is(err, actors.ErrUnknownDevice):
		return "", errBadInvite
	case err != nil:
		return "", err
	case st.Revoked || len(st.Users) == 0 || h.memberRef(parts[0], st.Users[0]) != parts[1]:
		return "", errBadInvite
	}
	return parts[0], nil
}

// invite shows the owner an invite link and its QR code.
func (h *Handler) invite(w http.ResponseWriter, r *http.Request) {
	s := sessionFrom(r.Context())
	id := chi.URLParam(r, "id")
	st, ok := h.boundState(w, r, s.OpenID, id)
	if !ok {
		return
	}
	p := h.newPage(r, s)
	if !isOwner(st, s.OpenID) {
		h.errorPage(w, r, http.StatusForbidden, tr(p.Lang, "owner_only"))
		return
	}
	exp := h.opts.Now().Add(h.opts.InviteTTL)
	u := h.publicURL(r) + "/app/join?t=" + url.QueryEscape(h.inviteToken(id, s.OpenID, exp))
	iv := &inviteView{URL: u, Expires: exp.In(chinaTime).Format("01-02 15:04")}
	if png, err := qr.PNG(u, 256); err == nil {
		iv.QR = template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(png))
	}
	p.Device, p.Invite = id, iv
	h.render(w, http.StatusOK, "invite.html", p)
}

// joinConfirm is what an invite link opens: a confirm step (a GET never binds).
func (h *Handler) joinConfirm(w http.ResponseWriter, r *http.Request) {
	s := sessionFrom(r.Context())
	p := h.newPage(r, s)
	tok := r.URL.Query().Get("t")
	id, err := h.checkInvite(r.Context(), tok)
	switch {
	case errors.Is(err, errBadInvite):
		h.errorPage(w, r, http.StatusBadRequest, tr(p.Lang, "bad_invite"))
		return
	case err != nil:
		h.problem(w, r, err)
		return
	}
	if _, err := h.binding(r.Context(), s.OpenID, id); err == nil {
		http.Redirect(w, r, "/app/plants/"+id+p.Q, http.StatusSeeOther)
		return
	}
	p.Device = id
	p.Confirm = &confirmView{Text: fmt.Sprintf(tr(p.Lang, "join_confirm"), id), Action: "/app/join" + p.Q,
		Fields: map[string]string{"t": tok}, Button: tr(p.Lang, "join")}
	h.render(w, http.StatusOK, "confirm.html", p)
}

// join binds the signed-in user to the invite's plant as a member.
func (h *Handler) join(w http.ResponseWriter, r *http.Request) {
	s, ok := h.postGuard(w, r)
	if !ok {
		return
	}
	id, err := h.checkInvite(r.Context(), r.PostFormValue("t"))
	switch {
	case errors.Is(err, errBadInvite):
		h.reply(w, r, http.StatusBadRequest, "invalid", "bad_invite")
		return
	case err != nil:
		h.problem(w, r, err)
		return
	}
	h.bindTo(w, r, s, id, "invite")
}

// bindTo binds the user to a device through its grain and answers.
func (h *Handler) bindTo(w http.ResponseWriter, r *http.Request, s session, id, via string) {
	ctx, cancel := context.WithTimeout(r.Context(), h.opts.GrainTimeout)
	defer cancel()
	br, err := h.devices.Bind(ctx, id, s.OpenID, via)
	lang := langOf(r)
	q := h.newPage(r, s).Q
	plant := link{"/app/plants/" + id + q, tr(lang, "open_plant")}
	switch {
	case errors.Is(err, actors.ErrUnknownDevice):
		h.reply(w, r, http.StatusNotFound, "not_found", "bind_unknown")
	case errors.Is(err, actors.ErrRevoked):
		api.ProblemOf(err).Header(w)
		h.reply(w, r, http.StatusConflict, "revoked", "bind_unknown")
	case err != nil:
		h.opts.Logger.Warn("web: binding", "device", id, "err", err)
		h.problem(w, r, err)
	case br.Already:
		h.reply(w, r, http.StatusOK, "already", "bind_already", plant)
	default:
		h.reply(w, r, http.StatusOK, "bound", "bind_done", plant, link{"/app/wifi" + q, tr(lang, "wifi_setup")})
	}
}

// inWeChat reports whether the page is open in WeChat's browser.
func inWeChat(r *http.Request) bool {
	return strings.Contains(r.UserAgent(), "MicroMessenger")
}

// jsConfig asks Options.JSSDK for this page's wx.config, inside WeChat only.
func (h *Handler) jsConfig(r *http.Request) *JSConfig {
	if h.opts.JSSDK == nil || !inWeChat(r) {
		return nil
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	c, err := h.opts.JSSDK(ctx, h.publicURL(r)+r.URL.RequestURI())
	if err != nil {
		h.opts.Logger.Warn("web: JS-SDK config", "err", err)
		return nil
	}
	return c
}

// bindForm is "bind a plant": type the code printed on the pot, or scan it inside WeChat.
func (h *Handler) bindForm(w http.ResponseWriter, r *http.Request) {
	s := sessionFrom(r.Context())
	p := h.newPage(r, s)
	p.CanBind = h.opts.VerifyScene != nil
	p.Code = r.URL.Query().Get(qr.URLParam)
	if p.CanBind {
		p.JSSDK = h.jsConfig(r)
	}
	p.JSScript = h.opts.JSSDKScript
	h.render(w, http.StatusOK, "bind.html", p)
}

// bindCode binds the user to the pot named by a Sprout QR code (any form qr.Extract accepts).
func (h *Handler) bindCode(w http.ResponseWriter, r *http.Request) {
	s, ok := h.postGuard(w, r)
	if !ok {
		return
	}
	if h.opts.VerifyScene == nil {
		h.reply(w, r, http.StatusServiceUnavailable, "unavailable", "unavailable")
		return
	}
	code := strings.TrimSpace(r.PostFormValue("code"))
	if wxapi.IsDeviceQR(code) && h.opts.VerifyDeviceQR != nil { // WeChat's device QR: WeChat names the device
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		defer cancel()
		id, err := h.opts.VerifyDeviceQR(ctx, code)
		if err != nil || id == "" {
			h.opts.Logger.Info("web: device QR not verified", "err", err)
			h.reply(w, r, http.StatusBadRequest, "invalid", "bad_code")
			return
		}
		h.bindTo(w, r, s, id, "device_qr")
		return
	}
	id, err := h.opts.VerifyScene(code)
	if code == "" || err != nil || id == "" {
		h.reply(w, r, http.StatusBadRequest, "invalid", "bad_code")
		return
	}
	h.bindTo(w, r, s, id, "sprout_qr")
}

// wifi is the WiFi setup step: WeChat's configWXDeviceWiFi inside WeChat (when the JS-SDK is
// configured), AirKiss / ESP-TOUCH instructions elsewhere.
func (h *Handler) wifi(w http.ResponseWriter, r *http.Request) {
	s := sessionFrom(r.Context())
	p := h.newPage(r, s)
	p.JSSDK = h.jsConfig(r)
	p.JSScript = h.opts.JSSDKScript
	h.render(w, http.StatusOK, "wifi.html", p)
}
