package bridge_test

import (
	"context"
	"errors"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/actors/actortest"
	"github.com/sprout-iot/sprout/edge/edgetest"
	"github.com/sprout-iot/sprout/edge/web"
	"github.com/sprout-iot/sprout/edge/wechat/api"
	"github.com/sprout-iot/sprout/edge/wechat/bridge"
	"github.com/sprout-iot/sprout/messages/devicepb"
	"github.com/sprout-iot/sprout/simulations/wechatsim"
	"github.com/sprout-iot/sprout/store/memory"
)

// Who may join, and WeChat's bindings in step (docs/wechat.md), through real callbacks from the
// simulated WeChat platform, the pusher, and the pages.

// joinWorld is a world with WeChat's device APIs on and the pages served (the approval link).
func joinWorld(t *testing.T, st *memory.Store, devices actors.Store) (*world, *web.Handler, string) {
	t.Helper()
	var pagesURL atomic.Value
	pagesURL.Store("")
	dev := actors.DeviceOptions{Join: actors.JoinOptions{CompelBind: true}}
	w := newWorldOn(t, st, devices, dev, func(uo *actors.UserOptions, _ *wechatsim.Options) {
		uo.CompelBind, uo.StatusPushes, uo.DeviceType = true, true, "gh_sprout"
		uo.Join.ApproveURL = func(d, r string) string { return web.ApproveURL(pagesURL.Load().(string))(d, r) }
	})
	p := w.platform
	h := web.New(web.Options{Cluster: w.member.Cluster, Store: w.store, Users: w.store, Logger: edgetest.Quiet(),
		CookieKey: []byte(strings.Repeat("k", 32)),
		OAuth:     web.OAuth{AppID: p.AppID(), Secret: p.Secret(), APIBase: p.URL(), AuthorizeBase: p.URL()}})
	u := edgetest.Serve(t, h.Routes)
	pagesURL.Store(u)
	return w, h, u
}

// label is the scene of device's label as a parametric QR made through WeChat (qrcode/create):
// only such codes scan as events.
func label(t *testing.T, p *wechatsim.Platform, device string) string {
	t.Helper()
	s := scene(t, device)
	p.CreateQR(s)
	return s
}

// join is a scan after the owner's: it waits, and the owner approves it.
func join(t *testing.T, w *world, u *wechatsim.User, device, owner string) {
	t.Helper()
	r, err := u.ScanSproutQR(ctx5(), label(t, w.platform, device))
	if err != nil || !strings.Contains(r.Content, "等待批准") {
		t.Fatalf("a second scan: %q %v, want waiting for the owner", r.Content, err)
	}
	dc := actors.NewDeviceClient(w.member.Cluster, actors.ClientOptions{})
	if _, err := dc.DecideJoin(context.Background(), device, "", u.OpenID, true, owner); err != nil {
		t.Fatalf("the owner approving %s: %v", u.OpenID, err)
	}
	waitBound(t, w, device, u.OpenID)
}

// browser is a user's in-WeChat browser: it signs in through the platform's OAuth as openID.
func browser(openID string) *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Timeout: 10 * time.Second,
		CheckRedirect: func(req *http.Request, _ []*http.Request) error {
			if req.URL.Path == "/connect/oauth2/authorize" && req.URL.Query().Get("sim_openid") == "" {
				q := req.URL.Query()
				q.Set("sim_openid", openID)
				req.URL.RawQuery = q.Encode()
			}
			return nil
		}}
}

