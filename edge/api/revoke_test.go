package api

// Needs the device grain's side of issue 17 (its handling of actorpb.RevokeDevice): on the
// client branch alone the grain does not answer RevokeDevice, and the revoke times out (503).

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/sprout-iot/sprout/edge/edgetest"
	"github.com/sprout-iot/sprout/messages/devicepb"
)

// Revoking an online pot through the API closes its connection with DEVICE_REVOKED at once; the
// device then reads revoked, and a command to it is refused as revoked, not as offline.
func TestRevokingAnOnlinePotThroughTheAPI(t *testing.T) {
	w := newWorld(t, nil)
	secret := w.addDevice(t, "pot-r")
	conn := edgetest.Dial(t, w.edgeAddr, "pot-r", secret)

	status, _, body := w.call(t, http.MethodPost, "/api/v1/devices/pot-r/revoke", nil)
	if status != http.StatusOK {
		t.Fatalf("POST revoke: HTTP %d %s, want 200", status, body)
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

	var st StateJSON
	w.getJSON(t, "/api/v1/devices/pot-r", http.StatusOK, &st)
	if !st.Revoked || st.Online {
		t.Errorf("GET after revoke: %+v, want revoked and offline", st)
	}

	status, _, body = w.call(t, http.MethodPost, "/api/v1/devices/pot-r/commands", map[string]any{"kind": "water", "water_ms": 1000})
	var out struct {
		Outcome string   `json:"outcome"`
		Error   apiError `json:"error"`
	}
	_ = json.Unmarshal(body, &out)
	if status != http.StatusConflict || (out.Outcome != "revoked" && out.Error.Code != "revoked") {
		t.Errorf("a command to the revoked pot: HTTP %d %s, want 409 revoked", status, body)
	}
	// Revoking again is no error; an unknown device is.
	if status, _, body := w.call(t, http.MethodPost, "/api/v1/devices/pot-r/revoke", nil); status != http.StatusOK {
		t.Errorf("revoking again: HTTP %d %s, want 200", status, body)
	}
	if status, _, body := w.call(t, http.MethodPost, "/api/v1/devices/nope/revoke", nil); status != http.StatusNotFound {
		t.Errorf("revoking an unknown device: HTTP %d %s, want 404", status, body)
	}
}
