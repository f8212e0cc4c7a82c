package wechatsim

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/sprout-iot/sprout/edge/wechat"
)

// Errors from a User's actions.
var (
	// ErrNoAnswer: Sprout answered none of the attempts within CallbackTimeout.
	ErrNoAnswer = errors.New("wechatsim: Sprout did not answer the callback")
	// ErrUnknownQR: the scanned device QR was not issued by /device/getqrcode.
	ErrUnknownQR = errors.New("wechatsim: unknown device QR ticket")
	// ErrNoCallbackURL: SetCallbackURL (or Options.CallbackURL) was never set.
	ErrNoCallbackURL = errors.New("wechatsim: no callback URL configured")
)

// CallbackError is a non-200 answer from Sprout. WeChat would show the user "该公众号暂时无法提供服务".
type CallbackError struct {
	Status int
	Body   string
}

func (e *CallbackError) Error() string {
	return fmt.Sprintf("wechatsim: Sprout answered the callback with HTTP %d: %s", e.Status, strings.TrimSpace(e.Body))
}

// User is a simulated WeChat user of the account.
type User struct {
	OpenID string
	p      *Platform
}

// NewUser returns a user of the account with the given OpenID (a random 28-character one if
// empty). A new user does not follow the account yet; Subscribe or ScanSproutQR makes them.
func (p *Platform) NewUser(openID string) *User {
	if openID == "" {
		openID = "oSIM" + randHex(12)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.users[openID] == nil {
		p.users[openID] = &userState{statusSubs: map[string]bool{}, created: p.now()}
	}
	return &User{OpenID: openID, p: p}
}

// Reply is Sprout's passive answer to one callback, decrypted and parsed.
type Reply struct {
	Empty        bool   // "success" or an empty body
	Encrypted    bool   // the body was the safe-mode envelope (and its MsgSignature verified)
	Raw          []byte // the (decrypted) reply XML, or the raw body when Empty
	Attempts     int    // how many times the callback was sent
	ToUserName   string `xml:"ToUserName"`
	FromUserName string `xml:"FromUserName"`
	CreateTime   int64  `xml:"CreateTime"`
	MsgType      string `xml:"MsgType"`
	Content      string `xml:"Content"`
	DeviceType   string `xml:"DeviceType"`
	DeviceID     string `xml:"DeviceID"`
	SessionID    string `xml:"SessionID"`
	DeviceStatus int    `xml:"DeviceStatus"`
}

// field is one element of a callback, in WeChat's order; cdata elements are strings, others numbers.
type field struct {
	name, value string
	cdata       bool
}

func s(name, v string) field { return field{name, v, true} }
func n(name string, v int64) field {
	return field{name, strconv.FormatInt(v, 10), false}
}

// Subscribe follows the account (an event/subscribe without a scene).
func (u *User) Subscribe(ctx context.Context) (*Reply, error) {
	u.p.setSubscribed(u.OpenID, true)
	return u.event(ctx, wechat.EventSubscribe)
}

// Unsubscribe unfollows the account.
func (u *User) Unsubscribe(ctx context.Context) (*Reply, error) {
	u.p.setSubscribed(u.OpenID, false)
	return u.event(ctx, wechat.EventUnsubscribe)
}

func (u *User) event(ctx context.Context, ev string, extra ...field) (*Reply, error) {
	fs := append(u.head(wechat.MsgTypeEvent), s("Event", ev))
	return u.send(ctx, append(fs, extra...))
}

// SendText sends a text message to the account.
func (u *User) SendText(ctx context.Context, text string) (*Reply, error) {
	u.p.mu.Lock()
	id := u.p.nextSeq()
	u.p.mu.Unlock()
	fs := append(u.head(wechat.MsgTypeText), s("Content", text), n("MsgId", id))
	return u.send(ctx, fs)
}

// ClickMenu clicks a menu item of type click with the given key.
func (u *User) ClickMenu(ctx context.Context, key string) (*Reply, error) {
	return u.event(ctx, wechat.EventClick, s("EventKey", key))
}

// ScanSproutQR scans a parametric QR code of the account whose scene is scene (for Sprout, the
// signed scene string from edge/wechat/qr). A user not yet following gets subscribe with EventKey
// "qrscene_<scene>"; a follower gets SCAN with EventKey "<scene>".
func (u *User) ScanSproutQR(ctx context.Context, scene string) (*Reply, error) {
	u.p.mu.Lock()
	ticket, ok := u.p.sceneQR[scene]
	if !ok {
		ticket = "gQ" + randHex(20)
		u.p.sceneQR[scene] = ticket
	}
	st := u.p.users[u.OpenID]
	wasFollowing := st.subscribed
	st.subscribed = true
	u.p.mu.Unlock()
	if wasFollowing {
		return u.event(ctx, wechat.EventScan, s("EventKey", scene), s("Ticket", ticket))
	}
	return u.event(ctx, wechat.EventSubscribe, s("EventKey", wechat.SceneKeyPrefix+scene), s("Ticket", ticket))
}

// ScanDeviceQR scans an official device QR (the qrticket from /device/getqrcode, optionally with
// "#<base64 data>" appended). WeChat binds the user to the device, making them follow the account
// first if needed (a plain subscribe callback), then pushes device_event/bind whose Content is
// the data after '#'. The returned Reply is Sprout's answer to the bind push.
func (u *User) ScanDeviceQR(ctx context.Context, qr string) (*Reply, error) {
	ticket, suffix, _ := strings.Cut(qr, "#")
	ticket = strings.Replace(ticket, "https://", "http://", 1)
	u.p.mu.Lock()
	id, ok := u.p.deviceQR[ticket]
	if !ok {
		u.p.mu.Unlock()
		return nil, fmt.Errorf("%w: %q", ErrUnknownQR, ticket)
	}
	u.p.devices[id].bound[u.OpenID] = true
	following := u.p.users[u.OpenID].subscribed
	u.p.mu.Unlock()
	if !following {
		if _, err := u.Subscribe(ctx); err != nil {
			return nil, fmt.Errorf("wechatsim: subscribe before bind: %w", err)
		}
	}
	return u.deviceEvent(ctx, wechat.EventBind, id, suffix)
}

// Unbind removes the user's binding to a device in the WeChat client (device_event/unbind).
func (u *User) Unbind(ctx context.Context, deviceID string) (*Reply, error) {
	u.p.mu.Lock()
	if d := u.p.devices[deviceID]; d != nil {
		delete(d.bound, u.OpenID)
	}
	u.p.mu.Unlock()
	return u.deviceEvent(ctx, wechat.EventUnbind, deviceID, "")
}

func (u *User) deviceEvent(ctx context.Context, ev, deviceID, content string) (*Reply, error) {
	fs := append(u.head(wechat.MsgTypeDeviceEvent), s("Event", ev), s("DeviceType", u.p.opts.AccountID),
		s("DeviceID", deviceID), s("Content", content), s("SessionID", strconv.FormatInt(u.p.session(), 10)),
		s("OpenID", u.OpenID))
	return u.send(ctx, fs)
}

// SubscribeStatus is the user's client subscribing to (op 2), heartbeating (op 1) or unsubscribing
// from (op 0) a WiFi device's status. Sprout should answer with device_status.
func (u *User) SubscribeStatus(ctx context.Context, deviceID string, op int) (*Reply, error) {
	ev := wechat.EventSubscribeStatus
	if op == wechat.OpTypeUnsubscribe {
		ev = wechat.EventUnsubscribeStatus
	}
	u.p.mu.Lock()
	u.p.users[u.OpenID].statusSubs[deviceID] = op != wechat.OpTypeUnsubscribe
	u.p.mu.Unlock()
	fs := append(u.head(wechat.MsgTypeDeviceEvent), s("Event", ev), s("DeviceType", u.p.opts.AccountID),
		s("DeviceID", deviceID), n("OpType", int64(op)), s("OpenID", u.OpenID))
	return u.send(ctx, fs)
}

// SendDeviceData is a device_text push: bytes from the device relayed by the user's client.
func (u *User) SendDeviceData(ctx context.Context, deviceID string, data []byte) (*Reply, error) {
	u.p.mu.Lock()
	id := u.p.nextSeq()
	u.p.mu.Unlock()
	fs := append(u.head(wechat.MsgTypeDeviceText), s("DeviceType", u.p.opts.AccountID), s("DeviceID", deviceID),
		s("Content", base64.StdEncoding.EncodeToString(data)), s("SessionID", strconv.FormatInt(u.p.session(), 10)),
		n("MsgID", id), s("OpenID", u.OpenID))
	return u.send(ctx, fs)
}

// Authorize plays the OAuth2 consent for this user and returns a single-use code for
// /sns/oauth2/access_token (what WeChat appends to redirect_uri).
func (u *User) Authorize(scope string) string {
	if scope == "" {
		scope = "snsapi_base"
	}
	u.p.mu.Lock()
	defer u.p.mu.Unlock()
	return u.p.issueCode(u.OpenID, scope)
}

func (u *User) head(msgType string) []field {
	return []field{s("ToUserName", u.p.opts.AccountID), s("FromUserName", u.OpenID),
		n("CreateTime", u.p.now().Unix()), s("MsgType", msgType)}
}

func (p *Platform) session() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.nextSeq()
}

