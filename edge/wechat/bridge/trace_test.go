package bridge_test

import (
	"context"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/cluster/clusterproviders/test"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/cluster"
	"github.com/sprout-iot/sprout/cluster/observe"
	"github.com/sprout-iot/sprout/edge/device"
	"github.com/sprout-iot/sprout/edge/wechat"
	"github.com/sprout-iot/sprout/edge/wechat/api"
	"github.com/sprout-iot/sprout/edge/wechat/bridge"
	"github.com/sprout-iot/sprout/edge/wechat/qr"
	"github.com/sprout-iot/sprout/messages/devicepb"
	"github.com/sprout-iot/sprout/simulations/wechatsim"
	"github.com/sprout-iot/sprout/store/memory"
)

// newTwoMemberWorld is newWorld split over two in-process members: the edge, the WeChat side and
// the user grains on the first, the device grains on the second, so every hop between a user and
// a pot crosses members.
func newTwoMemberWorld(t *testing.T) (w *world, front, back *cluster.Member) {
	t.Helper()
	w = &world{store: memory.New()}
	log := quiet()
	p, err := wechatsim.NewServer(wechatsim.Options{CallbackTimeout: 4 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	w.platform = p
	t.Cleanup(func() { _ = p.Close() })
	var pusher atomic.Pointer[bridge.Pusher]
	uo := actors.UserOptions{Store: w.store, Logger: log, CommandTimeout: 5 * time.Second,
		VerifyScene: func(scene string) (string, error) {
			c, err := qr.Verify(qr.KeyMap{"pot": qrKey}, scene, time.Now())
			return c.Device, err
		},
		Pushed: func() {
			if p := pusher.Load(); p != nil {
				p.Wake()
			}
		}}
	agent := test.NewInMemAgent()
	fetch := &api.Fetcher{BaseURL: p.URL(), AppID: p.AppID(), Secret: p.Secret()}
	front, err = cluster.Start(cluster.Options{Logger: log, LocalAgent: agent, Kinds: []*pcluster.Kind{
		actors.NewUserKind(uo), bridge.NewTokenKind(fetch.Fetch, api.CacheOptions{})}})
	if err != nil {
		t.Fatal(err)
	}
	back, err = cluster.Start(cluster.Options{Logger: log, LocalAgent: agent, Kinds: []*pcluster.Kind{
		actors.NewDeviceKind(actors.DeviceOptions{Store: w.store, Users: w.store, Logger: log})}})
	if err != nil {
		front.Stop(true)
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for front.Cluster.MemberList.Length() < 2 || back.Cluster.MemberList.Length() < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the two members never saw each other")
		}
		time.Sleep(10 * time.Millisecond)
	}
	w.member = front
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	edge := device.NewServer(front.Cluster, device.Options{Logger: log})
	go func() { _ = edge.Serve(ln) }()
	w.edgeAddr = ln.Addr().String()
	h, err := wechat.NewHandler(wechat.Options{AppID: p.AppID(), Token: p.Token(), EncodingAESKey: p.EncodingAESKey(),
		AccountID: p.AccountID(), Logger: log}, &bridge.Dispatcher{Cluster: front.Cluster, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	hl, _ := net.Listen("tcp", "127.0.0.1:0")
	srv := &http.Server{Handler: h}
	go func() { _ = srv.Serve(hl) }()
	w.callback = "http://" + hl.Addr().String() + "/wechat"
	p.SetCallbackURL(w.callback)
	client, _ := api.New(api.Options{BaseURL: p.URL(), Tokens: &bridge.GrainTokens{Cluster: front.Cluster, AppID: p.AppID()}})
	pu := bridge.NewPusher(w.store, client, bridge.PusherOptions{Logger: log, Poll: 200 * time.Millisecond,
		MinBackoff: 50 * time.Millisecond, Sent: func(actors.Push) { w.pushes.Add(1) }})
	pusher.Store(pu)
	ctx, cancel := context.WithCancel(context.Background())
	go pu.Run(ctx)
	t.Cleanup(func() {
		cancel()
		_ = srv.Close()
		_ = edge.Shutdown(context.Background())
		back.Stop(true)
		front.Stop(true)
	})
	return w, front, back
}

// TestTapWaterIsOneTraceAcrossTwoMembers follows one "water now" tap: the callback, the user grain,
// the device grain on the other member, storage, the device and its result, the outcome and the
// push are one connected trace.
func TestTapWaterIsOneTraceAcrossTwoMembers(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tel, err := observe.Setup(context.Background(), observe.Options{Node: "test", SpanExporter: exp,
		Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	w, front, back := newTwoMemberWorld(t)
	secret := w.addDevice(t, "pot-1")
	w.connect(t, "pot-1", secret, devicepb.CommandStatus_COMMAND_STATUS_DONE, nil)
	alice := w.platform.NewUser("alice")
	bind(t, w, alice, "pot-1")
	if _, err := alice.ClickMenu(ctx5(), actors.MenuWater); err != nil {
		t.Fatal(err)
	}
	waitText(t, w, "alice", "浇水完成", 3*time.Second)

	// The trace is the one whose device grain received the command.
	var spans tracetest.SpanStubs
	var id trace.TraceID
	deadline := time.Now().Add(3 * time.Second)
	for {
		id, spans = trace.TraceID{}, nil
		for _, s := range exp.GetSpans() {
			if s.Name == "device.command" {
				id = s.SpanContext.TraceID()
			}
		}
		for _, s := range exp.GetSpans() {
			if s.SpanContext.TraceID() == id {
				spans = append(spans, s)
			}
		}
		if has(spans, "outbox.push") || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !id.IsValid() {
		t.Fatalf("no device.command span among %d spans", len(exp.GetSpans()))
	}
	for _, name := range []string{"wechat.callback", "user.message", "device.command", "store.append", "edge.deliver",
		"edge.result", "device.result", "user.outcome", "outbox.enqueue", "outbox.push", "wechat.api text"} {
		if !has(spans, name) {
			t.Errorf("the tap's trace has no %s span; it has %v", name, names(spans))
		}
	}
	t.Logf("the tap's trace: %v", names(spans))
	// Connected: one root, and every other span's parent is in the trace.
	ids := map[trace.SpanID]bool{}
	for _, s := range spans {
		ids[s.SpanContext.SpanID()] = true
	}
	roots := 0
	for _, s := range spans {
		if !s.Parent.IsValid() {
			roots++
			if s.Name != "wechat.callback" {
				t.Errorf("root span is %s, want wechat.callback", s.Name)
			}
		} else if !ids[s.Parent.SpanID()] {
			t.Errorf("%s's parent is not in the trace", s.Name)
		}
	}
	if roots != 1 {
		t.Errorf("%d root spans, want 1: %v", roots, names(spans))
	}
	// Across members: the user grain ran on the front member, the device grain on the back one.
	for _, s := range spans {
		for _, a := range s.Attributes {
			if a.Key != "sprout.member" {
				continue
			}
			want := front.Address()
			if s.Name == "device.command" || s.Name == "device.result" {
				want = back.Address()
			}
			if a.Value.AsString() != want {
				t.Errorf("%s ran on %s, want %s", s.Name, a.Value.AsString(), want)
			}
		}
	}
}

func has(spans tracetest.SpanStubs, name string) bool {
	for _, s := range spans {
		if s.Name == name {
			return true
		}
	}
	return false
}

func names(spans tracetest.SpanStubs) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name)
	}
	return out
}
