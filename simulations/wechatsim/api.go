package wechatsim

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// WeChat's error messages for the codes the simulator produces.
var errmsgs = map[int]string{
	-1:    "system error",
	40001: "invalid credential, access_token is invalid or not latest",
	40003: "invalid openid",
	40013: "invalid appid",
	40029: "invalid code",
	40037: "invalid template_id",
	40097: "invalid args",
	40125: "invalid appsecret",
	40163: "code been used",
	41001: "access_token missing",
	42001: "access_token expired",
	43004: "require subscribe",
	47003: "argument invalid!",
	48001: "api unauthorized",
	40164: "invalid ip, not in whitelist",
	45009: "reach max api daily quota limit",
	45011: "api minute-quota reach limit",
	45015: "response out of time limit or subscription is canceled",
	45047: "out of response count limit",
	47001: "data format error",
}

// Handler serves the simulated API and the /_sim pages.
func (p *Platform) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/cgi-bin/token", p.handleToken)
	mux.HandleFunc("/cgi-bin/stable_token", p.handleStableToken)
	mux.HandleFunc("/cgi-bin/message/template/send", p.api(p.templateSend))
	mux.HandleFunc("/cgi-bin/message/custom/send", p.api(p.customSend))
	mux.HandleFunc("/cgi-bin/template/get_all_private_template", p.api(p.listTemplates))
	mux.HandleFunc("/cgi-bin/qrcode/create", p.api(p.qrcodeCreate))
	mux.HandleFunc("/cgi-bin/ticket/getticket", p.api(p.getTicket))
	mux.HandleFunc("/device/transmsg", p.api(p.transmsg))
	mux.HandleFunc("/device/getqrcode", p.api(p.getQRCode))
	mux.HandleFunc("/device/authorize_device", p.api(p.authorizeDevice))
	mux.HandleFunc("/device/compel_bind", p.api(p.compelBind(true)))
	mux.HandleFunc("/device/compel_unbind", p.api(p.compelBind(false)))
	mux.HandleFunc("/device/get_stat", p.api(p.getStat))
	mux.HandleFunc("/device/get_openid", p.api(p.getOpenID))
	mux.HandleFunc("/device/get_bind_device", p.api(p.getBindDevice))
	mux.HandleFunc("/device/verify_qrcode", p.api(p.verifyQRCode))
	mux.HandleFunc("/sns/oauth2/access_token", p.handleOAuthToken)
	mux.HandleFunc("/connect/oauth2/authorize", p.handleAuthorize)
	mux.HandleFunc("GET /_sim/conversations", p.handleDump)
	mux.HandleFunc("GET /_sim/conversations/{openid}", p.handleDump)
	mux.HandleFunc("GET /_sim/{$}", p.handleIndex)
	mux.HandleFunc("GET /_sim/chat", p.handleChatIndex)
	mux.HandleFunc("GET /_sim/chat/{openid}", p.handleChat)
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json; encoding=utf-8")
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}

func errBody(code int) map[string]any {
	return map[string]any{"errcode": code, "errmsg": errmsgs[code]}
}

func ok(extra map[string]any) map[string]any {
	m := map[string]any{"errcode": 0, "errmsg": "ok"}
	for k, v := range extra {
		m[k] = v
	}
	return m
}

// apiFunc handles one API call whose access token has been checked. body is the raw request body.
type apiFunc func(r *http.Request, body []byte) any

// api wraps an endpoint with what every WeChat API does first: count the call, check the
// access_token (41001 missing, 42001 expired, 40001 unknown or replaced), then any injected failure.
func (p *Platform) api(f apiFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.calls[r.URL.Path]++
		code := p.checkToken(r.URL.Query().Get("access_token"))
		if code == 0 {
			code = p.injected(r.URL.Path)
		}
		p.mu.Unlock()
		var body []byte
		if r.Body != nil {
			body, _ = readAll(r)
		}
		if code != 0 {
			if code != 41001 && code != 40001 && code != 42001 {
				p.refusedFromBody(r.URL.Path, body, code, "")
			}
			writeJSON(w, errBody(code))
			return
		}
		out := f(r, body)
		if a, ok := out.(withAfter); ok {
			writeJSON(w, a.body)
			if fl, ok := w.(http.Flusher); ok {
				fl.Flush()
			}
			a.after()
			return
		}
		writeJSON(w, out)
	}
}

