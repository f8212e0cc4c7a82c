package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/store"
)

// userTests are the contract of actors.UserStore, run by Run on stores that implement it.
var userTests = []struct {
	name string
	fn   func(*testing.T, actors.UserStore)
}{
	{"BindingsKeepTheFirstRoleAndListOldestFirst", testBindings},
	{"InvalidBindingIsRefused", testInvalidBinding},
	{"UserSnapshotIsReplaced", testUserSnapshot},
	{"PushOutboxLeasesAndCompletes", testPushOutbox},
	{"ConcurrentClaimsAreDisjoint", testConcurrentClaims},
	{"StaleLeaseOwnerCanNeitherCompleteNorResend", testStaleLease},
	{"RenewedLeaseIsNotClaimedAgain", testRenewLease},
	{"PushContactWindowsAndAllowanceAcrossPushers", testContact},
	{"PushOrderPerUserAndPot", testPushOrder},
	{"PushOutcomeReceiptAndRetry", testPushOutcome},
}

func runUserTests(t *testing.T, open Opener) {
	runUserTestsMatching(t, open, func(string) bool { return true })
}

// RunPushOutbox runs the push outbox's part of the contract (claims, leases, fencing) on open's
// stores.
func RunPushOutbox(t *testing.T, open Opener) {
	runUserTestsMatching(t, open, func(name string) bool {
		return strings.Contains(name, "Push") || strings.Contains(name, "Lease") || strings.Contains(name, "Claims")
	})
}

func runUserTestsMatching(t *testing.T, open Opener, match func(string) bool) {
	for _, tt := range userTests {
		if !match(tt.name) {
			continue
		}
		t.Run(tt.name, func(t *testing.T) {
			us, ok := open(t).(actors.UserStore)
			if !ok {
				t.Skip("this store does not implement actors.UserStore")
			}
			tt.fn(t, us)
		})
	}
}

func checkBindings(t *testing.T, got []actors.Binding, want ...actors.Binding) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d bindings %+v, want %d %+v", len(got), got, len(want), want)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.DeviceID != w.DeviceID || g.OpenID != w.OpenID || g.Role != w.Role || !g.BoundAt.Equal(w.BoundAt) {
			t.Fatalf("binding %d:\n got %+v\nwant %+v", i, g, w)
		}
	}
}

