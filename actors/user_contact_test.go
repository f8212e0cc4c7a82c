package actors_test

import (
	"context"
	"testing"
	"time"

	pcluster "github.com/asynkron/protoactor-go/cluster"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/messages/actorpb"
)

// TestOnlyTheUsersOwnActionsOpenTheServiceWindow: a message opens 48 h with 5 sends; a click, a
// subscribe and a scan 1 min with 3; a menu link (VIEW), a template receipt, a location report,
// device status subscriptions and a device bind open nothing; unsubscribing closes it. A user
// Sprout has never heard from is outside any window. WeChat's retry of one callback does not
// give the allowance back.
func TestOnlyTheUsersOwnActionsOpenTheServiceWindow(t *testing.T) {
	w := newUserWorld(t, nil)
	ctx := context.Background()
	send := func(openID string, m *actorpb.UserMessage) {
		t.Helper()
		if _, err := w.member.Cluster.Request(openID, actors.UserKind, m, pcluster.WithTimeout(5*time.Second)); err != nil {
			t.Fatalf("%s: %v", openID, err)
		}
	}
	contact := func(openID string) actors.Contact {
		t.Helper()
		c, err := w.store.Contact(ctx, openID)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	now := w.clock.Now()
	ct := now.Unix()
	none := []*actorpb.UserMessage{
		{MsgType: "event", Event: "VIEW", EventKey: "https://sprout.example/app/"},
		{MsgType: "event", Event: "TEMPLATESENDJOBFINISH"},
		{MsgType: "event", Event: "LOCATION"},
		{MsgType: "device_event", Event: "subscribe_status", DeviceId: "pot-1"},
		{MsgType: "device_event", Event: "unsubscribe_status", DeviceId: "pot-1"},
		{MsgType: "device_event", Event: "bind", DeviceId: "pot-1"},
	}
	for i, m := range none {
		m.DedupKey, m.CreateTime = "none"+string(rune('a'+i)), ct
		send("oQuiet", m)
		if c := contact("oQuiet"); c != (actors.Contact{}) || c.InWindow(now) {
			t.Fatalf("after %s %s: %+v; want no window", m.MsgType, m.Event, c)
		}
	}
	opens := []struct {
		m     *actorpb.UserMessage
		until time.Duration
		sends int
	}{
		{&actorpb.UserMessage{MsgType: "text", Content: "hi"}, 48 * time.Hour, 5},
		{&actorpb.UserMessage{MsgType: "location"}, 48 * time.Hour, 5},
		{&actorpb.UserMessage{MsgType: "event", Event: "CLICK", EventKey: actors.MenuHelp}, time.Minute, 3},
		{&actorpb.UserMessage{MsgType: "event", Event: "subscribe"}, time.Minute, 3},
		{&actorpb.UserMessage{MsgType: "event", Event: "SCAN", EventKey: "other"}, time.Minute, 3},
	}
	for i, o := range opens {
		w.clock.Advance(time.Second)
		at := w.clock.Now()
		o.m.DedupKey, o.m.CreateTime = "open"+string(rune('a'+i)), at.Unix()
		send("oActive", o.m)
		c := contact("oActive")
		if !c.Until.Equal(time.Unix(at.Unix(), 0).Add(o.until)) || c.SendsLeft != o.sends || !c.Follows() {
			t.Fatalf("after %s %s: %+v; want %s and %d sends", o.m.MsgType, o.m.Event, c, o.until, o.sends)
		}
	}
	// One send used; WeChat retries the last callback: the allowance is not given back.
	if ok, _ := w.store.TakeServiceSend(ctx, "oActive", w.clock.Now()); !ok {
		t.Fatal("no send inside the window")
	}
	send("oActive", opens[len(opens)-1].m)
	if c := contact("oActive"); c.SendsLeft != 2 {
		t.Fatalf("after WeChat's retry of the scan: %d sends left, want 2", c.SendsLeft)
	}
	w.clock.Advance(time.Second)
	send("oActive", &actorpb.UserMessage{MsgType: "event", Event: "unsubscribe", DedupKey: "bye", CreateTime: w.clock.Now().Unix()})
	if c := contact("oActive"); c.Follows() || c.InWindow(w.clock.Now()) {
		t.Fatalf("after unsubscribe: %+v", c)
	}
}
