package api

import (
	"encoding/json"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sprout-iot/sprout/actors/actortest"
	"github.com/sprout-iot/sprout/edge/edgetest"
)

// A sensor that gave no value (NaN) or an absurd one (±Inf) is stored and acked; the API shows
// it as null and keeps answering JSON.
func TestNonFiniteReadingsReadAsNull(t *testing.T) {
	w := newWorld(t, nil)
	secret := w.addDevice(t, "pot-nan")
	pot := edgetest.Connect(t, w.edgeAddr, "pot-nan", secret, edgetest.PotOptions{})
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	pot.Report(t, 41, 22.5, 80)
	pot.Report(t, nan, 22.5, 80)
	pot.Report(t, 40, inf, 80)
	pot.Report(t, 39, 22, -inf)

	var rs struct {
		Readings []map[string]any `json:"readings"`
	}
	actortest.Eventually(t, 10*time.Second, "four readings stored", func() bool {
		w.getJSON(t, "/api/v1/devices/pot-nan/readings", http.StatusOK, &rs)
		return len(rs.Readings) == 4
	})
	for i, key := range []string{"", "soil_moisture_pct", "temperature_c", "tank_level_pct"} {
		for _, k := range []string{"soil_moisture_pct", "temperature_c", "tank_level_pct"} {
			v, ok := rs.Readings[i][k]
			if !ok {
				t.Errorf("reading %d has no %s: %v", i, k, rs.Readings[i])
			}
			if (k == key) != (v == nil) {
				t.Errorf("reading %d: %s = %v (only %q is non-finite, and reads null)", i, k, v, key)
			}
		}
	}
	var st struct {
		Latest map[string]any `json:"latest"`
	}
	w.getJSON(t, "/api/v1/devices/pot-nan", http.StatusOK, &st)
	if v, ok := st.Latest["tank_level_pct"]; !ok || v != nil || st.Latest["soil_moisture_pct"] != 39.0 {
		t.Errorf("latest reading %v, want tank_level_pct null and the rest as sent", st.Latest)
	}
	var bs struct {
		Buckets []map[string]any `json:"buckets"`
	}
	w.getJSON(t, "/api/v1/devices/pot-nan/readings?bucket=1h", http.StatusOK, &bs)
	if len(bs.Buckets) == 0 {
		t.Errorf("no buckets")
	}
}

// A query parameter the API cannot use is refused with 400 and a message saying why, never
// ignored.
func TestBadQueryParametersAreRefused(t *testing.T) {
	w := newWorld(t, nil)
	w.addDevice(t, "pot-1")
	for _, path := range []string{
		"/api/v1/devices?limit=ten",
		"/api/v1/devices?limit=0",
		"/api/v1/devices?limit=1001",
		"/api/v1/devices?limit=5&limit=6",
		"/api/v1/devices?after=pot-0&sort=desc",
		"/api/v1/devices/pot-1/readings?limit=abc",
		"/api/v1/devices/pot-1/readings?limit=-1",
		"/api/v1/devices/pot-1/readings?limit=10001",
		"/api/v1/devices/pot-1/readings?limit=10&bucket=1h",
		"/api/v1/devices/pot-1/readings?form=2024-01-01T00:00:00Z",
		"/api/v1/devices/pot-1/readings?from=yesterday",
		"/api/v1/devices/pot-1/readings?bucket=1s",
		"/api/v1/devices/pot-1/events?limit=lots",
		"/api/v1/devices/pot-1/events?from=2024-02-01T00:00:00Z&to=2024-01-01T00:00:00Z",
		"/api/v1/devices/pot-1?verbose=1",
		"/api/v1/devices?after=a%00b",
		"/api/v1/devices/pot-1/readings?bucket=1m&from=2000-01-01T00:00:00Z",
	} {
		status, _, body := w.call(t, http.MethodGet, path, nil)
		var e struct {
			Error apiError `json:"error"`
		}
		if status != http.StatusBadRequest || json.Unmarshal(body, &e) != nil || e.Error.Message == "" {
			t.Errorf("GET %s: HTTP %d %s, want 400 with a message", path, status, body)
		}
	}
	for _, path := range []string{
		"/api/v1/devices?limit=1",
		"/api/v1/devices/pot-1/readings?limit=5&from=2024-01-01T00:00:00Z",
		"/api/v1/devices/pot-1/events?limit=5",
	} {
		if status, _, body := w.call(t, http.MethodGet, path, nil); status != http.StatusOK {
			t.Errorf("GET %s: HTTP %d %s, want 200", path, status, body)
		}
	}
	var l struct {
		Devices []DeviceJSON `json:"devices"`
	}
	w.addDevice(t, "pot-2")
	w.getJSON(t, "/api/v1/devices?limit=1", http.StatusOK, &l)
	if len(l.Devices) != 1 {
		t.Errorf("limit=1 listed %d devices", len(l.Devices))
	}
}

// Device ids follow one rule everywhere: 1..64 bytes of UTF-8 without spaces, slashes or
// control characters, C1 (U+0080..U+009F, such as U+009B, a terminal's CSI) included.
func TestDeviceIDsWithControlCharactersAreRefused(t *testing.T) {
	w := newWorld(t, nil)
	for _, id := range []string{"pot\u009b2J", "pot\u0085", "pot\u0080", "pot\u009f", "pot\x1b[2J", "pot\x7f", "pot 1", "pot/1", "pot\t1", "pot\u00a01", strings.Repeat("x", 65)} {
		status, _, body := w.call(t, http.MethodPost, "/api/v1/devices", map[string]string{"id": id})
		if status != http.StatusBadRequest || !strings.Contains(string(body), "invalid_device") {
			t.Errorf("POST /api/v1/devices with id %q: HTTP %d %s, want 400 invalid_device", id, status, body)
		}
	}
	for _, id := range []string{"pot-1", "植物-1", "pot_ü.1", strings.Repeat("x", 64)} {
		if status, _, body := w.call(t, http.MethodPost, "/api/v1/devices", map[string]string{"id": id}); status != http.StatusCreated {
			t.Errorf("POST /api/v1/devices with id %q: HTTP %d %s, want 201", id, status, body)
		}
	}
}
