package wechatsim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"time"
)

// UserAgent is what the simulated users' in-WeChat browser sends: a phone's WebView with
// WeChat's MicroMessenger token, which is how pages recognise WeChat.
const UserAgent = "Mozilla/5.0 (Linux; Android 14; Pixel 8 Build/UQ1A.240205.004; wv) AppleWebKit/537.36 " +
	"(KHTML, like Gecko) Version/4.0 Chrome/122.0.6261.120 Mobile Safari/537.36 XWEB/1220133 MMWEBSDK/20240301 " +
	"MMWEBID/6533 MicroMessenger/8.0.48.2580(0x28003036) WeChat/arm64 Weixin NetType/WIFI Language/zh_CN ABI/arm64"

// Scan outcomes.
const (
	ScanOpenedPage  = "page"        // an http(s) URL opened in the user's in-WeChat browser
	ScanEvent       = "event"       // a parametric QR: subscribe (with qrscene_) or SCAN posted
	ScanDeviceBind  = "device_bind" // a device QR: the user was bound and device_event bind posted
	ScanShownAsText = "text"        // anything else: WeChat shows the text and does nothing
)

// Page is what the user's browser shows after following redirects.
type Page struct {
	URL    string // the final URL
	Status int
	Body   string
}

// ScanResult is what WeChat's scanner (扫一扫) did with one code.
type ScanResult struct {
	Kind  string // ScanOpenedPage, ScanEvent, ScanDeviceBind or ScanShownAsText
	Page  *Page  // ScanOpenedPage
	Reply *Reply // ScanEvent, ScanDeviceBind: Sprout's answer to the callback
	Text  string // ScanShownAsText: the text shown
}

// Scan is the user scanning content with WeChat's scanner:
//   - a parametric QR url (http://weixin.qq.com/q/<code>) made by /cgi-bin/qrcode/create becomes
//     subscribe with EventKey qrscene_<scene> (a non-follower, who then follows) or SCAN;
//   - a device QR (http(s)://we.qq.com/d/<ticket>[#data]) binds through the device platform;
//   - any other http(s) URL opens in the user's browser (Browser), redirects followed, WeChat's
//     OAuth answered as this user;
//   - anything else is shown as text and nothing is sent to anyone.
func (u *User) Scan(ctx context.Context, content string) (*ScanResult, error) {
	c := strings.TrimSpace(content)
	pu, err := url.Parse(c)
	isURL := err == nil && (pu.Scheme == "http" || pu.Scheme == "https") && pu.Host != ""
	if isURL && pu.Host == "weixin.qq.com" && strings.HasPrefix(pu.Path, "/q/") {
		u.p.mu.Lock()
		q := u.p.qrByCode[strings.TrimPrefix(pu.Path, "/q/")]
		u.p.mu.Unlock()
		if q != nil {
			r, err := u.scanParam(ctx, q)
			if errors.Is(err, ErrQRExpired) {
				u.p.recordScanText(u.OpenID, c, "二维码已过期")
				return &ScanResult{Kind: ScanShownAsText, Text: "二维码已过期"}, nil
			}
			return &ScanResult{Kind: ScanEvent, Reply: r}, err
		}
		// A code of another account, or never made: WeChat would open it as a page; there is no
		// such page here, so it shows an error as text.
		u.p.recordScanText(u.OpenID, c, "无法识别的二维码")
		return &ScanResult{Kind: ScanShownAsText, Text: c}, nil
	}
	if isURL && pu.Host == "we.qq.com" && strings.HasPrefix(pu.Path, "/d/") {
		r, err := u.ScanDeviceQR(ctx, c)
		if err != nil {
			return nil, err
		}
		return &ScanResult{Kind: ScanDeviceBind, Reply: r}, nil
	}
	if isURL {
		pg, err := u.open(ctx, c)
		if err != nil {
			return nil, err
		}
		return &ScanResult{Kind: ScanOpenedPage, Page: pg}, nil
	}
	u.p.recordScanText(u.OpenID, c, "")
	return &ScanResult{Kind: ScanShownAsText, Text: c}, nil
}

