package bridge_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/actors/actortest"
	"github.com/sprout-iot/sprout/edge/edgetest"
	"github.com/sprout-iot/sprout/edge/wechat/bridge"
	"github.com/sprout-iot/sprout/messages/devicepb"
	"github.com/sprout-iot/sprout/simulations/plant"
	"github.com/sprout-iot/sprout/simulations/wechatsim"
	"github.com/sprout-iot/sprout/store/memory"
)

// newClockWorld is a node and the strict simulated WeChat sharing one fake clock (the user
// grains', the pusher's, the platform's), so a test can let a user's customer-service window run
// out.
func newClockWorld(t *testing.T) (*world, *clockwork.FakeClock) {
	t.Helper()
	// Near the real time: the callback endpoint checks the platform's timestamps against its own
	// clock (5 minutes of skew); the tests advance the fake one by minutes only.
	fc := clockwork.NewFakeClockAt(time.Now())
	st := memory.New()
	w := &world{store: st, devices: st, now: fc.Now}
	log := edgetest.Quiet()
	so := wechatsim.Options{CallbackTimeout: 4 * time.Second, Clock: fc.Now}
	var pusher atomic.Pointer[bridge.Pusher]
	uo := w.userOptions(log, &pusher)
	uo.Clock = fc
	w.startPlatform(t, so)
	w.member, w.edgeAddr = edgetest.StartNode(t, log,
		actors.NewDeviceKind(deviceOptions(actors.DeviceOptions{}, st, st, log)),
		actors.NewUserKind(uo), w.tokenKind())
	w.serveWeChat(t, log, &pusher)
	return w, fc
}

// report sends one reading from a pot the test drives itself and waits for its ack.
func report(t *testing.T, c *plant.Conn, seq uint64, moisture float32) {
	t.Helper()
	if err := c.Report(&devicepb.Telemetry{Seq: seq, DeviceTimeMs: time.Now().UnixMilli(), SoilMoisturePct: moisture,
		TemperatureC: 22, TankLevelPct: 80, SupplyMv: 3300}, 5*time.Second, nil); err != nil {
		t.Fatal(err)
	}
}

// nextCommand reads frames until a command arrives (answering pings).
func nextCommand(t *testing.T, c *plant.Conn) *devicepb.Command {
	t.Helper()
	for {
		f, err := c.Recv(10 * time.Second)
		if err != nil {
			t.Fatalf("no command reached the pot: %v", err)
		}
		switch b := f.Body.(type) {
		case *devicepb.Frame_Command:
			return b.Command
		case *devicepb.Frame_Ping:
			_ = c.Send(&devicepb.Frame{Body: &devicepb.Frame_Pong{Pong: &devicepb.Pong{Nonce: b.Ping.Nonce}}})
		}
	}
}

// card waits for a template card of templateID whose rendered fields mention every want.
func card(t *testing.T, w *world, openID, templateID string, want ...string) wechatsim.Entry {
	t.Helper()
	e, err := w.platform.WaitFor(openID, 15*time.Second, func(e wechatsim.Entry) bool {
		if e.Kind != wechatsim.KindTemplate || e.TemplateID != templateID {
			return false
		}
		var all []string
		for _, f := range e.Fields {
			all = append(all, f.Value)
		}
		for _, s := range want {
			if !strings.Contains(strings.Join(all, "\n"), s) {
				return false
			}
		}
		return true
	})
	if err != nil {
		t.Fatalf("%s never got a %s card with %v: %v\nconversation: %+v", openID, templateID, want, err, w.platform.Conversation(openID))
	}
	return e
}