// withAfter is an answer with work to start once the answer is written (a template's receipt is
// posted after Sprout has its msgid).
type withAfter struct {
	body  any
	after func()
}

// refusedFromBody records an injected failure of a send in the addressee's conversation.
func (p *Platform) refusedFromBody(path string, body []byte, code int, msg string) {
	var req struct {
		ToUser     string                   `json:"touser"`
		TemplateID string                   `json:"template_id"`
		URL        string                   `json:"url"`
		Data       map[string]TemplateValue `json:"data"`
		Text       struct {
			Content string `json:"content"`
		} `json:"text"`
	}
	var kind string
	switch path {
	case "/cgi-bin/message/custom/send":
		kind = KindCustomText
	case "/cgi-bin/message/template/send":
		kind = KindTemplate
	default:
		return
	}
	if json.Unmarshal(body, &req) != nil || req.ToUser == "" {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refused(req.ToUser, kind, code, msg, req.Text.Content, req.TemplateID, req.URL, req.Data)
}

// refused records a refused send. Must be called with p.mu held.
func (p *Platform) refused(openID, kind string, code int, msg, text, templateID, u string, data map[string]TemplateValue) {
	if msg == "" {
		msg = errmsgs[code]
	}
	e := Entry{OpenID: openID, Direction: Out, Kind: KindRefused, Attempted: kind, Errcode: code, Errmsg: msg,
		Text: text, TemplateID: templateID, URL: u, Data: data}
	if t := p.templates[templateID]; t != nil {
		e.Title, e.Fields = t.Title, t.render(data)
	}
	p.record(e)
}

func readAll(r *http.Request) ([]byte, error) { return io.ReadAll(io.LimitReader(r.Body, 1<<20)) }

// checkToken must be called with p.mu held.
func (p *Platform) checkToken(tok string) int {
	if tok == "" {
		return 41001
	}
	exp, ok := p.tokens[tok]
	if !ok {
		return 40001
	}
	if !p.now().Before(exp) {
		return 42001
	}
	return 0
}

// injected must be called with p.mu held.
func (p *Platform) injected(path string) int {
	for i := range p.failures {
		f := &p.failures[i]
		if f.left > 0 && (f.path == path || f.path == "" && !strings.HasPrefix(path, "/cgi-bin/token") && path != "/cgi-bin/stable_token") {
			f.left--
			return f.errcode
		}
	}
	return 0
}

func (p *Platform) checkApp(appid, secret string) int {
	if appid != p.opts.AppID {
		return 40013
	}
	if secret != p.opts.Secret {
		return 40125
	}
	return 0
}

func (p *Platform) handleToken(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls[r.URL.Path]++
	if code := p.checkApp(q.Get("appid"), q.Get("secret")); code != 0 {
		writeJSON(w, errBody(code))
		return
	}
	if code := p.injected(r.URL.Path); code != 0 {
		writeJSON(w, errBody(code))
		return
	}
	// A new token replaces the previous one at once (WeChat keeps the old one valid for a few
	// minutes; the simulator is stricter so that a second token holder shows up in tests).
	delete(p.tokens, p.current)
	p.current = "ACCESS_" + randHex(16)
	p.tokens[p.current] = p.now().Add(p.opts.TokenTTL)
	p.fetches++
	writeJSON(w, map[string]any{"access_token": p.current, "expires_in": int(p.opts.TokenTTL / time.Second)})
}

func (p *Platform) handleStableToken(w http.ResponseWriter, r *http.Request) {
	var req struct {
		GrantType    string `json:"grant_type"`
		AppID        string `json:"appid"`
		Secret       string `json:"secret"`
		ForceRefresh bool   `json:"force_refresh"`
	}
	body, _ := readAll(r)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls[r.URL.Path]++
	if err := json.Unmarshal(body, &req); err != nil || req.GrantType != "client_credential" {
		writeJSON(w, errBody(47001))
		return
	}
	if code := p.checkApp(req.AppID, req.Secret); code != 0 {
		writeJSON(w, errBody(code))
		return
	}
	if code := p.injected(r.URL.Path); code != 0 {
		writeJSON(w, errBody(code))
		return
	}
	now := p.now()
	if exp, ok := p.tokens[p.stable]; req.ForceRefresh || !ok || !now.Before(exp) {
		delete(p.tokens, p.stable)
		p.stable = "STABLE_" + randHex(16)
		p.tokens[p.stable] = now.Add(p.opts.TokenTTL)
	}
	p.stableFetch++
	writeJSON(w, map[string]any{"access_token": p.stable, "expires_in": int(p.tokens[p.stable].Sub(now) / time.Second)})
}

// userFor returns the state of a known user, or nil. Must be called with p.mu held.
func (p *Platform) userFor(openID string) *userState { return p.users[openID] }

// TemplateValue is one keyword of a template message.
type TemplateValue struct {
	Value string `json:"value"`
	Color string `json:"color,omitempty"`
}

func (p *Platform) listTemplates(r *http.Request, _ []byte) any {
	list := make([]Template, 0, len(p.opts.Templates))
	list = append(list, p.opts.Templates...)
	return map[string]any{"template_list": list}
}

func (p *Platform) templateSend(r *http.Request, body []byte) any {
	var req struct {
		ToUser      string                   `json:"touser"`
		TemplateID  string                   `json:"template_id"`
		URL         string                   `json:"url"`
		ClientMsgID string                   `json:"client_msg_id"`
		Data        map[string]TemplateValue `json:"data"`
	}
	if json.Unmarshal(body, &req) != nil || req.ToUser == "" {
		return errBody(47001)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	refuse := func(code int, msg string) any {
		p.refused(req.ToUser, KindTemplate, code, msg, "", req.TemplateID, req.URL, req.Data)
		if msg == "" {
			return errBody(code)
		}
		return map[string]any{"errcode": code, "errmsg": msg}
	}
	t := p.templates[req.TemplateID]
	u := p.userFor(req.ToUser)
	switch {
	case t == nil:
		return refuse(40037, "")
	case u == nil:
		return refuse(40003, "")
	case !u.subscribed:
		return refuse(43004, "")
	}
	if req.URL != "" {
		pu, err := url.Parse(req.URL)
		if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			return refuse(47003, "argument invalid! url must be an http or https URL")
		}
	}
	if why := validateData(*t, req.Data); why != "" {
		return refuse(47003, why)
	}
	if req.ClientMsgID != "" {
		// The same client_msg_id is sent once; a repeat gets the first msgid and no second message.
		if id, seen := p.templateIDs[req.ToUser+"|"+req.ClientMsgID]; seen {
			return ok(map[string]any{"msgid": id})
		}
	}
	if day := p.now().Format("2006-01-02"); day != p.templateDay {
		p.templateDay, p.templateCount = day, 0
	}
	if p.templateCount >= p.opts.TemplateDailyQuota {
		return refuse(45009, "")
	}
	p.templateCount++
	id := p.nextSeq()
	if req.ClientMsgID != "" {
		p.templateIDs[req.ToUser+"|"+req.ClientMsgID] = id
	}
	status := u.blockStatus
	if status == "" {
		status = DeliverySuccess
	}
	p.record(Entry{OpenID: req.ToUser, Direction: Out, Kind: KindTemplate, TemplateID: req.TemplateID,
		Title: t.Title, Fields: t.render(req.Data), URL: req.URL, Data: req.Data, ClientMsgID: req.ClientMsgID,
		MsgID: id, Delivery: status})
	j := p.queueReceipt(req.ToUser, id, status)
	return withAfter{body: ok(map[string]any{"msgid": id}), after: func() { close(j.ready) }}
}

func (p *Platform) customSend(r *http.Request, body []byte) any {
	var req struct {
		ToUser  string `json:"touser"`
		MsgType string `json:"msgtype"`
		Text    struct {
			Content string `json:"content"`
		} `json:"text"`
	}
	if json.Unmarshal(body, &req) != nil || req.ToUser == "" {
		return errBody(47001)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if req.MsgType != "text" || req.Text.Content == "" {
		// The simulator's users only read text; other kinds (news, image, ...) are not simulated.
		p.refused(req.ToUser, KindCustomText, 47001, "", req.Text.Content, "", "", nil)
		return errBody(47001)
	}
	if code := p.csAllowed(p.userFor(req.ToUser)); code != 0 {
		p.refused(req.ToUser, KindCustomText, code, "", req.Text.Content, "", "", nil)
		return errBody(code)
	}
	p.record(Entry{OpenID: req.ToUser, Direction: Out, Kind: KindCustomText, Text: req.Text.Content})
	return ok(nil)
}

// qrcodeCreate makes a parametric QR code. QR_SCENE/QR_STR_SCENE are temporary (expire_seconds,
// default 30 s, at most 30 days); QR_LIMIT_SCENE/QR_LIMIT_STR_SCENE are permanent. The code's
// content is url; only codes made here scan as subscribe/SCAN events.
func (p *Platform) qrcodeCreate(r *http.Request, body []byte) any {
	var req struct {
		ExpireSeconds int    `json:"expire_seconds"`
		ActionName    string `json:"action_name"`
		ActionInfo    struct {
			Scene struct {
				SceneStr string `json:"scene_str"`
				SceneID  int64  `json:"scene_id"`
			} `json:"scene"`
		} `json:"action_info"`
	}
	if json.Unmarshal(body, &req) != nil {
		return errBody(47001)
	}
	var scene string
	switch req.ActionName {
	case "QR_SCENE", "QR_LIMIT_SCENE":
		id := req.ActionInfo.Scene.SceneID
		if id <= 0 || (req.ActionName == "QR_LIMIT_SCENE" && id > 100000) {
			return errBody(40097)
		}
		scene = strconv.FormatInt(id, 10)
	case "QR_STR_SCENE", "QR_LIMIT_STR_SCENE":
		scene = req.ActionInfo.Scene.SceneStr
		if scene == "" || len(scene) > 64 {
			return errBody(40097)
		}
	default:
		return errBody(40097)
	}
	permanent := strings.HasPrefix(req.ActionName, "QR_LIMIT")
	exp := req.ExpireSeconds
	if exp <= 0 {
		exp = 30
	}
	if exp > 2592000 {
		exp = 2592000
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	q := &paramQR{scene: scene, ticket: "gQ" + randHex(20), code: randHex(11)}
	if !permanent {
		q.expires = p.now().Add(time.Duration(exp) * time.Second)
	}
	p.qrByCode[q.code] = q
	p.qrByScene[scene] = q
	out := map[string]any{"ticket": q.ticket, "url": "http://weixin.qq.com/q/" + q.code}
	if !permanent {
		out["expire_seconds"] = exp
	}
	return out
}

func (p *Platform) transmsg(r *http.Request, body []byte) any {
	var req struct {
		DeviceType   string `json:"device_type"`
		DeviceID     string `json:"device_id"`
		OpenID       string `json:"open_id"`
		Content      string `json:"content"`
		MsgType      string `json:"msg_type"`
		DeviceStatus string `json:"device_status"`
	}
	if json.Unmarshal(body, &req) != nil || req.DeviceID == "" || req.OpenID == "" {
		return errBody(47001)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	u := p.userFor(req.OpenID)
	if u == nil {
		return errBody(40003)
	}
	if req.MsgType == "2" {
		if !u.statusSubs[req.DeviceID] {
			return map[string]any{"ret": -1, "ret_info": "get subscribe cache fail"}
		}
		p.record(Entry{OpenID: req.OpenID, Direction: Out, Kind: KindDeviceStatus, DeviceType: req.DeviceType,
			DeviceID: req.DeviceID, DeviceStatus: req.DeviceStatus})
		return map[string]any{"ret": 0, "ret_info": "this is ok"}
	}
	data, err := base64.StdEncoding.DecodeString(req.Content)
	if err != nil {
		return errBody(47001)
	}
	// Not checked (WeChat's behaviour is undocumented): that the user is bound to the device.
	p.record(Entry{OpenID: req.OpenID, Direction: Out, Kind: KindTransMsg, DeviceType: req.DeviceType,
		DeviceID: req.DeviceID, Payload: data})
	return map[string]any{"ret": 0, "ret_info": "this is ok"}
}

// getTicket hands out the JS-SDK ticket (type=jsapi); like WeChat it returns the same ticket
// until it expires.
func (p *Platform) getTicket(r *http.Request, _ []byte) any {
	if r.URL.Query().Get("type") != "jsapi" {
		return errBody(40097) // invalid args
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.jsTicket == "" || !p.now().Before(p.jsTicketExp) {
		p.jsTicket = "sim_jsapi_" + randHex(16)
		p.jsTicketExp = p.now().Add(p.opts.TokenTTL)
		p.jsTicketFetches++
	}
	return ok(map[string]any{"ticket": p.jsTicket, "expires_in": int(p.jsTicketExp.Sub(p.now()) / time.Second)})
}

// JSTicket is the JS-SDK ticket the platform last issued, for tests that check wx.config
// signatures, and how many were issued.
func (p *Platform) JSTicket() (string, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.jsTicket, p.jsTicketFetches
}

func (p *Platform) getQRCode(r *http.Request, body []byte) any {
	product := r.URL.Query().Get("product_id")
	if product == "" {
		product = "1"
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	d := &device{id: fmt.Sprintf("%s_%s", p.opts.AccountID, randHex(8)), productID: product, bound: map[string]bool{},
		mac: strings.ToUpper(randHex(6))}
	d.ticket = "http://we.qq.com/d/" + "AQ" + randHex(16)
	p.devices[d.id] = d
	p.deviceQR[d.ticket] = d.id
	out := map[string]any{"deviceid": d.id, "qrticket": d.ticket, "devicelicence": strings.ToUpper(randHex(32))}
	if p.opts.GetQRCodeRespMsg {
		out["resp_msg"] = map[string]any{"ret_code": 0, "error_info": "ok"}
	} else {
		out["base_resp"] = map[string]any{"errcode": 0, "errmsg": "ok"}
	}
	return out
}

func (p *Platform) authorizeDevice(r *http.Request, body []byte) any {
	var req struct {
		DeviceNum  string `json:"device_num"`
		DeviceList []struct {
			ID         string `json:"id"`
			MAC        string `json:"mac"`
			SerMacPos  string `json:"ser_mac_pos"`
			ManuMacPos string `json:"manu_mac_pos"`
		} `json:"device_list"`
		OpType    string `json:"op_type"`
		ProductID string `json:"product_id"`
	}
	if json.Unmarshal(body, &req) != nil || len(req.DeviceList) == 0 ||
		req.DeviceNum != strconv.Itoa(len(req.DeviceList)) {
		return errBody(47001)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	var resp []any
	for _, dv := range req.DeviceList {
		// The SDK bug this catches: ser_mac_pos misspelled as ser_mac_post arrives as "" here.
		if dv.ID == "" || dv.SerMacPos == "" || dv.ManuMacPos == "" {
			return errBody(47001)
		}
		d := p.devices[dv.ID]
		if d == nil {
			d = &device{id: dv.ID, bound: map[string]bool{}}
			p.devices[dv.ID] = d
		}
		d.authorized, d.productID = true, req.ProductID
		if dv.MAC != "" {
			d.mac = dv.MAC
		}
		resp = append(resp, map[string]any{
			"base_info": map[string]any{"device_type": p.opts.AccountID, "device_id": dv.ID},
			"errcode":   0, "errmsg": "ok"})
	}
	return ok(map[string]any{"resp": resp})
}

func (p *Platform) compelBind(bind bool) apiFunc {
	return func(r *http.Request, body []byte) any {
		var req struct {
			DeviceID string `json:"device_id"`
			OpenID   string `json:"openid"`
		}
		if json.Unmarshal(body, &req) != nil || req.DeviceID == "" || req.OpenID == "" {
			return errBody(47001)
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.userFor(req.OpenID) == nil {
			return errBody(40003)
		}
		d := p.devices[req.DeviceID]
		if d == nil {
			d = &device{id: req.DeviceID, bound: map[string]bool{}}
			p.devices[req.DeviceID] = d
		}
		d.bound[req.OpenID] = bind
		if !bind {
			delete(d.bound, req.OpenID)
		}
		return map[string]any{"base_resp": map[string]any{"errcode": 0, "errmsg": "ok"}}
	}
}

// get_stat: 0 = unknown/unauthorised, 1 = authorised (or allocated by getqrcode), not bound,
// 2 = bound. The values are reported by third parties, not documented.
func (p *Platform) getStat(r *http.Request, body []byte) any {
	id := r.URL.Query().Get("device_id")
	p.mu.Lock()
	defer p.mu.Unlock()
	d := p.devices[id]
	st, info := 0, "unauthorized"
	switch {
	case d == nil:
	case len(d.bound) > 0:
		st, info = 2, "bound"
	default:
		st, info = 1, "authorized"
	}
	return ok(map[string]any{"status": st, "status_info": info})
}

// IsBound reports whether the platform considers openID bound to deviceID (by scan or compel_bind).
func (p *Platform) IsBound(deviceID, openID string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	d := p.devices[deviceID]
	return d != nil && d.bound[openID]
}
