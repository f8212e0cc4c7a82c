package wechat_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sprout-iot/sprout/actors/actortest"
	"github.com/sprout-iot/sprout/edge/wechat"
	"github.com/sprout-iot/sprout/simulations/wechatsim"
)

const (
	appID    = "wx5proutt35t0000"
	token    = "tok3n-for-tests"
	aesKey   = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
	account  = "gh_sprouttest"
	otherKey = "ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvut"
)

// dispatcher is a tiny stand-in for Sprout's grains: it records every message and answers with
// the function it was given.
type dispatcher struct {
	mu     sync.Mutex
	msgs   []*wechat.Message
	answer func(ctx context.Context, m *wechat.Message) (*wechat.Reply, error)
}

func (d *dispatcher) Dispatch(ctx context.Context, m *wechat.Message) (*wechat.Reply, error) {
	d.mu.Lock()
	d.msgs = append(d.msgs, m)
	d.mu.Unlock()
	if d.answer == nil {
		return nil, nil
	}
	return d.answer(ctx, m)
}

func (d *dispatcher) calls() []*wechat.Message {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]*wechat.Message(nil), d.msgs...)
}

// syncBuffer collects log output from concurrent handlers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type env struct {
	sim  *wechatsim.Platform
	srv  *httptest.Server
	d    *dispatcher
	logs *syncBuffer
	url  string
}

// start runs Sprout's callback handler (mounted at /wechat) on a loopback port and a simulated
// WeChat account pointed at it. The handler options start from the simulator's settings.
func start(t *testing.T, simOpts wechatsim.Options, tweak func(*wechat.Options), d *dispatcher) *env {
	t.Helper()
	if simOpts.AppID == "" {
		simOpts.AppID = appID
	}
	simOpts.Token, simOpts.AccountID = token, account
	if simOpts.CallbackTimeout == 0 {
		simOpts.CallbackTimeout = 2 * time.Second
	}
	sim, err := wechatsim.New(simOpts)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	opts := wechat.Options{AppID: appID, Token: token, EncodingAESKey: simOpts.EncodingAESKey, Mode: wechat.Mode(simOpts.Mode),
		AccountID: account, Logger: slog.New(slog.NewTextHandler(logs, nil))}
	if tweak != nil {
		tweak(&opts)
	}
	h, err := wechat.NewHandler(opts, d)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/wechat", h)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	sim.SetCallbackURL(srv.URL + "/wechat")
	return &env{sim: sim, srv: srv, d: d, logs: logs, url: srv.URL + "/wechat"}
}

func TestURLVerificationEchoesEchostrExactly(t *testing.T) {
	d := &dispatcher{}
	e := start(t, wechatsim.Options{}, func(o *wechat.Options) { o.Token = "AAAAA" }, d)
	q := "?signature=f464b24fc39322e44b38aa78f5edd27bd1441696&timestamp=1714036504&nonce=1514711492&echostr=4375120948345356249"
	status, body := get(t, e.url+q)
	if status != 200 || body != "4375120948345356249" {
		t.Fatalf("verification answered %d %q, want 200 and the echostr alone", status, body)
	}
	status, _ = get(t, e.url+strings.Replace(q, "f464", "f465", 1))
	if status != http.StatusForbidden {
		t.Fatalf("verification with a bad signature answered %d, want 403", status)
	}
}

func TestPlaintextTextMessageReachesDispatcherAndReplyReachesUser(t *testing.T) {
	d := &dispatcher{answer: func(_ context.Context, m *wechat.Message) (*wechat.Reply, error) {
		return wechat.TextReply("echo: " + m.Content), nil
	}}
	e := start(t, wechatsim.Options{}, nil, d)
	u := e.sim.NewUser("oUSER1")
	if _, err := u.Subscribe(context.Background()); err != nil { // only followers can write to the account
		t.Fatal(err)
	}
	r, err := u.SendText(context.Background(), "hello <pot> & ]]> friends")
	if err != nil {
		t.Fatal(err)
	}
	if r.MsgType != "text" || r.Content != "echo: hello <pot> & ]]> friends" || r.ToUserName != "oUSER1" || r.Encrypted {
		t.Fatalf("reply = %+v", r)
	}
	got := d.calls()[1:] // after the subscribe
	if len(got) != 1 || got[0].FromUserName != "oUSER1" || got[0].ToUserName != account || got[0].MsgId == "" {
		t.Fatalf("dispatcher saw %+v", got)
	}
}

