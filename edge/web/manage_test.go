package web

import (
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sprout-iot/sprout/edge/wechat/qr"
	"github.com/sprout-iot/sprout/messages/devicepb"
)

var testQRKey = []byte("0123456789abcdef0123456789abcdef")

func testVerifyScene(code string) (string, error) {
	c, err := qr.Verify(qr.KeyMap{"pot": testQRKey}, code, time.Now())
	return c.Device, err
}

var inviteRE = regexp.MustCompile(`value="([^"]*/app/join\?t=[^"]+)"`)

// testManage is TestApp's second half: settings, unbinding, family sharing and binding by code.
// Every user here is new, so the per-user command interval of the first half does not interfere.
const (
	dan = "oDan-000000000001"
	eve = "oEve-000000000002"
	gus = "oGus-000000000003"
	hal = "oHal-000000000004"
)

func testManage(t *testing.T, w *world) {
	secret := w.addPot(t, "pot-fam", dan)
	w.addPot(t, "pot-gus", gus)
	fam := w.connect(t, "pot-fam", secret, devicepb.CommandStatus_COMMAND_STATUS_DONE)
	danC := w.signIn(t, dan)
	gusC := w.signIn(t, gus)

	t.Run("OwnerSetsThresholds", func(t *testing.T) {
		_, body := get(t, danC, w.url+"/app/plants/pot-fam")
		if !strings.Contains(body, `name="moisture_min"`) || !strings.Contains(body, `value="20"`) || !strings.Contains(body, "/app/plants/pot-fam/invite") {
			t.Fatalf("the owner's plant page lacks the settings form (with the current values) or the invite:\n%s", body)
		}
		if code, body := w.post(t, danC, dan, "/app/plants/pot-fam/settings", url.Values{"moisture_min": {"150"}, "temp_max": {"30"}, "tank_empty": {"10"}}); code != http.StatusBadRequest || fam.Commands() != 0 {
			t.Fatalf("moisture 150%%: %d %s, want 400 and nothing sent", code, body)
		}
		code, body := w.post(t, danC, dan, "/app/plants/pot-fam/settings", url.Values{"moisture_min": {"30"}, "temp_max": {"32.5"}, "tank_empty": {"10"}})
		if r := outcomeOf(t, body); code != 200 || r.Outcome != "done" || r.Message != "设置已保存到花盆" {
			t.Fatalf("settings: %d %s, want done", code, body)
		}
		cfg := w.users(t, "pot-fam").Config
		if th := cfg.GetThresholds(); th.SoilMoistureMinPct != 30 || th.TemperatureMaxC != 32.5 || th.TankEmptyPct != 10 || th.HysteresisPct != 5 ||
			cfg.ReportIntervalS != 60 || cfg.MaxWaterMs != 30000 {
			t.Fatalf("config after SET_CONFIG: %v; want the new thresholds and the rest unchanged", cfg)
		}
		code, body = w.post(t, gusC, gus, "/app/plants/pot-gus/settings", url.Values{"moisture_min": {"30"}, "temp_max": {"32"}, "tank_empty": {"10"}})
		if r := outcomeOf(t, body); code != 200 || r.Outcome != "offline" || !strings.Contains(r.Message, "在线") {
			t.Fatalf("settings on an offline pot: %d %s, want offline", code, body)
		}
	})

	var eveC *http.Client
	t.Run("InviteBindsASecondUserAsMember", func(t *testing.T) {
		code, body := get(t, danC, w.url+"/app/plants/pot-fam/invite")
		m := inviteRE.FindStringSubmatch(body)
		if code != 200 || m == nil || !strings.Contains(body, "data:image/png;base64,") {
			t.Fatalf("invite page (%d) lacks the link or the QR:\n%s", code, body)
		}
		link, _ := url.Parse(html.UnescapeString(m[1]))
		// Eve opens the link signed out: sign-in brings her back to it, and it asks first.
		var page string
		eveC, page = w.signInAt(t, eve, link.RequestURI())
		if !strings.Contains(page, "pot-fam") || len(w.users(t, "pot-fam").Users) != 1 {
			t.Fatalf("the invite's page should ask before binding:\n%s", page)
		}
		code, body = w.post(t, eveC, eve, "/app/join", url.Values{"t": {link.Query().Get("t")}})
		if r := outcomeOf(t, body); code != 200 || r.Outcome != "bound" {
			t.Fatalf("join: %d %s", code, body)
		}
		if us := w.users(t, "pot-fam").Users; len(us) != 2 || us[0] != dan || us[1] != eve {
			t.Fatalf("users after the join: %v, want [dan eve]", us)
		}
		if _, body := get(t, eveC, w.url+"/app/"); !strings.Contains(body, "pot-fam") || !strings.Contains(body, "家人") {
			t.Fatalf("eve's list lacks pot-fam as family:\n%s", body)
		}
		_, body = get(t, danC, w.url+"/app/plants/pot-fam")
		if !strings.Contains(body, mask(eve)) || strings.Contains(body, eve) {
			t.Fatalf("the owner should see eve masked (%s), never her OpenID:\n%s", mask(eve), body)
		}
	})

	t.Run("MemberIsNotOwner", func(t *testing.T) {
		code, body := get(t, eveC, w.url+"/app/plants/pot-fam")
		if code != 200 || strings.Contains(body, `name="moisture_min"`) || strings.Contains(body, "/invite") || strings.Contains(body, "members/remove") {
			t.Fatalf("a member's plant page (%d) must show no settings, invite or family forms:\n%s", code, body)
		}
		before := fam.Commands()
		if code, body := w.post(t, eveC, eve, "/app/plants/pot-fam/settings", url.Values{"moisture_min": {"10"}, "temp_max": {"40"}, "tank_empty": {"1"}}); code != http.StatusForbidden {
			t.Fatalf("member settings: %d %s, want 403", code, body)
		}
		if code, _ := get(t, eveC, w.url+"/app/plants/pot-fam/invite"); code != http.StatusForbidden {
			t.Fatalf("member invite: %d, want 403", code)
		}
		if code, body := w.post(t, eveC, eve, "/app/plants/pot-fam/members/remove", url.Values{"member": {w.web.memberRef("pot-fam", dan)}}); code != http.StatusForbidden {
			t.Fatalf("member removing the owner: %d %s, want 403", code, body)
		}
		if fam.Commands() != before || len(w.users(t, "pot-fam").Users) != 2 {
			t.Fatal("a member's refused request changed something")
		}
	})

	t.Run("BadOrExpiredInviteIsRefused", func(t *testing.T) {
		good := w.web.inviteToken("pot-fam", dan, time.Now().Add(time.Hour))
		for name, tok := range map[string]string{
			"expired":   w.web.inviteToken("pot-fam", dan, time.Now().Add(-time.Second)),
			"tampered":  good[:len(good)-2] + "xx",
			"not-owner": w.web.inviteToken("pot-fam", eve, time.Now().Add(time.Hour)),
			"other-key": New(Options{CookieKey: []byte(strings.Repeat("k", 32))}).inviteToken("pot-fam", dan, time.Now().Add(time.Hour)),
			"empty":     "",
		} {
			if code, _ := get(t, gusC, w.url+"/app/join?t="+url.QueryEscape(tok)); code != http.StatusBadRequest {
				t.Fatalf("%s invite opened: %d, want 400", name, code)
			}
			if code, body := w.post(t, gusC, gus, "/app/join", url.Values{"t": {tok}}); code != http.StatusBadRequest {
				t.Fatalf("%s invite posted: %d %s, want 400", name, code, body)
			}
		}
		if len(w.users(t, "pot-fam").Users) != 2 {
			t.Fatal("a bad invite bound someone")
		}
	})

	t.Run("CSRFOnEveryPost", func(t *testing.T) {
		tok := w.web.inviteToken("pot-fam", dan, time.Now().Add(time.Hour))
		code, _ := qr.Sign(testQRKey, qr.Code{Product: "pot", Device: "pot-gus"})
		for _, c := range []struct {
			path string
			vals url.Values
		}{
			{"/app/plants/pot-fam/settings", url.Values{"moisture_min": {"1"}, "temp_max": {"40"}, "tank_empty": {"1"}}},
			{"/app/plants/pot-fam/unbind", nil},
			{"/app/plants/pot-fam/members/remove", url.Values{"member": {w.web.memberRef("pot-fam", eve)}}},
			{"/app/join", url.Values{"t": {tok}}},
			{"/app/bind", url.Values{"code": {code}}},
			{"/app/plants/pot-fam/water", nil},
			{"/app/logout", nil},
		} {
			for _, bad := range []string{"", "forged", w.web.csrfToken(session{OpenID: gus, Expires: time.Now().Add(time.Hour)})} {
				v := url.Values{"csrf": {bad}}
				for k, x := range c.vals {
					v[k] = x
				}
				if code, body := w.post(t, danC, dan, c.path, v); code != http.StatusForbidden {
					t.Fatalf("POST %s with CSRF %q: %d %s, want 403", c.path, bad, code, body)
				}
			}
		}
		if us := w.users(t, "pot-fam").Users; len(us) != 2 || w.users(t, "pot-fam").Config.Thresholds.SoilMoistureMinPct != 30 {
			t.Fatalf("a POST without a good CSRF token changed something: users %v", us)
		}
		if us := w.users(t, "pot-gus").Users; len(us) != 1 {
			t.Fatalf("a POST without a good CSRF token bound: %v", us)
		}
	})

	t.Run("RemovingAMemberRevokesAccess", func(t *testing.T) {
		if code, body := w.post(t, danC, dan, "/app/plants/pot-fam/members/remove", url.Values{"member": {"nobody"}}); code != http.StatusNotFound {
			t.Fatalf("removing an unknown member: %d %s, want 404", code, body)
		}
		code, body := w.post(t, danC, dan, "/app/plants/pot-fam/members/remove", url.Values{"member": {w.web.memberRef("pot-fam", eve)}})
		if r := outcomeOf(t, body); code != 200 || r.Outcome != "done" {
			t.Fatalf("remove eve: %d %s", code, body)
		}
		if us := w.users(t, "pot-fam").Users; len(us) != 1 || us[0] != dan {
			t.Fatalf("users after removing eve: %v", us)
		}
		if code, _ := get(t, eveC, w.url+"/app/plants/pot-fam"); code != http.StatusNotFound {
			t.Fatalf("removed member's plant page: %d, want 404", code)
		}
		if _, body := get(t, eveC, w.url+"/app/"); strings.Contains(body, "pot-fam") {
			t.Fatal("removed member still lists the plant")
		}
		if code, body := w.water(t, eveC, eve, "pot-fam"); code != http.StatusNotFound {
			t.Fatalf("removed member watering: %d %s, want 404", code, body)
		}
	})

	t.Run("TypedCodeBindsThenUnbindRemovesAtOnce", func(t *testing.T) {
		w.addPot(t, "pot-hal")
		halC := w.signIn(t, hal)
		if _, body := get(t, halC, w.url+"/app/bind"); !strings.Contains(body, `name="code"`) || strings.Contains(body, "scanQRCode") {
			t.Fatalf("bind page outside WeChat without JSSDK: want the code form and no scan button:\n%s", body)
		}
		forged, _ := qr.Sign([]byte("another-key-another-key"), qr.Code{Product: "pot", Device: "pot-hal"})
		for _, bad := range []string{"", "hello", forged} {
			if code, body := w.post(t, halC, hal, "/app/bind", url.Values{"code": {bad}}); code != http.StatusBadRequest {
				t.Fatalf("bind with code %q: %d %s, want 400", bad, code, body)
			}
		}
		code, _ := qr.Sign(testQRKey, qr.Code{Product: "pot", Device: "pot-hal"})
		st, body := w.post(t, halC, hal, "/app/bind", url.Values{"code": {" " + qr.URL("https://sprout.example.com/app/bind", code) + " "}})
		if r := outcomeOf(t, body); st != 200 || r.Outcome != "bound" {
			t.Fatalf("typed code: %d %s", st, body)
		}
		if us := w.users(t, "pot-hal").Users; len(us) != 1 || us[0] != hal {
			t.Fatalf("pot-hal users: %v, want hal as owner", us)
		}
		if _, body := get(t, halC, w.url+"/app/"); !strings.Contains(body, "pot-hal") {
			t.Fatal("the bound plant is not in the list")
		}
		if _, body := get(t, halC, w.url+"/app/wifi"); !strings.Contains(body, "ESP-TOUCH") {
			t.Fatalf("wifi page lacks the AirKiss / ESP-TOUCH steps:\n%s", body)
		}
		if c, body := get(t, halC, w.url+"/app/plants/pot-hal/unbind"); c != 200 || !strings.Contains(body, `action="/app/plants/pot-hal/unbind"`) {
			t.Fatalf("unbind confirm: %d\n%s", c, body)
		}
		// The plain form (no script): 303 back to the list, which no longer has the plant.
		req, _ := http.NewRequest(http.MethodPost, w.url+"/app/plants/pot-hal/unbind",
			strings.NewReader(url.Values{"csrf": {w.web.csrfToken(w.sessionOf(t, halC, hal))}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		res, err := halC.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 200 || res.Request.URL.Path != "/app/" {
			t.Fatalf("unbind ended at %s with %d, want the list", res.Request.URL, res.StatusCode)
		}
		if _, body := get(t, halC, w.url+"/app/"); strings.Contains(body, "pot-hal") {
			t.Fatal("unbound plant still listed")
		}
		if c, _ := get(t, halC, w.url+"/app/plants/pot-hal"); c != http.StatusNotFound {
			t.Fatalf("unbound plant page: %d, want 404", c)
		}
		if us := w.users(t, "pot-hal").Users; len(us) != 0 {
			t.Fatalf("pot-hal users after unbind: %v", us)
		}
	})
}
