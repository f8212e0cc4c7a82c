package actors

import (
	"strings"
	"testing"
	"time"

	"github.com/sprout-iot/sprout/messages/actorpb"
)

func coreOptions() *UserOptions {
	o := &UserOptions{}
	o.defaults()
	return o
}

func TestDecide(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	online := answer{state: &actorpb.DeviceState{DeviceId: "pot-a", Known: true, Online: true}}
	two := []Binding{{DeviceID: "pot-a", Role: RoleOwner}, {DeviceID: "pot-b", Role: RoleMember}}
	cases := []struct {
		name      string
		devices   []Binding
		watering  []watering
		msg       string
		ans       map[string]answer
		want      []string // substrings of the reply
		notWant   string
		commands  int
		devicesTo int // the user's pot count after (-1: unchanged)
	}{
		{name: "status answers for every pot, those without an answer as not answering", devices: two, msg: "status",
			ans:  map[string]answer{"pot-a": online},
			want: []string{"pot-a: online", "pot-b: not answering"}, devicesTo: -1},
		{name: "status of a pot whose grain could not load is not available, not unknown", devices: two, msg: "status",
			ans:  map[string]answer{"pot-a": online, "pot-b": answerState(&actorpb.DeviceState{DeviceId: "pot-b", Error: actorpb.ErrorCode_ERROR_CODE_UNAVAILABLE})},
			want: []string{"pot-b: not available right now"}, notWant: "no such pot", devicesTo: -1},
		{name: "water on a pot that could not load is busy, try again, and sends nothing", devices: two[:1], msg: "water",
			ans:  map[string]answer{"pot-a": answerState(&actorpb.DeviceState{DeviceId: "pot-a", Error: actorpb.ErrorCode_ERROR_CODE_UNAVAILABLE})},
			want: []string{"busy"}, notWant: "No such pot", devicesTo: -1},
		{name: "water on a pot that did not answer sends nothing", devices: two[:1], msg: "water",
			want: []string{"pot-a is not answering"}, devicesTo: -1},
		{name: "water on an online pot sends one command", devices: two[:1], msg: "water",
			ans: map[string]answer{"pot-a": online}, want: []string{"watering pot-a"}, commands: 1, devicesTo: -1},
		{name: "water while a command for that pot is in flight joins it", devices: two[:1], msg: "water",
			watering: []watering{{DeviceID: "pot-a", CommandID: "wx-1", Until: now.Add(time.Minute)}},
			ans:      map[string]answer{"pot-a": online}, want: []string{"already watering"}, devicesTo: -1},
		{name: "a watering past its time no longer joins", devices: two[:1], msg: "water",
			watering: []watering{{DeviceID: "pot-a", CommandID: "wx-1", Until: now}},
			ans:      map[string]answer{"pot-a": online}, want: []string{"watering pot-a"}, commands: 1, devicesTo: -1},
		{name: "bind refused as unavailable is busy, not unknown", msg: "", ans: map[string]answer{
			"pot-c": answerBind(&actorpb.BindResult{Code: actorpb.ErrorCode_ERROR_CODE_UNAVAILABLE})},
			want: []string{"busy"}, notWant: "No such pot", devicesTo: 0},
		{name: "bind of an unknown pot says so", msg: "", ans: map[string]answer{
			"pot-c": answerBind(&actorpb.BindResult{Code: actorpb.ErrorCode_ERROR_CODE_UNKNOWN_DEVICE})},
			want: []string{"No such pot (pot-c)"}, devicesTo: 0},
		{name: "bind adds the pot to the list", msg: "", ans: map[string]answer{
			"pot-c": answerBind(&actorpb.BindResult{Ok: true, Role: RoleOwner})},
			want: []string{"owner"}, devicesTo: 1},
		{name: "unbind that did not answer keeps the pot", devices: two, msg: "unbind 2",
			want: []string{"pot-b is not answering"}, devicesTo: 2},
		{name: "unbind removes the pot", devices: two, msg: "unbind 2",
			ans:  map[string]answer{"pot-b": answerBind(&actorpb.BindResult{Ok: true})},
			want: []string{"Unbound pot-b"}, devicesTo: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := &userCore{openID: "alice", st: userState{Lang: LangEN, Watering: tc.watering}, devices: tc.devices}
			m := &actorpb.UserMessage{DedupKey: "id:1", MsgType: "text", Content: tc.msg}
			in := parseIntent(m)
			if tc.msg == "" { // a scanned Sprout QR, already verified by the shell
				m = &actorpb.UserMessage{DedupKey: "id:1", MsgType: "event", Event: "SCAN"}
				in = intent{kind: "bind_sprout", arg: "pot-c"}
			}
			before := c.clone()
			d := decide(c, m, in, tc.ans, now, coreOptions())
			for _, w := range tc.want {
				if !strings.Contains(d.reply.Text, w) {
					t.Errorf("reply %q has no %q", d.reply.Text, w)
				}
			}
			if tc.notWant != "" && strings.Contains(d.reply.Text, tc.notWant) {
				t.Errorf("reply %q says %q", d.reply.Text, tc.notWant)
			}
			if len(d.fx.commands) != tc.commands {
				t.Errorf("%d commands sent, want %d", len(d.fx.commands), tc.commands)
			}
			if want := tc.devicesTo; want >= 0 && len(d.next.devices) != want {
				t.Errorf("%d pots after, want %d", len(d.next.devices), want)
			}
			if _, ok := d.next.st.reply("id:1"); !ok {
				t.Error("the reply is not remembered for WeChat's retries")
			}
			if len(c.devices) != len(before.devices) || len(c.st.Replies) != 0 {
				t.Error("decide changed the state it was given")
			}
		})
	}
}

