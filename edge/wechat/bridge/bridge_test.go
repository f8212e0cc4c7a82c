package bridge_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pcluster "github.com/asynkron/protoactor-go/cluster"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/actors/actortest"
	"github.com/sprout-iot/sprout/cluster"
	"github.com/sprout-iot/sprout/edge/edgetest"
	"github.com/sprout-iot/sprout/edge/wechat"
	"github.com/sprout-iot/sprout/edge/wechat/api"
	"github.com/sprout-iot/sprout/edge/wechat/bridge"
	"github.com/sprout-iot/sprout/edge/wechat/qr"
	"github.com/sprout-iot/sprout/messages/actorpb"
	"github.com/sprout-iot/sprout/messages/devicepb"
	"github.com/sprout-iot/sprout/simulations/plant"
	"github.com/sprout-iot/sprout/simulations/wechatsim"
	"github.com/sprout-iot/sprout/store/memory"
)

var qrKey = []byte("0123456789abcdef0123456789abcdef")

// world is one Sprout node wired to the simulated WeChat platform, as `sprout serve` wires it.
type world struct {
	store     *memory.Store
	devices   actors.Store // the device grains' store: store, or a wrapper around it
	member    *cluster.Member
	edgeAddr  string
	platform  *wechatsim.Platform
	callback  string
	pushes    atomic.Int64
	templates *bridge.Templates
	now       func() time.Time // the pusher's clock (nil: time.Now)
}

// simTemplates are the simulated account's templates (wechatsim.DefaultTemplates) per message kind.
var simTemplates = map[string]string{
	actors.MsgAlertRaised:    "tmpl_alert_raised",
	actors.MsgAlertCleared:   "tmpl_alert_cleared",
	actors.MsgCommandOutcome: "tmpl_command_outcome",
	actors.MsgDeviceNotice:   "tmpl_device_notice",
	actors.MsgJoinRequest:    "tmpl_join_request",
	actors.MsgJoinResult:     "tmpl_legacy_notice",
	actors.MsgReplyLater:     "tmpl_legacy_notice",
}

func newWorld(t *testing.T, tune func(*actors.UserOptions, *wechatsim.Options)) *world {
	t.Helper()
	return newWorldWith(t, actors.DeviceOptions{}, tune)
}

// newWorldWith is newWorld with the device grains' options (Store, Users and Logger are set here).
func newWorldWith(t *testing.T, dev actors.DeviceOptions, tune func(*actors.UserOptions, *wechatsim.Options)) *world {
	t.Helper()
	return newWorldOn(t, memory.New(), nil, dev, tune)
}

// newWorldOn is newWorldWith over st, the device grains reading through devices (st if nil).
func newWorldOn(t *testing.T, st *memory.Store, devices actors.Store, dev actors.DeviceOptions, tune func(*actors.UserOptions, *wechatsim.Options)) *world {
	t.Helper()
	w := &world{store: st, devices: devices}
	if w.devices == nil {
		w.devices = st
	}
	log := edgetest.Quiet()
	so := wechatsim.Options{CallbackTimeout: 4 * time.Second}
	var pusher atomic.Pointer[bridge.Pusher]
	uo := w.userOptions(log, &pusher)
	if tune != nil {
		tune(&uo, &so)
	}
	w.startPlatform(t, so)
	w.member, w.edgeAddr = edgetest.StartNode(t, log,
		actors.NewDeviceKind(deviceOptions(dev, w.devices, w.store, log)),
		actors.NewUserKind(uo), w.tokenKind())
	w.serveWeChat(t, log, &pusher)
	return w
}

func deviceOptions(o actors.DeviceOptions, st actors.Store, users actors.UserStore, log *slog.Logger) actors.DeviceOptions {
	o.Store, o.Users, o.Logger = st, users, log
	return o
}

// userOptions are the user grains' options: QR codes signed with qrKey, and every push wakes the
// pusher that serveWeChat stores in pusher.
func (w *world) userOptions(log *slog.Logger, pusher *atomic.Pointer[bridge.Pusher]) actors.UserOptions {
	return actors.UserOptions{Store: w.store, Logger: log, CommandTimeout: 5 * time.Second,
		VerifyScene: func(scene string) (string, error) {
			c, err := qr.Verify(qr.KeyMap{"pot": qrKey}, scene, time.Now())
			return c.Device, err
		},
		Pushed: func() {
			if p := pusher.Load(); p != nil {
				p.Wake()
			}
		}}
}

