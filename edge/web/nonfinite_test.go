package web

import (
	"context"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sprout-iot/sprout/actors/actortest"
	"github.com/sprout-iot/sprout/messages/devicepb"
)

// A sensor that gave no value (NaN) or an absurd one (±Inf) shows as "–" on the plant cards,
// the plant page and its chart, never as NaN or Inf.
func TestNonFiniteReadingsShowAsNoValue(t *testing.T) {
	w := newWorld(t, nil)
	secret := w.addPot(t, "pot-nan", "oAlice")
	pot := w.connect(t, "pot-nan", secret, devicepb.CommandStatus_COMMAND_STATUS_DONE)
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	pot.Report(t, 40, inf, -inf)
	pot.Report(t, nan, 22, 80)
	pot.Report(t, nan, -inf, nan)
	actortest.Eventually(t, 10*time.Second, "three readings stored", func() bool {
		rs, _ := w.store.Readings(context.Background(), "pot-nan", time.Now().Add(-time.Hour), time.Now().Add(time.Hour), 10)
		return len(rs) == 3
	})
	c := w.signIn(t, "oAlice")
	for _, path := range []string{"/app/", "/app/plants/pot-nan", "/app/?lang=en"} {
		status, body := get(t, c, w.url+path)
		if status != http.StatusOK {
			t.Fatalf("GET %s: HTTP %d", path, status)
		}
		for _, bad := range []string{"NaN", "Inf"} {
			if strings.Contains(body, bad) {
				t.Errorf("GET %s shows %q:\n%s", path, bad, body)
			}
		}
		if !strings.Contains(body, `data-f="moisture">–<`) || !strings.Contains(body, `data-f="temperature">–<`) {
			t.Errorf("GET %s does not show the missing values as –:\n%s", path, body)
		}
	}
}
