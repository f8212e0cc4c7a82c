package wechatsim_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/sprout-iot/sprout/simulations/wechatsim"
)

func TestAParametricQRFromTheAPIScansAsSubscribeThenSCAN(t *testing.T) {
	c := newClock()
	p := start(t, wechatsim.Options{Clock: c.Now})
	s := newSprout(t, p)
	a := newAPI(t, p)
	m := a.post("/cgi-bin/qrcode/create", `{"expire_seconds":600,"action_name":"QR_STR_SCENE","action_info":{"scene":{"scene_str":"bind:pot-1"}}}`)
	link, _ := m["url"].(string)
	if !strings.HasPrefix(link, "http://weixin.qq.com/q/") || m["ticket"] == "" || m["expire_seconds"].(float64) != 600 {
		t.Fatalf("qrcode/create %v", m)
	}
	u := p.NewUser("oQR")
	r, err := u.Scan(ctx5(t), link)
	if err != nil || r.Kind != wechatsim.ScanEvent {
		t.Fatalf("scan %+v %v", r, err)
	}
	ev := s.all()[0]
	if ev.Event != "subscribe" || ev.EventKey != "qrscene_bind:pot-1" || ev.Ticket != m["ticket"] || !u.Follows() {
		t.Fatalf("non-follower's scan posted %+v", ev)
	}
	if _, err := u.ScanSproutQR(ctx5(t), "bind:pot-1"); err != nil {
		t.Fatal(err)
	}
	ev = s.all()[1]
	if ev.Event != "SCAN" || ev.EventKey != "bind:pot-1" {
		t.Fatalf("follower's scan posted %+v", ev)
	}
	if _, err := u.ScanSproutQR(ctx5(t), "bind:pot-2"); !errors.Is(err, wechatsim.ErrUnknownScene) {
		t.Fatalf("a scene nobody created: %v", err)
	}
	c.Advance(601 * time.Second)
	r, err = u.Scan(ctx5(t), link)
	if err != nil || r.Kind != wechatsim.ScanShownAsText || len(s.all()) != 2 {
		t.Fatalf("expired code: %+v %v, %d pushes", r, err, len(s.all()))
	}
	perm := a.post("/cgi-bin/qrcode/create", `{"action_name":"QR_LIMIT_STR_SCENE","action_info":{"scene":{"scene_str":"label:SP-9"}}}`)
	if _, has := perm["expire_seconds"]; has {
		t.Fatalf("permanent code with expire_seconds: %v", perm)
	}
	for _, bad := range []string{`{"action_name":"QR_STR_SCENE","action_info":{"scene":{"scene_str":""}}}`,
		`{"action_name":"QR_STR_SCENE","action_info":{"scene":{"scene_str":"` + strings.Repeat("x", 65) + `"}}}`,
		`{"action_name":"QR_FOO"}`} {
		if code := errcode(a.post("/cgi-bin/qrcode/create", bad)); code == 0 {
			t.Errorf("%s accepted", bad)
		}
	}
}

func TestScanningAnythingElseShowsTextAndSendsNothing(t *testing.T) {
	p := start(t, wechatsim.Options{})
	s := newSprout(t, p)
	u := p.NewUser("oTXT")
	for _, content := range []string{"SP-0001:k3y", "sprout://bind/pot-1", "http://weixin.qq.com/q/unknowncode"} {
		r, err := u.Scan(ctx5(t), content)
		if err != nil || r.Kind != wechatsim.ScanShownAsText {
			t.Fatalf("%q: %+v %v", content, r, err)
		}
	}
	if len(s.all()) != 0 || u.Follows() {
		t.Fatalf("text scans posted %d callbacks, follows %v", len(s.all()), u.Follows())
	}
	if e := last(p, "oTXT"); e.Kind != wechatsim.KindScanText {
		t.Fatalf("recorded %+v", e)
	}
}