// startPlatform starts the simulated WeChat platform, closed when the test ends.
func (w *world) startPlatform(t *testing.T, so wechatsim.Options) {
	t.Helper()
	p, err := wechatsim.NewServer(so)
	if err != nil {
		t.Fatal(err)
	}
	w.platform = p
	t.Cleanup(func() { _ = p.Close() })
}

// tokenKind is the access-token grain, fetching from the simulated platform.
func (w *world) tokenKind() *pcluster.Kind {
	fetch := &api.Fetcher{BaseURL: w.platform.URL(), AppID: w.platform.AppID(), Secret: w.platform.Secret()}
	return bridge.NewTokenKind(fetch.Fetch, api.CacheOptions{})
}

// serveWeChat serves the WeChat callback on w.member and points the platform at it, and runs the
// pusher (stored in pusher); both stop when the test ends.
func (w *world) serveWeChat(t *testing.T, log *slog.Logger, pusher *atomic.Pointer[bridge.Pusher]) {
	t.Helper()
	p, c := w.platform, w.member.Cluster
	h, err := wechat.NewHandler(wechat.Options{AppID: p.AppID(), Token: p.Token(), EncodingAESKey: p.EncodingAESKey(),
		AccountID: p.AccountID(), Logger: log}, &bridge.Dispatcher{Cluster: c, Logger: log, Receipts: w.store})
	if err != nil {
		t.Fatal(err)
	}
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go func() { _ = srv.Serve(hl) }()
	w.callback = "http://" + hl.Addr().String() + "/wechat"
	p.SetCallbackURL(w.callback)

	client, _ := api.New(api.Options{BaseURL: p.URL(), Tokens: &bridge.GrainTokens{Cluster: c, AppID: p.AppID()}})
	w.templates = bridge.NewTemplates(client, bridge.TemplateOptions{IDs: simTemplates, Logger: log})
	_ = w.templates.Refresh(context.Background())
	pu := bridge.NewPusher(w.store, client, bridge.PusherOptions{Logger: log, Poll: 200 * time.Millisecond,
		MinBackoff: 50 * time.Millisecond, Sent: func(actors.Push) { w.pushes.Add(1) }, Templates: w.templates, Now: w.now,
		PageURL: func(id string) string { return "https://sprout.example/app/plants/" + id }})
	pusher.Store(pu)
	ctx, cancel := context.WithCancel(context.Background())
	go pu.Run(ctx)
	t.Cleanup(func() {
		cancel()
		_ = srv.Close()
	})
}

func (w *world) addDevice(t *testing.T, id string) []byte {
	t.Helper()
	return edgetest.AddDevice(t, w.store, id, "pot")
}

// connect brings a device online that answers each command (once per id, as the firmware does)
// with DONE.
func (w *world) connect(t *testing.T, id string, secret []byte) *edgetest.Pot {
	t.Helper()
	return edgetest.Connect(t, w.edgeAddr, id, secret, edgetest.PotOptions{OncePerID: true})
}

// silent brings a device online that answers nothing; the test reads the connection itself.
func (w *world) silent(t *testing.T, id string, secret []byte) *plant.Conn {
	t.Helper()
	return edgetest.Dial(t, w.edgeAddr, id, secret)
}

func scene(t *testing.T, device string) string {
	t.Helper()
	s, err := qr.Scene(qrKey, qr.Code{Product: "pot", Device: device})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// scanParam is u scanning, with WeChat's scanner, the parametric QR the account made for scene
// (/cgi-bin/qrcode/create): subscribe with qrscene_<scene> for a non-follower, SCAN for a follower.
func scanParam(w *world, u *wechatsim.User, scene string) (*wechatsim.Reply, error) {
	res, err := u.Scan(ctx5(), w.platform.CreateQR(scene))
	if err != nil {
		return nil, err
	}
	if res.Reply == nil {
		return nil, fmt.Errorf("scanning the QR of %q: %s, not an event", scene, res.Kind)
	}
	return res.Reply, nil
}

// ctx5 is a simulated user's patience for one callback.
func ctx5() context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	time.AfterFunc(10*time.Second, cancel)
	return c
}