func (p *Platform) setSubscribed(openID string, on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.users[openID].subscribed = on
}

func renderXML(fs []field) []byte {
	var b bytes.Buffer
	b.WriteString("<xml>")
	for _, f := range fs {
		b.WriteString("<" + f.name + ">")
		if f.cdata {
			b.WriteString("<![CDATA[" + strings.ReplaceAll(f.value, "]]>", "]]]]><![CDATA[>") + "]]>")
		} else {
			b.WriteString(f.value)
		}
		b.WriteString("</" + f.name + ">")
	}
	b.WriteString("</xml>")
	return b.Bytes()
}

func lookup(fs []field, name string) string {
	for _, f := range fs {
		if f.name == name {
			return f.value
		}
	}
	return ""
}

// send signs (and encrypts) one callback, POSTs it with WeChat's retries, records it and the
// reply in the user's conversation, and returns the decrypted reply.
func (u *User) send(ctx context.Context, fs []field) (*Reply, error) {
	p := u.p
	p.mu.Lock()
	target := p.callbackURL
	p.users[u.OpenID].lastActive = p.now()
	p.mu.Unlock()
	if target == "" {
		return nil, ErrNoCallbackURL
	}
	plain := renderXML(fs)
	ts := strconv.FormatInt(p.now().Unix(), 10)
	nonce := strconv.FormatInt(int64(p.session()%1e10), 10)
	q := url.Values{
		"signature": {wechat.Signature(p.opts.Token, ts, nonce)},
		"timestamp": {ts}, "nonce": {nonce}, "openid": {u.OpenID},
	}
	body := plain
	if p.cipher != nil {
		enc, err := p.cipher.Encrypt(plain)
		if err != nil {
			return nil, err
		}
		q.Set("encrypt_type", "aes")
		q.Set("msg_signature", wechat.MsgSignature(p.opts.Token, ts, nonce, enc))
		env := []field{s("ToUserName", p.opts.AccountID)}
		if p.mode == wechat.ModeCompatible {
			env = fs
		}
		body = renderXML(append(env[:len(env):len(env)], s("Encrypt", enc)))
	}
	full, err := url.Parse(target)
	if err != nil {
		return nil, fmt.Errorf("wechatsim: callback URL: %w", err)
	}
	full.RawQuery = q.Encode()

	in := Entry{OpenID: u.OpenID, Direction: In, Kind: KindCallback, MsgType: lookup(fs, "MsgType"),
		Event: lookup(fs, "Event"), DeviceID: lookup(fs, "DeviceID")}
	if in.MsgType == wechat.MsgTypeText {
		in.Text = lookup(fs, "Content")
	} else if k := lookup(fs, "EventKey"); k != "" {
		in.Text = k
	}

	var resp *http.Response
	attempts := 0
	for attempts < p.opts.CallbackAttempts {
		attempts++
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, full.String(), bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "text/xml")
		resp, err = p.client.Do(req)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		p.log.Info("callback got no answer; WeChat retries", "attempt", attempts, "err", err)
		resp = nil
	}
	if resp == nil {
		p.mu.Lock()
		p.record(in)
		p.mu.Unlock()
		return nil, fmt.Errorf("%w after %d attempts of %s", ErrNoAnswer, attempts, p.opts.CallbackTimeout)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	in.Status = resp.StatusCode
	p.mu.Lock()
	p.record(in)
	p.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("wechatsim: reading Sprout's answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, &CallbackError{Status: resp.StatusCode, Body: string(raw)}
	}
	r, err := p.parseReply(raw)
	if err != nil {
		return nil, err
	}
	r.Attempts = attempts
	if !r.Empty {
		out := Entry{OpenID: u.OpenID, Direction: Out, Kind: KindReply, MsgType: r.MsgType, Text: r.Content,
			DeviceType: r.DeviceType, DeviceID: r.DeviceID}
		if r.MsgType == wechat.ReplyDeviceStatus {
			out.DeviceStatus = strconv.Itoa(r.DeviceStatus)
		}
		if r.MsgType == wechat.MsgTypeDeviceText {
			out.Payload, _ = base64.StdEncoding.DecodeString(r.Content)
		}
		p.mu.Lock()
		p.record(out)
		p.mu.Unlock()
	}
	return r, nil
}

