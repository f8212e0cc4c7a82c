package bridge_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/cluster/clusterproviders/test"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/actors/actortest"
	"github.com/sprout-iot/sprout/cluster"
	"github.com/sprout-iot/sprout/cluster/telemetry"
	"github.com/sprout-iot/sprout/edge/edgetest"
	"github.com/sprout-iot/sprout/edge/wechat/bridge"
	"github.com/sprout-iot/sprout/simulations/wechatsim"
	"github.com/sprout-iot/sprout/store/memory"
)

// newTwoMemberWorld is newWorld split over two in-process members: the edge, the WeChat side and
// the user grains on the first, the device grains on the second, so every hop between a user and
// a pot crosses members.
func newTwoMemberWorld(t *testing.T) (w *world, front, back *cluster.Member) {
	t.Helper()
	w = &world{store: memory.New()}
	log := edgetest.Quiet()
	w.startPlatform(t, wechatsim.Options{CallbackTimeout: 4 * time.Second})
	var pusher atomic.Pointer[bridge.Pusher]
	agent := test.NewInMemAgent()
	front = edgetest.StartMember(t, cluster.Options{Logger: log, LocalAgent: agent, Kinds: []*pcluster.Kind{
		actors.NewUserKind(w.userOptions(log, &pusher)), w.tokenKind()}})
	back = edgetest.StartMember(t, cluster.Options{Logger: log, LocalAgent: agent, Kinds: []*pcluster.Kind{
		actors.NewDeviceKind(actors.DeviceOptions{Store: w.store, Users: w.store, Logger: log})}})
	actortest.Eventually(t, 10*time.Second, "the two members see each other", func() bool {
		return front.Cluster.MemberList.Length() >= 2 && back.Cluster.MemberList.Length() >= 2
	})
	w.member = front
	w.edgeAddr = edgetest.ServeDevices(t, front, log)
	w.serveWeChat(t, log, &pusher)
	return w, front, back
}

// TestTapWaterIsOneTraceAcrossTwoMembers follows one "water now" tap: the callback, the user grain,
// the device grain on the other member, storage, the device and its result, the outcome and the
// push are one connected trace.
func TestTapWaterIsOneTraceAcrossTwoMembers(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tel, err := telemetry.Setup(context.Background(), telemetry.Options{Node: "test", SpanExporter: exp,
		Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	w, front, back := newTwoMemberWorld(t)
	secret := w.addDevice(t, "pot-1")
	w.connect(t, "pot-1", secret)
	alice := w.platform.NewUser("alice")
	bind(t, w, alice, "pot-1")
	if _, err := alice.ClickMenu(ctx5(), actors.MenuWater); err != nil {
		t.Fatal(err)
	}
	waitText(t, w, "alice", "浇水完成", 3*time.Second)

	// The trace is the one whose device grain received the command.
	var spans tracetest.SpanStubs
	var id trace.TraceID
	actortest.Eventually(t, 3*time.Second, "the push's span is exported", func() bool {
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
		return has(spans, "outbox.push")
	})
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
