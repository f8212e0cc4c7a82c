package wechatsim_test

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sprout-iot/sprout/simulations/wechatsim"
)

const aesKey = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"

func ctx5(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// clock is a fake clock the tests move by hand.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2026, 12, 3, 5, 0, 0, 0, time.UTC)} }
func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func start(t *testing.T, opts wechatsim.Options) *wechatsim.Platform {
	t.Helper()
	if opts.Logger == nil && !testing.Verbose() {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	p, err := wechatsim.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// push is one callback as the stand-in for Sprout received it, verified and decrypted.
type push struct {
	Query        url.Values
	Raw          string // the body as posted
	Plain        string // the message XML (decrypted in safe mode)
	ToUserName   string `xml:"ToUserName"`
	FromUserName string `xml:"FromUserName"`
	MsgType      string `xml:"MsgType"`
	Event        string `xml:"Event"`
	EventKey     string `xml:"EventKey"`
	Ticket       string `xml:"Ticket"`
	Content      string `xml:"Content"`
	MsgID        string `xml:"MsgID"`
	Status       string `xml:"Status"`
	DeviceID     string `xml:"DeviceID"`
	DeviceType   string `xml:"DeviceType"`
	OpenID       string `xml:"OpenID"`
	SessionID    string `xml:"SessionID"`
}

// sprout is a tiny stand-in for Sprout's callback URL: it checks the signature (and
// msg_signature), decrypts, records each push and answers with answer (default "success").
type sprout struct {
	t      *testing.T
	p      *wechatsim.Platform
	mu     sync.Mutex
	pushes []push
	got    chan push
	answer func(n int, m push) (delay time.Duration, body string)
	srv    *httptest.Server
}

func newSprout(t *testing.T, p *wechatsim.Platform) *sprout {
	s := &sprout{t: t, p: p, got: make(chan push, 100)}
	s.srv = httptest.NewServer(s)
	t.Cleanup(s.srv.Close)
	p.SetCallbackURL(s.srv.URL + "/wechat")
	return s
}

func (s *sprout) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	q := r.URL.Query()
	m := push{Query: q, Raw: string(b), Plain: string(b)}
	if wechatsim.Sign(s.p.Token(), q.Get("timestamp"), q.Get("nonce")) != q.Get("signature") {
		s.t.Errorf("callback with a bad signature: %v", q)
		http.Error(w, "bad signature", http.StatusForbidden)
		return
	}
	if q.Get("encrypt_type") == "aes" {
		var env struct {
			Encrypt string `xml:"Encrypt"`
		}
		xml.Unmarshal(b, &env)
		if wechatsim.Sign(s.p.Token(), q.Get("timestamp"), q.Get("nonce"), env.Encrypt) != q.Get("msg_signature") {
			s.t.Errorf("msg_signature does not cover Encrypt")
		}
		plain, err := wechatsim.Open(s.p.EncodingAESKey(), s.p.AppID(), env.Encrypt)
		if err != nil {
			s.t.Errorf("decrypt: %v", err)
		}
		m.Plain = string(plain)
	}
	if err := xml.Unmarshal([]byte(m.Plain), &m); err != nil {
		s.t.Errorf("push is not XML: %v: %s", err, m.Plain)
	}
	s.mu.Lock()
	s.pushes = append(s.pushes, m)
	n := len(s.pushes)
	s.mu.Unlock()
	delay, body := time.Duration(0), "success"
	if s.answer != nil {
		delay, body = s.answer(n, m)
	}
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	io.WriteString(w, body)
	s.got <- m
}

// next waits for the next push Sprout answered.
func (s *sprout) next() push {
	s.t.Helper()
	select {
	case m := <-s.got:
		return m
	case <-time.After(5 * time.Second):
		s.t.Fatal("no push within 5 s")
		return push{}
	}
}

func (s *sprout) all() []push {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]push(nil), s.pushes...)
}

// textReply is a plaintext passive text reply.
func textReply(p *wechatsim.Platform, m push, text string) string {
	return fmt.Sprintf("<xml><ToUserName><![CDATA[%s]]></ToUserName><FromUserName><![CDATA[%s]]></FromUserName>"+
		"<CreateTime>1</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[%s]]></Content></xml>",
		m.FromUserName, p.AccountID(), text)
}

// api calls the platform like Sprout does.
type api struct {
	t   *testing.T
	p   *wechatsim.Platform
	tok string
}

func newAPI(t *testing.T, p *wechatsim.Platform) *api {
	a := &api{t: t, p: p}
	m := a.get("/cgi-bin/token?grant_type=client_credential&appid=" + p.AppID() + "&secret=" + p.Secret())
	a.tok, _ = m["access_token"].(string)
	if a.tok == "" {
		t.Fatalf("token: %v", m)
	}
	return a
}

func (a *api) url(path string) string {
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	if a.tok == "" || strings.HasPrefix(path, "/cgi-bin/token") {
		return a.p.URL() + path
	}
	return a.p.URL() + path + sep + "access_token=" + url.QueryEscape(a.tok)
}

func decode(t *testing.T, resp *http.Response, err error) map[string]any {
	t.Helper()
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

func (a *api) get(path string) map[string]any {
	a.t.Helper()
	resp, err := http.Get(a.url(path))
	return decode(a.t, resp, err)
}

func (a *api) post(path string, body any) map[string]any {
	a.t.Helper()
	var b []byte
	switch v := body.(type) {
	case string:
		b = []byte(v)
	default:
		b, _ = json.Marshal(v)
	}
	resp, err := http.Post(a.url(path), "application/json", strings.NewReader(string(b)))
	return decode(a.t, resp, err)
}

func (a *api) cs(openID, text string) int {
	a.t.Helper()
	return errcode(a.post("/cgi-bin/message/custom/send", map[string]any{"touser": openID, "msgtype": "text",
		"text": map[string]string{"content": text}}))
}

func (a *api) template(openID, id, link string, data map[string]string) map[string]any {
	a.t.Helper()
	d := map[string]any{}
	for k, v := range data {
		d[k] = map[string]string{"value": v}
	}
	body := map[string]any{"touser": openID, "template_id": id, "data": d}
	if link != "" {
		body["url"] = link
	}
	return a.post("/cgi-bin/message/template/send", body)
}

func errcode(m map[string]any) int {
	c, _ := m["errcode"].(float64)
	return int(c)
}

// alertData is valid data for tmpl_alert_raised.
func alertData() map[string]string {
	return map[string]string{"thing1": "阳台的绿萝", "thing2": "土壤太干", "character_string3": "12%",
		"time4": "2026-12-03 13:05"}
}

func last(p *wechatsim.Platform, openID string) wechatsim.Entry {
	es := p.Conversation(openID)
	if len(es) == 0 {
		return wechatsim.Entry{}
	}
	return es[len(es)-1]
}

// lastSend is the latest entry that is not a receipt (receipts arrive in the background).
func lastSend(p *wechatsim.Platform, openID string) wechatsim.Entry {
	es := p.Conversation(openID)
	for i := len(es) - 1; i >= 0; i-- {
		if es[i].Kind != wechatsim.KindReceipt {
			return es[i]
		}
	}
	return wechatsim.Entry{}
}
