package bridge_test

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/actors/actortest"
	"github.com/sprout-iot/sprout/edge/edgetest"
	"github.com/sprout-iot/sprout/edge/wechat"
	"github.com/sprout-iot/sprout/edge/wechat/api"
	"github.com/sprout-iot/sprout/edge/wechat/bridge"
	"github.com/sprout-iot/sprout/edge/wechat/qr"
	"github.com/sprout-iot/sprout/simulations/wechatsim"
	"github.com/sprout-iot/sprout/store"
	"github.com/sprout-iot/sprout/store/pgtest"
	"github.com/sprout-iot/sprout/store/postgres"
)

// A WeChat unbind arriving while Postgres is down is not lost: it is stored once Postgres is
// back (the user grain keeps retrying it), and the user's list follows. The database is really
// stopped and started (pgtest), not simulated.
func TestAWeChatUnbindWhilePostgresIsDownIsStoredWhenItIsBack(t *testing.T) {
	t.Parallel()
	srv := pgtest.Start(t) // its own server: stopping it must not disturb other tests
	st, err := postgres.Open(context.Background(), srv.NewDatabase(t), postgres.Options{
		CommitOptions:  store.CommitOptions{WriteTimeout: time.Second, RetryBackoff: 20 * time.Millisecond, MaxRetryBackoff: 200 * time.Millisecond},
		ConnectTimeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	log := edgetest.Quiet()
	p, err := wechatsim.NewServer(wechatsim.Options{CallbackTimeout: 4 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	fetch := &api.Fetcher{BaseURL: p.URL(), AppID: p.AppID(), Secret: p.Secret()}
	m, _ := edgetest.StartNode(t, log,
		actors.NewDeviceKind(actors.DeviceOptions{Store: st, Users: st, Logger: log}),
		actors.NewUserKind(actors.UserOptions{Store: st, Logger: log, VerifyScene: func(scene string) (string, error) {
			c, err := qr.Verify(qr.KeyMap{"pot": qrKey}, scene, time.Now())
			return c.Device, err
		}}),
		bridge.NewTokenKind(fetch.Fetch, api.CacheOptions{}))
	h, err := wechat.NewHandler(wechat.Options{AppID: p.AppID(), Token: p.Token(), EncodingAESKey: p.EncodingAESKey(),
		AccountID: p.AccountID(), Logger: log}, &bridge.Dispatcher{Cluster: m.Cluster, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: h}
	go func() { _ = hs.Serve(hl) }()
	t.Cleanup(func() { _ = hs.Close() })
	p.SetCallbackURL("http://" + hl.Addr().String() + "/wechat")

	edgetest.AddDevice(t, st, "pot-1", "pot")
	alice := p.NewUser("alice")
	if r, err := alice.ScanSproutQR(ctx5(), label(t, p, "pot-1")); err != nil || !strings.Contains(r.Content, "绑定成功") {
		t.Fatalf("bind: %q %v", r.Content, err)
	}
	p.BindInWeChatOnly("pot-1", "alice") // bound in WeChat too (its device QR, or compel_bind)
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Unbind(ctx5(), "pot-1"); err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	actortest.Eventually(t, 30*time.Second, "the WeChat unbind stored once Postgres is back", func() bool {
		bs, err := st.DeviceBindings(context.Background(), "pot-1")
		return err == nil && len(bs) == 0
	})
	// Her grain hears of it (the retry's answer) just after the store has it.
	actortest.Eventually(t, 5*time.Second, "alice's list without the pot", func() bool {
		r, err := alice.SendText(ctx5(), "我的设备")
		return err == nil && strings.Contains(r.Content, "还没有绑定")
	})
}
