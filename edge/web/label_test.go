package web

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"testing"
	"time"

	"github.com/sprout-iot/sprout/edge/wechat/qr"
)

// label signs a printed label's URL for device on the world's origin.
func (w *world) label(t *testing.T, device string, expires time.Time) string {
	t.Helper()
	tok, err := qr.Scene(testQRKey, qr.Code{Product: "pot", Device: device, Expires: expires})
	if err != nil {
		t.Fatal(err)
	}
	return qr.LabelURL(w.url, tok)
}

// scanLabel opens u as WeChat's browser does after a scan: cookies kept in c (a new one when
// nil), redirects followed through the simulated OAuth consent as openID. It returns the client,
// the status and the page.
func (w *world) scanLabel(t *testing.T, c *http.Client, openID, u string) (*http.Client, int, string) {
	t.Helper()
	if c == nil {
		w.platform.NewUser(openID)
		jar, _ := cookiejar.New(nil)
		c = &http.Client{Jar: jar, Timeout: 10 * time.Second,
			CheckRedirect: func(req *http.Request, _ []*http.Request) error {
				if req.URL.Path == "/connect/oauth2/authorize" && req.URL.Query().Get("sim_openid") == "" {
					q := req.URL.Query()
					q.Set("sim_openid", openID)
					req.URL.RawQuery = q.Encode()
				}
				return nil
			}}
	}
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("User-Agent", "Mozilla/5.0 (iPhone) MicroMessenger/8.0.50")
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if !strings.HasPrefix(res.Request.URL.Path, "/app/b/") {
		t.Fatalf("the label %s ended at %s (%d), want /app/b/…", u, res.Request.URL, res.StatusCode)
	}
	return c, res.StatusCode, string(body)
}

func labelState(t *testing.T, body string) string {
	t.Helper()
	i := strings.Index(body, `data-state="`)
	if i < 0 {
		t.Fatalf("no label result on the page:\n%s", body)
	}
	rest := body[i+len(`data-state="`):]
	return rest[:strings.IndexByte(rest, '"')]
}

func (w *world) userIDs(t *testing.T, device string) []string {
	t.Helper()
	bs, err := w.store.DeviceBindings(context.Background(), device)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, b := range bs {
		out = append(out, b.OpenID)
	}
	return out
}

func TestLabelBindsWithOneScanAndShowsHowToFollow(t *testing.T) {
	follows := map[string]FollowState{"oFollower": Following}
	w := newWorld(t, func(o *Options) {
		o.VerifyScene = testVerifyScene
		o.Follow = Follow{QR: "http://weixin.qq.com/r/sprout-account", URL: "https://mp.weixin.qq.com/mp/profile_ext?action=home",
			State: func(_ context.Context, openID string) (FollowState, error) { return follows[openID], nil }}
	})
	w.addPot(t, "pot-label")
	u := w.label(t, "pot-label", time.Time{})

	// A user who does not follow the account scans the label: signed in, bound, told to follow.
	ann, status, body := w.scanLabel(t, nil, "oAnn", u)
	if status != http.StatusOK || labelState(t, body) != "bound" {
		t.Fatalf("first scan: %d %s\n%s", status, labelState(t, body), body)
	}
	if !strings.Contains(body, `id="follow"`) || !strings.Contains(body, "data:image/png;base64,") || !strings.Contains(body, "profile_ext") {
		t.Fatalf("a user not known to follow sees no follow hint (QR and link):\n%s", body)
	}
	if !strings.Contains(body, `/app/plants/pot-label`) {
		t.Fatalf("no link to the plant:\n%s", body)
	}
	if got := w.userIDs(t, "pot-label"); len(got) != 1 || got[0] != "oAnn" {
		t.Fatalf("bound users %v, want [oAnn]", got)
	}
	if st := w.users(t, "pot-label"); len(st.Users) == 0 || st.Users[0] != "oAnn" {
		t.Fatalf("grain users %v: the first scanner is the owner", st.Users)
	}
	// The plant is hers at once.
	if status, page := get(t, ann, w.url+"/app/"); status != 200 || !strings.Contains(page, "pot-label") {
		t.Fatalf("my plants after the label: %d", status)
	}

	// Opening the label again is harmless: already bound, nothing changes.
	_, status, body = w.scanLabel(t, ann, "oAnn", u)
	if status != http.StatusOK || labelState(t, body) != "already" {
		t.Fatalf("second open: %d %s", status, labelState(t, body))
	}
	if got := w.userIDs(t, "pot-label"); len(got) != 1 {
		t.Fatalf("bound users after re-opening %v", got)
	}

	// A follower scanning another pot's label is not told to follow.
	w.addPot(t, "pot-follower")
	_, status, body = w.scanLabel(t, nil, "oFollower", w.label(t, "pot-follower", time.Time{}))
	if status != http.StatusOK || labelState(t, body) != "bound" || strings.Contains(body, `id="follow"`) {
		t.Fatalf("follower: %d %s, follow hint shown: %v", status, labelState(t, body), strings.Contains(body, `id="follow"`))
	}

	// A later scanner of the first pot gets whatever the grain answers (member, or a request that
	// waits for the owner), shown as such; never the owner.
	_, status, body = w.scanLabel(t, nil, "oBen", u)
	if st := labelState(t, body); status != http.StatusOK || (st != "bound" && st != "pending") {
		t.Fatalf("second scanner: %d %s", status, st)
	}
	if st := w.users(t, "pot-label"); st.Users[0] != "oAnn" {
		t.Fatalf("the owner changed: %v", st.Users)
	}
}

