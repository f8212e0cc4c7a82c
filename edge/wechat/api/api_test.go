package api_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sprout-iot/sprout/edge/wechat/api"
	"github.com/sprout-iot/sprout/simulations/wechatsim"
)

// clock is a settable clock shared by the simulator and the code under test.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type fixture struct {
	sim    *wechatsim.Platform
	cache  *api.TokenCache
	client *api.Client
	clock  *clock
}

// setup starts the fake WeChat on a loopback port and a client with a token cache against it.
// The simulator's callbacks go to a stub that answers "success".
func setup(t *testing.T, opts wechatsim.Options) *fixture {
	t.Helper()
	clk := newClock()
	if opts.Clock == nil {
		opts.Clock = clk.Now
	}
	sim, err := wechatsim.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	stub := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("success")) }))
	t.Cleanup(stub.Close)
	sim.SetCallbackURL(stub.URL)
	f := &api.Fetcher{BaseURL: sim.URL(), AppID: sim.AppID(), Secret: sim.Secret(), Timeout: 2 * time.Second, Clock: clk.Now}
	cache := api.NewTokenCache(f.Fetch, api.CacheOptions{Clock: clk.Now})
	client, err := api.New(api.Options{BaseURL: sim.URL(), Tokens: cache, Timeout: 2 * time.Second, Clock: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{sim: sim, cache: cache, client: client, clock: clk}
}

// follower is a user who follows the account and has just interacted with it.
func (f *fixture) follower(t *testing.T, openID string) *wechatsim.User {
	t.Helper()
	u := f.sim.NewUser(openID)
	if _, err := u.Subscribe(context.Background()); err != nil {
		t.Fatal(err)
	}
	return u
}

func TestConcurrentTokenCallersShareOneFetch(t *testing.T) {
	f := setup(t, wechatsim.Options{})
	var wg sync.WaitGroup
	tokens := make([]string, 64)
	errs := make([]error, 64)
	for i := range tokens {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tokens[i], errs[i] = f.cache.Token(context.Background())
		}()
	}
	wg.Wait()
	for i := range tokens {
		if errs[i] != nil || tokens[i] != tokens[0] {
			t.Fatalf("caller %d got %q, %v; want the shared token %q", i, tokens[i], errs[i], tokens[0])
		}
	}
	if n := f.sim.TokenFetches(); n != 1 {
		t.Fatalf("the platform saw %d token fetches, want 1", n)
	}
}

func TestRevokedTokenIsRefreshedOnceAndTheCallSucceeds(t *testing.T) {
	f := setup(t, wechatsim.Options{})
	ctx := context.Background()
	old, _ := f.cache.Token(ctx)
	f.sim.RevokeTokens() // someone else fetched a token
	if _, err := f.client.GetStat(ctx, "dev1"); err != nil {
		t.Fatalf("GetStat after revocation: %v", err)
	}
	if n := f.sim.TokenFetches(); n != 2 {
		t.Fatalf("token fetches = %d, want 2 (initial + one refresh)", n)
	}
	// Late reports about the replaced token change nothing.
	f.cache.Invalidate(ctx, old)
	f.cache.Invalidate(ctx, old)
	if _, err := f.cache.Token(ctx); err != nil {
		t.Fatal(err)
	}
	if n := f.sim.TokenFetches(); n != 2 {
		t.Fatalf("token fetches after stale Invalidate = %d, want still 2", n)
	}
}

func TestConcurrentInvalidationsOfOneTokenRefreshOnce(t *testing.T) {
	f := setup(t, wechatsim.Options{})
	ctx := context.Background()
	bad, _ := f.cache.Token(ctx)
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f.cache.Invalidate(ctx, bad)
			if tok, err := f.cache.Token(ctx); err != nil || tok == bad {
				t.Errorf("Token after Invalidate = %q, %v", tok, err)
			}
		}()
	}
	wg.Wait()
	if n := f.sim.TokenFetches(); n != 2 {
		t.Fatalf("token fetches = %d, want 2", n)
	}
}

