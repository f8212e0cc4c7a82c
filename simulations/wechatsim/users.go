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
	"time"
)

// Errors from a User's actions.
var (
	// ErrNoAnswer: Sprout answered none of the attempts within CallbackTimeout.
	ErrNoAnswer = errors.New("wechatsim: Sprout did not answer the callback")
	// ErrUnknownQR: the scanned device QR was not issued by /device/getqrcode.
	ErrUnknownQR = errors.New("wechatsim: unknown device QR ticket")
	// ErrUnknownScene: ScanSproutQR was given a scene no /cgi-bin/qrcode/create call made.
	ErrUnknownScene = errors.New("wechatsim: no parametric QR code was created for this scene")
	// ErrQRExpired: the temporary parametric QR code has expired (WeChat shows "二维码已过期").
	ErrQRExpired = errors.New("wechatsim: the parametric QR code has expired")
	// ErrNoCallbackURL: SetCallbackURL (or Options.CallbackURL) was never set.
	ErrNoCallbackURL = errors.New("wechatsim: no callback URL configured")
	// ErrNotFollowing: the action needs a follower (only followers can message the account or use
	// its menu).
	ErrNotFollowing = errors.New("wechatsim: the user does not follow the account")
	// ErrAlreadyFollowing: Subscribe by a user who already follows (WeChat shows no follow button).
	ErrAlreadyFollowing = errors.New("wechatsim: the user already follows the account")
	// ErrNotBound: Unbind of a device the user is not bound to in WeChat.
	ErrNotBound = errors.New("wechatsim: the user is not bound to the device")
)