func (p *Platform) recordScanText(openID, content, note string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.record(Entry{OpenID: openID, Direction: In, Kind: KindScanText, Text: content, Errmsg: note})
}

// OpenMenuLink taps a menu item of type view: WeChat posts the VIEW event (EventKey = the URL),
// which opens no customer-service window, and opens the page in the user's browser.
func (u *User) OpenMenuLink(ctx context.Context, link string) (*Page, error) {
	if err := u.following(); err != nil {
		return nil, err
	}
	if _, err := u.event(ctx, "VIEW", s("EventKey", link)); err != nil {
		return nil, err
	}
	return u.open(ctx, link)
}

// OpenLink opens a URL in the user's browser as a link tapped in a chat (a template card's link):
// no event is posted.
func (u *User) OpenLink(ctx context.Context, link string) (*Page, error) { return u.open(ctx, link) }

func (u *User) open(ctx context.Context, link string) (*Page, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, link, nil)
	if err != nil {
		return nil, fmt.Errorf("wechatsim: open %q: %w", link, err)
	}
	resp, err := u.Browser().Do(req)
	if err != nil {
		u.p.mu.Lock()
		u.p.record(Entry{OpenID: u.OpenID, Direction: In, Kind: KindPage, URL: link, Errmsg: err.Error()})
		u.p.mu.Unlock()
		return nil, fmt.Errorf("wechatsim: open %q: %w", link, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	pg := &Page{URL: resp.Request.URL.String(), Status: resp.StatusCode, Body: string(body)}
	u.p.mu.Lock()
	u.p.record(Entry{OpenID: u.OpenID, Direction: In, Kind: KindPage, URL: pg.URL, Status: pg.Status})
	u.p.mu.Unlock()
	return pg, err
}

// Browser is the user's in-WeChat browser: a cookie jar of its own, WeChat's User-Agent,
// redirects followed, and WeChat's OAuth (open.weixin.qq.com or this platform's
// /connect/oauth2/authorize) answered as this user with a single-use code.
func (u *User) Browser() *http.Client {
	u.p.mu.Lock()
	defer u.p.mu.Unlock()
	st := u.st()
	if st.browser == nil {
		jar, _ := cookiejar.New(nil)
		st.jar = jar
		st.browser = &http.Client{Jar: jar, Timeout: 30 * time.Second,
			Transport: &wxTransport{p: u.p, openID: u.OpenID, base: http.DefaultTransport}}
	}
	return st.browser
}

type wxTransport struct {
	p      *Platform
	openID string
	base   http.RoundTripper
}

func (t *wxTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("User-Agent", UserAgent)
	if r.Header.Get("Accept-Language") == "" {
		r.Header.Set("Accept-Language", "zh-CN,zh;q=0.9")
	}
	if r.URL.Path == "/connect/oauth2/authorize" && (r.URL.Host == "open.weixin.qq.com" || t.isPlatform(r.URL.Host)) {
		loc, msg := t.p.authorize(t.openID, r.URL.Query())
		w := httptest.NewRecorder()
		if msg != "" {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, msg)
		} else {
			w.Header().Set("Location", loc)
			w.WriteHeader(http.StatusFound)
		}
		resp := w.Result()
		resp.Request = r
		return resp, nil
	}
	return t.base.RoundTrip(r)
}

func (t *wxTransport) isPlatform(host string) bool {
	u := t.p.URL()
	return u != "" && strings.TrimPrefix(u, "http://") == host
}

// CreateQR is what the account does with /cgi-bin/qrcode/create (a permanent string-scene code),
// for tests that need a code without calling the API. It returns the code's content (url).
func (p *Platform) CreateQR(scene string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	q := &paramQR{scene: scene, ticket: "gQ" + randHex(20), code: randHex(11)}
	p.qrByCode[q.code] = q
	p.qrByScene[scene] = q
	return "http://weixin.qq.com/q/" + q.code
}