func testBindings(t *testing.T, s actors.UserStore) {
	ctx := ctxFor(t)
	alice, bob := "oAlice-'\"\\-🌱", "oBob-用户"
	owner := actors.Binding{DeviceID: "pot-1", OpenID: alice, Role: actors.RoleOwner, BoundAt: at(1)}
	member := actors.Binding{DeviceID: "pot-1", OpenID: bob, Role: actors.RoleMember, BoundAt: at(2)}
	second := actors.Binding{DeviceID: "pot-2", OpenID: alice, Role: actors.RoleOwner, BoundAt: at(3)}
	for _, b := range []actors.Binding{member, owner, second} {
		if err := s.Bind(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	again := owner
	again.Role, again.BoundAt = actors.RoleMember, at(9)
	if err := s.Bind(ctx, again); err != nil {
		t.Fatalf("binding an existing pair again: %v", err)
	}
	got, err := s.DeviceBindings(ctx, "pot-1")
	if err != nil {
		t.Fatal(err)
	}
	checkBindings(t, got, owner, member)
	got, _ = s.UserBindings(ctx, alice)
	checkBindings(t, got, owner, second)

	if err := s.Unbind(ctx, "pot-1", alice); err != nil {
		t.Fatal(err)
	}
	if err := s.Unbind(ctx, "pot-1", alice); err != nil {
		t.Fatalf("unbinding a missing binding: %v", err)
	}
	got, _ = s.DeviceBindings(ctx, "pot-1")
	checkBindings(t, got, member)
	got, _ = s.UserBindings(ctx, alice)
	checkBindings(t, got, second)

	for _, id := range []string{"nobody", "", "nul\x00", "\xff"} {
		if got, err := s.DeviceBindings(ctx, id); err != nil || len(got) != 0 {
			t.Errorf("DeviceBindings(%q) = %v, %v; want none", id, got, err)
		}
		if got, err := s.UserBindings(ctx, id); err != nil || len(got) != 0 {
			t.Errorf("UserBindings(%q) = %v, %v; want none", id, got, err)
		}
		if err := s.Unbind(ctx, id, id); err != nil {
			t.Errorf("Unbind(%q) = %v, want nil", id, err)
		}
	}
}

func testInvalidBinding(t *testing.T, s actors.UserStore) {
	ctx := ctxFor(t)
	good := actors.Binding{DeviceID: "pot-1", OpenID: "oAlice", Role: actors.RoleOwner, BoundAt: at(1)}
	for name, mod := range map[string]func(*actors.Binding){
		"NUL in device id": func(b *actors.Binding) { b.DeviceID = "pot\x00" },
		"empty OpenID":     func(b *actors.Binding) { b.OpenID = "" },
		"NUL in OpenID":    func(b *actors.Binding) { b.OpenID = "o\x00" },
		"no role":          func(b *actors.Binding) { b.Role = "" },
		"no time":          func(b *actors.Binding) { b.BoundAt = time.Time{} },
	} {
		b := good
		mod(&b)
		if err := s.Bind(ctx, b); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("%s: Bind = %v, want ErrInvalid", name, err)
		}
	}
	if got, _ := s.DeviceBindings(ctx, "pot-1"); len(got) != 0 {
		t.Fatalf("refused bindings were stored: %+v", got)
	}
}

func testUserSnapshot(t *testing.T, s actors.UserStore) {
	ctx := ctxFor(t)
	if snap, err := s.LoadUser(ctx, "oAlice"); err != nil || snap != nil {
		t.Fatalf("LoadUser of a new user = %q, %v; want nil", snap, err)
	}
	if err := s.SaveUser(ctx, "oAlice", []byte("v1")); err != nil {
		t.Fatal(err)
	}
	v2 := []byte{0, 'v', '2', 0xff, 0}
	if err := s.SaveUser(ctx, "oAlice", v2); err != nil {
		t.Fatal(err)
	}
	if snap, err := s.LoadUser(ctx, "oAlice"); err != nil || !bytes.Equal(snap, v2) {
		t.Fatalf("LoadUser = %q, %v; want %q", snap, err, v2)
	}
	if snap, _ := s.LoadUser(ctx, "oBob"); snap != nil {
		t.Fatalf("another user's snapshot: %q", snap)
	}
	if err := s.SaveUser(ctx, "o\x00", v2); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("SaveUser with a NUL in the OpenID = %v, want ErrInvalid", err)
	}
}

func push(id string, sec int) actors.Push {
	return actors.Push{ID: id, OpenID: "oAlice", Kind: actors.PushTemplate, Payload: []byte(`{"id":"` + id + `"}`), CreatedAt: at(sec)}
}

func pushIDs(ps []actors.Push) []string {
	var ids []string
	for _, p := range ps {
		ids = append(ids, p.ID)
	}
	return ids
}