func TestSafeModeEncryptsBothWays(t *testing.T) {
	d := &dispatcher{answer: func(_ context.Context, m *wechat.Message) (*wechat.Reply, error) {
		switch {
		case m.MsgType == wechat.MsgTypeDeviceEvent && m.Event == wechat.EventSubscribeStatus:
			return wechat.DeviceStatusReply(m, true), nil
		case m.MsgType == wechat.MsgTypeDeviceText:
			data, err := m.DeviceData()
			if err != nil {
				return nil, err
			}
			return wechat.DeviceTextReply(m, append([]byte("ack:"), data...)), nil
		case m.MsgType == wechat.MsgTypeDeviceEvent && m.Event == wechat.EventBind:
			data, _ := m.DeviceData()
			return wechat.TextReply("bound " + m.DeviceID + " with " + string(data)), nil
		}
		return nil, nil
	}}
	e := start(t, wechatsim.Options{EncodingAESKey: aesKey}, nil, d)
	ctx := context.Background()
	u := e.sim.NewUser("oSAFE")
	e.sim.Start("127.0.0.1:0") // serves getqrcode for the device QR
	defer e.sim.Close()
	deviceID, qr := allocateDevice(t, e.sim)

	r, err := u.ScanDeviceQR(ctx, qr+"#"+base64.StdEncoding.EncodeToString([]byte("t=123")))
	if err != nil {
		t.Fatal(err)
	}
	if !r.Encrypted || r.Content != "bound "+deviceID+" with t=123" {
		t.Fatalf("bind reply = %+v (encrypted %v)", r, r.Encrypted)
	}
	r, err = u.SubscribeStatus(ctx, deviceID, wechat.OpTypeSubscribe)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Encrypted || r.MsgType != "device_status" || r.DeviceStatus != 1 || r.DeviceID != deviceID {
		t.Fatalf("status reply = %+v", r)
	}
	r, err = u.SendDeviceData(ctx, deviceID, []byte{0x01, 0x02})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := base64.StdEncoding.DecodeString(r.Content); !r.Encrypted || string(got) != "ack:\x01\x02" || r.SessionID == "" {
		t.Fatalf("device_text reply = %+v", r)
	}
	// The dispatcher saw decrypted messages: subscribe (scan made the user follow), bind, status, text.
	var kinds []string
	for _, m := range d.calls() {
		kinds = append(kinds, m.MsgType+"/"+m.Event)
	}
	if want := "event/subscribe device_event/bind device_event/subscribe_status device_text/"; strings.Join(kinds, " ") != want {
		t.Fatalf("dispatcher saw %q, want %q", strings.Join(kinds, " "), want)
	}
}

func TestCompatibleModeAcceptsEncryptedAndPlaintextPushes(t *testing.T) {
	d := &dispatcher{answer: func(_ context.Context, m *wechat.Message) (*wechat.Reply, error) {
		return wechat.TextReply("menu " + m.EventKey), nil
	}}
	e := start(t, wechatsim.Options{EncodingAESKey: aesKey, Mode: wechatsim.ModeCompatible}, nil, d)
	u := e.sim.NewUser("oCOMPAT")
	if _, err := u.Subscribe(context.Background()); err != nil { // a menu is a follower's
		t.Fatal(err)
	}
	r, err := u.ClickMenu(context.Background(), "WATER_NOW")
	if err != nil {
		t.Fatal(err)
	}
	if !r.Encrypted || r.Content != "menu WATER_NOW" {
		t.Fatalf("reply = %+v", r)
	}
	// A plaintext push (no encrypt_type) is fine in compatible mode and answered in plaintext.
	status, body := post(t, signedURL(e.url, time.Now(), nil), `<xml><ToUserName><![CDATA[gh_sprouttest]]></ToUserName><FromUserName><![CDATA[oP]]></FromUserName><CreateTime>1</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[CLICK]]></Event><EventKey><![CDATA[K]]></EventKey></xml>`)
	if status != 200 || !strings.Contains(body, "menu K") || strings.Contains(body, "<Encrypt>") {
		t.Fatalf("plaintext push answered %d %s", status, body)
	}
}