func kinds(es []wechatsim.Entry, kind string) []wechatsim.Entry {
	var out []wechatsim.Entry
	for _, e := range es {
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

// TestUserOutsideTheWindowHearsEveryAlertAndResultThroughTemplates: a user whose 1-minute
// allowance (from the scan that bound the pot, then from the tap) has run out gets the alert,
// the watering's result and the alert's clearing as template cards with the pot's link; nothing
// is refused by WeChat, and every card's delivery receipt is recorded on its push.
func TestUserOutsideTheWindowHearsEveryAlertAndResultThroughTemplates(t *testing.T) {
	w, fc := newClockWorld(t)
	secret := w.addDevice(t, "pot-1")
	pot := w.silent(t, "pot-1", secret)
	alice := w.platform.NewUser("alice")
	bind(t, w, alice, "pot-1")
	fc.Advance(2 * time.Minute)

	report(t, pot, 1, 5)
	raised := card(t, w, "alice", "tmpl_alert_raised", "pot-1", "土壤太干", "5.0")
	if raised.URL != "https://sprout.example/app/plants/pot-1" {
		t.Fatalf("the alert card's link = %q", raised.URL)
	}
	if r, err := alice.ClickMenu(ctx5(), actors.MenuWater); err != nil || !strings.Contains(r.Content, "浇水") {
		t.Fatalf("tap: %v %v", r, err)
	}
	cmd := nextCommand(t, pot)
	fc.Advance(2 * time.Minute) // the pot takes its time: the tap's allowance runs out
	if err := pot.Send(&devicepb.Frame{Body: &devicepb.Frame_CommandResult{CommandResult: &devicepb.CommandResult{
		CommandId: cmd.CommandId, Status: devicepb.CommandStatus_COMMAND_STATUS_DONE, WateredMl: 100}}}); err != nil {
		t.Fatal(err)
	}
	card(t, w, "alice", "tmpl_command_outcome", "pot-1", "成功")
	report(t, pot, 2, 40)
	card(t, w, "alice", "tmpl_alert_cleared", "pot-1", "土壤太干")

	conv := w.platform.Conversation("alice")
	if r := kinds(conv, wechatsim.KindRefused); len(r) != 0 {
		t.Fatalf("WeChat refused sends: %+v", r)
	}
	if n := len(kinds(conv, wechatsim.KindCustomText)); n != 0 {
		t.Fatalf("%d customer-service texts outside the window", n)
	}
	actortest.Eventually(t, 10*time.Second, "every card's receipt recorded", func() bool {
		ps, _ := w.store.UserPushes(context.Background(), "alice", 0)
		n := 0
		for _, p := range ps {
			if p.Kind == actors.PushMessage && p.Channel == actors.ChannelTemplate && p.Status == actors.PushSent && p.Receipt == "success" {
				n++
			}
		}
		return n == 3
	})
}

// TestUserInsideTheWindowGetsTexts: a user who just wrote to the account hears the alert as a
// customer-service text.
func TestUserInsideTheWindowGetsTexts(t *testing.T) {
	w := newWorld(t, nil)
	secret := w.addDevice(t, "pot-1")
	pot := w.connect(t, "pot-1", secret)
	alice := w.platform.NewUser("alice")
	bind(t, w, alice, "pot-1")
	if _, err := alice.SendText(ctx5(), "你好"); err != nil {
		t.Fatal(err)
	}
	pot.Report(t, 5, 22, 80)
	e := waitText(t, w, "alice", "土壤太干", 15*time.Second)
	if e.Kind != wechatsim.KindCustomText {
		t.Fatalf("the alert came as %s, want a customer-service text", e.Kind)
	}
	if n := len(kinds(w.platform.Conversation("alice"), wechatsim.KindTemplate)); n != 0 {
		t.Fatalf("%d template cards inside the window", n)
	}
}

// TestTextRefusedOverTheAllowanceFallsBackToTheTemplate: WeChat answers 45047 to the text (its
// count and Sprout's differ); the same alert arrives at once as a template card, once, and the
// push records both.
func TestTextRefusedOverTheAllowanceFallsBackToTheTemplate(t *testing.T) {
	w := newWorld(t, nil)
	secret := w.addDevice(t, "pot-1")
	pot := w.connect(t, "pot-1", secret)
	alice := w.platform.NewUser("alice")
	bind(t, w, alice, "pot-1")
	w.platform.FailNext("/cgi-bin/message/custom/send", 1, 45047)
	pot.Report(t, 5, 22, 80)
	card(t, w, "alice", "tmpl_alert_raised", "pot-1", "土壤太干")
	var alert actors.Push
	actortest.Eventually(t, 10*time.Second, "the alert's push recorded", func() bool {
		ps, _ := w.store.UserPushes(context.Background(), "alice", 0)
		for _, p := range ps {
			if p.Kind == actors.PushMessage {
				alert = p
			}
		}
		return alert.Status != actors.PushPending
	})
	if alert.Status != actors.PushSent || alert.Channel != actors.ChannelTemplate || alert.ErrCode != 45047 || alert.Attempts != 1 {
		t.Fatalf("the alert's push = %+v; want sent by template in one attempt, 45047 recorded", alert)
	}
	if n := len(kinds(w.platform.Conversation("alice"), wechatsim.KindTemplate)); n != 1 {
		t.Fatalf("%d cards, want 1", n)
	}
}

// TestUnfollowedUserGetsNothingAndTheReasonIsListed: after unfollowing, the alert is not sent
// at all (no call WeChat would refuse), and the failed push says why (the console lists it).
func TestUnfollowedUserGetsNothingAndTheReasonIsListed(t *testing.T) {
	w := newWorld(t, nil)
	secret := w.addDevice(t, "pot-1")
	pot := w.connect(t, "pot-1", secret)
	alice := w.platform.NewUser("alice")
	bind(t, w, alice, "pot-1")
	if _, err := alice.Unsubscribe(ctx5()); err != nil {
		t.Fatal(err)
	}
	before := len(w.platform.Conversation("alice"))
	pot.Report(t, 5, 22, 80)
	var failed []actors.Push
	actortest.Eventually(t, 15*time.Second, "the alert recorded failed", func() bool {
		failed, _ = w.store.FailedPushes(context.Background(), 0)
		return len(failed) == 1
	})
	if f := failed[0]; f.OpenID != "alice" || !strings.Contains(f.LastError, "does not follow") {
		t.Fatalf("failed push = %+v", f)
	}
	for _, e := range w.platform.Conversation("alice")[before:] {
		if e.Direction == "out" {
			t.Fatalf("an unfollowed user was sent %+v", e)
		}
	}
}
