package web

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	wxapi "github.com/sprout-iot/sprout/edge/wechat/api"
	"github.com/sprout-iot/sprout/edge/wechat/qr"
	"github.com/sprout-iot/sprout/simulations/wechatsim"
)

func ctx10(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// A page opened in WeChat's snapshot mode (快照页) is signed in by WeChat as a snapshot user: no
// session, nothing bound, a page saying to open it properly. Tapping "use full service" (a real
// sign-in) then binds.
func TestSnapshotUserGetsNoSessionAndBindsNothing(t *testing.T) {
	w := newWorld(t, func(o *Options) { o.VerifyScene = testVerifyScene })
	w.addPot(t, "pot-snap")
	label := w.label(t, "pot-snap", time.Time{})
	u := w.platform.NewUser("oSnapUser")
	u.SetSnapshot(true)
	res, err := u.Scan(ctx10(t), label)
	if err != nil || res.Kind != wechatsim.ScanOpenedPage {
		t.Fatalf("scan: %+v %v", res, err)
	}
	if res.Page.Status != http.StatusForbidden || !strings.Contains(res.Page.Body, "使用完整服务") {
		t.Fatalf("snapshot user: %d\n%s", res.Page.Status, res.Page.Body)
	}
	base, _ := url.Parse(w.url + "/app/")
	for _, c := range u.Browser().Jar.Cookies(base) {
		if c.Name == sessionCookie {
			t.Fatal("a snapshot user got a session cookie")
		}
	}
	if got := w.userIDs(t, "pot-snap"); len(got) != 0 {
		t.Fatalf("a snapshot user bound %v", got)
	}
	u.SetSnapshot(false)
	res, err = u.Scan(ctx10(t), label)
	if err != nil || res.Page == nil || labelState(t, res.Page.Body) != "bound" {
		t.Fatalf("after use full service: %+v %v", res, err)
	}
	if got := w.userIDs(t, "pot-snap"); len(got) != 1 || got[0] != "oSnapUser" {
		t.Fatalf("bound users %v, want the real openid", got)
	}
}

// The bind page's scanner accepts every form a pot's code comes in: the label URL, the older ?c=
// URL, the bare code, a qrscene_ key, and WeChat's device QR (resolved by verify_qrcode).
func TestBindPageScannerAcceptsLabelsBareCodesAndWeChatDeviceQR(t *testing.T) {
	var client *wxapi.Client
	w := newWorld(t, func(o *Options) {
		o.VerifyScene = testVerifyScene
		o.VerifyDeviceQR = func(ctx context.Context, content string) (string, error) {
			info, err := client.VerifyQRCode(ctx, content)
			return info.DeviceID, err
		}
	})
	f := &wxapi.Fetcher{BaseURL: w.platform.URL(), AppID: w.platform.AppID(), Secret: w.platform.Secret(), Stable: true}
	var err error
	if client, err = wxapi.New(wxapi.Options{BaseURL: w.platform.URL(), Tokens: wxapi.NewTokenCache(f.Fetch, wxapi.CacheOptions{})}); err != nil {
		t.Fatal(err)
	}
	dq, err := client.GetQRCode(ctx10(t), "1")
	if err != nil {
		t.Fatal(err)
	}
	w.addPot(t, dq.DeviceID)
	code := func(id string) string {
		tok, _ := qr.Scene(testQRKey, qr.Code{Product: "pot", Device: id})
		return tok
	}
	cases := []struct{ device, scanned string }{
		{"pot-s1", w.label(t, "pot-s1", time.Time{})},
		{"pot-s2", qr.URL(w.url+"/bind", code("pot-s2"))},
		{"pot-s3", code("pot-s3")},
		{"pot-s4", "qrscene_" + code("pot-s4")},
		{dq.DeviceID, dq.QRTicket + "#AQID"},
	}
	c := w.signIn(t, "oScanAll")
	for _, tc := range cases {
		if tc.device != dq.DeviceID {
			w.addPot(t, tc.device)
		}
		status, body := w.post(t, c, "oScanAll", "/app/bind", url.Values{"code": {tc.scanned}})
		if status != http.StatusOK || outcomeOf(t, body).Outcome != "bound" {
			t.Fatalf("scanned %q: %d %s", tc.scanned, status, body)
		}
		if got := w.userIDs(t, tc.device); len(got) != 1 || got[0] != "oScanAll" {
			t.Fatalf("%s users %v", tc.device, got)
		}
	}
	for _, bad := range []string{"http://we.qq.com/d/AQAnotAdeviceOfOurs", "https://example.com/promo", "hello"} {
		if status, body := w.post(t, c, "oScanAll", "/app/bind", url.Values{"code": {bad}}); status != http.StatusBadRequest {
			t.Fatalf("scanned %q: %d %s, want 400", bad, status, body)
		}
	}
}
