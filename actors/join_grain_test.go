package actors_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/actors/actortest"
	"github.com/sprout-iot/sprout/edge/edgetest"
	"github.com/sprout-iot/sprout/messages/actorpb"
	"github.com/sprout-iot/sprout/messages/deviceclient"
	"github.com/sprout-iot/sprout/messages/devicepb"
)

// Who may join a pot after its owner (docs/wechat.md, "Who may join"), on a real member with the
// device edge and SQLite; the pot's button is a BUTTON_PRESSED event frame from a connected pot.

func scan(t *testing.T, n *node, id, openID string) *actorpb.BindResult {
	t.Helper()
	return n.request(t, id, &actorpb.BindDevice{OpenId: openID, Via: "sprout_qr"}).(*actorpb.BindResult)
}

func decide(t *testing.T, n *node, id, openID, by string, approve bool) *actorpb.JoinDecided {
	t.Helper()
	return n.request(t, id, &actorpb.JoinDecide{OpenId: openID, Approve: approve, By: by}).(*actorpb.JoinDecided)
}

func userState(t *testing.T, n *node, id, openID string) *actorpb.DeviceState {
	t.Helper()
	return n.request(t, id, &actorpb.GetState{OpenId: openID}).(*actorpb.DeviceState)
}

// press sends a BUTTON_PRESSED event from the pot and waits for its ack.
func press(t *testing.T, c *deviceclient.Conn, seq uint64, detail string) {
	t.Helper()
	err := c.Send(&devicepb.Frame{Body: &devicepb.Frame_Event{Event: &devicepb.Event{Seq: seq, Kind: devicepb.EventKind_EVENT_KIND_BUTTON_PRESSED, Detail: detail}}})
	if err == nil {
		err = c.AwaitAck(seq, 5*time.Second, nil)
	}
	if err != nil {
		t.Fatalf("pressing the button: %v", err)
	}
}

func told(t *testing.T, n *node, what string) {
	t.Helper()
	actortest.Eventually(t, 5*time.Second, "told "+what, func() bool { return n.users.has(what) })
}