func TestNoticeOverTheBurstIsHeldWithItsDueTime(t *testing.T) {
	t.Parallel()
	o := coreOptions()
	o.AlertBurst, o.AlertWindow = 1, time.Minute
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	c := &userCore{openID: "alice", st: userState{Lang: LangEN}}
	alert := func(id string) *actorpb.UserNotice {
		return &actorpb.UserNotice{NoticeId: id, DeviceId: "pot-a", Body: &actorpb.UserNotice_Alert{Alert: &actorpb.Alert{
			Kind: actorpb.AlertKind_ALERT_KIND_SOIL_DRY, Active: true}}}
	}
	n1, fx1 := notice(c, alert("a"), now, o)
	n2, fx2 := notice(&n1, alert("b"), now.Add(time.Second), o)
	if len(fx1.pushes) != 1 || len(fx2.pushes) != 0 || len(n2.st.Summary) != 1 {
		t.Fatalf("pushes %d then %d, held %d; want 1, 0, 1", len(fx1.pushes), len(fx2.pushes), len(n2.st.Summary))
	}
	if due := now.Add(time.Second + time.Minute); !n2.st.SummaryDue.Equal(due) || !fx2.summaryAt.Equal(due) {
		t.Fatalf("summary due %v (timer %v), want %v", n2.st.SummaryDue, fx2.summaryAt, due)
	}
	if _, fx := notice(&n2, alert("b"), now.Add(2*time.Second), o); len(fx.pushes) != 0 {
		t.Fatal("a repeated notice was pushed again")
	}
	if _, fx := flushSummary(&n2, now.Add(30*time.Second), o); len(fx.pushes) != 0 {
		t.Fatal("the summary went out before its window ended (an early timer)")
	}
	n3, fx := flushSummary(&n2, n2.st.SummaryDue, o)
	if len(fx.pushes) != 1 || len(n3.st.Summary) != 0 || !strings.Contains(string(fx.pushes[0].Payload), "1 of your pots") {
		t.Fatalf("summary: %+v, left %d", fx.pushes, len(n3.st.Summary))
	}
}

func TestOutcomeEndsTheWatering(t *testing.T) {
	t.Parallel()
	c := &userCore{openID: "alice", st: userState{Lang: LangEN, Watering: []watering{{DeviceID: "pot-a", CommandID: "wx-1",
		Until: time.Now().Add(time.Hour)}}}}
	n, fx := outcome(c, &actorpb.CommandOutcome{DeviceId: "pot-a", CommandId: "wx-1", Outcome: actorpb.Outcome_OUTCOME_DONE}, time.Now(), coreOptions())
	if len(n.st.Watering) != 0 || len(fx.pushes) != 1 {
		t.Fatalf("after the outcome: watering %v, pushes %d", n.st.Watering, len(fx.pushes))
	}
}
