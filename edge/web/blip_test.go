package web

// Needs the device grain's side of issue 17 (DeviceState.error UNAVAILABLE when it cannot load
// its state): on the client branch alone the grain answers "not bound" during the blip, and the
// plant vanishes.

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/edge/edgetest"
	"github.com/sprout-iot/sprout/store/memory"
)

// During a storage blip a user's plants stay on their page (shown without live state), and the
// plant's own page answers 503 with Retry-After, not 404.
func TestPlantsStayDuringAStorageBlip(t *testing.T) {
	var blip *edgetest.BlipStore
	w := newWorldOn(t, func(st *memory.Store) *edgetest.BlipStore {
		blip = edgetest.NewBlipStore(st)
		return blip
	}, nil)
	// A pot bound in the store whose grain is not active yet: it activates during the blip.
	edgetest.AddDevice(t, w.store, "pot-blip", "pot")
	if err := w.store.Bind(context.Background(), actors.Binding{DeviceID: "pot-blip", OpenID: "oAlice", Role: "owner", BoundAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	blip.Down.Store(true)
	c := w.signIn(t, "oAlice")

	status, body := get(t, c, w.url+"/app/?lang=en")
	if status != http.StatusOK || !strings.Contains(body, "pot-blip") {
		t.Errorf("the plants page during a storage blip: HTTP %d, pot-blip missing:\n%s", status, body)
	}
	res, err := c.Get(w.url + "/app/plants/pot-blip")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" {
		t.Errorf("the plant's page during a storage blip: HTTP %d (Retry-After %q), want 503 with Retry-After",
			res.StatusCode, res.Header.Get("Retry-After"))
	}
	blip.Down.Store(false)
	if status, _ := get(t, c, w.url+"/app/plants/pot-blip"); status != http.StatusOK {
		t.Errorf("after the blip the plant's page answers %d, want 200", status)
	}
}
