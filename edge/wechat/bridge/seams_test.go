package bridge_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/edge/wechat/bridge"
	"github.com/sprout-iot/sprout/messages/actorpb"
	"github.com/sprout-iot/sprout/messages/devicepb"
	"github.com/sprout-iot/sprout/simulations/wechatsim"
	"github.com/sprout-iot/sprout/store/memory"
)

// hangingDevices is the device grains' store with the database stuck for some devices: their
// grains never finish activating, so they answer nothing (until the test ends).
type hangingDevices struct {
	*memory.Store
	hang    map[string]bool
	release chan struct{}
}

func (h *hangingDevices) LoadDevice(ctx context.Context, id string) (actors.Recovered, error) {
	if h.hang[id] {
		select {
		case <-h.release:
		case <-ctx.Done():
		}
		return actors.Recovered{}, actors.ErrUnavailable
	}
	return h.Store.LoadDevice(ctx, id)
}

// newHangingWorld is newWorld whose pots in hang never answer.
func newHangingWorld(t *testing.T, tune func(*actors.UserOptions, *wechatsim.Options), hang ...string) *world {
	t.Helper()
	st := memory.New()
	h := &hangingDevices{Store: st, hang: map[string]bool{}, release: make(chan struct{})}
	for _, id := range hang {
		h.hang[id] = true
	}
	w := newWorldOn(t, st, h, actors.DeviceOptions{}, tune)
	t.Cleanup(func() { close(h.release) }) // before the member stops
	return w
}

// bindInStore binds a user to a pot the way the pages and invitations do: in the store, beside the
// chat.
func bindInStore(t *testing.T, w *world, device, openID, role string) {
	t.Helper()
	if err := w.store.Bind(context.Background(), actors.Binding{DeviceID: device, OpenID: openID, Role: role, BoundAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
}

func TestStatusOfSeveralPotsAnswersForEveryPotWithinTheBudget(t *testing.T) {
	t.Parallel()
	w := newHangingWorld(t, nil, "pot-b", "pot-c")
	alice := w.platform.NewUser("alice")
	w.connect(t, "pot-a", w.addDevice(t, "pot-a"))
	bind(t, w, alice, "pot-a")
	for _, id := range []string{"pot-b", "pot-c"} { // bound on the pages before their storage hung
		w.addDevice(t, id)
		bindInStore(t, w, id, "alice", actors.RoleOwner)
	}
	w.member.System.Root.Send(w.member.Cluster.Get("alice", actors.UserKind),
		&actorpb.BindingChanged{DeviceId: "pot-b", Bound: true, Role: actors.RoleOwner})
	w.member.System.Root.Send(w.member.Cluster.Get("alice", actors.UserKind),
		&actorpb.BindingChanged{DeviceId: "pot-c", Bound: true, Role: actors.RoleOwner})
	start := time.Now()
	r, err := alice.ClickMenu(ctx5(), actors.MenuStatus)
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	if took > 4*time.Second {
		t.Fatalf("the status answer took %v, past WeChat's budget", took)
	}
	for _, want := range []string{"pot-a：在线", "pot-b：没有回应", "pot-c：没有回应"} {
		if !strings.Contains(r.Content, want) {
			t.Errorf("the status answer has no %q: %q", want, r.Content)
		}
	}
}

func TestRepeatedTapWhileWateringWatersOnce(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	secret := w.addDevice(t, "pot-1")
	pot := w.silent(t, "pot-1", secret) // holds the command until the test answers it
	alice := w.platform.NewUser("alice")
	bind(t, w, alice, "pot-1")
	r1, err := alice.SendText(ctx5(), "浇水")
	if err != nil || !strings.Contains(r1.Content, "正在为 pot-1 浇水") {
		t.Fatalf("first tap: %q %v", r1.Content, err)
	}
	r2, err := alice.SendText(ctx5(), "浇水") // a new message, not WeChat's retry of the first
	if err != nil || !strings.Contains(r2.Content, "pot-1") || !strings.Contains(r2.Content, "稍后通知你") {
		t.Fatalf("second tap: %q %v", r2.Content, err)
	}
	// Everything the user grain sent before answering the second tap is in the device grain's
	// mailbox before this request.
	res, err := w.member.Cluster.Request("pot-1", actors.DeviceKind, &actorpb.GetState{OpenId: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(res.(*actorpb.DeviceState).OpenCommands); n != 1 {
		t.Fatalf("two taps while watering opened %d commands", n)
	}
	f, err := pot.Recv(3 * time.Second)
	if err != nil || f.GetCommand() == nil {
		t.Fatalf("the pot got no command: %v %v", f, err)
	}
	if err := pot.Send(&devicepb.Frame{Body: &devicepb.Frame_CommandResult{CommandResult: &devicepb.CommandResult{
		CommandId: f.GetCommand().CommandId, Status: devicepb.CommandStatus_COMMAND_STATUS_DONE, WateredMl: 80}}}); err != nil {
		t.Fatal(err)
	}
	waitText(t, w, "alice", "浇水完成", 3*time.Second)
}

func TestBindingChangedElsewhereChangesTheChatsPotList(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	w.addDevice(t, "pot-1")
	w.addDevice(t, "pot-2")
	alice := w.platform.NewUser("alice")
	bind(t, w, alice, "pot-1")
	if r, _ := alice.ClickMenu(ctx5(), actors.MenuMyDevices); !strings.Contains(r.Content, "pot-1") {
		t.Fatalf("list: %q", r.Content)
	}
	// An invitation accepted on the pages binds pot-2; the owner of pot-1 removes her. Each device
	// grain tells her user grain.
	bindInStore(t, w, "pot-2", "alice", actors.RoleMember)
	_ = w.store.Unbind(context.Background(), "pot-1", "alice")
	pid := w.member.Cluster.Get("alice", actors.UserKind)
	w.member.System.Root.Send(pid, &actorpb.BindingChanged{DeviceId: "pot-2", Bound: true, Role: actors.RoleMember, AtMs: time.Now().UnixMilli()})
	w.member.System.Root.Send(pid, &actorpb.BindingChanged{DeviceId: "pot-1", Bound: false, AtMs: time.Now().UnixMilli()})
	r, _ := alice.SendText(ctx5(), "我的设备")
	if !strings.Contains(r.Content, "pot-2") || strings.Contains(r.Content, "pot-1") {
		t.Fatalf("after pot-2 was bound and pot-1 unbound elsewhere, her list is %q", r.Content)
	}
}

func TestTapTheGrainCannotAnswerInTimeIsAnsweredHonestly(t *testing.T) {
	t.Parallel()
	// The user grain waits for the pot longer than Sprout's callback budget (4 s, inside WeChat's 5 s).
	w := newHangingWorld(t, func(uo *actors.UserOptions, so *wechatsim.Options) {
		uo.RequestTimeout, so.CallbackTimeout = 4500*time.Millisecond, 5*time.Second
	}, "pot-1")
	w.addDevice(t, "pot-1")
	bindInStore(t, w, "pot-1", "alice", actors.RoleOwner)
	alice := w.platform.NewUser("alice")
	if _, err := alice.Subscribe(ctx5()); err != nil {
		t.Fatal(err)
	}
	r, err := alice.ClickMenu(ctx5(), actors.MenuWater)
	if err != nil {
		t.Fatal(err)
	}
	if r.Content != bridge.StillWorking {
		t.Fatalf("the late answer was %q, want %q", r.Content, bridge.StillWorking)
	}
	// And she does hear the result, as promised.
	waitText(t, w, "alice", "pot-1", 5*time.Second)
}