func testPushOutbox(t *testing.T, s actors.UserStore) {
	ctx := ctxFor(t)
	p3 := push("m3", 3)
	p3.Payload = []byte{0, 1, 0xff} // opaque bytes
	if err := s.EnqueuePushes(ctx, []actors.Push{push("m2", 2), push("m1", 1), p3}); err != nil {
		t.Fatal(err)
	}
	dup := push("m1", 50)
	dup.Payload = []byte(`{"other":true}`)
	if err := s.EnqueuePushes(ctx, []actors.Push{dup, push("m4", 100)}); err != nil {
		t.Fatalf("enqueueing a known ID again: %v", err)
	}
	now := at(10)
	claim := func(owner string, now time.Time, limit int) []actors.Push {
		t.Helper()
		ps, err := s.ClaimPushes(ctx, owner, now, 30*time.Second, limit)
		if err != nil {
			t.Fatal(err)
		}
		return ps
	}
	// m4 is not created yet at "now" but is due: creation time does not gate claiming, NextAttemptAt does.
	a := claim("pusher-a", now, 2)
	if !slices.Equal(pushIDs(a), []string{"m1", "m2"}) || a[0].Status != actors.PushPending || string(a[0].Payload) != `{"id":"m1"}` {
		t.Fatalf("first claim = %+v, want m1, m2 pending, oldest first, m1 as first enqueued", a)
	}
	b := claim("pusher-b", now, 10)
	if !slices.Equal(pushIDs(b), []string{"m3", "m4"}) || !bytes.Equal(b[0].Payload, p3.Payload) {
		t.Fatalf("second claim = %+v, want m3 (payload kept) and m4: m1, m2 are leased", b)
	}
	if c := claim("pusher-b", now.Add(29*time.Second), 10); len(c) != 0 {
		t.Fatalf("claim before the leases end = %v, want none", pushIDs(c))
	}
	if c := claim("pusher-b", now, 0); len(c) != 0 {
		t.Fatalf("claim with limit 0 = %v", pushIDs(c))
	}

	sent := a[0]
	sent.Status, sent.Attempts, sent.SentAt = actors.PushSent, 1, now.Add(time.Second)
	retry := a[1]
	retry.Attempts, retry.NextAttemptAt, retry.LastError = 1, now.Add(60*time.Second), "errcode 45015: \"response out of time limit\" \x00\xff"
	failed := b[0]
	failed.Status, failed.Attempts, failed.LastError = actors.PushFailed, 1, "errcode 43004: require subscribe"
	for _, p := range []actors.Push{sent, retry, failed} {
		if err := s.CompletePush(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CompletePush(ctx, actors.Push{ID: "unknown", Status: actors.PushSent, Lease: a[0].Lease}); !errors.Is(err, actors.ErrLeaseLost) {
		t.Fatalf("completing an unknown push = %v, want ErrLeaseLost", err)
	}
	// m4's lease ends at now+30s; m2 is due again at now+60s; m1 and m3 are done.
	if c := claim("pusher-c", now.Add(31*time.Second), 10); !slices.Equal(pushIDs(c), []string{"m4"}) {
		t.Fatalf("claim after m4's lease ended = %v, want m4", pushIDs(c))
	}
	if c := claim("pusher-c", now.Add(60*time.Second), 10); !slices.Equal(pushIDs(c), []string{"m2"}) || c[0].Attempts != 1 {
		t.Fatalf("claim when m2 is due again = %+v, want m2 with 1 attempt", c)
	}

	all, err := s.UserPushes(ctx, "oAlice", 0)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(pushIDs(all), []string{"m4", "m3", "m2", "m1"}) {
		t.Fatalf("UserPushes = %v, want newest first", pushIDs(all))
	}
	m1, m2, m3 := all[3], all[2], all[1]
	if m1.Status != actors.PushSent || !m1.SentAt.Equal(now.Add(time.Second)) || m1.Attempts != 1 || !m1.CreatedAt.Equal(at(1)) {
		t.Errorf("m1 = %+v, want sent at %v", m1, now.Add(time.Second))
	}
	if m2.Status != actors.PushPending || !m2.NextAttemptAt.Equal(now.Add(60*time.Second)) || m2.LastError != store.CleanText(retry.LastError) {
		t.Errorf("m2 = %+v, want pending, next attempt at %v, error %q", m2, now.Add(60*time.Second), store.CleanText(retry.LastError))
	}
	if m3.Status != actors.PushFailed || m3.LastError != failed.LastError || !bytes.Equal(m3.Payload, p3.Payload) {
		t.Errorf("m3 = %+v, want failed with its payload", m3)
	}
	if some, _ := s.UserPushes(ctx, "oAlice", 2); !slices.Equal(pushIDs(some), []string{"m4", "m3"}) {
		t.Errorf("UserPushes limit 2 = %v", pushIDs(some))
	}
	if none, err := s.UserPushes(ctx, "oBob", 0); err != nil || len(none) != 0 {
		t.Errorf("another user's pushes: %v, %v", pushIDs(none), err)
	}
	bad := push("", 1)
	if err := s.EnqueuePushes(ctx, []actors.Push{push("m9", 9), bad}); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("enqueueing a push without ID = %v, want ErrInvalid", err)
	}
	if all, _ := s.UserPushes(ctx, "oAlice", 0); len(all) != 4 {
		t.Fatalf("a refused enqueue stored part of its pushes: %v", pushIDs(all))
	}
}

func testConcurrentClaims(t *testing.T, s actors.UserStore) {
	ctx := ctxFor(t)
	var ps []actors.Push
	for i := range 200 {
		ps = append(ps, push(fmt.Sprintf("m%03d", i), i))
	}
	if err := s.EnqueuePushes(ctx, ps); err != nil {
		t.Fatal(err)
	}
	var (
		mu      sync.Mutex
		claimed = map[string]string{}
		wg      sync.WaitGroup
	)
	for w := range 4 {
		wg.Go(func() {
			owner := fmt.Sprintf("pusher-%d", w)
			for {
				got, err := s.ClaimPushes(ctx, owner, at(1000), time.Minute, 7)
				if err != nil {
					t.Error(err)
					return
				}
				if len(got) == 0 {
					return
				}
				mu.Lock()
				for _, p := range got {
					if prev, ok := claimed[p.ID]; ok {
						t.Errorf("%s claimed by %s and %s", p.ID, prev, owner)
					}
					claimed[p.ID] = owner
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(claimed) != len(ps) {
		t.Fatalf("%d of %d pushes claimed", len(claimed), len(ps))
	}
}

// testStaleLease: a pusher whose lease ran out while its batch was slow, and whose pushes another
// pusher claimed, can neither send them (RenewPush refuses) nor record their fate
// (CompletePush refuses), before or after the new owner records its own; and its own later
// claim of the same push is a new lease that the earlier one cannot use.
func testStaleLease(t *testing.T, s actors.UserStore) {
	ctx := ctxFor(t)
	if err := s.EnqueuePushes(ctx, []actors.Push{push("m1", 1), push("m2", 2)}); err != nil {
		t.Fatal(err)
	}
	const lease = 15 * time.Second
	claim := func(owner string, now time.Time) []actors.Push {
		t.Helper()
		ps, err := s.ClaimPushes(ctx, owner, now, lease, 10)
		if err != nil {
			t.Fatal(err)
		}
		return ps
	}
	stale := claim("node-a", at(10))
	if len(stale) != 2 || stale[0].Lease == "" {
		t.Fatalf("claim = %+v, want m1 and m2 with their lease", stale)
	}
	// node-a's batch is slow: its lease ends at 25 s, node-b claims both at 26 s.
	fresh := claim("node-b", at(26))
	if !slices.Equal(pushIDs(fresh), []string{"m1", "m2"}) {
		t.Fatalf("claim after the lease ended = %v, want m1, m2", pushIDs(fresh))
	}
	if fresh[0].Lease == stale[0].Lease {
		t.Fatalf("two claims share the lease %q", fresh[0].Lease)
	}
	if err := s.RenewPush(ctx, stale[0], at(27), lease); !errors.Is(err, actors.ErrLeaseLost) {
		t.Fatalf("stale owner renewing (about to send) = %v, want ErrLeaseLost", err)
	}
	if err := s.RenewPush(ctx, fresh[0], at(27), lease); err != nil {
		t.Fatalf("new owner renewing: %v", err)
	}
	// The stale owner's retry of m1 before the new owner records it sent: refused.
	retry := stale[0]
	retry.Attempts, retry.NextAttemptAt, retry.LastError = 1, at(100), "timeout"
	if err := s.CompletePush(ctx, retry); !errors.Is(err, actors.ErrLeaseLost) {
		t.Fatalf("stale owner completing m1 = %v, want ErrLeaseLost", err)
	}
	sent := fresh[0]
	sent.Status, sent.Attempts, sent.SentAt = actors.PushSent, 1, at(28)
	if err := s.CompletePush(ctx, sent); err != nil {
		t.Fatalf("new owner completing m1: %v", err)
	}
	// ... and after: a stale "retry" must not put a sent push back in the queue.
	if err := s.CompletePush(ctx, retry); !errors.Is(err, actors.ErrLeaseLost) {
		t.Fatalf("stale owner completing m1 after it was sent = %v, want ErrLeaseLost", err)
	}
	if err := s.RenewPush(ctx, sent, at(29), lease); !errors.Is(err, actors.ErrLeaseLost) {
		t.Fatalf("renewing a push whose fate is recorded = %v, want ErrLeaseLost", err)
	}
	// The new owner releases m2 unsent (shutting down); node-a claims it again: its old lease
	// still cannot complete it, its new one can.
	if err := s.CompletePush(ctx, fresh[1]); err != nil {
		t.Fatalf("releasing m2: %v", err)
	}
	again := claim("node-a", at(29))
	if !slices.Equal(pushIDs(again), []string{"m2"}) {
		t.Fatalf("claim after the release = %v, want m2 at once", pushIDs(again))
	}
	if err := s.CompletePush(ctx, stale[1]); !errors.Is(err, actors.ErrLeaseLost) {
		t.Fatalf("completing m2 with node-a's first lease = %v, want ErrLeaseLost", err)
	}
	if err := s.CompletePush(ctx, fresh[1]); !errors.Is(err, actors.ErrLeaseLost) {
		t.Fatalf("completing m2 with node-b's released lease = %v, want ErrLeaseLost", err)
	}
	done := again[0]
	done.Status, done.Attempts, done.SentAt = actors.PushSent, 1, at(30)
	if err := s.CompletePush(ctx, done); err != nil {
		t.Fatalf("completing m2 with node-a's new lease: %v", err)
	}
	if c := claim("node-c", at(1000)); len(c) != 0 {
		t.Fatalf("sent pushes claimed again: %v", pushIDs(c))
	}
	all, err := s.UserPushes(ctx, "oAlice", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range all {
		if p.Status != actors.PushSent || p.Attempts != 1 || p.LastError != "" {
			t.Errorf("%s = %+v, want sent once, as its current owner recorded", p.ID, p)
		}
	}
}

// testRenewLease: a pusher that renews its lease before sending keeps the push for the new
// lease, however long ago it claimed it.
func testRenewLease(t *testing.T, s actors.UserStore) {
	ctx := ctxFor(t)
	if err := s.EnqueuePushes(ctx, []actors.Push{push("m1", 1)}); err != nil {
		t.Fatal(err)
	}
	ps, err := s.ClaimPushes(ctx, "node-a", at(10), 15*time.Second, 10)
	if err != nil || len(ps) != 1 {
		t.Fatalf("claim = %v, %v", pushIDs(ps), err)
	}
	if err := s.RenewPush(ctx, ps[0], at(24), 15*time.Second); err != nil {
		t.Fatalf("renewing: %v", err)
	}
	if c, err := s.ClaimPushes(ctx, "node-b", at(26), 15*time.Second, 10); err != nil || len(c) != 0 {
		t.Fatalf("claim within the renewed lease = %v, %v, want none", pushIDs(c), err)
	}
	// Even past its lease, the holder may renew while no one else claimed the push.
	if err := s.RenewPush(ctx, ps[0], at(60), 15*time.Second); err != nil {
		t.Fatalf("renewing an expired lease no one took: %v", err)
	}
	if c, err := s.ClaimPushes(ctx, "node-b", at(70), 15*time.Second, 10); err != nil || len(c) != 0 {
		t.Fatalf("claim within the lease renewed late = %v, %v, want none", pushIDs(c), err)
	}
	sent := ps[0]
	sent.Status, sent.Attempts, sent.SentAt = actors.PushSent, 1, at(71)
	if err := s.CompletePush(ctx, sent); err != nil {
		t.Fatalf("completing after renewals: %v", err)
	}
}

// testContact: a user's own action opens a window with its allowance; each customer-service
// send consumes one, atomically, even from many pushers at once; unfollowing closes everything
// until they act again; a late event does not undo a newer one.
func testContact(t *testing.T, s actors.UserStore) {
	ctx := ctxFor(t)
	if c, err := s.Contact(ctx, "oNew"); err != nil || c.InWindow(at(1)) || !c.Follows() {
		t.Fatalf("a user with no record = %+v, %v; want outside any window, not known unfollowed", c, err)
	}
	if ok, err := s.TakeServiceSend(ctx, "oNew", at(1)); ok || err != nil {
		t.Fatalf("a send to a user with no record = %v, %v; want refused", ok, err)
	}
	if err := s.RecordContact(ctx, "oAlice", actors.ContactEvent{Kind: actors.ContactMessage, At: at(100)}); err != nil {
		t.Fatal(err)
	}
	c, err := s.Contact(ctx, "oAlice")
	if err != nil || c.Kind != actors.ContactMessage || !c.At.Equal(at(100)) || !c.Until.Equal(at(100).Add(48*time.Hour)) || c.SendsLeft != 5 {
		t.Fatalf("after a message: %+v, %v; want a 48 h window with 5 sends", c, err)
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		took int
	)
	for range 12 {
		wg.Go(func() {
			ok, err := s.TakeServiceSend(ctx, "oAlice", at(200))
			if err != nil {
				t.Error(err)
			}
			if ok {
				mu.Lock()
				took++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if took != 5 {
		t.Fatalf("12 concurrent sends took %d of the allowance, want exactly 5", took)
	}
	// A click opens a fresh 1-minute window of 3 sends; after the minute, none.
	if err := s.RecordContact(ctx, "oAlice", actors.ContactEvent{Kind: actors.ContactClick, At: at(300)}); err != nil {
		t.Fatal(err)
	}
	if ok, _ := s.TakeServiceSend(ctx, "oAlice", at(300).Add(61*time.Second)); ok {
		t.Fatal("a send 61 s after a click was allowed")
	}
	if ok, _ := s.TakeServiceSend(ctx, "oAlice", at(330)); !ok {
		t.Fatal("a send 30 s after a click was refused")
	}
	// A send WeChat did not take (busy) is given back to its window, not to a newer one.
	if err := s.RecordContact(ctx, "oAlice", actors.ContactEvent{Kind: actors.ContactUnused, At: at(300)}); err != nil {
		t.Fatal(err)
	}
	if c, _ := s.Contact(ctx, "oAlice"); c.SendsLeft != 3 {
		t.Fatalf("after giving a send back: %d left, want 3", c.SendsLeft)
	}
	if err := s.RecordContact(ctx, "oAlice", actors.ContactEvent{Kind: actors.ContactUnused, At: at(300)}); err != nil {
		t.Fatal(err)
	}
	if c, _ := s.Contact(ctx, "oAlice"); c.SendsLeft != 3 {
		t.Fatalf("giving back more than the allowance: %d left, want 3", c.SendsLeft)
	}
	// WeChat said 45047: the window is spent.
	if err := s.RecordContact(ctx, "oAlice", actors.ContactEvent{Kind: actors.ContactClosed, At: at(331)}); err != nil {
		t.Fatal(err)
	}
	if ok, _ := s.TakeServiceSend(ctx, "oAlice", at(332)); ok {
		t.Fatal("a send after WeChat closed the window was allowed")
	}
	// Unfollowing: nothing until they follow again; a 43004 older than the follow changes nothing.
	if err := s.RecordContact(ctx, "oAlice", actors.ContactEvent{Kind: actors.ContactUnsubscribe, At: at(400)}); err != nil {
		t.Fatal(err)
	}
	if c, _ := s.Contact(ctx, "oAlice"); c.Follows() || c.InWindow(at(401)) {
		t.Fatalf("after unsubscribe: %+v", c)
	}
	if err := s.RecordContact(ctx, "oAlice", actors.ContactEvent{Kind: actors.ContactSubscribe, At: at(500)}); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordContact(ctx, "oAlice", actors.ContactEvent{Kind: actors.ContactRefused, At: at(450)}); err != nil {
		t.Fatal(err)
	}
	if c, _ := s.Contact(ctx, "oAlice"); !c.Follows() || !c.InWindow(at(510)) || c.SendsLeft != 3 || c.Kind != actors.ContactSubscribe {
		t.Fatalf("after following again (and a late 43004): %+v; want following, 3 sends", c)
	}
	if c, _ := s.Contact(ctx, "oBob"); c != (actors.Contact{}) {
		t.Fatalf("another user's contact: %+v", c)
	}
}

// testPushOrder: a push is not claimed while an older pending push about the same user and pot
// waits (raised before cleared), whoever claims; other pots and users are not held up.
func testPushOrder(t *testing.T, s actors.UserStore) {
	ctx := ctxFor(t)
	raised, cleared, other := push("raised", 1), push("cleared", 2), push("other", 3)
	raised.OrderKey, cleared.OrderKey, other.OrderKey = "oAlice|pot-1", "oAlice|pot-1", "oAlice|pot-2"
	plain := push("plain", 4)
	if err := s.EnqueuePushes(ctx, []actors.Push{cleared, raised, other, plain}); err != nil {
		t.Fatal(err)
	}
	a, err := s.ClaimPushes(ctx, "node-a", at(10), 30*time.Second, 10)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(pushIDs(a), []string{"raised", "other", "plain"}) {
		t.Fatalf("claim = %v, want raised, other, plain (cleared waits for raised)", pushIDs(a))
	}
	for _, p := range a[1:] {
		p.Status, p.Attempts, p.SentAt = actors.PushSent, 1, at(11)
		if err := s.CompletePush(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	// raised is retried later: cleared still waits, even after raised's lease ended.
	r := a[0]
	r.Attempts, r.NextAttemptAt, r.LastError = 1, at(100), "busy"
	if err := s.CompletePush(ctx, r); err != nil {
		t.Fatal(err)
	}
	if b, _ := s.ClaimPushes(ctx, "node-b", at(50), 30*time.Second, 10); len(b) != 0 {
		t.Fatalf("claim while raised waits for its retry = %v, want none", pushIDs(b))
	}
	b, _ := s.ClaimPushes(ctx, "node-b", at(100), 30*time.Second, 10)
	if !slices.Equal(pushIDs(b), []string{"raised"}) {
		t.Fatalf("claim when raised is due = %v, want raised only", pushIDs(b))
	}
	r = b[0]
	r.Status, r.Attempts, r.SentAt = actors.PushSent, 2, at(101)
	if err := s.CompletePush(ctx, r); err != nil {
		t.Fatal(err)
	}
	c, _ := s.ClaimPushes(ctx, "node-b", at(102), 30*time.Second, 10)
	if !slices.Equal(pushIDs(c), []string{"cleared"}) {
		t.Fatalf("claim after raised was sent = %v, want cleared", pushIDs(c))
	}
	all, _ := s.UserPushes(ctx, "oAlice", 0)
	for _, p := range all {
		if p.ID == "cleared" && p.OrderKey != "oAlice|pot-1" {
			t.Errorf("order key not kept: %+v", p)
		}
	}
}

// testPushOutcome: each push's channel, errcode and msgid are recorded; the receipt finds the
// push by msgid; a push failed for good is listed and can be sent again, once.
func testPushOutcome(t *testing.T, s actors.UserStore) {
	ctx := ctxFor(t)
	if err := s.EnqueuePushes(ctx, []actors.Push{push("tpl", 1), push("bad", 2), push("later", 3)}); err != nil {
		t.Fatal(err)
	}
	ps, err := s.ClaimPushes(ctx, "node-a", at(10), 30*time.Second, 10)
	if err != nil || len(ps) != 3 {
		t.Fatalf("claim = %v, %v", pushIDs(ps), err)
	}
	sent := ps[0]
	sent.Status, sent.Attempts, sent.SentAt, sent.Channel, sent.ErrCode, sent.MsgID = actors.PushSent, 1, at(11), actors.ChannelTemplate, 45015, "1234567"
	failed := ps[1]
	failed.Status, failed.Attempts, failed.Channel, failed.ErrCode, failed.LastError = actors.PushFailed, 1, actors.ChannelTemplate, 40037, "invalid template_id"
	for _, p := range []actors.Push{sent, failed} {
		if err := s.CompletePush(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	if ok, err := s.RecordReceipt(ctx, "1234567", "failed:user block"); !ok || err != nil {
		t.Fatalf("receipt of a known msgid = %v, %v", ok, err)
	}
	if ok, err := s.RecordReceipt(ctx, "999", "success"); ok || err != nil {
		t.Fatalf("receipt of an unknown msgid = %v, %v; want false, nil", ok, err)
	}
	all, _ := s.UserPushes(ctx, "oAlice", 0)
	byID := map[string]actors.Push{}
	for _, p := range all {
		byID[p.ID] = p
	}
	if p := byID["tpl"]; p.Channel != actors.ChannelTemplate || p.ErrCode != 45015 || p.MsgID != "1234567" || p.Receipt != "failed:user block" {
		t.Errorf("sent push = %+v; want channel, errcode, msgid and receipt kept", p)
	}
	f, err := s.FailedPushes(ctx, 0)
	if err != nil || !slices.Equal(pushIDs(f), []string{"bad"}) || f[0].ErrCode != 40037 || f[0].LastError != "invalid template_id" {
		t.Fatalf("failed pushes = %+v, %v; want bad with its reason", f, err)
	}
	for _, id := range []string{"tpl", "later", "nope"} {
		if err := s.RetryPush(ctx, id, at(20)); !errors.Is(err, actors.ErrNotFailed) {
			t.Errorf("RetryPush(%s) = %v, want ErrNotFailed", id, err)
		}
	}
	if err := s.RetryPush(ctx, "bad", at(20)); err != nil {
		t.Fatal(err)
	}
	if err := s.RetryPush(ctx, "bad", at(20)); !errors.Is(err, actors.ErrNotFailed) {
		t.Errorf("retrying it twice = %v, want ErrNotFailed", err)
	}
	// "later" is still leased by node-a until 40 s; "bad" is due again at once, untouched by the old lease.
	if err := s.CompletePush(ctx, ps[1]); !errors.Is(err, actors.ErrLeaseLost) {
		t.Errorf("the old lease completing the retried push = %v, want ErrLeaseLost", err)
	}
	again, _ := s.ClaimPushes(ctx, "node-b", at(21), 30*time.Second, 10)
	if !slices.Equal(pushIDs(again), []string{"bad"}) || again[0].Attempts != 0 || again[0].LastError != "" || again[0].ErrCode != 0 {
		t.Fatalf("claim after the retry = %+v, want bad, fresh", again)
	}
	if f, _ := s.FailedPushes(ctx, 0); len(f) != 0 {
		t.Fatalf("failed pushes after the retry = %v", pushIDs(f))
	}
}
