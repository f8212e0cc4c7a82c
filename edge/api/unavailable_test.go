package api

// Needs the device grain's side of issue 17 (DeviceState.error and OUTCOME_UNAVAILABLE when it
// cannot load its state): on the client branch alone the grain still answers "unknown".

import (
	"net/http"
	"strings"
	"testing"

	"github.com/sprout-iot/sprout/edge/edgetest"
	"github.com/sprout-iot/sprout/store/sqlite"
)

// A device whose grain cannot load its state during a storage blip is unavailable (503 with
// Retry-After), not unknown (404).
func TestDeviceWhoseGrainCannotLoadIsUnavailableNotUnknown(t *testing.T) {
	s, err := sqlite.Open(t.TempDir(), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	blip := edgetest.NewBlipStore(s)
	w := newWorld(t, blip)
	w.addDevice(t, "pot-blip")
	blip.Down.Store(true)
	for _, c := range []struct{ method, path string }{
		{http.MethodGet, "/api/v1/devices/pot-blip"},
		{http.MethodPost, "/api/v1/devices/pot-blip/commands"},
	} {
		status, h, body := w.call(t, c.method, c.path, map[string]any{"kind": "read_now"})
		if status != http.StatusServiceUnavailable || h.Get("Retry-After") == "" || !strings.Contains(string(body), `"unavailable"`) {
			t.Errorf("%s %s during a storage blip: HTTP %d (Retry-After %q) %s, want 503 unavailable with Retry-After",
				c.method, c.path, status, h.Get("Retry-After"), body)
		}
	}
	blip.Down.Store(false)
	if status, _, body := w.call(t, http.MethodGet, "/api/v1/devices/pot-blip", nil); status != http.StatusOK {
		t.Errorf("after the blip: HTTP %d %s, want 200", status, body)
	}
	if status, _, body := w.call(t, http.MethodGet, "/api/v1/devices/pot-none", nil); status != http.StatusNotFound {
		t.Errorf("an unknown device: HTTP %d %s, want 404", status, body)
	}
}
