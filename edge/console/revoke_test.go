package console

// Needs the device grain's side of issue 17 (its handling of actorpb.RevokeDevice): on the
// client branch alone the grain does not answer RevokeDevice and the console answers 503.

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/sprout-iot/sprout/edge/edgetest"
	"github.com/sprout-iot/sprout/messages/devicepb"
)

// The console revokes through the device grain: the online pot is disconnected with
// DEVICE_REVOKED at once, the registry and the fleet show it revoked.
func TestConsoleRevokeDisconnectsThePot(t *testing.T) {
	w := newWorld(t, nil)
	secret := w.addDevice(t, "pot-a0002")
	conn := edgetest.Dial(t, w.edgeAddr, "pot-a0002", secret)
	c, _ := w.signIn(t, testToken)

	_, page := get(t, c, w.url+"/console/devices/pot-a0002")
	status, body := post(t, c, w.url+"/console/devices/pot-a0002/revoke", url.Values{"csrf": {csrfOf(t, page)}})
	d, _ := w.store.GetDevice(context.Background(), "pot-a0002")
	if status != http.StatusOK || !d.Revoked() || !strings.Contains(body, "Device revoked") {
		t.Fatalf("revoke: HTTP %d, revoked=%v:\n%s", status, d.Revoked(), body)
	}
	var closed *devicepb.Close
	for closed == nil {
		f, err := conn.Recv(5 * time.Second)
		if err != nil {
			t.Fatalf("the revoked pot's connection: %v before a Close", err)
		}
		closed = f.GetClose()
	}
	if closed.Reason != devicepb.CloseReason_CLOSE_REASON_DEVICE_REVOKED {
		t.Fatalf("the pot was closed with %v, want DEVICE_REVOKED", closed.Reason)
	}
	_, body = get(t, c, w.url+"/console/?q=pot-a0002")
	if !strings.Contains(body, `class="pill revoked"`) {
		t.Fatalf("the fleet does not show pot-a0002 revoked:\n%s", body)
	}
	if status, _ := post(t, c, w.url+"/console/devices/nope/revoke", url.Values{"csrf": {csrfOf(t, page)}}); status != http.StatusNotFound {
		t.Fatalf("revoking an unknown device: HTTP %d, want 404", status)
	}
}
