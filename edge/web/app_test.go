package web

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/sprout-iot/sprout/messages/devicepb"
)

func outcomeOf(t *testing.T, body string) commandResult {
	t.Helper()
	var r commandResult
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatalf("not a command result: %q", body)
	}
	return r
}

// One node serves every case here: starting a cluster member costs a second.
func TestApp(t *testing.T) {
	// The pages' clock is a fake one a minute ahead of the wall clock (cookies carry real expiry
	// dates; the charts end at its now, after the pots' readings): the command interval passes
	// when the test advances it.
	clock := clockwork.NewFakeClockAt(time.Now().Add(time.Minute))
	w := newWorld(t, func(o *Options) {
		o.CommandInterval = 2 * time.Second
		o.VerifyScene = testVerifyScene
		o.Now = clock.Now
	})
	secretA := w.addPot(t, "pot-alice", "oAlice")
	w.addPot(t, "pot-offline", "oAlice")
	w.addPot(t, "pot-bob", "oBob")
	potA := w.connect(t, "pot-alice", secretA, devicepb.CommandStatus_COMMAND_STATUS_DONE)
	potA.Report(t, 41, 22.5, 80)
	alice := w.signIn(t, "oAlice")
	bob := w.signIn(t, "oBob")

	t.Run("SessionCookieIsSignedHttpOnlyLax", func(t *testing.T) {
		s := w.sessionOf(t, alice, "oAlice")
		if d := time.Until(s.Expires); d < 6*24*time.Hour || d > 7*24*time.Hour+time.Minute {
			t.Fatalf("session expires in %v, want the 7-day default", d)
		}
		// A fresh sign-in shows the Set-Cookie attributes.
		w.platform.NewUser("oCarol")
		code := w.platform.NewUser("oCarol").Authorize("snsapi_base")
		req, _ := http.NewRequest(http.MethodGet, w.url+"/app/oauth?code="+code+"&state=x", nil)
		req.AddCookie(&http.Cookie{Name: stateCookie, Value: w.web.sign("state", "x|/app/")})
		res, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		var set string
		for _, v := range res.Header.Values("Set-Cookie") {
			if strings.HasPrefix(v, sessionCookie+"=") {
				set = v
			}
		}
		if !strings.Contains(set, "HttpOnly") || !strings.Contains(set, "SameSite=Lax") || !strings.Contains(set, "Path=/app") {
			t.Fatalf("session Set-Cookie %q lacks HttpOnly, SameSite=Lax or Path=/app", set)
		}
		// A tampered cookie is no session: the user is sent to WeChat again.
		val := strings.SplitN(strings.TrimPrefix(set, sessionCookie+"="), ";", 2)[0]
		forged := w.web.encodeSession(session{OpenID: "oAlice", Expires: time.Now().Add(time.Hour)})
		forged = strings.SplitN(forged, ".", 2)[0] + "." + strings.SplitN(val, ".", 2)[1]
		req, _ = http.NewRequest(http.MethodGet, w.url+"/app/", nil)
		req.AddCookie(&http.Cookie{Name: sessionCookie, Value: forged})
		res, err = (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusFound || !strings.Contains(res.Header.Get("Location"), "/connect/oauth2/authorize?appid=") {
			t.Fatalf("forged cookie: %d to %q, want a redirect to the OAuth consent", res.StatusCode, res.Header.Get("Location"))
		}
	})

	t.Run("WrongOAuthStateIsRefused", func(t *testing.T) {
		code := w.platform.NewUser("oMallory").Authorize("snsapi_base")
		req, _ := http.NewRequest(http.MethodGet, w.url+"/app/oauth?code="+code+"&state=other", nil)
		req.AddCookie(&http.Cookie{Name: stateCookie, Value: w.web.sign("state", "mine|/app/")})
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusBadRequest {
			t.Fatalf("state mismatch answered %d, want 400", res.StatusCode)
		}
	})

	t.Run("PlantPageShowsTheDayAndTheWeek", func(t *testing.T) {
		code, body := get(t, alice, w.url+"/app/plants/pot-alice")
		if code != 200 || !strings.Contains(body, "最近 24 小时") || !strings.Contains(body, "最近 7 天") || !strings.Contains(body, "<polyline") {
			t.Fatalf("pot-alice's page (%d) should chart the last day and the last week:\n%s", code, body)
		}
	})

	t.Run("UserSeesOnlyTheirPlants", func(t *testing.T) {
		code, body := get(t, alice, w.url+"/app/")
		if code != 200 || !strings.Contains(body, "pot-alice") || !strings.Contains(body, "pot-offline") || strings.Contains(body, "pot-bob") {
			t.Fatalf("alice's page (%d) should list pot-alice and pot-offline only:\n%s", code, body)
		}
		if !strings.Contains(body, "41%") || !strings.Contains(body, "22.5°C") || !strings.Contains(body, "在线") {
			t.Fatalf("alice's page lacks pot-alice's readings or online state:\n%s", body)
		}
		code, body = get(t, bob, w.url+"/app/")
		if code != 200 || strings.Contains(body, "pot-alice") || !strings.Contains(body, "pot-bob") {
			t.Fatalf("bob's page (%d) must not show alice's plant:\n%s", code, body)
		}
		for _, id := range []string{"pot-alice", "no-such-pot"} {
			if code, _ := get(t, bob, w.url+"/app/plants/"+id); code != http.StatusNotFound {
				t.Fatalf("bob GET /app/plants/%s: %d, want 404", id, code)
			}
		}
		if code, body := w.water(t, bob, "oBob", "pot-alice"); code != http.StatusNotFound {
			t.Fatalf("bob watering alice's plant: %d %s, want 404", code, body)
		}
		if potA.Commands() != 0 {
			t.Fatal("a command reached alice's pot on bob's tap")
		}
	})

	t.Run("EnglishOnRequest", func(t *testing.T) {
		_, body := get(t, alice, w.url+"/app/?lang=en")
		if !strings.Contains(body, "My plants") || !strings.Contains(body, "Water now") {
			t.Fatalf("?lang=en page is not English:\n%s", body)
		}
		req, _ := http.NewRequest(http.MethodGet, w.url+"/app/plants/pot-alice", nil)
		req.Header.Set("Accept-Language", "en-US,en;q=0.9")
		res, err := alice.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 200 {
			t.Fatalf("plant page: %d", res.StatusCode)
		}
	})

	t.Run("WaterTapWithoutCSRFTokenIsRefused", func(t *testing.T) {
		res, err := alice.PostForm(w.url+"/app/plants/pot-alice/water", url.Values{"csrf": {"nope"}})
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusForbidden || potA.Commands() != 0 {
			t.Fatalf("bad CSRF token: %d, %d commands sent; want 403 and none", res.StatusCode, potA.Commands())
		}
	})

	t.Run("WaterIsDoneThenRateLimited", func(t *testing.T) {
		code, body := w.water(t, alice, "oAlice", "pot-alice")
		if r := outcomeOf(t, body); code != 200 || r.Outcome != "done" || r.Message != "浇水完成" {
			t.Fatalf("water: %d %s, want done", code, body)
		}
		code, body = w.water(t, alice, "oAlice", "pot-offline")
		if r := outcomeOf(t, body); code != http.StatusTooManyRequests || r.Outcome != "rate_limited" {
			t.Fatalf("second tap within the interval: %d %s, want 429", code, body)
		}
		if n := potA.Commands(); n != 1 {
			t.Fatalf("pot got %d commands, want 1", n)
		}
		clock.Advance(2 * time.Second)
		code, body = w.water(t, alice, "oAlice", "pot-offline")
		if r := outcomeOf(t, body); code != 200 || r.Outcome != "offline" {
			t.Fatalf("offline pot: %d %s, want offline", code, body)
		}
	})

	t.Run("LiveStreamSendsNewReadings", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, w.url+"/app/events", nil)
		res, err := alice.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		if ct := res.Header.Get("Content-Type"); ct != "text/event-stream" {
			t.Fatalf("stream content type %q", ct)
		}
		potA.Report(t, 12, 30, 5)
		buf := make([]byte, 64<<10)
		var got string
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) && !strings.Contains(got, `"moisture":"12%"`) {
			n, err := res.Body.Read(buf)
			if err != nil {
				t.Fatal(err)
			}
			got += string(buf[:n])
		}
		if !strings.Contains(got, `"moisture":"12%"`) || strings.Contains(got, "pot-bob") {
			t.Fatalf("stream never sent the new reading (or leaked bob's pot):\n%s", got)
		}
		if !strings.Contains(got, "soil_dry") {
			t.Fatalf("12%% soil should raise the dry alert in the stream:\n%s", got)
		}
	})

	testManage(t, w)
	testJoin(t, w)
}