func open(t *testing.T, c *http.Client, u string) (int, string) {
	t.Helper()
	res, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

var (
	approveLinkRE = regexp.MustCompile(`https?://[^\s"<>]+/app/plants/[^/\s]+/requests/[0-9a-f]+`)
	approveFormRE = regexp.MustCompile(`(?s)<form method="post" action="([^"]+)" class="inline">\s*<input type="hidden" name="csrf" value="([^"]+)"><input type="hidden" name="decision" value="approve">`)
)

func TestASecondScannerWaitsUntilTheOwnerTapsApprove(t *testing.T) {
	t.Parallel()
	w, _, _ := joinWorld(t, memory.New(), nil)
	secret := w.addDevice(t, "pot-1")
	pot := w.connect(t, "pot-1", secret)
	alice, bob := w.platform.NewUser("alice"), w.platform.NewUser("bob")
	bind(t, w, alice, "pot-1")
	// Bob scans the same label: he waits, with no control.
	r, err := bob.ScanSproutQR(ctx5(), label(t, w.platform, "pot-1"))
	if err != nil || !strings.Contains(r.Content, "等待批准") {
		t.Fatalf("a second scan: %q %v, want waiting for the owner", r.Content, err)
	}
	if r, _ := bob.ClickMenu(ctx5(), actors.MenuWater); !strings.Contains(r.Content, "还在等待管理员批准") {
		t.Fatalf("a waiting requester tapping water: %q, want told it waits", r.Content)
	}
	if pot.Commands() != 0 || w.platform.IsBound("pot-1", "bob") {
		t.Fatal("a waiting requester watered, or was bound in WeChat")
	}
	// Alice hears of it, with the link; she opens it in WeChat's browser and taps approve.
	e := waitText(t, w, "alice", "申请加入", 5*time.Second)
	link := approveLinkRE.FindString(e.Text + " " + e.URL)
	if link == "" && strings.Contains(e.URL, "/app/plants/") {
		link = e.URL // a template card links the pot's page, which lists the requests with the same buttons
	}
	if link == "" {
		t.Fatalf("the join_request push has no approval link: %+v", e)
	}
	ab := browser("alice")
	st, page := open(t, ab, link)
	m := approveFormRE.FindStringSubmatch(page)
	if st != 200 || m == nil {
		t.Fatalf("the approval page (%d) has no approve form:\n%s", st, page)
	}
	action, _ := url.Parse(link)
	action.Path, action.RawQuery = html.UnescapeString(m[1]), ""
	res, err := ab.PostForm(action.String(), url.Values{"csrf": {html.UnescapeString(m[2])}, "decision": {"approve"}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.Contains(string(body), "已批准") {
		t.Fatalf("approving: %d %s", res.StatusCode, body)
	}
	waitText(t, w, "bob", "管理员已批准", 5*time.Second)
	actortest.Eventually(t, 5*time.Second, "bob bound in WeChat too", func() bool { return w.platform.IsBound("pot-1", "bob") })
	// (A text: a second CLICK within the same second would be WeChat's retry of the first.)
	if r, _ := bob.SendText(ctx5(), "浇水"); !strings.Contains(r.Content, "正在为 pot-1 浇水") {
		t.Fatalf("bob tapping water after the approval: %q", r.Content)
	}
}

func TestOwnerRemovingAMemberUnbindsThemInWeChat(t *testing.T) {
	t.Parallel()
	w, _, _ := joinWorld(t, memory.New(), nil)
	w.addDevice(t, "pot-1")
	alice, bob := w.platform.NewUser("alice"), w.platform.NewUser("bob")
	bind(t, w, alice, "pot-1")
	_, _ = bob.ScanSproutQR(ctx5(), label(t, w.platform, "pot-1"))
	dc := actors.NewDeviceClient(w.member.Cluster, actors.ClientOptions{})
	if _, err := dc.DecideJoin(context.Background(), "pot-1", "", "bob", true, "alice"); err != nil {
		t.Fatal(err)
	}
	actortest.Eventually(t, 5*time.Second, "bob bound in WeChat", func() bool { return w.platform.IsBound("pot-1", "bob") })
	before := w.platform.Calls("/device/compel_unbind")
	if err := dc.RemoveUser(context.Background(), "pot-1", "bob", "alice", false); err != nil {
		t.Fatal(err)
	}
	actortest.Eventually(t, 5*time.Second, "bob unbound in WeChat", func() bool { return !w.platform.IsBound("pot-1", "bob") })
	if w.platform.Calls("/device/compel_unbind") <= before {
		t.Fatal("compel_unbind was not called")
	}
	waitText(t, w, "bob", "将你移出", 5*time.Second)
	if !w.platform.IsBound("pot-1", "alice") {
		t.Fatal("the owner was unbound in WeChat")
	}
}

func TestARefusedWeChatBindIsUndoneInWeChat(t *testing.T) {
	t.Parallel()
	w, _, _ := joinWorld(t, memory.New(), nil)
	// A pot WeChat knows (its device QR) but Sprout does not (never provisioned, or deleted).
	client, _ := api.New(api.Options{BaseURL: w.platform.URL(), Tokens: &bridge.GrainTokens{Cluster: w.member.Cluster, AppID: w.platform.AppID()}})
	q, err := client.GetQRCode(context.Background(), "12345")
	if err != nil {
		t.Fatal(err)
	}
	carol := w.platform.NewUser("carol")
	r, err := carol.ScanDeviceQR(ctx5(), q.QRTicket)
	if err != nil || !strings.Contains(r.Content, "找不到") {
		t.Fatalf("binding an unknown pot in WeChat: %q %v", r.Content, err)
	}
	actortest.Eventually(t, 5*time.Second, "the WeChat binding undone", func() bool { return !w.platform.IsBound(q.DeviceID, "carol") })
}

func TestStatusPushesGoOnlyToStatusSubscribers(t *testing.T) {
	t.Parallel()
	w, _, _ := joinWorld(t, memory.New(), nil)
	secret := w.addDevice(t, "pot-1")
	alice := w.platform.NewUser("alice")
	bind(t, w, alice, "pot-1")
	// Not subscribed: the pot coming online sends no transmsg.
	c := w.silent(t, "pot-1", secret)
	settle(t, w, "alice")
	if n := w.platform.Calls("/device/transmsg"); n != 0 {
		t.Fatalf("%d transmsg calls to a user who never opened the pot's status", n)
	}
	c.Close()
	w.awaitOffline(t, "pot-1") // else the next connection replaces this one and nothing changes
	settle(t, w, "alice")
	if n := w.platform.Calls("/device/transmsg"); n != 0 {
		t.Fatalf("%d transmsg calls to a user who never opened the pot's status", n)
	}
	// Subscribed: the next change is pushed.
	if _, err := alice.SubscribeStatus(ctx5(), "pot-1", 2); err != nil {
		t.Fatal(err)
	}
	c = w.silent(t, "pot-1", secret)
	_, err := w.platform.WaitFor("alice", 5*time.Second, func(e wechatsim.Entry) bool {
		return e.Kind == wechatsim.KindDeviceStatus && e.DeviceID == "pot-1"
	})
	if err != nil {
		t.Fatalf("a subscribed user got no status push: %v", err)
	}
	// Unsubscribed again: nothing more.
	if _, err := alice.SubscribeStatus(ctx5(), "pot-1", 0); err != nil {
		t.Fatal(err)
	}
	settle(t, w, "alice")
	calls := w.platform.Calls("/device/transmsg")
	c.Close()
	settle(t, w, "alice")
	if n := w.platform.Calls("/device/transmsg"); n != calls {
		t.Fatalf("a user who closed the pot's status still got %d status pushes", n-calls)
	}
}

// failingUnbinds is the real store whose Unbind fails while down is set (a bindings write
// that fails: the database refuses it).
type failingUnbinds struct {
	*memory.Store
	down atomic.Bool
}

func (s *failingUnbinds) Unbind(ctx context.Context, deviceID, openID string) error {
	if s.down.Load() {
		return errors.New("database unavailable")
	}
	return s.Store.Unbind(ctx, deviceID, openID)
}

func TestAWeChatUnbindWhoseWriteFailedIsRetried(t *testing.T) {
	t.Parallel()
	st := &failingUnbinds{Store: memory.New()}
	// The world of newWorldOn, with the device grains writing bindings through the wrapper.
	w := &world{store: st.Store, devices: st.Store}
	log := edgetest.Quiet()
	var pusher atomic.Pointer[bridge.Pusher]
	uo := w.userOptions(log, &pusher)
	w.startPlatform(t, wechatsim.Options{CallbackTimeout: 4 * time.Second})
	w.member, w.edgeAddr = edgetest.StartNode(t, log,
		actors.NewDeviceKind(actors.DeviceOptions{Store: st.Store, Users: st, Logger: log}),
		actors.NewUserKind(uo), w.tokenKind())
	w.serveWeChat(t, log, &pusher)

	w.addDevice(t, "pot-1")
	alice := w.platform.NewUser("alice")
	bind(t, w, alice, "pot-1")
	w.platform.BindInWeChatOnly("pot-1", "alice") // bound in WeChat too (its device QR, or compel_bind)
	st.down.Store(true)
	if _, err := alice.Unbind(ctx5(), "pot-1"); err != nil {
		t.Fatal(err)
	}
	if bs, _ := st.DeviceBindings(context.Background(), "pot-1"); len(bs) != 1 {
		t.Fatalf("the unbind was stored although the store refused it: %v", bs)
	}
	st.down.Store(false)
	actortest.Eventually(t, 15*time.Second, "the WeChat unbind stored once the store is back", func() bool {
		bs, _ := st.DeviceBindings(context.Background(), "pot-1")
		return len(bs) == 0
	})
	// Her grain hears of it (the retry's answer) just after the store has it.
	actortest.Eventually(t, 5*time.Second, "alice's list without the pot", func() bool {
		r, err := alice.SendText(ctx5(), "我的设备")
		return err == nil && strings.Contains(r.Content, "还没有绑定")
	})
}

func TestAnExpiredRequestIsToldToTheRequester(t *testing.T) {
	t.Parallel()
	clock := clockwork.NewFakeClock()
	w := newWorldWith(t, actors.DeviceOptions{Clock: clock}, nil)
	w.addDevice(t, "pot-1")
	alice, bob := w.platform.NewUser("alice"), w.platform.NewUser("bob")
	bind(t, w, alice, "pot-1")
	if r, err := bob.ScanSproutQR(ctx5(), label(t, w.platform, "pot-1")); err != nil || !strings.Contains(r.Content, "等待批准") {
		t.Fatalf("a second scan: %q %v", r.Content, err)
	}
	// Nobody decides for a day.
	actortest.Eventually(t, 5*time.Second, "the expiry armed", func() bool {
		return len(deviceState(t, w, "pot-1", "").JoinRequests) == 1
	})
	clock.Advance(actors.DefaultJoinTTL + time.Second)
	waitText(t, w, "bob", "已过期", 5*time.Second)
	if st := deviceState(t, w, "pot-1", ""); len(st.JoinRequests) != 0 || len(st.Users) != 1 {
		t.Fatalf("after expiry: users %v requests %v", st.Users, st.JoinRequests)
	}
	if r, _ := bob.SendText(ctx5(), "状态"); strings.Contains(r.Content, "等待") {
		t.Fatalf("after expiry bob is still told he waits: %q", r.Content)
	}
}

func TestAPressOfThePotsButtonLetsTheRequesterIn(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	secret := w.addDevice(t, "pot-1")
	c := w.silent(t, "pot-1", secret)
	alice, bob := w.platform.NewUser("alice"), w.platform.NewUser("bob")
	bind(t, w, alice, "pot-1")
	if r, err := bob.ScanSproutQR(ctx5(), label(t, w.platform, "pot-1")); err != nil || !strings.Contains(r.Content, "按一下花盆上的按钮") {
		t.Fatalf("a second scan: %q %v, want told about the button", r.Content, err)
	}
	// Bob holds the pot: he presses its button (the pot sends BUTTON_PRESSED).
	err := c.Send(&devicepb.Frame{Body: &devicepb.Frame_Event{Event: &devicepb.Event{Seq: 1, Kind: devicepb.EventKind_EVENT_KIND_BUTTON_PRESSED}}})
	if err == nil {
		err = c.AwaitAck(1, 5*time.Second, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	waitText(t, w, "bob", "按了花盆的按钮", 5*time.Second)
	waitBound(t, w, "pot-1", "bob")
	if r, _ := bob.SendText(ctx5(), "状态"); !strings.Contains(r.Content, "pot-1") || strings.Contains(r.Content, "等待") {
		t.Fatalf("bob's status after the press: %q", r.Content)
	}
}
