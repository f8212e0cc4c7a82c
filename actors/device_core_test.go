package actors

import (
	"fmt"
	"math"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/sprout-iot/sprout/messages"
	"github.com/sprout-iot/sprout/messages/actorpb"
	"github.com/sprout-iot/sprout/messages/devicepb"
)

// These tests drive the device core directly: no actors, sockets, storage or clock.

var t0 = time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)

func onlineCore(t *testing.T) *deviceCore {
	t.Helper()
	c := newDeviceCore("pot-1")
	secret := []byte("0123456789abcdef")
	if _, err := c.recover(Device{ID: "pot-1", Secret: secret}, Recovered{}, t0); err != nil {
		t.Fatal(err)
	}
	dn, sn := make([]byte, 16), make([]byte, 16)
	res, _ := c.authenticate(&actorpb.Authenticate{DeviceId: "pot-1", DeviceNonce: dn, ServerNonce: sn, ProtocolVersion: 1,
		Mac: messages.MAC(secret, dn, sn, "pot-1"), Conn: &actorpb.ConnRef{SessionId: "s1"}}, secret, "s1", t0)
	if !res.Ok {
		t.Fatalf("auth: %v", res)
	}
	return c
}

func tel(seq uint64, moisture, temp, tank float32) *actorpb.Report {
	return &actorpb.Report{SessionId: "s1", Body: &actorpb.Report_Telemetry{Telemetry: &devicepb.Telemetry{
		Seq: seq, SoilMoisturePct: moisture, TemperatureC: temp, TankLevelPct: tank}}}
}

var (
	nan = float32(math.NaN())
	inf = float32(math.Inf(1))
)