// page is a tiny site with WeChat OAuth: /bind starts OAuth (through open.weixin.qq.com), /cb
// exchanges the code and sets a cookie, /me shows the cookie and the User-Agent.
func page(t *testing.T, p *wechatsim.Platform, authorizeBase string) *httptest.Server {
	mux := http.NewServeMux()
	var srv *httptest.Server
	mux.HandleFunc("/bind", func(w http.ResponseWriter, r *http.Request) {
		v := url.Values{"appid": {p.AppID()}, "redirect_uri": {srv.URL + "/cb"}, "response_type": {"code"},
			"scope": {"snsapi_base"}, "state": {"s1"}}
		http.Redirect(w, r, authorizeBase+"/connect/oauth2/authorize?"+v.Encode()+"#wechat_redirect", http.StatusFound)
	})
	mux.HandleFunc("/cb", func(w http.ResponseWriter, r *http.Request) {
		resp, err := http.Get(p.URL() + "/sns/oauth2/access_token?appid=" + p.AppID() + "&secret=" + p.Secret() +
			"&code=" + r.URL.Query().Get("code") + "&grant_type=authorization_code")
		if err != nil {
			t.Error(err)
			return
		}
		defer resp.Body.Close()
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		if r.URL.Query().Get("state") != "s1" {
			t.Errorf("state %q", r.URL.Query().Get("state"))
		}
		openid, _ := m["openid"].(string)
		snap, _ := m["is_snapshotuser"].(float64)
		http.SetCookie(w, &http.Cookie{Name: "who", Value: openid, Path: "/"})
		if snap == 1 {
			http.SetCookie(w, &http.Cookie{Name: "snap", Value: "1", Path: "/"})
		}
		http.Redirect(w, r, "/me", http.StatusFound)
	})
	mux.HandleFunc("/me", func(w http.ResponseWriter, r *http.Request) {
		who, _ := r.Cookie("who")
		snap, _ := r.Cookie("snap")
		out := "who=" + who.Value + " ua=" + r.UserAgent()
		if snap != nil {
			out += " snapshot"
		}
		w.Write([]byte(out))
	})
	srv = httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func TestAURLOpensInTheUsersBrowserWithWeChatsOAuth(t *testing.T) {
	p := start(t, wechatsim.Options{})
	s := newSprout(t, p)
	for _, base := range []string{"https://open.weixin.qq.com", p.URL()} {
		site := page(t, p, base)
		u := p.NewUser("")
		r, err := u.Scan(ctx5(t), site.URL+"/bind")
		if err != nil || r.Kind != wechatsim.ScanOpenedPage {
			t.Fatalf("scan %+v %v", r, err)
		}
		if r.Page.Status != 200 || !strings.HasPrefix(r.Page.Body, "who="+u.OpenID+" ") ||
			!strings.Contains(r.Page.Body, "MicroMessenger/") || !strings.HasSuffix(r.Page.URL, "/me") {
			t.Fatalf("%s: page %+v", base, r.Page)
		}
		// The cookie stays in this user's browser.
		resp, err := u.Browser().Get(site.URL + "/me")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if len(s.all()) != 0 {
			t.Fatal("opening a page posted a callback")
		}
	}
}

func TestASnapshotUserGetsAVirtualOpenID(t *testing.T) {
	p := start(t, wechatsim.Options{})
	newSprout(t, p)
	site := page(t, p, "https://open.weixin.qq.com")
	u := p.NewUser("oREAL")
	u.SetSnapshot(true)
	pg, err := u.OpenLink(ctx5(t), site.URL+"/bind")
	if err != nil || !strings.Contains(pg.Body, "snapshot") || strings.Contains(pg.Body, "who=oREAL") {
		t.Fatalf("snapshot page %+v %v", pg, err)
	}
}

func TestOAuthCodesAreSingleUseAndRedirectsChecked(t *testing.T) {
	p := start(t, wechatsim.Options{OAuthDomains: []string{"sprout.example"}})
	u := p.NewUser("oOA")
	code := u.Authorize("snsapi_base")
	ex := func() int {
		resp, err := http.Get(p.URL() + "/sns/oauth2/access_token?appid=" + p.AppID() + "&secret=" + p.Secret() + "&code=" + code + "&grant_type=authorization_code")
		return errcode(decode(t, resp, err))
	}
	if c := ex(); c != 0 {
		t.Fatalf("first use: %d", c)
	}
	if c := ex(); c != 40163 {
		t.Fatalf("second use: %d, want 40163", c)
	}
	resp, err := u.Browser().Get("https://open.weixin.qq.com/connect/oauth2/authorize?appid=" + p.AppID() +
		"&redirect_uri=" + url.QueryEscape("https://evil.example/cb") + "&response_type=code&scope=snsapi_base&state=x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Fatalf("a redirect_uri outside the OAuth domains: %d", resp.StatusCode)
	}
}

func TestAMenuLinkPostsVIEWAndOpensThePage(t *testing.T) {
	p := start(t, wechatsim.Options{})
	s := newSprout(t, p)
	site := page(t, p, "https://open.weixin.qq.com")
	u := p.NewUser("oVIEW")
	u.Subscribe(ctx5(t))
	pg, err := u.OpenMenuLink(ctx5(t), site.URL+"/bind")
	if err != nil || !strings.HasPrefix(pg.Body, "who=oVIEW") {
		t.Fatalf("%+v %v", pg, err)
	}
	if ev := s.all()[1]; ev.Event != "VIEW" || ev.EventKey != site.URL+"/bind" {
		t.Fatalf("VIEW push %+v", ev)
	}
}

func TestTheAuthorizePageListsUsersForAPerson(t *testing.T) {
	p := start(t, wechatsim.Options{})
	p.NewUser("oALICE")
	resp, err := http.Get(p.URL() + "/connect/oauth2/authorize?appid=" + p.AppID() + "&redirect_uri=" +
		url.QueryEscape("https://x.example/cb") + "&response_type=code&scope=snsapi_base&state=s")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	if resp.StatusCode != 200 || !strings.Contains(b.String(), "oALICE") {
		t.Fatalf("%d %s", resp.StatusCode, b.String())
	}
}
