package console

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/sprout-iot/sprout/actors"
)

// TestFailedPushIsShownWithItsReasonAndCanBeSentAgain: the pushes page lists a message that
// failed for good with its kind, channel, errcode and reason, and the templates' problems; "send
// again" puts it back in the outbox (once), and wakes the pusher.
func TestFailedPushIsShownWithItsReasonAndCanBeSentAgain(t *testing.T) {
	woken := make(chan struct{}, 4)
	w := newWorld(t, func(o *Options) {
		o.PushHealth = func() PushHealth {
			return PushHealth{TemplateProblems: map[string]string{"join_result": "no template configured"},
				OperatorAlerts: []OperatorAlert{{Kind: "alert_raised", ErrCode: 40037, Count: 2, Last: "invalid template_id"}}}
		}
		o.PushWake = func() { woken <- struct{}{} }
	})
	ctx := context.Background()
	now := time.Now()
	p := actors.Push{ID: "push-1", OpenID: "oGone", Kind: actors.PushMessage, CreatedAt: now,
		Payload: []byte(`{"message_kind":"alert_raised","text":"pot-1 提醒：土壤太干"}`)}
	if err := w.store.EnqueuePushes(ctx, []actors.Push{p}); err != nil {
		t.Fatal(err)
	}
	claimed, err := w.store.ClaimPushes(ctx, "node-a", now, time.Minute, 10)
	if err != nil || len(claimed) != 1 {
		t.Fatalf("claim: %v %v", claimed, err)
	}
	f := claimed[0]
	f.Status, f.Attempts, f.Channel, f.ErrCode = actors.PushFailed, 1, actors.ChannelTemplate, 43004
	f.LastError = "the user does not follow the account (43004): nothing is sent until they follow again"
	if err := w.store.CompletePush(ctx, f); err != nil {
		t.Fatal(err)
	}

	c, _ := w.signIn(t, testToken)
	status, page := get(t, c, w.url+"/console/pushes")
	for _, want := range []string{"oGone", "alert_raised", "43004", "does not follow the account", "pot-1 提醒：土壤太干",
		"join_result", "no template configured", "40037", "invalid template_id", `action="/console/pushes/push-1/retry"`} {
		if !strings.Contains(page, want) {
			t.Fatalf("the pushes page (HTTP %d) lacks %q:\n%s", status, want, page)
		}
	}
	status, body := post(t, c, w.url+"/console/pushes/push-1/retry", url.Values{"csrf": {csrfOf(t, page)}})
	if status != http.StatusOK || !strings.Contains(body, "Queued to be sent again") || strings.Contains(body, `id="push-push-1"`) {
		t.Fatalf("send again: HTTP %d:\n%s", status, body)
	}
	select {
	case <-woken:
	default:
		t.Fatal("the pusher was not woken")
	}
	again, _ := w.store.ClaimPushes(ctx, "node-b", now.Add(time.Second), time.Minute, 10)
	if len(again) != 1 || again[0].ID != "push-1" || again[0].Attempts != 0 {
		t.Fatalf("after send again the outbox hands out %+v, want push-1 fresh", again)
	}
	if status, _ := post(t, c, w.url+"/console/pushes/push-1/retry", url.Values{"csrf": {csrfOf(t, page)}}); status != http.StatusConflict {
		t.Fatalf("sending a pending push again: HTTP %d, want 409", status)
	}
	if status, _ := post(t, c, w.url+"/console/pushes/push-1/retry", url.Values{"csrf": {"forged"}}); status == http.StatusOK {
		t.Fatal("send again without the CSRF token was accepted")
	}
}
