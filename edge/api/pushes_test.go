package api

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/sprout-iot/sprout/actors"
)

// TestFailedPushesAreListedAndCanBeSentAgain: the API lists a message that failed for good with
// its channel, errcode and reason, and sends it again once (409 after that).
func TestFailedPushesAreListedAndCanBeSentAgain(t *testing.T) {
	w := newWorld(t, nil)
	us := w.store.(actors.UserStore)
	ctx := context.Background()
	now := time.Now()
	if err := us.EnqueuePushes(ctx, []actors.Push{{ID: "p1", OpenID: "oGone", Kind: actors.PushMessage, CreatedAt: now,
		Payload: []byte(`{"message_kind":"command_outcome","text":"pot-1 浇水完成"}`)}}); err != nil {
		t.Fatal(err)
	}
	ps, _ := us.ClaimPushes(ctx, "node-a", now, time.Minute, 1)
	f := ps[0]
	f.Status, f.Attempts, f.Channel, f.ErrCode, f.LastError = actors.PushFailed, 1, actors.ChannelTemplate, 47003, "argument invalid"
	if err := us.CompletePush(ctx, f); err != nil {
		t.Fatal(err)
	}
	var got struct{ Pushes []PushJSON }
	w.getJSON(t, "/api/v1/pushes/failed", http.StatusOK, &got)
	if len(got.Pushes) != 1 || got.Pushes[0].ID != "p1" || got.Pushes[0].ErrCode != 47003 || got.Pushes[0].Channel != "template" ||
		got.Pushes[0].Reason != "argument invalid" || got.Pushes[0].MessageKind != "command_outcome" || got.Pushes[0].Text != "pot-1 浇水完成" {
		t.Fatalf("failed pushes = %+v", got)
	}
	if status, _, body := w.call(t, http.MethodPost, "/api/v1/pushes/p1/retry", nil); status != http.StatusOK {
		t.Fatalf("retry: HTTP %d %s", status, body)
	}
	if status, _, body := w.call(t, http.MethodPost, "/api/v1/pushes/p1/retry", nil); status != http.StatusConflict {
		t.Fatalf("retry of a pending push: HTTP %d %s, want 409", status, body)
	}
	w.getJSON(t, "/api/v1/pushes/failed", http.StatusOK, &got)
	if len(got.Pushes) != 0 {
		t.Fatalf("failed pushes after the retry = %+v", got)
	}
	if again, _ := us.ClaimPushes(ctx, "node-b", now.Add(time.Second), time.Minute, 10); len(again) != 1 || again[0].Attempts != 0 {
		t.Fatalf("the outbox after the retry hands out %+v", again)
	}
}
