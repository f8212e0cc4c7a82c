package console

import (
	"context"
	"crypto/rand"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/edge/edgetest"
	"github.com/sprout-iot/sprout/store/sqlite"
)

// The operations page lists pots whose configuration drifts (from the store) and queues a command
// for every pot of a product through their grains.
func TestOperationsPageShowsDriftAndQueuesForAProduct(t *testing.T) {
	st, err := sqlite.Open(t.TempDir(), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	log := edgetest.Quiet()
	m, _ := edgetest.StartNode(t, log, actors.NewDeviceKind(actors.DeviceOptions{Store: st, Users: st, Logger: log}))
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	h := New(Options{Cluster: m.Cluster, Store: st, AdminToken: testToken, CookieKey: key, Logger: log})
	w := &world{url: edgetest.Serve(t, h.Routes)}
	edgetest.AddDevice(t, st, "v2-a", "pot-v2")
	edgetest.AddDevice(t, st, "v2-b", "pot-v2")
	edgetest.AddDevice(t, st, "v1-a", "pot-v1")
	since := time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC)
	if err := st.ReportConfig(context.Background(), actors.ConfigReport{DeviceID: "v2-b", Product: "pot-v2",
		Desired: []byte(`{"report_interval_s":120}`), DriftSince: since, LastError: "interval too long", UpdatedAt: since}); err != nil {
		t.Fatal(err)
	}

	c, _ := w.signIn(t, testToken)
	status, body := get(t, c, w.url+"/console/operations")
	if status != http.StatusOK || !strings.Contains(body, "v2-b") || !strings.Contains(body, "interval too long") ||
		!strings.Contains(body, "2026-05-01 16:00:00") {
		t.Fatalf("operations page (HTTP %d) does not show v2-b drifting since 16:00 CST with its reason:\n%s", status, body)
	}
	if strings.Contains(body, `href="/console/devices/v2-a"`) {
		t.Errorf("v2-a does not drift but is listed")
	}
	form := url.Values{"csrf": {csrfOf(t, body)}, "product": {"pot-v2"}, "kind": {"read_now"}, "ttl_h": {"2"}}
	status, body = post(t, c, w.url+"/console/operations/commands", form)
	if status != http.StatusOK || !strings.Contains(body, "Queued</b> 2") {
		t.Fatalf("queueing for pot-v2 (HTTP %d):\n%s", status, body)
	}
	dc := actors.NewDeviceClient(m.Cluster, actors.ClientOptions{})
	for id, want := range map[string]int{"v2-a": 1, "v2-b": 1, "v1-a": 0} {
		s, err := dc.State(context.Background(), id)
		if err != nil || len(s.QueuedCommands) != want {
			t.Errorf("%s holds %d queued commands (%v), want %d", id, len(s.GetQueuedCommands()), err, want)
		}
	}
	form.Set("ttl_h", "999")
	if status, _ = post(t, c, w.url+"/console/operations/commands", form); status != http.StatusBadRequest {
		t.Errorf("a ttl of 999 h: HTTP %d, want 400", status)
	}
}