func TestRejectedPushesNeverReachTheDispatcher(t *testing.T) {
	plain := `<xml><ToUserName><![CDATA[gh_sprouttest]]></ToUserName><FromUserName><![CDATA[oX]]></FromUserName><CreateTime>1</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[hi]]></Content><MsgId>1</MsgId></xml>`
	now := time.Now()
	wrongApp, _ := wechat.NewCipher(aesKey, "wxSOMEONEELSE")
	right, _ := wechat.NewCipher(aesKey, appID)
	wrongKey, _ := wechat.NewCipher(otherKey, appID)
	encrypted := func(c *wechat.Cipher, body string) (map[string]string, string) {
		enc, _ := c.Encrypt([]byte(body))
		return map[string]string{"encrypt_type": "aes", "msg_signature": "SIGN"}, "<xml><ToUserName><![CDATA[gh_sprouttest]]></ToUserName><Encrypt><![CDATA[" + enc + "]]></Encrypt></xml>"
	}
	cases := []struct {
		name   string
		safe   bool
		url    func(base string) string
		body   func() (map[string]string, string)
		status int
	}{
		{"bad signature", false, func(b string) string { return strings.Replace(signedURL(b, now, nil), "signature=", "signature=00", 1) }, nil, 403},
		{"missing signature", false, func(b string) string { return b + "?timestamp=1&nonce=2" }, nil, 400},
		{"timestamp too old", false, func(b string) string { return signedURL(b, now.Add(-6*time.Minute), nil) }, nil, 403},
		{"timestamp in the future", false, func(b string) string { return signedURL(b, now.Add(6*time.Minute), nil) }, nil, 403},
		{"bad XML", false, nil, func() (map[string]string, string) { return nil, "<xml><ToUserName>" }, 400},
		{"not a message", false, nil, func() (map[string]string, string) { return nil, "<xml></xml>" }, 400},
		{"oversize body", false, nil, func() (map[string]string, string) {
			return nil, "<xml><Content>" + strings.Repeat("a", 70<<10) + "</Content></xml>"
		}, 413},
		{"another account", false, nil, func() (map[string]string, string) {
			return nil, strings.Replace(plain, "gh_sprouttest", "gh_other", 1)
		}, 403},
		{"plaintext push in safe mode", true, nil, func() (map[string]string, string) { return nil, plain }, 400},
		{"wrong msg_signature", true, nil, func() (map[string]string, string) {
			q, b := encrypted(right, plain)
			q["msg_signature"] = "0000"
			return q, b
		}, 403},
		{"encrypted for another AppID", true, nil, func() (map[string]string, string) { return encrypted(wrongApp, plain) }, 403},
		{"encrypted under another key", true, nil, func() (map[string]string, string) { return encrypted(wrongKey, plain) }, 400},
		{"flipped bit in Encrypt", true, nil, func() (map[string]string, string) {
			q, b := encrypted(right, plain)
			i := strings.Index(b, "<Encrypt><![CDATA[") + len("<Encrypt><![CDATA[") + 10
			flipped := []byte(b)
			if flipped[i] == 'A' {
				flipped[i] = 'B'
			} else {
				flipped[i] = 'A'
			}
			q["keep_signature_of"] = b
			return q, string(flipped)
		}, 403},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := &dispatcher{}
			simOpts := wechatsim.Options{}
			if tc.safe {
				simOpts.EncodingAESKey = aesKey
			}
			e := start(t, simOpts, nil, d)
			u := signedURL(e.url, now, nil)
			if tc.url != nil {
				u = tc.url(e.url)
			}
			body := plain
			if tc.body != nil {
				var extra map[string]string
				extra, body = tc.body()
				if extra != nil {
					u = signedURL(e.url, now, extra)
					if extra["msg_signature"] == "SIGN" || extra["keep_signature_of"] != "" {
						signed := body
						if extra["keep_signature_of"] != "" {
							signed = extra["keep_signature_of"]
						}
						u = withMsgSignature(u, signed)
					}
				}
			}
			status, _ := post(t, u, body)
			if status != tc.status {
				t.Fatalf("status = %d, want %d; logs:\n%s", status, tc.status, e.logs)
			}
			if n := len(d.calls()); n != 0 {
				t.Fatalf("dispatcher called %d times for a rejected push", n)
			}
			logs := e.logs.String()
			if !strings.Contains(logs, "wechat callback rejected") {
				t.Errorf("no log line for the rejection: %s", logs)
			}
			for _, secret := range []string{token, aesKey} {
				if strings.Contains(logs, secret) {
					t.Errorf("a secret appears in the logs: %s", logs)
				}
			}
		})
	}
}

