package api

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/cluster"
	"github.com/sprout-iot/sprout/edge/edgetest"
	"github.com/sprout-iot/sprout/store/sqlite"
)

const testToken = "test-admin-token-0123456789"

// world is one Sprout node with the API, wired as `sprout serve` wires it: the embedded SQLite
// store, a cluster member hosting device grains, the device edge, and the API on an HTTP server.
type world struct {
	store    actors.Store
	member   *cluster.Member
	edgeAddr string
	url      string
}

// newWorld starts the node on st (a fresh SQLite store when nil).
func newWorld(t *testing.T, st actors.Store) *world {
	t.Helper()
	if st == nil {
		s, err := sqlite.Open(t.TempDir(), sqlite.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		st = s
	}
	w := &world{store: st}
	log := edgetest.Quiet()
	users, _ := st.(actors.UserStore)
	w.member, w.edgeAddr = edgetest.StartNode(t, log,
		actors.NewDeviceKind(actors.DeviceOptions{Store: st, Users: users, Logger: log}))
	h := New(w.member.Cluster, st, Options{AdminToken: testToken, Logger: log, Self: w.member.Address()})
	w.url = edgetest.Serve(t, h.Routes)
	return w
}

// call sends a request to the API with the admin token and returns the status, the headers and
// the body.
func (w *world) call(t *testing.T, method, path string, body any) (int, http.Header, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, w.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	c := &http.Client{Timeout: 30 * time.Second}
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, res.Header, b
}

// getJSON GETs path and decodes its JSON answer into v, failing unless it is status want.
func (w *world) getJSON(t *testing.T, path string, want int, v any) {
	t.Helper()
	status, _, body := w.call(t, http.MethodGet, path, nil)
	if status != want {
		t.Fatalf("GET %s: HTTP %d, want %d: %s", path, status, want, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("GET %s: HTTP %d with a body that is not JSON (%v): %q", path, status, err, body)
	}
}

func (w *world) addDevice(t *testing.T, id string) []byte {
	t.Helper()
	return edgetest.AddDevice(t, w.store, id, "sprout-pot")
}

var bg = context.Background()