func TestLabelThatIsBadExpiredForgedOrForNoPotBindsNothing(t *testing.T) {
	w := newWorld(t, func(o *Options) { o.VerifyScene = testVerifyScene })
	w.addPot(t, "pot-ok")
	w.addPot(t, "pot-retired")
	if err := w.store.RevokeDevice(context.Background(), "pot-retired", time.Now()); err != nil {
		t.Fatal(err)
	}
	good := w.label(t, "pot-ok", time.Time{})
	tok := good[strings.LastIndex(good, "/")+1:]
	forged := w.url + "/b/" + tok[:len(tok)-2] + "AA"
	otherKey, _ := qr.Sign([]byte("another-product-key-0000"), qr.Code{Product: "pot", Device: "pot-ok"})
	cases := []struct {
		name, url  string
		status     int
		state, say string
	}{
		{"forged", forged, http.StatusBadRequest, "bad", "不是有效的花盆标签"},
		{"other key", w.url + "/b/" + otherKey, http.StatusBadRequest, "bad", "不是有效的花盆标签"},
		{"not a code", w.url + "/b/hello", http.StatusBadRequest, "bad", "不是有效的花盆标签"},
		{"expired", w.label(t, "pot-ok", time.Now().Add(-time.Minute)), http.StatusGone, "expired", "已过期"},
		{"unknown pot", w.label(t, "pot-nowhere", time.Time{}), http.StatusNotFound, "unknown", "找不到这个花盆"},
		{"retired pot", w.label(t, "pot-retired", time.Time{}), http.StatusGone, "revoked", "已停用"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, status, body := w.scanLabel(t, nil, "oMallory", tc.url)
			if status != tc.status || labelState(t, body) != tc.state || !strings.Contains(body, tc.say) {
				t.Fatalf("%d %s, want %d %s saying %q:\n%s", status, labelState(t, body), tc.status, tc.state, tc.say, body)
			}
			if strings.Contains(body, `id="follow"`) {
				t.Fatal("a refused label shows the follow hint")
			}
		})
	}
	for _, id := range []string{"pot-ok", "pot-retired", "pot-nowhere"} {
		if got := w.userIDs(t, id); len(got) != 0 {
			t.Fatalf("%s has users %v after refused labels", id, got)
		}
	}
	// The good label still binds, and an expiring one within its time too.
	if _, status, body := w.scanLabel(t, nil, "oAnn", w.label(t, "pot-ok", time.Now().Add(time.Hour))); status != 200 || labelState(t, body) != "bound" {
		t.Fatalf("a valid expiring label: %d %s", status, labelState(t, body))
	}
}