func TestSlowDispatcherIsAnsweredWithSuccessWithinTheBudget(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	d := &dispatcher{answer: func(ctx context.Context, _ *wechat.Message) (*wechat.Reply, error) {
		select {
		case <-release:
		case <-time.After(2 * time.Second):
		}
		return wechat.TextReply("too late"), nil
	}}
	e := start(t, wechatsim.Options{}, func(o *wechat.Options) { o.DispatchBudget = 150 * time.Millisecond }, d)
	begin := time.Now()
	r, err := e.sim.NewUser("oSLOW").Subscribe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(begin); !r.Empty || r.Attempts != 1 || took > time.Second {
		t.Fatalf("reply %+v after %s, want success within the 150 ms budget", r, took)
	}
	if !strings.Contains(e.logs.String(), "exceeded the budget") {
		t.Errorf("no log line for the missed budget:\n%s", e.logs)
	}
}

func TestDispatcherErrorAndPanicAnswerSuccess(t *testing.T) {
	for name, answer := range map[string]func(context.Context, *wechat.Message) (*wechat.Reply, error){
		"error": func(context.Context, *wechat.Message) (*wechat.Reply, error) {
			return nil, errors.New("grain unavailable")
		},
		"panic": func(context.Context, *wechat.Message) (*wechat.Reply, error) { panic("bug") },
	} {
		t.Run(name, func(t *testing.T) {
			e := start(t, wechatsim.Options{EncodingAESKey: aesKey}, nil, &dispatcher{answer: answer})
			r, err := e.sim.NewUser("oERR").Subscribe(context.Background())
			if err != nil || !r.Empty || r.Attempts != 1 {
				t.Fatalf("reply %+v, err %v; want success on the first attempt", r, err)
			}
			if !strings.Contains(e.logs.String(), "dispatcher failed") {
				t.Errorf("no log line:\n%s", e.logs)
			}
		})
	}
}

func TestDispatcherDeadlineIsTheBudget(t *testing.T) {
	var left time.Duration
	d := &dispatcher{answer: func(ctx context.Context, _ *wechat.Message) (*wechat.Reply, error) {
		dl, _ := ctx.Deadline()
		left = time.Until(dl)
		return nil, nil
	}}
	e := start(t, wechatsim.Options{}, nil, d)
	if _, err := e.sim.NewUser("oDL").Subscribe(context.Background()); err != nil {
		t.Fatal(err)
	}
	if left <= 3*time.Second || left > wechat.DefaultDispatchBudget {
		t.Fatalf("dispatcher deadline %s away, want just under the default budget of %s", left, wechat.DefaultDispatchBudget)
	}
}

// WeChat retries a push it got no answer for; the simulator does too, and both attempts carry
// the same message, so the dispatcher sees the same DedupKey twice.
func TestSimulatorRetriesWhenSproutDoesNotAnswerInTime(t *testing.T) {
	var mu sync.Mutex
	first := true
	retried := make(chan struct{})
	d := &dispatcher{answer: func(ctx context.Context, m *wechat.Message) (*wechat.Reply, error) {
		mu.Lock()
		slow := first
		first = false
		mu.Unlock()
		if slow { // the first attempt is answered only after WeChat gave up on it and retried
			select {
			case <-retried:
			case <-ctx.Done():
			}
		} else {
			close(retried)
		}
		return wechat.TextReply("done"), nil
	}}
	e := start(t, wechatsim.Options{CallbackTimeout: 200 * time.Millisecond}, nil, d)
	r, err := e.sim.NewUser("oRETRY").Subscribe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if r.Attempts != 2 || r.Content != "done" {
		t.Fatalf("reply %+v, want the answer to the second attempt", r)
	}
	actortest.Eventually(t, 3*time.Second, "the retry reaches the dispatcher", func() bool { return len(d.calls()) == 2 })
	calls := d.calls()
	if calls[0].DedupKey() != calls[1].DedupKey() {
		t.Fatalf("retry changed the DedupKey: %q vs %q", calls[0].DedupKey(), calls[1].DedupKey())
	}
}

func TestSimulatorGivesUpAfterThreeAttempts(t *testing.T) {
	never := make(chan struct{})
	t.Cleanup(func() { close(never) })
	d := &dispatcher{answer: func(ctx context.Context, m *wechat.Message) (*wechat.Reply, error) {
		select { // answers no attempt in time
		case <-never:
		case <-ctx.Done():
		}
		return nil, nil
	}}
	e := start(t, wechatsim.Options{CallbackTimeout: 100 * time.Millisecond}, nil, d)
	_, err := e.sim.NewUser("oGIVEUP").Subscribe(context.Background())
	if !errors.Is(err, wechatsim.ErrNoAnswer) {
		t.Fatalf("err = %v, want ErrNoAnswer", err)
	}
	actortest.Eventually(t, 3*time.Second, "three attempts reach the dispatcher", func() bool { return len(d.calls()) == 3 })
}

