package console

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/csv"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/actors/actortest"
	"github.com/sprout-iot/sprout/messages/devicepb"
)

// waitOnline polls the fleet page until the device's row says online.
func waitOnline(t *testing.T, w *world, c *http.Client, id string) string {
	t.Helper()
	var body string
	actortest.Eventually(t, 5*time.Second, "the fleet showing "+id+" online", func() bool {
		var status int
		status, body = get(t, c, w.url+"/console/?q="+id)
		return status == http.StatusOK && strings.Contains(body, `id="device-`+id+`" data-online="true"`)
	})
	return body
}

func TestConsole(t *testing.T) {
	w := newWorld(t, nil)
	secret := w.addDevice(t, "pot-a0001")
	w.addDevice(t, "pot-a0002")
	w.addDevice(t, "pot-b0001")
	p := w.connect(t, "pot-a0001", secret)
	p.Report(t, 41, 22.5, 80)

	t.Run("SignInRequired", func(t *testing.T) {
		c := client()
		for _, path := range []string{"/console/", "/console/devices/pot-a0001", "/console/provision"} {
			req, _ := http.NewRequest(http.MethodGet, w.url+path, nil)
			res, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != http.StatusFound || res.Header.Get("Location") != "/console/login" {
				t.Fatalf("GET %s signed out: %d to %q, want 302 to /console/login", path, res.StatusCode, res.Header.Get("Location"))
			}
		}
		status, _ := post(t, c, w.url+"/console/devices/pot-a0001/commands", url.Values{"kind": {"water"}})
		if status != http.StatusUnauthorized || p.Commands() != 0 {
			t.Fatalf("command signed out: HTTP %d, %d commands sent; want 401 and none", status, p.Commands())
		}
	})

	t.Run("WrongTokenRefused", func(t *testing.T) {
		c, status := w.signIn(t, "not-the-token")
		if status != http.StatusUnauthorized {
			t.Fatalf("wrong token: HTTP %d, want 401", status)
		}
		if status, _ := get(t, c, w.url+"/console/"); status != http.StatusFound {
			t.Fatalf("after a wrong token the fleet answers %d, want 302 to sign-in", status)
		}
	})

	t.Run("LoginWithoutCSRFRefused", func(t *testing.T) {
		status, _ := post(t, client(), w.url+"/console/login", url.Values{"token": {testToken}})
		if status != http.StatusForbidden {
			t.Fatalf("sign-in without the form's CSRF token: HTTP %d, want 403", status)
		}
	})

	c, status := w.signIn(t, testToken)
	if status != http.StatusSeeOther {
		t.Fatalf("sign-in: HTTP %d, want 303", status)
	}
	u, _ := url.Parse(w.url + "/console/")
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == sessionCookie && ck.Value == "" {
			t.Fatal("empty session cookie")
		}
	}

	t.Run("SessionCookieFlags", func(t *testing.T) {
		c := client()
		_, body := get(t, c, w.url+"/console/login")
		req, _ := http.NewRequest(http.MethodPost, w.url+"/console/login",
			strings.NewReader(url.Values{"csrf": {csrfOf(t, body)}, "token": {testToken}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		res, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		var found bool
		for _, ck := range res.Cookies() {
			if ck.Name == sessionCookie && ck.Value != "" {
				found = true
				if !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/console" {
					t.Fatalf("session cookie %+v: want HttpOnly, SameSite=Strict, Path=/console", ck)
				}
			}
		}
		if !found {
			t.Fatal("no session cookie after signing in")
		}
	})

	t.Run("FleetShowsOnlineDevice", func(t *testing.T) {
		body := waitOnline(t, w, c, "pot-a0001")
		if !strings.Contains(body, "1.4.2") {
			t.Fatalf("the fleet lacks the firmware version:\n%s", body)
		}
		_, body = get(t, c, w.url+"/console/?q=pot-a")
		if !strings.Contains(body, "pot-a0002") || strings.Contains(body, "pot-b0001") {
			t.Fatalf("search pot-a shows the wrong devices:\n%s", body)
		}
	})

	t.Run("FleetPages", func(t *testing.T) {
		w2 := New(Options{Cluster: w.member.Cluster, Store: w.store, AdminToken: "x", CookieKey: make([]byte, 32), PageSize: 2})
		ds, more, err := w2.listPage(context.Background(), "", "")
		if err != nil || len(ds) != 2 || !more {
			t.Fatalf("first page of 2: %d devices, more=%v, %v", len(ds), more, err)
		}
		ds, more, err = w2.listPage(context.Background(), "", ds[1].ID)
		if err != nil || len(ds) != 1 || more || ds[0].ID != "pot-b0001" {
			t.Fatalf("second page: %+v more=%v %v", ds, more, err)
		}
	})

	t.Run("CSRFRefused", func(t *testing.T) {
		for _, token := range []string{"", "forged"} {
			status, _ := post(t, c, w.url+"/console/devices/pot-a0001/commands", url.Values{"kind": {"water"}, "csrf": {token}})
			if status != http.StatusForbidden {
				t.Fatalf("command with CSRF %q: HTTP %d, want 403", token, status)
			}
		}
		status, _ := post(t, c, w.url+"/console/devices/pot-a0002/revoke", url.Values{})
		if d, _ := w.store.GetDevice(context.Background(), "pot-a0002"); status != http.StatusForbidden || d.Revoked() {
			t.Fatalf("revoke without CSRF: HTTP %d, revoked=%v", status, d.Revoked())
		}
		if p.Commands() != 0 {
			t.Fatalf("%d commands reached the device without a CSRF token", p.Commands())
		}
	})

	t.Run("CommandReachesDevice", func(t *testing.T) {
		_, page := get(t, c, w.url+"/console/devices/pot-a0001")
		if !strings.Contains(page, "41%") {
			t.Fatalf("the device page lacks the latest reading:\n%s", page)
		}
		status, body := post(t, c, w.url+"/console/devices/pot-a0001/commands", url.Values{"kind": {"water"}, "csrf": {csrfOf(t, page)}})
		if status != http.StatusOK || !strings.Contains(body, `data-outcome="done"`) {
			t.Fatalf("water from the device page: HTTP %d:\n%s", status, body)
		}
		if k := <-p.Kinds(); k != devicepb.CommandKind_COMMAND_KIND_WATER {
			t.Fatalf("the device got %v, want water", k)
		}
		if !strings.Contains(body, "command_sent") || !strings.Contains(body, `console`) {
			t.Fatalf("the event log lacks the console's command:\n%s", body)
		}
	})

	t.Run("BatchProvisioning", func(t *testing.T) {
		_, page := get(t, c, w.url+"/console/provision")
		form := url.Values{"csrf": {csrfOf(t, page)}, "count": {"3"}, "prefix": {"pot-c"}, "product": {"sprout-pot"}}
		status, body := post(t, c, w.url+"/console/provision", form)
		if status != http.StatusCreated || strings.Count(body, `<tr class="created">`) != 3 || strings.Count(body, "data:image/png;base64,") != 3 {
			t.Fatalf("batch of 3: HTTP %d:\n%s", status, body)
		}
		// A second batch with the same prefix continues the numbering.
		status, body = post(t, c, w.url+"/console/provision", form)
		if status != http.StatusCreated || !strings.Contains(body, "pot-c0006") {
			t.Fatalf("second batch: HTTP %d:\n%s", status, body)
		}
		ds, _ := w.store.ListDevices(context.Background(), actors.ListQuery{AfterID: "pot-c"})
		n := 0
		for _, d := range ds {
			if strings.HasPrefix(d.ID, "pot-c") {
				n++
				if len(d.Secret) != 32 || !strings.Contains(body+page, "") {
					t.Fatalf("%s has a %d-byte secret", d.ID, len(d.Secret))
				}
			}
		}
		if n != 6 {
			t.Fatalf("the store has %d pot-c devices, want 6", n)
		}
		// The secret shown is the one stored.
		d, _ := w.store.GetDevice(context.Background(), "pot-c0006")
		if !regexp.MustCompile(`(?s)pot-c0006</td><td><code>[0-9a-f]{64}`).MatchString(body) || !strings.Contains(body, hexOf(d.Secret)) {
			t.Fatalf("the page does not show pot-c0006's stored secret:\n%s", body)
		}
		// The batch downloads as CSV (built into the page; the secrets are kept nowhere else).
		m := regexp.MustCompile(`href="data:text/csv;charset=utf-8;base64,([A-Za-z0-9+/=]+)" download="(sprout-sprout-pot-[0-9-]+-3\.csv)"`).FindStringSubmatch(body)
		if m == nil {
			t.Fatalf("no CSV download on the batch page:\n%s", body)
		}
		raw, err := base64.StdEncoding.DecodeString(m[1])
		if err != nil {
			t.Fatal(err)
		}
		rows, err := csv.NewReader(bytes.NewReader(raw)).ReadAll()
		if err != nil || len(rows) != 4 || strings.Join(rows[0], ",") != "device_id,secret_hex,product,qr,label" {
			t.Fatalf("CSV: %v\n%s", err, raw)
		}
		for _, row := range rows[1:] {
			d, err := w.store.GetDevice(context.Background(), row[0])
			if err != nil || row[1] != hexOf(d.Secret) || row[2] != "sprout-pot" || row[3] == "" {
				t.Fatalf("CSV row %v does not match the stored device (%v)", row, err)
			}
		}
		for _, bad := range []url.Values{{"count": {"0"}}, {"count": {"100000"}}, {"count": {"1"}, "prefix": {"a b"}}} {
			bad.Set("csrf", csrfOf(t, page))
			if status, _ := post(t, c, w.url+"/console/provision", bad); status != http.StatusBadRequest {
				t.Fatalf("batch %v: HTTP %d, want 400", bad, status)
			}
		}
	})

	t.Run("SignOut", func(t *testing.T) {
		_, page := get(t, c, w.url+"/console/")
		if status, _ := post(t, c, w.url+"/console/logout", url.Values{"csrf": {csrfOf(t, page)}}); status != http.StatusSeeOther {
			t.Fatalf("sign-out: HTTP %d", status)
		}
		if status, _ := get(t, c, w.url+"/console/"); status != http.StatusFound {
			t.Fatalf("after signing out the fleet answers %d, want 302", status)
		}
	})
}

func TestConsoleDisabledWithoutAdminToken(t *testing.T) {
	h := New(Options{CookieKey: make([]byte, 32)})
	r := newRouter(h)
	for _, path := range []string{"/console/login", "/console/"} {
		rec := serve(r, http.MethodGet, path)
		if rec.Code != http.StatusForbidden {
			t.Fatalf("GET %s with no admin token: %d, want 403", path, rec.Code)
		}
	}
}

func TestWrongTokensAreRateLimited(t *testing.T) {
	w := newWorld(t, func(o *Options) { o.MaxLoginFailures, o.MaxLoginFailuresTotal = 2, 3 })
	from := func(ip string) *http.Client {
		c := client()
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
		c.Transport = &http.Transport{DialContext: d.DialContext}
		return c
	}
	signIn := func(c *http.Client, token string) int {
		_, body := get(t, c, w.url+"/console/login")
		status, _ := post(t, c, w.url+"/console/login", url.Values{"csrf": {csrfOf(t, body)}, "token": {token}})
		return status
	}
	guesser, operator, other := from("127.0.0.2"), from("127.0.0.3"), from("127.0.0.4")
	for i := 0; i < 2; i++ {
		if status := signIn(guesser, "guess"); status != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d, want 401", i, status)
		}
	}
	if status := signIn(guesser, testToken); status != http.StatusTooManyRequests {
		t.Fatalf("the guesser after 2 wrong tokens in a minute: %d, want 429", status)
	}
	// The guesser does not lock the operators out: another address still signs in.
	if status := signIn(operator, testToken); status != http.StatusSeeOther {
		t.Fatalf("an operator at another address: %d, want 303 (signed in)", status)
	}
	// Guessing spread over addresses meets the total cap (3 a minute here).
	if status := signIn(other, "guess"); status != http.StatusUnauthorized {
		t.Fatalf("a third address's first guess: %d, want 401", status)
	}
	if status := signIn(operator, testToken); status != http.StatusTooManyRequests {
		t.Fatalf("after 3 wrong tokens from everyone in a minute: %d, want 429", status)
	}
}

func TestBatchCSVCellsAreNotFormulas(t *testing.T) {
	// Ids may start with '-' (a prefix like "-1+1"); a spreadsheet must not evaluate them.
	rows, err := csv.NewReader(bytes.NewReader(batchCSV("pot", []credential{{ID: "-1+1", Secret: "ab"}, {ID: "pot-1", Secret: "cd"}}))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if rows[1][0] != "'-1+1" || rows[2][0] != "pot-1" {
		t.Fatalf("cells: %q", rows)
	}
}