func TestASecondScannerWaitsForTheOwner(t *testing.T) {
	t.Parallel()
	n := startNode(t, "", actors.DeviceOptions{Join: actors.JoinOptions{CompelBind: true}})
	edgetest.AddDevice(t, n.sql, "pot-1", "pot")
	if r := scan(t, n, "pot-1", "alice"); r.Role != actors.RoleOwner {
		t.Fatalf("the first scanner: %v, want owner", r)
	}
	r := scan(t, n, "pot-1", "mallory")
	if !r.Ok || r.Role != actors.RolePending || r.Already {
		t.Fatalf("a second scanner: %v, want pending", r)
	}
	// No access while waiting: not a user, state denied (but the request is visible to them),
	// no watering.
	st := userState(t, n, "pot-1", "mallory")
	if !st.Denied || st.JoinPending == nil || st.Latest != nil || st.Config != nil {
		t.Fatalf("the requester's view: %v, want denied with only the pending request", st)
	}
	if us := n.state(t, "pot-1").Users; len(us) != 1 {
		t.Fatalf("users while pending: %v", us)
	}
	out := n.command(t, "pot-1", &actorpb.SendCommand{CommandId: "w1", Kind: devicepb.CommandKind_COMMAND_KIND_WATER, WaterMs: 1000,
		RequestedBy: actors.WeChatRequester("mallory")})
	if out.Outcome != actorpb.Outcome_OUTCOME_NOT_BOUND {
		t.Fatalf("a pending requester watering: %s, want NOT_BOUND", out.Outcome)
	}
	told(t, n, "alice: join request mallory")
	// Scanning again renews the request, and the owner hears of it once.
	if r := scan(t, n, "pot-1", "mallory"); r.Role != actors.RolePending || !r.Already {
		t.Fatalf("scanning again: %v", r)
	}
	// Only the owner decides.
	if d := decide(t, n, "pot-1", "mallory", "mallory", true); d.Error != actorpb.ErrorCode_ERROR_CODE_NOT_OWNER {
		t.Fatalf("the requester approving themself: %v, want NOT_OWNER", d)
	}
	if d := decide(t, n, "pot-1", "mallory", "alice", false); d.Outcome != actorpb.JoinOutcome_JOIN_OUTCOME_REFUSED {
		t.Fatalf("refusing: %v", d)
	}
	told(t, n, "mallory: join JOIN_OUTCOME_REFUSED")
	if st := userState(t, n, "pot-1", "mallory"); st.JoinPending != nil || len(n.state(t, "pot-1").JoinRequests) != 0 {
		t.Fatal("a refused request is still pending")
	}
	if d := decide(t, n, "pot-1", "mallory", "alice", true); d.Error != actorpb.ErrorCode_ERROR_CODE_INVALID {
		t.Fatalf("approving a refused request: %v, want INVALID", d)
	}
	// Bob asks and the owner approves: a member, told, and bound in WeChat too.
	scan(t, n, "pot-1", "bob")
	if d := decide(t, n, "pot-1", "bob", "alice", true); d.Error != 0 || d.Outcome != actorpb.JoinOutcome_JOIN_OUTCOME_APPROVED {
		t.Fatalf("approving bob: %v", d)
	}
	if us := n.state(t, "pot-1").Users; len(us) != 2 || us[1] != "bob" {
		t.Fatalf("users after the approval: %v", us)
	}
	told(t, n, "bob: join JOIN_OUTCOME_APPROVED")
	told(t, n, "bob: bound=true role=member")
	if !hasPush(t, n, "bob", actors.PushCompelBind) {
		t.Fatal("the approved member was not bound in WeChat (compel_bind)")
	}
	// The owner removes bob: told, and unbound in WeChat.
	if r := n.request(t, "pot-1", &actorpb.JoinUnbind{OpenId: "alice", By: "bob"}).(*actorpb.BindResult); r.Ok || r.Code != actorpb.ErrorCode_ERROR_CODE_NOT_OWNER {
		t.Fatalf("a member removing the owner: %v, want NOT_OWNER", r)
	}
	if r := n.request(t, "pot-1", &actorpb.JoinUnbind{OpenId: "bob", By: "alice"}).(*actorpb.BindResult); !r.Ok {
		t.Fatalf("the owner removing bob: %v", r)
	}
	told(t, n, "bob: join JOIN_OUTCOME_REMOVED")
	if !hasPush(t, n, "bob", actors.PushCompelUnbind) {
		t.Fatal("the removed member was not unbound in WeChat (compel_unbind)")
	}
}

func hasPush(t *testing.T, n *node, openID, kind string) bool {
	t.Helper()
	ps, err := n.sql.UserPushes(context.Background(), openID, 50)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		var pl actors.PushPayload
		if p.Kind == kind && json.Unmarshal(p.Payload, &pl) == nil && pl.DeviceID != "" {
			return true
		}
	}
	return false
}

func TestAPressOfTheButtonLetsTheLatestRequestIn(t *testing.T) {
	t.Parallel()
	clock := clockwork.NewFakeClock()
	n := startNode(t, "", actors.DeviceOptions{Clock: clock})
	secret := edgetest.AddDevice(t, n.sql, "pot-1", "pot")
	c := edgetest.Dial(t, n.addr, "pot-1", secret)
	scan(t, n, "pot-1", "alice")
	scan(t, n, "pot-1", "old")
	// A press long after a request does not let it in.
	clock.Advance(actors.DefaultPressWindow + time.Second)
	press(t, c, 1, "")
	if us := n.state(t, "pot-1").Users; len(us) != 1 {
		t.Fatalf("a press outside the window let someone in: %v", us)
	}
	// Two requests within the window: the press lets in the most recent; the other waits.
	scan(t, n, "pot-1", "carol")
	clock.Advance(10 * time.Second)
	scan(t, n, "pot-1", "dave")
	clock.Advance(10 * time.Second)
	press(t, c, 2, "")
	actortest.Eventually(t, 5*time.Second, "dave let in", func() bool {
		us := n.state(t, "pot-1").Users
		return len(us) == 2 && us[1] == "dave"
	})
	told(t, n, "dave: join JOIN_OUTCOME_PRESSED")
	if st := userState(t, n, "pot-1", "carol"); st.JoinPending == nil {
		t.Fatal("the older request in the window should still be pending")
	}
}