func TestBadSignatureSurfacesToTheSimulatedUser(t *testing.T) {
	d := &dispatcher{}
	e := start(t, wechatsim.Options{}, func(o *wechat.Options) { o.Token = "a-different-token" }, d)
	_, err := e.sim.NewUser("oBAD").Subscribe(context.Background())
	var ce *wechatsim.CallbackError
	if !errors.As(err, &ce) || ce.Status != http.StatusForbidden {
		t.Fatalf("err = %v, want a 403 CallbackError", err)
	}
	if len(d.calls()) != 0 {
		t.Fatal("dispatcher called despite the bad signature")
	}
}

func TestClockSkewUsesTheInjectedClock(t *testing.T) {
	d := &dispatcher{}
	skewed := func() time.Time { return time.Now().Add(10 * time.Minute) }
	e := start(t, wechatsim.Options{}, func(o *wechat.Options) { o.Clock = skewed }, d)
	_, err := e.sim.NewUser("oSKEW").Subscribe(context.Background())
	var ce *wechatsim.CallbackError
	if !errors.As(err, &ce) || ce.Status != http.StatusForbidden || len(d.calls()) != 0 {
		t.Fatalf("err = %v, calls %d; want 403 and no dispatch", err, len(d.calls()))
	}
	e2 := start(t, wechatsim.Options{}, func(o *wechat.Options) { o.Clock = skewed; o.MaxClockSkew = 15 * time.Minute }, d)
	if _, err := e2.sim.NewUser("oSKEW").Subscribe(context.Background()); err != nil {
		t.Fatalf("within a 15 min window: %v", err)
	}
}

func TestNewHandlerValidatesOptions(t *testing.T) {
	d := &dispatcher{}
	cases := map[string]wechat.Options{
		"no AppID":            {Token: token},
		"no Token":            {AppID: appID},
		"bad key":             {AppID: appID, Token: token, EncodingAESKey: "short"},
		"safe mode needs key": {AppID: appID, Token: token, Mode: wechat.ModeSafe},
	}
	for name, o := range cases {
		if _, err := wechat.NewHandler(o, d); err == nil {
			t.Errorf("%s: NewHandler accepted %+v", name, o)
		}
	}
	h, err := wechat.NewHandler(wechat.Options{AppID: appID, Token: token, EncodingAESKey: aesKey}, d)
	if err != nil || h.Mode() != wechat.ModeSafe {
		t.Fatalf("key given: mode %v, err %v; want safe", h.Mode(), err)
	}
}

func signedURL(base string, at time.Time, extra map[string]string) string {
	ts := strconv.FormatInt(at.Unix(), 10)
	q := url.Values{"timestamp": {ts}, "nonce": {"12345"}, "signature": {wechat.Signature(token, ts, "12345")}}
	for k, v := range extra {
		if k != "keep_signature_of" {
			q.Set(k, v)
		}
	}
	return base + "?" + q.Encode()
}

// withMsgSignature signs the Encrypt field of body into u's msg_signature.
func withMsgSignature(u, body string) string {
	parsed, _ := url.Parse(u)
	q := parsed.Query()
	i := strings.Index(body, "<Encrypt><![CDATA[") + len("<Encrypt><![CDATA[")
	enc := body[i : i+strings.Index(body[i:], "]]>")]
	if q.Get("msg_signature") == "SIGN" || q.Get("msg_signature") == "" {
		q.Set("msg_signature", wechat.MsgSignature(token, q.Get("timestamp"), q.Get("nonce"), enc))
	}
	parsed.RawQuery = q.Encode()
	return parsed.String()
}

func get(t *testing.T, u string) (int, string) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func post(t *testing.T, u, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(u, "text/xml", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// allocateDevice asks the simulator's /device/getqrcode for a device id and its QR, as Sprout's
// provisioning will, over plain HTTP (the API client has its own tests).
func allocateDevice(t *testing.T, sim *wechatsim.Platform) (deviceID, qr string) {
	t.Helper()
	resp, err := http.Get(sim.URL() + "/cgi-bin/token?grant_type=client_credential&appid=" + sim.AppID() + "&secret=" + sim.Secret())
	if err != nil {
		t.Fatal(err)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	decode(t, resp, &tok)
	resp, err = http.Get(sim.URL() + "/device/getqrcode?access_token=" + tok.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	var out struct {
		DeviceID string `json:"deviceid"`
		QRTicket string `json:"qrticket"`
	}
	decode(t, resp, &out)
	return out.DeviceID, out.QRTicket
}
