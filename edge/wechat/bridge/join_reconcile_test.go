package bridge_test

import (
	"sync/atomic"
	"testing"
	"time"

	pcluster "github.com/asynkron/protoactor-go/cluster"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/actors/actortest"
	"github.com/sprout-iot/sprout/edge/edgetest"
	"github.com/sprout-iot/sprout/edge/wechat/api"
	"github.com/sprout-iot/sprout/edge/wechat/bridge"
	"github.com/sprout-iot/sprout/messages/actorpb"
	"github.com/sprout-iot/sprout/simulations/wechatsim"
	"github.com/sprout-iot/sprout/store/memory"
)

// Reconciliation repairs drift between WeChat's device bindings and Sprout's, once per interval,
// with WeChat's own get_openid / get_bind_device answering (the strict simulated platform).
func TestReconciliationRepairsDriftOncePerInterval(t *testing.T) {
	t.Parallel()
	w := &world{store: memory.New()}
	w.devices = w.store
	log := edgetest.Quiet()
	var pusher atomic.Pointer[bridge.Pusher]
	uo := w.userOptions(log, &pusher)
	uo.CompelBind = true
	w.startPlatform(t, wechatsim.Options{CallbackTimeout: 4 * time.Second})
	reports := make(chan bridge.ReconcileReport, 4)
	rk := bridge.NewReconcileKind(bridge.ReconcileOptions{Store: w.store, Users: w.store, DeviceType: w.platform.AccountID(),
		Logger: log, Report: func(r bridge.ReconcileReport) { reports <- r },
		WeChat: func(c *pcluster.Cluster) (bridge.WeChatBindings, error) {
			return api.New(api.Options{BaseURL: w.platform.URL(), Tokens: &bridge.GrainTokens{Cluster: c, AppID: w.platform.AppID()}})
		}})
	w.member, w.edgeAddr = edgetest.StartNode(t, log,
		actors.NewDeviceKind(actors.DeviceOptions{Store: w.store, Users: w.store, Logger: log, Join: actors.JoinOptions{CompelBind: true}}),
		actors.NewUserKind(uo), w.tokenKind(), rk)
	w.serveWeChat(t, log, &pusher)

	w.addDevice(t, "pot-1")
	alice, bob, carol, eve := w.platform.NewUser("alice"), w.platform.NewUser("bob"), w.platform.NewUser("carol"), w.platform.NewUser("eve")
	bind(t, w, alice, "pot-1")
	join(t, w, bob, "pot-1", "alice")
	for _, u := range []string{"alice", "bob"} {
		actortest.Eventually(t, 5*time.Second, u+" bound in WeChat", func() bool { return w.platform.IsBound("pot-1", u) })
	}
	// Carol's request waits for the owner; her scan of WeChat's device QR bound her there.
	if r, err := carol.ScanSproutQR(ctx5(), label(t, w.platform, "pot-1")); err != nil || r == nil {
		t.Fatal(err)
	}
	w.platform.BindInWeChatOnly("pot-1", "carol")
	// Drift: bob's WeChat binding lost, eve bound in WeChat only, alice bound to a pot Sprout does
	// not know.
	w.platform.UnbindInWeChatOnly("pot-1", "bob")
	w.platform.BindInWeChatOnly("pot-1", "eve")
	w.platform.BindInWeChatOnly("ghost-pot", "alice")
	_ = eve

	tick := func() *actorpb.JoinReconcileState {
		res, err := w.member.Cluster.Request(bridge.ReconcileIdentity, bridge.ReconcileKind, &actorpb.JoinReconcileTick{})
		if err != nil {
			t.Fatal(err)
		}
		return res.(*actorpb.JoinReconcileState)
	}
	first := tick()
	if !first.Running || first.LastStartMs == 0 {
		t.Fatalf("the first tick started no pass: %v", first)
	}
	var rep bridge.ReconcileReport
	select {
	case rep = <-reports:
	case <-time.After(15 * time.Second):
		t.Fatal("no reconciliation pass")
	}
	if rep.Unbound != 2 || rep.Bound != 1 || rep.Kept != 1 || rep.Errors != 0 {
		t.Fatalf("report: %+v, want 2 unbound (eve, the ghost pot), 1 bound (bob), carol kept", rep)
	}
	actortest.Eventually(t, 5*time.Second, "the drift repaired in WeChat", func() bool {
		p := w.platform
		return p.IsBound("pot-1", "bob") && !p.IsBound("pot-1", "eve") && !p.IsBound("ghost-pot", "alice") &&
			p.IsBound("pot-1", "carol") && p.IsBound("pot-1", "alice")
	})
	if bridge.DriftRepaired() < 3 {
		t.Fatalf("drift counter %d, want at least 3", bridge.DriftRepaired())
	}
	// Within the interval, another tick (another node's) runs no second pass.
	if again := tick(); again.Running || again.LastStartMs != first.LastStartMs || len(reports) != 0 {
		t.Fatalf("a second pass within the interval: %v", again)
	}
}