func bind(t *testing.T, w *world, u *wechatsim.User, device string) {
	t.Helper()
	r, err := scanParam(w, u, scene(t, device))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(r.Content, "绑定成功") && !strings.Contains(r.Content, "Bound") {
		t.Fatalf("bind reply: %q", r.Content)
	}
}

func waitText(t *testing.T, w *world, openID, sub string, within time.Duration) wechatsim.Entry {
	t.Helper()
	e, err := w.platform.WaitFor(openID, within, func(e wechatsim.Entry) bool {
		return e.Direction == "out" && e.Kind != wechatsim.KindReply && strings.Contains(e.Text, sub)
	})
	if err != nil {
		t.Fatalf("%s never received %q: %v\nconversation: %+v", openID, sub, err, w.platform.Conversation(openID))
	}
	return e
}

func TestBindByScanningThenWaterPushesDone(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	secret := w.addDevice(t, "pot-1")
	pot := w.connect(t, "pot-1", secret)
	alice := w.platform.NewUser("alice")
	bind(t, w, alice, "pot-1")
	r, err := alice.ClickMenu(ctx5(), actors.MenuWater)
	if err != nil || !strings.Contains(r.Content, "正在为 pot-1 浇水") {
		t.Fatalf("tap reply: %q %v", r.Content, err)
	}
	waitText(t, w, "alice", "浇水完成（100 毫升）", 3*time.Second)
	if pot.Commands() != 1 {
		t.Fatalf("device got %d commands", pot.Commands())
	}
}

func TestEnglishUsersGetEnglish(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	secret := w.addDevice(t, "pot-1")
	w.connect(t, "pot-1", secret)
	bob := w.platform.NewUser("bob")
	bind(t, w, bob, "pot-1")
	r, _ := bob.SendText(ctx5(), "water")
	if !strings.Contains(r.Content, "Got it, watering pot-1") {
		t.Fatalf("english reply: %q", r.Content)
	}
	waitText(t, w, "bob", "watering done", 3*time.Second)
}