func TestThresholdsWithHysteresis(t *testing.T) {
	cases := []struct {
		name  string
		steps [][3]float32 // moisture, temperature, tank
		want  []string
	}{
		{"in range raises nothing", [][3]float32{{50, 20, 80}, {30, 30, 50}}, nil},
		{"drying raises once", [][3]float32{{25, 20, 80}, {19, 20, 80}, {10, 20, 80}, {5, 20, 80}}, []string{"SOIL_DRY+"}},
		{"flapping in the band raises nothing more", [][3]float32{{19, 20, 80}, {21, 20, 80}, {19.5, 20, 80}, {24.9, 20, 80}, {18, 20, 80}}, []string{"SOIL_DRY+"}},
		{"cleared past the band, then re-armed", [][3]float32{{19, 20, 80}, {25, 20, 80}, {19, 20, 80}}, []string{"SOIL_DRY+", "SOIL_DRY-", "SOIL_DRY+"}},
		{"too hot clears 2 degrees below", [][3]float32{{50, 36, 80}, {50, 34, 80}, {50, 33, 80}, {50, 36, 80}}, []string{"TOO_HOT+", "TOO_HOT-", "TOO_HOT+"}},
		{"tank empty at the threshold", [][3]float32{{50, 20, 6}, {50, 20, 5}, {50, 20, 9}, {50, 20, 10}}, []string{"TANK_EMPTY+", "TANK_EMPTY-"}},
		{"two kinds at once", [][3]float32{{10, 40, 80}}, []string{"SOIL_DRY+", "TOO_HOT+"}},
		{"a sensor with no value (NaN, +Inf, -Inf) raises nothing", [][3]float32{{nan, nan, nan}, {inf, inf, inf}, {-inf, -inf, -inf}}, nil},
		{"a sensor with no value clears nothing", [][3]float32{{19, 40, 5}, {nan, nan, nan}, {inf, -inf, inf}}, []string{"SOIL_DRY+", "TOO_HOT+", "TANK_EMPTY+"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := onlineCore(t)
			var got []string
			for i, s := range tc.steps {
				_, fx := c.report(tel(uint64(i+1), s[0], s[1], s[2]), t0)
				for _, n := range fx.notices {
					if a := n.GetAlert(); a != nil {
						sign := "-"
						if a.Active {
							sign = "+"
						}
						got = append(got, a.Kind.String()[len("ALERT_KIND_"):]+sign)
					}
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestDuplicateSeqIsAckedWithoutEffects(t *testing.T) {
	c := onlineCore(t)
	c.report(tel(5, 10, 20, 80), t0)
	ack, fx := c.report(tel(5, 10, 20, 80), t0)
	if !ack.Duplicate || ack.Seq != 5 || fx.persists() || len(fx.notices) > 0 {
		t.Fatalf("duplicate: ack %v, effects %+v", ack, fx)
	}
	ack, _ = c.report(tel(3, 10, 20, 80), t0)
	if !ack.Duplicate {
		t.Fatal("an older seq must be a duplicate")
	}
}

func TestReportFromAStaleSessionIsRefused(t *testing.T) {
	c := onlineCore(t)
	r := tel(1, 50, 20, 80)
	r.SessionId = "old"
	ack, fx := c.report(r, t0)
	if ack.Close == 0 || fx.persists() {
		t.Fatalf("stale session accepted: %v", ack)
	}
}

func TestAStepOnTheNextStateLeavesTheHeldOneAsItWas(t *testing.T) {
	c := onlineCore(t)
	c.sendCommand(&actorpb.SendCommand{CommandId: "c0", Kind: devicepb.CommandKind_COMMAND_KIND_READ_NOW}, t0)
	held := c.snapshot()
	next := c.next()
	next.report(tel(1, 5, 20, 80), t0)
	next.result(&actorpb.DeliverResult{Result: &devicepb.CommandResult{CommandId: "c0", Status: devicepb.CommandStatus_COMMAND_STATUS_DONE}}, t0)
	if next.lastSeq != 1 || len(next.alerts) != 1 || len(next.open) != 0 || len(next.recent) != 1 {
		t.Fatal("the step did not apply to the next state")
	}
	if c.lastSeq != 0 || len(c.alerts) != 0 || c.latest != nil || len(c.open) != 1 || len(c.recent) != 0 || string(c.snapshot()) != string(held) {
		t.Fatalf("the held state changed: seq %d alerts %v open %d recent %d", c.lastSeq, c.alerts, len(c.open), len(c.recent))
	}
}

func TestCommandsPastTheOpenLimitAreAnsweredBusyAtOnce(t *testing.T) {
	c := onlineCore(t)
	for i := range MaxOpenCommands {
		next := c.next()
		d, _, _ := next.sendCommand(&actorpb.SendCommand{CommandId: fmt.Sprint("c", i), Kind: devicepb.CommandKind_COMMAND_KIND_WATER, WaterMs: 1000}, t0)
		if d != commandStarted {
			t.Fatalf("command %d: %v", i, d)
		}
		c = next
	}
	d, out, fx := c.sendCommand(&actorpb.SendCommand{CommandId: "one-too-many", Kind: devicepb.CommandKind_COMMAND_KIND_WATER, WaterMs: 1000}, t0)
	if d != commandAnswered || out.Outcome != actorpb.Outcome_OUTCOME_BUSY || len(fx.frames) != 0 {
		t.Fatalf("got %v %v %+v; want BUSY at once and nothing sent", d, out, fx)
	}
}

func TestCommandLifecycle(t *testing.T) {
	c := onlineCore(t)
	cmd := &actorpb.SendCommand{CommandId: "c1", Kind: devicepb.CommandKind_COMMAND_KIND_WATER, WaterMs: 2000, TimeoutMs: 5000}
	d, _, fx := c.sendCommand(cmd, t0)
	if d != commandStarted || len(fx.frames) != 1 || fx.frames[0].GetCommand().DeadlineMs != 5000 || len(fx.timers) != 1 {
		t.Fatalf("start: %v %+v", d, fx)
	}
	if d, _, _ = c.sendCommand(cmd, t0); d != commandJoined {
		t.Fatalf("a repeat while open should join, got %v", d)
	}
	fx = c.result(&actorpb.DeliverResult{Result: &devicepb.CommandResult{CommandId: "c1", Status: devicepb.CommandStatus_COMMAND_STATUS_DONE, WateredMl: 20}}, t0.Add(time.Second))
	if len(fx.outcomes) != 1 || fx.outcomes[0].Outcome != actorpb.Outcome_OUTCOME_DONE {
		t.Fatalf("result: %+v", fx)
	}
	if fx = c.expire("c1", t0.Add(time.Minute)); len(fx.outcomes) != 0 {
		t.Fatal("an answered command must not time out")
	}
	d, out, _ := c.sendCommand(cmd, t0.Add(2*time.Second))
	if d != commandAnswered || out.Outcome != actorpb.Outcome_OUTCOME_DONE {
		t.Fatalf("a repeat after the outcome gets the outcome, got %v %v", d, out)
	}
}

func TestCommandTimesOutOnlyAtItsDeadline(t *testing.T) {
	c := onlineCore(t)
	c.sendCommand(&actorpb.SendCommand{CommandId: "c1", Kind: devicepb.CommandKind_COMMAND_KIND_READ_NOW, TimeoutMs: 2000}, t0)
	if fx := c.expire("c1", t0.Add(1999*time.Millisecond)); len(fx.outcomes) != 0 {
		t.Fatal("expired early")
	}
	fx := c.expire("c1", t0.Add(2*time.Second))
	if len(fx.outcomes) != 1 || fx.outcomes[0].Outcome != actorpb.Outcome_OUTCOME_TIMED_OUT {
		t.Fatalf("want timed out, got %+v", fx)
	}
	late := c.result(&actorpb.DeliverResult{Result: &devicepb.CommandResult{CommandId: "c1", Status: devicepb.CommandStatus_COMMAND_STATUS_DONE}}, t0.Add(3*time.Second))
	if len(late.outcomes) != 0 || len(late.events) != 1 {
		t.Fatalf("a late result is logged, not delivered: %+v", late)
	}
}

func TestOpenCommandsAreResentOnReconnectAndSurviveRecovery(t *testing.T) {
	c := onlineCore(t)
	c.sendCommand(&actorpb.SendCommand{CommandId: "c1", Kind: devicepb.CommandKind_COMMAND_KIND_WATER, WaterMs: 1000, TimeoutMs: 10000}, t0)
	c.detach("s1", devicepb.CloseReason_CLOSE_REASON_IDLE_TIMEOUT, t0.Add(time.Second))
	if c.online {
		t.Fatal("still online after detach")
	}
	// A new activation recovers the open command from the snapshot.
	r := newDeviceCore("pot-1")
	fx, err := r.recover(Device{ID: "pot-1", Secret: []byte("0123456789abcdef")}, Recovered{Snapshot: c.snapshot()}, t0.Add(2*time.Second))
	if err != nil || len(r.open) != 1 || len(fx.timers) != 1 {
		t.Fatalf("recover: %v open=%d timers=%d", err, len(r.open), len(fx.timers))
	}
	dn, sn := make([]byte, 16), make([]byte, 16)
	res, fx := r.authenticate(&actorpb.Authenticate{DeviceId: "pot-1", DeviceNonce: dn, ServerNonce: sn, ProtocolVersion: 1,
		Mac: messages.MAC([]byte("0123456789abcdef"), dn, sn, "pot-1"), Conn: &actorpb.ConnRef{SessionId: "s2"}},
		[]byte("0123456789abcdef"), "s2", t0.Add(3*time.Second))
	if !res.Ok || len(fx.frames) != 1 || fx.frames[0].GetCommand().CommandId != "c1" || fx.frames[0].GetCommand().DeadlineMs != 7000 {
		t.Fatalf("reconnect should resend c1 with 7 s left: %v %+v", res, fx.frames)
	}
	// The command resent is the command asked, content and all.
	if got := fx.frames[0].GetCommand(); got.WaterMs != 1000 || got.Kind != devicepb.CommandKind_COMMAND_KIND_WATER {
		t.Fatalf("resent without its content: %v", got)
	}
	// Recovery after the deadline ends the command as timed out.
	late := newDeviceCore("pot-1")
	fx, _ = late.recover(Device{ID: "pot-1"}, Recovered{Snapshot: c.snapshot()}, t0.Add(time.Minute))
	if len(fx.outcomes) != 1 || fx.outcomes[0].Outcome != actorpb.Outcome_OUTCOME_TIMED_OUT {
		t.Fatalf("recovery past the deadline: %+v", fx.outcomes)
	}
}

func TestSecondConnectionReplacesTheFirst(t *testing.T) {
	c := onlineCore(t)
	dn, sn := make([]byte, 16), make([]byte, 16)
	secret := []byte("0123456789abcdef")
	_, fx := c.authenticate(&actorpb.Authenticate{DeviceId: "pot-1", DeviceNonce: dn, ServerNonce: sn, ProtocolVersion: 1,
		Mac: messages.MAC(secret, dn, sn, "pot-1"), Conn: &actorpb.ConnRef{SessionId: "s2"}}, secret, "s2", t0)
	if fx.closeConn.GetSessionId() != "s1" {
		t.Fatalf("the first connection should be closed: %+v", fx.closeConn)
	}
	if fx := c.detach("s1", 0, t0); fx.persists() || !c.online {
		t.Fatal("the replaced connection's detach must not take the device offline")
	}
}

func TestUnknownAndRevokedDevices(t *testing.T) {
	c := newDeviceCore("ghost")
	res, _ := c.authenticate(&actorpb.Authenticate{}, nil, "s", t0)
	if res.Reason != devicepb.CloseReason_CLOSE_REASON_UNKNOWN_DEVICE {
		t.Fatalf("unknown: %v", res)
	}
	r := newDeviceCore("pot-1")
	r.recover(Device{ID: "pot-1", RevokedAt: t0}, Recovered{}, t0)
	res, _ = r.authenticate(&actorpb.Authenticate{}, nil, "s", t0)
	if res.Reason != devicepb.CloseReason_CLOSE_REASON_DEVICE_REVOKED {
		t.Fatalf("revoked: %v", res)
	}
}

func TestDeviceEventsRaiseAndClearAlerts(t *testing.T) {
	c := onlineCore(t)
	ev := func(seq uint64, k devicepb.EventKind) *actorpb.Report {
		return &actorpb.Report{SessionId: "s1", Body: &actorpb.Report_Event{Event: &devicepb.Event{Seq: seq, Kind: k}}}
	}
	_, fx := c.report(ev(1, devicepb.EventKind_EVENT_KIND_PUMP_FAULT), t0)
	if len(fx.notices) != 1 || len(fx.events) != 2 {
		t.Fatalf("pump fault: %+v", fx)
	}
	c.sendCommand(&actorpb.SendCommand{CommandId: "w", Kind: devicepb.CommandKind_COMMAND_KIND_WATER, WaterMs: 100}, t0)
	fx = c.result(&actorpb.DeliverResult{Result: &devicepb.CommandResult{CommandId: "w", Status: devicepb.CommandStatus_COMMAND_STATUS_DONE}}, t0)
	if c.alerts[actorpb.AlertKind_ALERT_KIND_PUMP_FAULT] != nil {
		t.Fatal("a successful watering clears the pump fault")
	}
}

func TestContentlessCommandFromAnOldSnapshotIsNotResent(t *testing.T) {
	// A snapshot written before open commands kept their content: id, kind and deadline only.
	old, _ := proto.Marshal(&actorpb.DeviceState{DeviceId: "pot-1", OpenCommands: []*actorpb.CommandOutcome{{
		DeviceId: "pot-1", CommandId: "w1", Outcome: actorpb.Outcome_OUTCOME_PENDING, Kind: devicepb.CommandKind_COMMAND_KIND_WATER,
		AtMs: t0.Add(time.Minute).UnixMilli(), RequestedBy: "wechat:alice"}}})
	secret := []byte("0123456789abcdef")
	c := newDeviceCore("pot-1")
	fx, err := c.recover(Device{ID: "pot-1", Secret: secret}, Recovered{Snapshot: old}, t0)
	if err != nil {
		t.Fatal(err)
	}
	if len(fx.outcomes) != 1 || fx.outcomes[0].Outcome != actorpb.Outcome_OUTCOME_FAILED || fx.outcomes[0].RequestedBy != "wechat:alice" || !fx.snapshot {
		t.Fatalf("a contentless command must end at recovery, told to who asked: %+v", fx.outcomes)
	}
	dn, sn := make([]byte, 16), make([]byte, 16)
	res, afx := c.authenticate(&actorpb.Authenticate{DeviceId: "pot-1", DeviceNonce: dn, ServerNonce: sn, ProtocolVersion: 1,
		Mac: messages.MAC(secret, dn, sn, "pot-1"), Conn: &actorpb.ConnRef{SessionId: "s1"}}, secret, "s1", t0)
	if !res.Ok || len(afx.frames) != 0 {
		t.Fatalf("nothing may be resent: %v %v", res, afx.frames)
	}
}

func TestRevocationClosesTheConnectionAndRefusesEverything(t *testing.T) {
	c := onlineCore(t)
	c.users = []Binding{{DeviceID: "pot-1", OpenID: "alice", Role: RoleOwner}, {DeviceID: "pot-1", OpenID: "bob", Role: RoleMember}}
	c.sendCommand(&actorpb.SendCommand{CommandId: "w1", Kind: devicepb.CommandKind_COMMAND_KIND_WATER, WaterMs: 100}, t0)
	fx := c.revoke(&actorpb.RevokeDevice{By: "api"}, []string{"alice", "bob"}, t0)
	if fx.closeConn.GetSessionId() != "s1" || fx.closeWhy != devicepb.CloseReason_CLOSE_REASON_DEVICE_REVOKED || c.online {
		t.Fatalf("the open connection must close as revoked: %+v", fx)
	}
	if len(fx.outcomes) != 1 || fx.outcomes[0].Outcome != actorpb.Outcome_OUTCOME_REVOKED {
		t.Fatalf("open commands end as revoked: %+v", fx.outcomes)
	}
	var told []string
	for _, b := range fx.bindings {
		told = append(told, fmt.Sprintf("%s:%v", b.openID, b.msg.Bound))
	}
	if fmt.Sprint(told) != "[alice:false bob:false]" || len(c.users) != 0 {
		t.Fatalf("bindings end, each user told: %v (users left %v)", told, c.users)
	}
	// A report from the session that outlived the revocation is refused as revoked.
	if ack, rfx := c.report(tel(1, 50, 20, 80), t0); ack.Close != devicepb.CloseReason_CLOSE_REASON_DEVICE_REVOKED || rfx.persists() {
		t.Fatalf("lingering session: %v", ack)
	}
	if d, out, _ := c.sendCommand(&actorpb.SendCommand{CommandId: "w2", Kind: devicepb.CommandKind_COMMAND_KIND_READ_NOW}, t0); d != commandAnswered || out.Outcome != actorpb.Outcome_OUTCOME_REVOKED {
		t.Fatalf("command after revocation: %v", out)
	}
	if res, _, _ := c.bind("carol", "sprout_qr", t0); res.Ok || res.Code != actorpb.ErrorCode_ERROR_CODE_REVOKED {
		t.Fatalf("bind after revocation: %v", res)
	}
	// Idempotent: nothing more happens the second time.
	if again := c.revoke(&actorpb.RevokeDevice{}, nil, t0.Add(time.Minute)); again.persists() || again.closeConn != nil || !c.revokedAt.Equal(t0) {
		t.Fatalf("revoking again: %+v", again)
	}
}

func TestCommandsWithTheSameDeadlineAreResentInTheOrderAsked(t *testing.T) {
	c := onlineCore(t)
	ids := []string{"c", "a", "d", "b", "e"}
	for _, id := range ids { // all in the same millisecond, with the same timeout
		next := c.next()
		if d, _, _ := next.sendCommand(&actorpb.SendCommand{CommandId: id, Kind: devicepb.CommandKind_COMMAND_KIND_WATER, WaterMs: 1000}, t0); d != commandStarted {
			t.Fatalf("%s: %v", id, d)
		}
		c = next
	}
	for range 20 { // map order differs run to run; the recovered order must not
		r := newDeviceCore("pot-1")
		if _, err := r.recover(Device{ID: "pot-1", Secret: []byte("0123456789abcdef")}, Recovered{Snapshot: c.snapshot()}, t0); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, oc := range r.openByDeadline() {
			got = append(got, oc.req.CommandId)
		}
		if fmt.Sprint(got) != fmt.Sprint(ids) {
			t.Fatalf("resend order %v, want the order asked %v", got, ids)
		}
	}
}