// parseReply does what WeChat does with a passive reply: "success" or empty is nothing; in safe
// mode (and compatible mode, when encrypted) the envelope's MsgSignature is checked and the
// content decrypted; then the reply XML is parsed and must be addressed to the user.
func (p *Platform) parseReply(raw []byte) (*Reply, error) {
	body := bytes.TrimSpace(raw)
	if len(body) == 0 || string(body) == "success" {
		return &Reply{Empty: true, Raw: raw}, nil
	}
	r := &Reply{}
	if bytes.Contains(body, []byte("<Encrypt>")) {
		if p.cipher == nil {
			return nil, errors.New("wechatsim: encrypted reply but the account is in plaintext mode")
		}
		plain, err := wechat.OpenReply(p.cipher, p.opts.Token, body)
		if err != nil {
			return nil, fmt.Errorf("wechatsim: opening Sprout's encrypted reply: %w", err)
		}
		body, r.Encrypted = plain, true
	} else if p.mode == wechat.ModeSafe {
		return nil, errors.New("wechatsim: plaintext reply but the account is in safe mode")
	}
	if err := xml.Unmarshal(body, r); err != nil {
		return nil, fmt.Errorf("wechatsim: parsing Sprout's reply: %w", err)
	}
	r.Raw = body
	if r.FromUserName != p.opts.AccountID || r.MsgType == "" {
		return nil, fmt.Errorf("wechatsim: reply from %q with MsgType %q is not a reply of account %s",
			r.FromUserName, r.MsgType, p.opts.AccountID)
	}
	return r, nil
}