func TestWaterOnOfflineDeviceAnswersAtOnce(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	w.addDevice(t, "pot-1")
	alice := w.platform.NewUser("alice")
	bind(t, w, alice, "pot-1")
	start := time.Now()
	r, err := alice.ClickMenu(ctx5(), actors.MenuWater)
	if err != nil || !strings.Contains(r.Content, "离线") {
		t.Fatalf("offline tap: %q %v", r.Content, err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("offline answer took %v", d)
	}
}

func TestSilentDeviceIsReportedTimedOut(t *testing.T) {
	t.Parallel()
	w := newWorld(t, func(uo *actors.UserOptions, _ *wechatsim.Options) { uo.CommandTimeout = time.Second })
	secret := w.addDevice(t, "pot-1")
	w.silent(t, "pot-1", secret)
	alice := w.platform.NewUser("alice")
	bind(t, w, alice, "pot-1")
	_, _ = alice.ClickMenu(ctx5(), actors.MenuWater)
	waitText(t, w, "alice", "没有在规定时间内回应", 3*time.Second)
}

func TestAlertReachesEveryBoundUserOnceAndNoOneElse(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	secret := w.addDevice(t, "pot-1")
	c := w.silent(t, "pot-1", secret)
	alice, bob, carol := w.platform.NewUser("alice"), w.platform.NewUser("bob"), w.platform.NewUser("carol")
	bind(t, w, alice, "pot-1")
	join(t, w, bob, "pot-1", "alice")   // after the owner, a scan waits for the owner's approval
	_, _ = carol.SendText(ctx5(), "你好") // carol follows the account but has no pot
	for seq := uint64(1); seq <= 5; seq++ {
		if err := c.Report(&devicepb.Telemetry{Seq: seq, SoilMoisturePct: 10, TemperatureC: 20, TankLevelPct: 80}, 2*time.Second, nil); err != nil {
			t.Fatal(err)
		}
	}
	waitText(t, w, "alice", "土壤太干", 3*time.Second)
	waitText(t, w, "bob", "土壤太干", 3*time.Second)
	settle(t, w, "alice")
	settle(t, w, "bob")
	for _, u := range []string{"alice", "bob"} {
		n := 0
		for _, e := range w.platform.Received(u) {
			if strings.Contains(e.Text, "土壤太干") {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("%s received the alert %d times", u, n)
		}
	}
	for _, e := range w.platform.Received("carol") {
		if strings.Contains(e.Text, "土壤太干") {
			t.Fatal("carol, who is not bound, received the alert")
		}
	}
}

func TestAlertStormBecomesOneSummary(t *testing.T) {
	t.Parallel()
	w := newWorld(t, func(uo *actors.UserOptions, _ *wechatsim.Options) {
		uo.AlertBurst, uo.AlertWindow = 2, 500*time.Millisecond
	})
	alice := w.platform.NewUser("alice")
	var conns []*plant.Conn
	for i := 0; i < 6; i++ {
		id := "pot-" + string(rune('a'+i))
		secret := w.addDevice(t, id)
		conns = append(conns, w.silent(t, id, secret))
		bind(t, w, alice, id)
	}
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func(c *plant.Conn) {
			defer wg.Done()
			_ = c.Report(&devicepb.Telemetry{Seq: 1, SoilMoisturePct: 5, TemperatureC: 20, TankLevelPct: 80}, 2*time.Second, nil)
		}(c)
	}
	wg.Wait()
	waitText(t, w, "alice", "你的 4 个花盆需要关注", 3*time.Second)
	n := 0
	for _, e := range w.platform.Received("alice") {
		if strings.Contains(e.Text, "土壤太干") && !strings.Contains(e.Text, "需要关注") {
			n++
		}
	}
	if n != 2 {
		t.Fatalf("want 2 single alerts and one summary of 4, got %d singles", n)
	}
}

func TestRetriedCallbackActsOnce(t *testing.T) {
	t.Parallel()
	// The simulated WeChat gives up on each attempt after 1 ms and retries: Sprout sees the same
	// tap three times.
	w := newWorld(t, func(_ *actors.UserOptions, so *wechatsim.Options) { so.CallbackTimeout = time.Millisecond })
	secret := w.addDevice(t, "pot-1")
	pot := w.connect(t, "pot-1", secret)
	alice := w.platform.NewUser("alice")
	_, _ = scanParam(w, alice, scene(t, "pot-1"))
	waitBound(t, w, "pot-1", "alice")
	_, _ = alice.ClickMenu(ctx5(), actors.MenuWater)
	waitText(t, w, "alice", "浇水完成", 3*time.Second)
	settle(t, w, "alice")
	if st := deviceState(t, w, "pot-1", "alice"); len(st.OpenCommands) != 0 {
		t.Fatalf("commands still open: %v", st.OpenCommands)
	}
	if pot.Commands() != 1 {
		t.Fatalf("one tap watered %d times", pot.Commands())
	}
	done := 0
	for _, e := range w.platform.Received("alice") {
		if strings.Contains(e.Text, "浇水完成") {
			done++
		}
	}
	if done != 1 {
		t.Fatalf("alice was told %d times", done)
	}
}

func waitBound(t *testing.T, w *world, device, openID string) {
	t.Helper()
	actortest.Eventually(t, 3*time.Second, openID+" is bound to "+device, func() bool {
		bs, _ := w.store.DeviceBindings(context.Background(), device)
		for _, b := range bs {
			if b.OpenID == openID {
				return true
			}
		}
		return false
	})
}

// settle waits until openID's grain has handled everything sent to it so far (a request queues
// behind it) and every push it enqueued has been sent or failed: after it, what the user has
// received is all they will receive from what happened before.
// awaitOffline waits until the pot's grain has taken in the end of its connection.
func (w *world) awaitOffline(t *testing.T, id string) {
	t.Helper()
	actortest.Eventually(t, 5*time.Second, id+" offline", func() bool {
		res, err := w.member.Cluster.Request(id, actors.DeviceKind, &actorpb.GetState{})
		st, ok := res.(*actorpb.DeviceState)
		return err == nil && ok && !st.Online
	})
}

func settle(t *testing.T, w *world, openID string) {
	t.Helper()
	if _, err := w.member.Cluster.Request(openID, actors.UserKind, &actorpb.UserMessage{
		DedupKey: fmt.Sprintf("settle:%d", time.Now().UnixNano()), MsgType: "event"}); err != nil {
		t.Fatalf("%s's grain: %v", openID, err)
	}
	actortest.Eventually(t, 3*time.Second, openID+"'s pushes are sent", func() bool {
		ps, err := w.store.UserPushes(context.Background(), openID, 1000)
		if err != nil {
			return false
		}
		for _, p := range ps {
			if p.Status == actors.PushPending {
				return false
			}
		}
		return true
	})
}

func deviceState(t *testing.T, w *world, device, openID string) *actorpb.DeviceState {
	t.Helper()
	res, err := w.member.Cluster.Request(device, actors.DeviceKind, &actorpb.GetState{OpenId: openID})
	if err != nil {
		t.Fatal(err)
	}
	return res.(*actorpb.DeviceState)
}

func TestUnboundUserCanNeitherReadNorControl(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	secret := w.addDevice(t, "pot-1")
	pot := w.connect(t, "pot-1", secret)
	alice, mallory := w.platform.NewUser("alice"), w.platform.NewUser("mallory")
	bind(t, w, alice, "pot-1")
	if _, err := mallory.Subscribe(ctx5()); err != nil { // only followers can write to the account
		t.Fatal(err)
	}
	if r, _ := mallory.SendText(ctx5(), "状态"); !strings.Contains(r.Content, "还没有绑定") {
		t.Fatalf("status for an unbound user: %q", r.Content)
	}
	if r, _ := mallory.SendText(ctx5(), "浇水 pot-1"); !strings.Contains(r.Content, "还没有绑定") {
		t.Fatalf("water for an unbound user: %q", r.Content)
	}
	// Straight at the grain, too: the device grain itself refuses.
	res, err := w.member.Cluster.Request("pot-1", actors.DeviceKind, &actorpb.SendCommand{CommandId: "m1",
		Kind: devicepb.CommandKind_COMMAND_KIND_WATER, WaterMs: 1000, RequestedBy: actors.WeChatRequester("mallory")})
	if err != nil || res.(*actorpb.CommandOutcome).Outcome != actorpb.Outcome_OUTCOME_NOT_BOUND {
		t.Fatalf("grain let an unbound user command: %v %v", res, err)
	}
	st, _ := w.member.Cluster.Request("pot-1", actors.DeviceKind, &actorpb.GetState{OpenId: "mallory"})
	if s := st.(*actorpb.DeviceState); !s.Denied || s.Latest != nil {
		t.Fatalf("grain showed state to an unbound user: %v", s)
	}
	// Unbinding removes access at once.
	if r, _ := alice.SendText(ctx5(), "解绑"); !strings.Contains(r.Content, "已解绑") {
		t.Fatalf("unbind: %q", r.Content)
	}
	if r, _ := alice.ClickMenu(ctx5(), actors.MenuWater); !strings.Contains(r.Content, "还没有绑定") {
		t.Fatalf("after unbinding: %q", r.Content)
	}
	if pot.Commands() != 0 {
		t.Fatalf("device got %d commands", pot.Commands())
	}
}

func TestBindingUnknownRevokedOrForgedCodes(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	w.addDevice(t, "pot-old")
	_ = w.store.RevokeDevice(context.Background(), "pot-old", time.Now())
	u := w.platform.NewUser("alice")
	cases := map[string]struct{ scene, want string }{
		"unknown": {scene(t, "pot-404"), "找不到这个设备"},
		"revoked": {scene(t, "pot-old"), "已停用"},
		"forged":  {strings.Replace(scene(t, "pot-404"), "pot-404", "pot-405", 1), "二维码无效"},
	}
	for name, tc := range cases {
		r, err := scanParam(w, u, tc.scene)
		if err != nil || !strings.Contains(r.Content, tc.want) {
			t.Errorf("%s: %q %v", name, r.Content, err)
		}
	}
}

func TestTokenGrainFetchesOnceForConcurrentCallers(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	src := &bridge.GrainTokens{Cluster: w.member.Cluster, AppID: w.platform.AppID()}
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := src.Token(context.Background()); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if n := w.platform.TokenFetches(); n != 1 {
		t.Fatalf("20 concurrent callers caused %d fetches", n)
	}
	// An invalidated token is refreshed once and the call succeeds.
	w.platform.RevokeTokens()
	client, _ := api.New(api.Options{BaseURL: w.platform.URL(), Tokens: src})
	u := w.platform.NewUser("alice")
	_, _ = u.Subscribe(ctx5())
	_, _ = u.SendText(ctx5(), "hi")
	if err := client.SendText(context.Background(), "alice", "hello"); err != nil {
		t.Fatalf("call after revocation: %v", err)
	}
	if n := w.platform.TokenFetches(); n != 2 {
		t.Fatalf("want one refresh, got %d fetches", n)
	}
}

func TestBadSignatureChangesNothing(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	secret := w.addDevice(t, "pot-1")
	pot := w.connect(t, "pot-1", secret)
	alice := w.platform.NewUser("alice")
	bind(t, w, alice, "pot-1")
	body := `<xml><ToUserName><![CDATA[gh_sproutsim0]]></ToUserName><FromUserName><![CDATA[alice]]></FromUserName>` +
		`<CreateTime>` + time.Now().Format("0405") + `</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[CLICK]]></Event><EventKey><![CDATA[WATER]]></EventKey></xml>`
	url := strings.Replace(w.platformCallback(), "/wechat", "/wechat?signature=bad&timestamp=1&nonce=2", 1)
	resp, err := http.Post(url, "text/xml", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode < 400 || resp.StatusCode >= 500 {
		t.Fatalf("bad signature: status %d", resp.StatusCode)
	}
	// Refused before dispatch: nothing reached the grains.
	if st := deviceState(t, w, "pot-1", "alice"); len(st.OpenCommands) != 0 {
		t.Fatal("a forged callback opened a command")
	}
	if pot.Commands() != 0 {
		t.Fatal("a forged callback watered the pot")
	}
}

func (w *world) platformCallback() string { return w.callback }

func TestJSSDKSignsPagesWithOneTicket(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	client, _ := api.New(api.Options{BaseURL: w.platform.URL(), Tokens: &bridge.GrainTokens{Cluster: w.member.Cluster, AppID: w.platform.AppID()}})
	j := &bridge.JSSDK{Client: client, AppID: w.platform.AppID()}
	for i := 0; i < 3; i++ {
		c, err := j.Config(context.Background(), "https://pots.example.com/app/bind?x=1#frag")
		if err != nil {
			t.Fatal(err)
		}
		ticket, fetches := w.platform.JSTicket()
		if fetches != 1 {
			t.Fatalf("%d ticket fetches, want 1", fetches)
		}
		if want := bridge.JSSignature(ticket, c.NonceStr, c.Timestamp, "https://pots.example.com/app/bind?x=1"); c.Signature != want || c.AppID != w.platform.AppID() {
			t.Fatalf("wx.config %+v, want signature %s", c, want)
		}
	}
	// The documented example: jsapi_ticket, noncestr, timestamp and url from WeChat's JS-SDK guide.
	if got := bridge.JSSignature("sM4AOVdWfPE4DxkXGEs8VMCPGGVi4C3VM0P37wVUCFvkVAy_90u5h9nbSlYy3-Sl-HhTdfl2fzFy1AOcHKP7qg",
		"Wm3WZYTPz0wzccnW", 1414587457, "http://mp.weixin.qq.com?params=value"); got != "0f9de62fce790f9a083d5c99e95740ceb90c27ed" {
		t.Fatalf("JS-SDK example signature: %s", got)
	}
}

func TestUsersHearOnceAboutAPotThatReconnectsInALoop(t *testing.T) {
	t.Parallel()
	w := newWorldWith(t, actors.DeviceOptions{FlapConnects: 2, FlapWindow: time.Minute, FlapBan: 3 * time.Minute}, nil)
	secret := w.addDevice(t, "pot-1")
	alice := w.platform.NewUser("alice")
	bind(t, w, alice, "pot-1")
	for range 5 { // two connects pass; the third starts the ban; the rest are refused during it
		c, err := plant.Dial(w.edgeAddr, "", 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = c.Handshake(plant.Hello{DeviceID: "pot-1", Secret: secret}, 5*time.Second)
		_ = c.Close()
	}
	waitText(t, w, "alice", "频繁断线重连", 3*time.Second)
	settle(t, w, "alice")
	n := 0
	for _, e := range w.platform.Received("alice") {
		if strings.Contains(e.Text, "频繁断线重连") {
			n++
			if !strings.Contains(e.Text, "pot-1") || !strings.Contains(e.Text, "3 分钟") {
				t.Fatalf("the message does not name the pot and the pause: %q", e.Text)
			}
		}
	}
	if n != 1 {
		t.Fatalf("alice was told %d times, want once", n)
	}
}