func TestExpiredTokenOnThePlatformIsRefreshed(t *testing.T) {
	simClock := newClock()
	f := setup(t, wechatsim.Options{Clock: simClock.Now, TokenTTL: time.Hour})
	ctx := context.Background()
	if _, err := f.cache.Token(ctx); err != nil {
		t.Fatal(err)
	}
	simClock.Advance(2 * time.Hour) // the platform's clock runs ahead of Sprout's: 42001
	if _, err := f.client.GetStat(ctx, "dev1"); err != nil {
		t.Fatalf("GetStat with an expired token: %v", err)
	}
	if n := f.sim.TokenFetches(); n != 2 {
		t.Fatalf("token fetches = %d, want 2", n)
	}
}

func TestTokenIsRefreshedWithinTheMarginBeforeExpiry(t *testing.T) {
	f := setup(t, wechatsim.Options{TokenTTL: 2 * time.Hour})
	ctx := context.Background()
	first, _ := f.cache.Token(ctx)
	f.clock.Advance(2*time.Hour - api.DefaultRefreshMargin - time.Second)
	if tok, _ := f.cache.Token(ctx); tok != first || f.sim.TokenFetches() != 1 {
		t.Fatalf("refreshed %s early", api.DefaultRefreshMargin)
	}
	f.clock.Advance(2 * time.Second)
	if tok, _ := f.cache.Token(ctx); tok == first || f.sim.TokenFetches() != 2 {
		t.Fatalf("not refreshed inside the margin (fetches %d)", f.sim.TokenFetches())
	}
}

// badTokens always hands out the same token and counts invalidations.
type badTokens struct {
	mu          sync.Mutex
	invalidated int
}

func (b *badTokens) Token(context.Context) (string, error) { return "NOT-A-TOKEN", nil }
func (b *badTokens) Invalidate(context.Context, string) {
	b.mu.Lock()
	b.invalidated++
	b.mu.Unlock()
}

func TestTokenRejectedTwiceIsReportedNotRetriedForever(t *testing.T) {
	f := setup(t, wechatsim.Options{})
	src := &badTokens{}
	c, _ := api.New(api.Options{BaseURL: f.sim.URL(), Tokens: src})
	_, err := c.GetStat(context.Background(), "dev1")
	if !errors.Is(err, api.ErrTokenRejected) {
		t.Fatalf("err = %v, want ErrTokenRejected", err)
	}
	if src.invalidated != 1 || f.sim.Calls("/device/get_stat") != 2 {
		t.Fatalf("invalidated %d times, %d calls; want 1 and 2", src.invalidated, f.sim.Calls("/device/get_stat"))
	}
	if strings.Contains(err.Error(), "NOT-A-TOKEN") {
		t.Fatalf("the token leaked into the error: %v", err)
	}
}

func TestBusyAndQuotaErrorsAreRetryableWithABackoff(t *testing.T) {
	f := setup(t, wechatsim.Options{})
	ctx := context.Background()
	// 10:00 UTC is 18:00 in China: the daily quota resets in 6 hours.
	cases := []struct {
		code int
		want time.Duration
	}{{-1, api.BusyBackoff}, {45011, api.MinuteQuotaBackoff}, {45009, 6 * time.Hour}}
	for _, tc := range cases {
		f.sim.FailNext("/device/get_stat", 1, tc.code)
		_, err := f.client.GetStat(ctx, "dev1")
		after, ok := api.RetryAfter(err)
		if !errors.Is(err, api.ErrRetryable) || !ok || after != tc.want {
			t.Errorf("errcode %d: err %v, retry after %s; want retryable after %s", tc.code, err, after, tc.want)
		}
	}
	if _, err := f.client.GetStat(ctx, "dev1"); err != nil {
		t.Fatalf("after the injected failures: %v", err)
	}
}