// Delivery statuses of TEMPLATESENDJOBFINISH.
const (
	DeliverySuccess      = "success"
	DeliveryUserBlock    = "failed:user block"
	DeliverySystemFailed = "failed: system failed"
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
// empty). A new user does not follow the account yet; Subscribe or a scan makes them.
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

// Follows reports whether the user follows the account now.
func (u *User) Follows() bool {
	u.p.mu.Lock()
	defer u.p.mu.Unlock()
	return u.p.users[u.OpenID].subscribed
}

// SetSnapshot makes the user a snapshot user (朋友圈快照页): OAuth then answers is_snapshotuser 1
// with a virtual openid that is not the user's.
func (u *User) SetSnapshot(on bool) {
	u.p.mu.Lock()
	defer u.p.mu.Unlock()
	u.p.users[u.OpenID].snapshot = on
}

// SetDeliveryStatus makes the user's next template deliveries end with status (DeliveryUserBlock,
// DeliverySystemFailed; "" or DeliverySuccess for normal delivery): the send is still accepted,
// the receipt carries the status, and the user does not see the card.
func (u *User) SetDeliveryStatus(status string) {
	if status == DeliverySuccess {
		status = ""
	}
	u.p.mu.Lock()
	defer u.p.mu.Unlock()
	u.p.users[u.OpenID].blockStatus = status
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

func (u *User) st() *userState { return u.p.users[u.OpenID] }

// following checks the user follows. Must not be called with p.mu held.
func (u *User) following() error {
	if !u.Follows() {
		return ErrNotFollowing
	}
	return nil
}

// Subscribe follows the account (an event/subscribe without a scene), which opens the event window.
func (u *User) Subscribe(ctx context.Context) (*Reply, error) {
	u.p.mu.Lock()
	if u.st().subscribed {
		u.p.mu.Unlock()
		return nil, ErrAlreadyFollowing
	}
	u.st().subscribed, u.st().everFollowed = true, true
	u.p.mu.Unlock()
	return u.event(ctx, "subscribe")
}

// Unsubscribe unfollows the account. Afterwards every send to the user is refused with 43004, and
// the client's device status subscriptions end. The user's device bindings stay: whether WeChat
// unbinds devices on unfollow is not documented.
func (u *User) Unsubscribe(ctx context.Context) (*Reply, error) {
	u.p.mu.Lock()
	if !u.st().subscribed {
		u.p.mu.Unlock()
		return nil, ErrNotFollowing
	}
	u.st().subscribed = false
	clear(u.st().statusSubs)
	u.p.mu.Unlock()
	return u.event(ctx, "unsubscribe")
}

func (u *User) event(ctx context.Context, ev string, extra ...field) (*Reply, error) {
	fs := append(u.head("event"), s("Event", ev))
	return u.send(ctx, append(fs, extra...))
}

// SendText sends a text message to the account (a follower only); it opens the message window.
func (u *User) SendText(ctx context.Context, text string) (*Reply, error) {
	if err := u.following(); err != nil {
		return nil, err
	}
	u.p.mu.Lock()
	id := u.p.nextSeq()
	u.p.mu.Unlock()
	fs := append(u.head("text"), s("Content", text), n("MsgId", id))
	return u.send(ctx, fs)
}

// SendLocation sends a location message (a follower only); it opens the message window, unlike the
// LOCATION event ReportLocation sends.
func (u *User) SendLocation(ctx context.Context, lat, lng float64, label string) (*Reply, error) {
	if err := u.following(); err != nil {
		return nil, err
	}
	u.p.mu.Lock()
	id := u.p.nextSeq()
	u.p.mu.Unlock()
	fs := append(u.head("location"), field{"Location_X", strconv.FormatFloat(lat, 'f', 6, 64), false},
		field{"Location_Y", strconv.FormatFloat(lng, 'f', 6, 64), false}, n("Scale", 15), s("Label", label), n("MsgId", id))
	return u.send(ctx, fs)
}

// ReportLocation is the client's automatic location report (event LOCATION); it opens no window.
func (u *User) ReportLocation(ctx context.Context, lat, lng float64) (*Reply, error) {
	if err := u.following(); err != nil {
		return nil, err
	}
	return u.event(ctx, "LOCATION", field{"Latitude", strconv.FormatFloat(lat, 'f', 6, 64), false},
		field{"Longitude", strconv.FormatFloat(lng, 'f', 6, 64), false}, field{"Precision", "65.000000", false})
}

// ClickMenu clicks a menu item of type click with the given key (a follower only); it opens the
// event window.
func (u *User) ClickMenu(ctx context.Context, key string) (*Reply, error) {
	if err := u.following(); err != nil {
		return nil, err
	}
	return u.event(ctx, "CLICK", s("EventKey", key))
}

// ScanSproutQR scans the parametric QR code made for scene by /cgi-bin/qrcode/create (by Sprout,
// or by CreateQR): a non-follower gets subscribe with EventKey "qrscene_<scene>" (and now
// follows), a follower SCAN with EventKey "<scene>". A scene no qrcode/create call made is
// ErrUnknownScene; an expired temporary code is ErrQRExpired.
func (u *User) ScanSproutQR(ctx context.Context, scene string) (*Reply, error) {
	u.p.mu.Lock()
	q := u.p.qrByScene[scene]
	u.p.mu.Unlock()
	if q == nil {
		return nil, fmt.Errorf("%w: %q", ErrUnknownScene, scene)
	}
	return u.scanParam(ctx, q)
}

func (u *User) scanParam(ctx context.Context, q *paramQR) (*Reply, error) {
	u.p.mu.Lock()
	if !q.expires.IsZero() && !u.p.now().Before(q.expires) {
		u.p.mu.Unlock()
		return nil, ErrQRExpired
	}
	st := u.st()
	wasFollowing := st.subscribed
	st.subscribed, st.everFollowed = true, true
	u.p.mu.Unlock()
	if wasFollowing {
		return u.event(ctx, "SCAN", s("EventKey", q.scene), s("Ticket", q.ticket))
	}
	return u.event(ctx, "subscribe", s("EventKey", "qrscene_"+q.scene), s("Ticket", q.ticket))
}

// ScanDeviceQR scans an official device QR (the qrticket from /device/getqrcode, optionally with
// "#<base64 data>" appended). WeChat binds the user to the device, making them follow the account
// first if needed (a plain subscribe callback), then pushes device_event/bind whose Content is
// the data after '#'. The returned Reply is Sprout's answer to the bind push. A user already bound
// gets no new push (an empty Reply).
func (u *User) ScanDeviceQR(ctx context.Context, qr string) (*Reply, error) {
	_, suffix, _ := strings.Cut(qr, "#")
	u.p.mu.Lock()
	d := u.p.deviceByQR(qr)
	if d == nil {
		u.p.mu.Unlock()
		return nil, fmt.Errorf("%w: %q", ErrUnknownQR, qr)
	}
	if d.bound[u.OpenID] {
		u.p.mu.Unlock()
		return &Reply{Empty: true}, nil
	}
	d.bound[u.OpenID] = true
	following := u.st().subscribed
	u.p.mu.Unlock()
	if !following {
		if _, err := u.Subscribe(ctx); err != nil {
			return nil, fmt.Errorf("wechatsim: subscribe before bind: %w", err)
		}
	}
	return u.deviceEvent(ctx, "bind", d.id, suffix)
}

// Unbind removes the user's binding to a device in the WeChat client (device_event/unbind).
func (u *User) Unbind(ctx context.Context, deviceID string) (*Reply, error) {
	u.p.mu.Lock()
	d := u.p.devices[deviceID]
	if d == nil || !d.bound[u.OpenID] {
		u.p.mu.Unlock()
		return nil, ErrNotBound
	}
	delete(d.bound, u.OpenID)
	u.p.mu.Unlock()
	return u.deviceEvent(ctx, "unbind", deviceID, "")
}

func (u *User) deviceEvent(ctx context.Context, ev, deviceID, content string) (*Reply, error) {
	fs := append(u.head("device_event"), s("Event", ev), s("DeviceType", u.p.opts.AccountID),
		s("DeviceID", deviceID), s("Content", content), s("SessionID", strconv.FormatInt(u.p.session(), 10)),
		s("OpenID", u.OpenID))
	return u.send(ctx, fs)
}

// SubscribeStatus is the user's client subscribing to (op 2), heartbeating (op 1) or unsubscribing
// from (op 0) a WiFi device's status. Sprout should answer with device_status. It opens no window.
func (u *User) SubscribeStatus(ctx context.Context, deviceID string, op int) (*Reply, error) {
	ev := "subscribe_status"
	if op == 0 {
		ev = "unsubscribe_status"
	}
	u.p.mu.Lock()
	u.st().statusSubs[deviceID] = op != 0
	u.p.mu.Unlock()
	fs := append(u.head("device_event"), s("Event", ev), s("DeviceType", u.p.opts.AccountID),
		s("DeviceID", deviceID), n("OpType", int64(op)), s("OpenID", u.OpenID))
	return u.send(ctx, fs)
}

// SendDeviceData is a device_text push: bytes from the device relayed by the user's client.
func (u *User) SendDeviceData(ctx context.Context, deviceID string, data []byte) (*Reply, error) {
	u.p.mu.Lock()
	id := u.p.nextSeq()
	u.p.mu.Unlock()
	fs := append(u.head("device_text"), s("DeviceType", u.p.opts.AccountID), s("DeviceID", deviceID),
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

// send is one action of the user: it opens the window the action opens (whatever Sprout answers:
// the action happened in WeChat), then posts the callback and records it and the reply.
func (u *User) send(ctx context.Context, fs []field) (*Reply, error) {
	p := u.p
	p.mu.Lock()
	p.open(u.st(), windowFor(lookup(fs, "MsgType"), lookup(fs, "Event")))
	p.mu.Unlock()
	in := Entry{OpenID: u.OpenID, Direction: In, Kind: KindCallback, MsgType: lookup(fs, "MsgType"),
		Event: lookup(fs, "Event"), DeviceID: lookup(fs, "DeviceID")}
	switch in.MsgType {
	case "text":
		in.Text = lookup(fs, "Content")
	case "location":
		in.Text = lookup(fs, "Label")
	default:
		in.Text = lookup(fs, "EventKey")
	}
	return p.post(ctx, u.OpenID, fs, in)
}

// post signs (and encrypts) one callback, POSTs it with WeChat's retries, records it (in) and
// the reply in the user's conversation, and returns the decrypted reply.
func (p *Platform) post(ctx context.Context, openID string, fs []field, in Entry) (*Reply, error) {
	p.mu.Lock()
	target := p.callbackURL
	p.mu.Unlock()
	if target == "" {
		p.mu.Lock()
		p.record(in)
		p.mu.Unlock()
		return nil, ErrNoCallbackURL
	}
	plain := renderXML(fs)
	ts := strconv.FormatInt(p.now().Unix(), 10)
	nonce := strconv.FormatInt(int64(p.session()%1e10), 10)
	q := url.Values{
		"signature": {sign(p.opts.Token, ts, nonce)},
		"timestamp": {ts}, "nonce": {nonce}, "openid": {openID},
	}
	body := plain
	if p.env != nil {
		enc := p.env.encrypt(plain)
		q.Set("encrypt_type", "aes")
		q.Set("msg_signature", sign(p.opts.Token, ts, nonce, enc))
		env := []field{s("ToUserName", p.opts.AccountID)}
		if p.mode == ModeCompatible {
			env = fs
		}
		body = renderXML(append(env[:len(env):len(env)], s("Encrypt", enc)))
	}
	full, err := url.Parse(target)
	if err != nil {
		return nil, fmt.Errorf("wechatsim: callback URL: %w", err)
	}
	full.RawQuery = q.Encode()

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
	in.Attempts = attempts
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
	r, err := p.parseReply(raw, openID)
	if err != nil {
		return nil, err
	}
	r.Attempts = attempts
	// WeChat shows no passive reply to an unsubscribe or a receipt: nobody reads it.
	if !r.Empty && in.Kind == KindCallback && in.Event != "unsubscribe" {
		out := Entry{OpenID: openID, Direction: Out, Kind: KindReply, MsgType: r.MsgType, Text: r.Content,
			DeviceType: r.DeviceType, DeviceID: r.DeviceID}
		if r.MsgType == "device_status" {
			out.DeviceStatus = strconv.Itoa(r.DeviceStatus)
		}
		if r.MsgType == "device_text" {
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
// content decrypted; then the reply XML is parsed and must be addressed to the user from the
// account.
func (p *Platform) parseReply(raw []byte, openID string) (*Reply, error) {
	body := bytes.TrimSpace(raw)
	if len(body) == 0 || string(body) == "success" {
		return &Reply{Empty: true, Raw: raw}, nil
	}
	r := &Reply{}
	if bytes.Contains(body, []byte("<Encrypt>")) {
		if p.env == nil {
			return nil, errors.New("wechatsim: encrypted reply but the account is in plaintext mode")
		}
		var envl struct {
			Encrypt      string `xml:"Encrypt"`
			MsgSignature string `xml:"MsgSignature"`
			TimeStamp    string `xml:"TimeStamp"`
			Nonce        string `xml:"Nonce"`
		}
		if err := xml.Unmarshal(body, &envl); err != nil {
			return nil, fmt.Errorf("wechatsim: parsing Sprout's encrypted reply: %w", err)
		}
		if envl.TimeStamp == "" || envl.Nonce == "" ||
			sign(p.opts.Token, envl.TimeStamp, envl.Nonce, envl.Encrypt) != envl.MsgSignature {
			return nil, errors.New("wechatsim: Sprout's encrypted reply has a wrong MsgSignature")
		}
		plain, err := p.env.decrypt(envl.Encrypt)
		if err != nil {
			return nil, fmt.Errorf("wechatsim: opening Sprout's encrypted reply: %w", err)
		}
		body, r.Encrypted = plain, true
	} else if p.mode == ModeSafe {
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
	if r.ToUserName != openID {
		return nil, fmt.Errorf("wechatsim: reply addressed to %q, not to the user %s", r.ToUserName, openID)
	}
	return r, nil
}

// receiptJob is one TEMPLATESENDJOBFINISH to post; ready closes once Sprout has the send's answer
// (its msgid), so that the receipt never overtakes it.
type receiptJob struct {
	openID string
	msgID  int64
	status string
	ready  chan struct{}
}

// queueReceipt queues the receipt of an accepted send, in acceptance order. Must be called with
// p.mu held.
func (p *Platform) queueReceipt(openID string, msgID int64, status string) *receiptJob {
	j := &receiptJob{openID: openID, msgID: msgID, status: status, ready: make(chan struct{})}
	p.receipts = append(p.receipts, j)
	p.bg.Add(1)
	if !p.receiptWorker {
		p.receiptWorker = true
		go p.postReceipts()
	}
	p.receiptCond.Broadcast()
	return j
}

// postReceipts posts the queued receipts one at a time, in the order the sends were accepted.
func (p *Platform) postReceipts() {
	for {
		p.mu.Lock()
		for !p.closing && (len(p.receipts) == 0 || p.receiptsHeld) {
			p.receiptCond.Wait()
		}
		if p.closing {
			p.receiptWorker = false
			p.mu.Unlock()
			return
		}
		j := p.receipts[0]
		p.receipts = p.receipts[1:]
		p.mu.Unlock()
		<-j.ready
		p.postReceipt(j)
		p.bg.Done()
	}
}

func (p *Platform) postReceipt(j *receiptJob) {
	fs := []field{s("ToUserName", p.opts.AccountID), s("FromUserName", j.openID), n("CreateTime", p.now().Unix()),
		s("MsgType", "event"), s("Event", "TEMPLATESENDJOBFINISH"), n("MsgID", j.msgID), s("Status", j.status)}
	in := Entry{OpenID: j.openID, Direction: In, Kind: KindReceipt, MsgType: "event", Event: "TEMPLATESENDJOBFINISH",
		MsgID: j.msgID, Delivery: j.status}
	ctx, cancel := context.WithTimeout(context.Background(), p.opts.CallbackTimeout*time.Duration(p.opts.CallbackAttempts+1))
	defer cancel()
	if _, err := p.post(ctx, j.openID, fs, in); err != nil {
		p.log.Info("TEMPLATESENDJOBFINISH not taken", "openid", j.openID, "msgid", j.msgID, "err", err)
	}
}

// HoldReceipts keeps TEMPLATESENDJOBFINISH callbacks back until ReleaseReceipts, to test a receipt
// that arrives late (after a retry, a restart, ...).
func (p *Platform) HoldReceipts() {
	p.mu.Lock()
	p.receiptsHeld = true
	p.mu.Unlock()
}

// ReleaseReceipts lets the held receipts go, in the order the sends were accepted, and later
// ones at once.
func (p *Platform) ReleaseReceipts() {
	p.mu.Lock()
	p.receiptsHeld = false
	p.receiptCond.Broadcast()
	p.mu.Unlock()
}
