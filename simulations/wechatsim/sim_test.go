package wechatsim_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sprout-iot/sprout/edge/wechat"
	"github.com/sprout-iot/sprout/simulations/wechatsim"
)

const aesKey = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"

func start(t *testing.T, opts wechatsim.Options) *wechatsim.Platform {
	t.Helper()
	p, err := wechatsim.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func getJSON(t *testing.T, u string) map[string]any {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

func postJSON(t *testing.T, u, body string) map[string]any {
	t.Helper()
	resp, err := http.Post(u, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

func token(t *testing.T, p *wechatsim.Platform) string {
	t.Helper()
	m := getJSON(t, p.URL()+"/cgi-bin/token?grant_type=client_credential&appid="+p.AppID()+"&secret="+p.Secret())
	tok, _ := m["access_token"].(string)
	if tok == "" || m["expires_in"].(float64) != 7200 {
		t.Fatalf("token answer %v", m)
	}
	return tok
}

func errcode(m map[string]any) int {
	c, _ := m["errcode"].(float64)
	return int(c)
}

func TestANewTokenRevokesThePreviousOneAndTokensExpire(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	p := start(t, wechatsim.Options{Clock: func() time.Time { mu.Lock(); defer mu.Unlock(); return now }})
	first := token(t, p)
	second := token(t, p)
	stat := func(tok string) int {
		return errcode(getJSON(t, p.URL()+"/device/get_stat?device_id=d&access_token="+tok))
	}
	if c := stat(first); c != 40001 {
		t.Fatalf("replaced token: errcode %d, want 40001", c)
	}
	if c := stat(second); c != 0 {
		t.Fatalf("current token: errcode %d", c)
	}
	mu.Lock()
	now = now.Add(7201 * time.Second)
	mu.Unlock()
	if c := stat(second); c != 42001 {
		t.Fatalf("expired token: errcode %d, want 42001", c)
	}
	if p.TokenFetches() != 2 {
		t.Fatalf("fetches = %d", p.TokenFetches())
	}
	if c := errcode(getJSON(t, p.URL()+"/cgi-bin/token?grant_type=client_credential&appid="+p.AppID()+"&secret=wrong")); c != 40125 {
		t.Fatalf("wrong secret: errcode %d", c)
	}
}

func TestEveryAPIEndpointChecksTheAccessToken(t *testing.T) {
	p := start(t, wechatsim.Options{})
	paths := []string{"/cgi-bin/message/template/send", "/cgi-bin/message/custom/send", "/cgi-bin/qrcode/create",
		"/device/transmsg", "/device/getqrcode", "/device/authorize_device", "/device/compel_bind",
		"/device/compel_unbind", "/device/get_stat"}
	for _, path := range paths {
		if c := errcode(postJSON(t, p.URL()+path, "{}")); c != 41001 {
			t.Errorf("%s without a token: errcode %d, want 41001", path, c)
		}
		if c := errcode(postJSON(t, p.URL()+path+"?access_token=forged", "{}")); c != 40001 {
			t.Errorf("%s with a forged token: errcode %d, want 40001", path, c)
		}
	}
}

func TestInjectedFailuresHitTheNextCallsOnly(t *testing.T) {
	p := start(t, wechatsim.Options{})
	tok := token(t, p)
	p.FailNext("", 2, -1)
	p.FailNext("/device/get_stat", 1, 45009)
	stat := func() int { return errcode(getJSON(t, p.URL()+"/device/get_stat?device_id=d&access_token="+tok)) }
	got := []int{stat(), stat(), stat(), stat()}
	if got[0] != -1 || got[1] != -1 || got[2] != 45009 || got[3] != 0 {
		t.Fatalf("errcodes %v, want [-1 -1 45009 0]", got)
	}
	if token(t, p) == "" { // token endpoints are not hit by path-less failures
		t.Fatal("token fetch failed")
	}
}

// capture is a Sprout stand-in that records raw callbacks and answers with reply.
type capture struct {
	mu     sync.Mutex
	reqs   []*http.Request
	bodies []string
	reply  func(n int) (delay time.Duration, body string)
}

func (c *capture) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	c.mu.Lock()
	c.reqs = append(c.reqs, r)
	c.bodies = append(c.bodies, string(b))
	n := len(c.reqs)
	c.mu.Unlock()
	delay, body := time.Duration(0), "success"
	if c.reply != nil {
		delay, body = c.reply(n)
	}
	select {
	case <-time.After(delay):
	case <-r.Context().Done():
		return
	}
	io.WriteString(w, body)
}

func TestCallbacksAreBuiltSignedAndEncryptedAsWeChatDoes(t *testing.T) {
	for _, mode := range []wechat.Mode{wechat.ModePlaintext, wechat.ModeCompatible, wechat.ModeSafe} {
		t.Run(mode.String(), func(t *testing.T) {
			opts := wechatsim.Options{Mode: mode}
			if mode != wechat.ModePlaintext {
				opts.EncodingAESKey = aesKey
			}
			p, _ := wechatsim.New(opts)
			c := &capture{}
			srv := httptest.NewServer(c)
			defer srv.Close()
			p.SetCallbackURL(srv.URL + "/wechat")
			if _, err := p.NewUser("oCB").ClickMenu(context.Background(), "WATER"); err != nil {
				t.Fatal(err)
			}
			q := c.reqs[0].URL.Query()
			if !wechat.VerifySignature(q.Get("signature"), p.Token(), q.Get("timestamp"), q.Get("nonce")) || q.Get("openid") != "oCB" {
				t.Fatalf("query %v is not signed with the token", q)
			}
			body := c.bodies[0]
			hasPlain := strings.Contains(body, "<EventKey><![CDATA[WATER]]></EventKey>")
			hasEnc := strings.Contains(body, "<Encrypt>")
			if hasPlain != (mode != wechat.ModeSafe) || hasEnc != (mode != wechat.ModePlaintext) {
				t.Fatalf("%s body has plaintext %v, Encrypt %v: %s", mode, hasPlain, hasEnc, body)
			}
			if mode == wechat.ModePlaintext {
				if q.Get("encrypt_type") != "" {
					t.Fatal("encrypt_type in plaintext mode")
				}
				return
			}
			i := strings.Index(body, "<Encrypt><![CDATA[") + len("<Encrypt><![CDATA[")
			enc := body[i : i+strings.Index(body[i:], "]]>")]
			if q.Get("encrypt_type") != "aes" || !wechat.VerifySignature(q.Get("msg_signature"), p.Token(), q.Get("timestamp"), q.Get("nonce"), enc) {
				t.Fatalf("msg_signature does not cover Encrypt: %v", q)
			}
			ci, _ := wechat.NewCipher(aesKey, p.AppID())
			plain, err := ci.Decrypt(enc)
			if err != nil {
				t.Fatal(err)
			}
			m, err := wechat.ParseMessage(plain)
			if err != nil || m.MsgType != "event" || m.Event != "CLICK" || m.EventKey != "WATER" || m.FromUserName != "oCB" || m.ToUserName != p.AccountID() {
				t.Fatalf("decrypted %+v, %v", m, err)
			}
		})
	}
}

func TestCallbackIsRetriedWithTheSameBodyWhenSproutIsSlow(t *testing.T) {
	p, _ := wechatsim.New(wechatsim.Options{CallbackTimeout: 100 * time.Millisecond})
	c := &capture{reply: func(n int) (time.Duration, string) {
		if n < 3 {
			return time.Second, ""
		}
		return 0, "success"
	}}
	srv := httptest.NewServer(c)
	defer srv.Close()
	p.SetCallbackURL(srv.URL)
	r, err := p.NewUser("oRT").SendText(context.Background(), "hi")
	if err != nil || r.Attempts != 3 || !r.Empty {
		t.Fatalf("reply %+v, %v; want success on the third attempt", r, err)
	}
	if c.bodies[0] != c.bodies[1] || c.bodies[1] != c.bodies[2] {
		t.Fatal("retries changed the message")
	}
}

func TestUnknownDeviceQRIsRefused(t *testing.T) {
	p := start(t, wechatsim.Options{})
	p.SetCallbackURL("http://127.0.0.1:1/unused")
	_, err := p.NewUser("").ScanDeviceQR(context.Background(), "http://we.qq.com/d/NOPE#aGk=")
	if !errors.Is(err, wechatsim.ErrUnknownQR) {
		t.Fatalf("err = %v, want ErrUnknownQR", err)
	}
}

func TestDeviceQRScanBindsAndPushesTheSuffixData(t *testing.T) {
	p := start(t, wechatsim.Options{})
	c := &capture{}
	srv := httptest.NewServer(c)
	defer srv.Close()
	p.SetCallbackURL(srv.URL)
	tok := token(t, p)
	q := getJSON(t, p.URL()+"/device/getqrcode?product_id=7&access_token="+tok)
	deviceID, ticket := q["deviceid"].(string), q["qrticket"].(string)
	u := p.NewUser("oSCAN")
	if _, err := u.ScanDeviceQR(context.Background(), ticket+"#dD0xMjM="); err != nil {
		t.Fatal(err)
	}
	if !p.IsBound(deviceID, u.OpenID) || len(c.bodies) != 2 {
		t.Fatalf("bound %v after %d callbacks, want bound after subscribe + bind", p.IsBound(deviceID, u.OpenID), len(c.bodies))
	}
	m, _ := wechat.ParseMessage([]byte(c.bodies[1]))
	if m.MsgType != "device_event" || m.Event != "bind" || m.DeviceID != deviceID || m.DeviceType != p.AccountID() || m.Content != "dD0xMjM=" || m.OpenID != u.OpenID || m.SessionID == "" {
		t.Fatalf("bind push %+v", m)
	}
	if _, err := u.Unbind(context.Background(), deviceID); err != nil || p.IsBound(deviceID, u.OpenID) {
		t.Fatalf("unbind: %v, still bound %v", err, p.IsBound(deviceID, u.OpenID))
	}
}

func TestWaitForSeesMessagesArrivingLaterAndTimesOut(t *testing.T) {
	p := start(t, wechatsim.Options{})
	c := &capture{}
	srv := httptest.NewServer(c)
	defer srv.Close()
	p.SetCallbackURL(srv.URL)
	u := p.NewUser("oWAIT")
	if _, err := u.Subscribe(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := u.SendText(context.Background(), "hello"); err != nil {
		t.Fatal(err)
	}
	tok := token(t, p)
	go func() {
		time.Sleep(50 * time.Millisecond)
		postJSON(t, p.URL()+"/cgi-bin/message/custom/send?access_token="+url.QueryEscape(tok),
			`{"touser":"oWAIT","msgtype":"text","text":{"content":"watered 120 ml"}}`)
	}()
	e, err := p.WaitFor(u.OpenID, 2*time.Second, func(e wechatsim.Entry) bool {
		return e.Kind == wechatsim.KindCustomText && strings.Contains(e.Text, "watered")
	})
	if err != nil || e.Direction != wechatsim.Out {
		t.Fatalf("WaitFor = %+v, %v", e, err)
	}
	_, err = p.WaitFor(u.OpenID, 50*time.Millisecond, func(e wechatsim.Entry) bool { return e.Kind == wechatsim.KindTemplate })
	if !errors.Is(err, wechatsim.ErrWaitTimeout) {
		t.Fatalf("err = %v, want ErrWaitTimeout", err)
	}
	// The conversation is on the JSON page too: subscribe, the user's text, the custom message.
	resp, err := http.Get(p.URL() + "/_sim/conversations/oWAIT")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var es []wechatsim.Entry
	json.NewDecoder(resp.Body).Decode(&es)
	if len(es) != 3 || es[1].Direction != wechatsim.In || es[1].Text != "hello" || es[2].Text != "watered 120 ml" {
		t.Fatalf("dump %+v", es)
	}
}

func TestAuthorizePageListsUsersWithoutSimOpenID(t *testing.T) {
	p := start(t, wechatsim.Options{})
	p.NewUser("oALICE")
	resp, err := http.Get(p.URL() + "/connect/oauth2/authorize?appid=" + p.AppID() + "&redirect_uri=" + url.QueryEscape("https://x.example/cb") + "&response_type=code&scope=snsapi_base&state=s")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(b), "oALICE") {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
}