func TestPendingRequestsSurviveARestartAndExpire(t *testing.T) {
	t.Parallel()
	clock := clockwork.NewFakeClock()
	n := startNode(t, "", actors.DeviceOptions{Clock: clock})
	edgetest.AddDevice(t, n.sql, "pot-1", "pot")
	scan(t, n, "pot-1", "alice")
	scan(t, n, "pot-1", "erin")
	n.stop()
	n2 := startNode(t, n.dir, actors.DeviceOptions{Clock: clock})
	st := n2.state(t, "pot-1")
	if len(st.JoinRequests) != 1 || st.JoinRequests[0].OpenId != "erin" {
		t.Fatalf("after a restart the requests are %v, want erin's", st.JoinRequests)
	}
	clock.Advance(actors.DefaultJoinTTL + time.Second)
	told(t, n2, "erin: join JOIN_OUTCOME_EXPIRED")
	if st := n2.state(t, "pot-1"); len(st.JoinRequests) != 0 || len(st.Users) != 1 {
		t.Fatalf("after expiry: requests %v users %v", st.JoinRequests, st.Users)
	}
}

func TestALongPressTakesAGivenAwayPotOver(t *testing.T) {
	t.Parallel()
	clock := clockwork.NewFakeClock()
	n := startNode(t, "", actors.DeviceOptions{Clock: clock, Join: actors.JoinOptions{CompelBind: true}})
	secret := edgetest.AddDevice(t, n.sql, "pot-1", "pot")
	n.bind(t, "pot-1", "alice")
	n.bind(t, "pot-1", "bob")
	c := edgetest.Dial(t, n.addr, "pot-1", secret)
	// The pot was given to frank: he scans (a request) and holds the button.
	scan(t, n, "pot-1", "frank")
	press(t, c, 1, actors.ButtonLongPress)
	actortest.Eventually(t, 5*time.Second, "frank the only user", func() bool {
		us := n.state(t, "pot-1").Users
		return len(us) == 1 && us[0] == "frank"
	})
	for _, u := range []string{"alice", "bob"} {
		told(t, n, u+": join JOIN_OUTCOME_TAKEN_OVER")
		told(t, n, u+": bound=false role=")
		if !hasPush(t, n, u, actors.PushCompelUnbind) {
			t.Fatalf("%s was not unbound in WeChat", u)
		}
		if bs, _ := n.sql.UserBindings(context.Background(), u); len(bs) != 0 {
			t.Fatalf("%s still bound in the store: %v", u, bs)
		}
	}
	told(t, n, "frank: join JOIN_OUTCOME_OWNER")
	if r := n.bind(t, "pot-1", "frank"); r.Role != actors.RoleOwner {
		t.Fatalf("frank is %q, want owner", r.Role)
	}
}

func TestRevokingAPotUnbindsItsUsersInWeChatAndEndsItsRequests(t *testing.T) {
	t.Parallel()
	n := startNode(t, "", actors.DeviceOptions{Join: actors.JoinOptions{CompelBind: true}})
	edgetest.AddDevice(t, n.sql, "pot-1", "pot")
	n.bind(t, "pot-1", "alice")
	n.bind(t, "pot-1", "bob")
	n.request(t, "pot-1", &actorpb.BindDevice{OpenId: "carol", Via: "wechat_qr"})
	if res := n.revoke(t, "pot-1"); res.Error != 0 {
		t.Fatalf("revoke: %v", res)
	}
	for _, u := range []string{"alice", "bob", "carol"} {
		if !hasPush(t, n, u, actors.PushCompelUnbind) {
			t.Fatalf("%s was not unbound in WeChat after the revocation", u)
		}
	}
	told(t, n, "carol: join JOIN_OUTCOME_REFUSED")
	if st := n.state(t, "pot-1"); len(st.JoinRequests) != 0 || len(st.Users) != 0 {
		t.Fatalf("after revocation: users %v requests %v", st.Users, st.JoinRequests)
	}
}