func TestCustomerServiceTextNeedsARecentInteraction(t *testing.T) {
	f := setup(t, wechatsim.Options{})
	ctx := context.Background()
	u := f.follower(t, "oWINDOW")
	if _, err := u.SendText(ctx, "hello"); err != nil { // a message opens 48 h
		t.Fatal(err)
	}
	if err := f.client.SendText(ctx, u.OpenID, "your pot is dry"); err != nil {
		t.Fatalf("inside the window: %v", err)
	}
	f.clock.Advance(wechatsim.DefaultCustomerWindow + time.Minute)
	err := f.client.SendText(ctx, u.OpenID, "still dry")
	if !errors.Is(err, api.ErrWindowExpired) || !errors.Is(err, api.ErrPermanent) {
		t.Fatalf("outside the window: %v, want ErrWindowExpired", err)
	}
	var got []wechatsim.Entry
	for _, e := range f.sim.Received(u.OpenID) {
		if e.Kind == wechatsim.KindCustomText {
			got = append(got, e)
		}
	}
	if len(got) != 1 || got[0].Text != "your pot is dry" {
		t.Fatalf("user received %+v", got)
	}
}

func TestTemplateMessagesReachFollowersOncePerClientMsgID(t *testing.T) {
	f := setup(t, wechatsim.Options{})
	ctx := context.Background()
	u := f.follower(t, "oTPL")
	m := api.TemplateMessage{ToUser: u.OpenID, TemplateID: "tmpl_legacy_notice", ClientMsgID: "alert-42",
		Data: map[string]api.TemplateValue{"first": {Value: "dry"}, "keyword1": {Value: "soil <20%"}, "keyword2": {Value: "pot-1"},
			"keyword3": {Value: "2026-12-03 13:05"}, "remark": {Value: "water it"}}}
	id1, err := f.client.SendTemplate(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	id2, err := f.client.SendTemplate(ctx, m)
	if err != nil || id2 != id1 {
		t.Fatalf("repeat send: id %d (first %d), %v", id2, id1, err)
	}
	e, err := f.sim.WaitFor(u.OpenID, time.Second, func(e wechatsim.Entry) bool { return e.Kind == wechatsim.KindTemplate })
	if err != nil || e.Data["keyword1"].Value != "soil <20%" || e.MsgID != id1 {
		t.Fatalf("recorded %+v, %v", e, err)
	}
	n := 0
	for _, e := range f.sim.Received(u.OpenID) {
		if e.Kind == wechatsim.KindTemplate {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("user received %d template messages, want 1", n)
	}

	stranger := f.sim.NewUser("oNOTFOLLOWING")
	m.ToUser, m.ClientMsgID = stranger.OpenID, "alert-43"
	if _, err := f.client.SendTemplate(ctx, m); !errors.Is(err, api.ErrNotFollowing) {
		t.Fatalf("to a non-follower: %v, want ErrNotFollowing", err)
	}
	m.ToUser, m.ClientMsgID = "oNOBODY", "alert-44"
	if _, err := f.client.SendTemplate(ctx, m); !errors.Is(err, api.ErrInvalidOpenID) {
		t.Fatalf("to an unknown openid: %v, want ErrInvalidOpenID", err)
	}
}

func TestTransMsgCarriesBytesAndStatusNeedsASubscription(t *testing.T) {
	f := setup(t, wechatsim.Options{})
	ctx := context.Background()
	u := f.follower(t, "oDEV")
	if err := f.client.TransMsg(ctx, f.sim.AccountID(), "dev1", u.OpenID, []byte{0, 1, 0xff}); err != nil {
		t.Fatal(err)
	}
	err := f.client.TransStatus(ctx, f.sim.AccountID(), "dev1", u.OpenID, true)
	if !errors.Is(err, api.ErrStatusUnsubscribed) {
		t.Fatalf("status without a subscription: %v, want ErrStatusUnsubscribed", err)
	}
	if _, err := u.SubscribeStatus(ctx, "dev1", 2); err != nil {
		t.Fatal(err)
	}
	if err := f.client.TransStatus(ctx, f.sim.AccountID(), "dev1", u.OpenID, true); err != nil {
		t.Fatalf("status with a subscription: %v", err)
	}
	got := f.sim.Received(u.OpenID)
	if len(got) != 2 || string(got[0].Payload) != "\x00\x01\xff" || got[1].Kind != wechatsim.KindDeviceStatus || got[1].DeviceStatus != "1" {
		t.Fatalf("user received %+v", got)
	}
}

func TestGetQRCodeUnderstandsBothResultShapes(t *testing.T) {
	for _, legacy := range []bool{false, true} {
		f := setup(t, wechatsim.Options{GetQRCodeRespMsg: legacy})
		q, err := f.client.GetQRCode(context.Background(), "12345")
		if err != nil || q.DeviceID == "" || !strings.HasPrefix(q.QRTicket, "http://we.qq.com/d/") || q.DeviceLicence == "" {
			t.Fatalf("resp_msg=%v: %+v, %v", legacy, q, err)
		}
	}
	f := setup(t, wechatsim.Options{GetQRCodeRespMsg: true})
	f.sim.FailNext("/device/getqrcode", 1, 45011)
	if _, err := f.client.GetQRCode(context.Background(), ""); !errors.Is(err, api.ErrRetryable) {
		t.Fatalf("injected failure: %v", err)
	}
}

func TestAuthorizeBindAndUnbindChangeTheDeviceState(t *testing.T) {
	f := setup(t, wechatsim.Options{})
	ctx := context.Background()
	u := f.follower(t, "oBIND")
	res, err := f.client.AuthorizeDevice(ctx, api.AuthorizeRequest{ProductID: "4242",
		Devices: []api.DeviceAuth{api.WiFiDevice("pot-1", "A1B2C3D4E5F6")}})
	if err != nil || len(res) != 1 || res[0].DeviceID != "pot-1" || res[0].ErrCode != 0 {
		t.Fatalf("authorize: %+v, %v", res, err)
	}
	stat := func() int {
		s, err := f.client.GetStat(ctx, "pot-1")
		if err != nil {
			t.Fatal(err)
		}
		return s.Status
	}
	if s := stat(); s != 1 {
		t.Fatalf("status after authorize = %d, want 1", s)
	}
	if err := f.client.CompelBind(ctx, "pot-1", u.OpenID); err != nil {
		t.Fatal(err)
	}
	if s := stat(); s != 2 || !f.sim.IsBound("pot-1", u.OpenID) {
		t.Fatalf("status after compel_bind = %d, want 2", s)
	}
	if err := f.client.CompelUnbind(ctx, "pot-1", u.OpenID); err != nil {
		t.Fatal(err)
	}
	if s := stat(); s != 1 || f.sim.IsBound("pot-1", u.OpenID) {
		t.Fatalf("status after compel_unbind = %d, want 1", s)
	}
	if err := f.client.CompelBind(ctx, "pot-1", "oNOBODY"); !errors.Is(err, api.ErrInvalidOpenID) {
		t.Fatalf("compel_bind of an unknown user: %v", err)
	}
}

func TestCreateQRCodePermanentAndTemporary(t *testing.T) {
	f := setup(t, wechatsim.Options{})
	ctx := context.Background()
	perm, err := f.client.CreateQRCode(ctx, api.QRCodeRequest{Scene: "s1.pot.dev1"})
	if err != nil || perm.Ticket == "" || perm.ExpireSeconds != 0 || perm.URL == "" {
		t.Fatalf("permanent: %+v, %v", perm, err)
	}
	tmp, err := f.client.CreateQRCode(ctx, api.QRCodeRequest{Scene: "s1.pot.dev2", ExpireSeconds: 600})
	if err != nil || tmp.ExpireSeconds != 600 {
		t.Fatalf("temporary: %+v, %v", tmp, err)
	}
	if !strings.Contains(perm.ImageURL(), url.QueryEscape(perm.Ticket)) {
		t.Fatalf("ImageURL %s", perm.ImageURL())
	}
	if _, err := f.client.CreateQRCode(ctx, api.QRCodeRequest{Scene: strings.Repeat("x", 65)}); err == nil {
		t.Fatal("a 65-character scene was accepted")
	}
}

func TestOAuthCodesAreSingleUseAndExpire(t *testing.T) {
	f := setup(t, wechatsim.Options{})
	ctx := context.Background()
	o := &api.OAuth{BaseURL: f.sim.URL(), AuthorizeBase: f.sim.URL(), AppID: f.sim.AppID(), Secret: f.sim.Secret(), Clock: f.clock.Now}
	u := f.sim.NewUser("oWEB")

	// The consent page redirects with a code, as WeChat does.
	consent := strings.Replace(o.AuthorizeURL("https://sprout.example/pots?x=1", "snsapi_base", "st8"), "#wechat_redirect", "&sim_openid="+u.OpenID, 1)
	hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := hc.Get(consent)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || resp.StatusCode != http.StatusFound || loc.Query().Get("state") != "st8" || loc.Query().Get("x") != "1" {
		t.Fatalf("consent answered %d, Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	tok, err := o.Exchange(ctx, loc.Query().Get("code"))
	if err != nil || tok.OpenID != u.OpenID || tok.Scope != "snsapi_base" {
		t.Fatalf("exchange: %+v, %v", tok, err)
	}
	if _, err := o.Exchange(ctx, loc.Query().Get("code")); !errors.Is(err, api.ErrInvalidCode) {
		t.Fatalf("second use of a code: %v, want ErrInvalidCode", err)
	}
	code := u.Authorize("snsapi_base")
	f.clock.Advance(wechatsim.DefaultCodeTTL + time.Second)
	if _, err := o.Exchange(ctx, code); !errors.Is(err, api.ErrInvalidCode) {
		t.Fatalf("expired code: %v, want ErrInvalidCode", err)
	}
}

func TestStableTokenForceRefreshOnlyAfterInvalidate(t *testing.T) {
	f := setup(t, wechatsim.Options{})
	ctx := context.Background()
	fe := &api.Fetcher{BaseURL: f.sim.URL(), AppID: f.sim.AppID(), Secret: f.sim.Secret(), Stable: true}
	cache := api.NewTokenCache(fe.Fetch, api.CacheOptions{})
	a, err := cache.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := fe.Fetch(ctx, false)
	if again.Value != a {
		t.Fatal("stable_token without force_refresh returned a new token")
	}
	cache.Invalidate(ctx, a)
	b, err := cache.Token(ctx)
	if err != nil || b == a {
		t.Fatalf("after Invalidate: %q, %v; want a new stable token", b, err)
	}
	if n := f.sim.StableTokenFetches(); n != 3 {
		t.Fatalf("stable fetches = %d, want 3", n)
	}
}

func TestFetcherErrorsNeverContainTheSecret(t *testing.T) {
	f := setup(t, wechatsim.Options{})
	ctx := context.Background()
	const secret = "s3cr3t-value-never-logged"
	wrong := &api.Fetcher{BaseURL: f.sim.URL(), AppID: f.sim.AppID(), Secret: secret}
	_, err := wrong.Fetch(ctx, false)
	var apiErr *api.Error
	if !errors.As(err, &apiErr) || apiErr.Code != 40125 {
		t.Fatalf("wrong secret: %v, want errcode 40125", err)
	}
	down := &api.Fetcher{BaseURL: "http://127.0.0.1:1", AppID: "wx", Secret: secret, Timeout: time.Second}
	_, err = down.Fetch(ctx, false)
	if err == nil || strings.Contains(err.Error(), secret) {
		t.Fatalf("unreachable platform: %v (must fail without naming the secret)", err)
	}
}
