package console

import (
	"context"
	"math"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sprout-iot/sprout/actors/actortest"
)

// A sensor that gave no value (NaN) or an absurd one (±Inf) shows as "–" on the device page,
// never as NaN or Inf, and the page still renders.
func TestNonFiniteReadingsShowAsNoValue(t *testing.T) {
	w := newWorld(t, nil)
	secret := w.addDevice(t, "pot-nan")
	p := w.connect(t, "pot-nan", secret)
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	p.Report(t, nan, 22.5, 80)
	p.Report(t, 40, inf, 80)
	p.Report(t, 39, 22, -inf)
	actortest.Eventually(t, 10*time.Second, "three readings stored", func() bool {
		rs, _ := w.store.Readings(context.Background(), "pot-nan", time.Now().Add(-time.Hour), time.Now().Add(time.Hour), 10)
		return len(rs) == 3
	})
	c, _ := w.signIn(t, testToken)
	for _, path := range []string{"/console/devices/pot-nan", "/console/"} {
		status, body := get(t, c, w.url+path)
		if status != http.StatusOK {
			t.Fatalf("GET %s: HTTP %d", path, status)
		}
		shown := codeBlock.ReplaceAllString(body, "") // the event log shows stored bodies as they are
		for _, bad := range []string{"NaN", "Inf"} {
			if strings.Contains(shown, bad) {
				t.Errorf("GET %s shows %q:\n%s", path, bad, body)
			}
		}
	}
	_, body := get(t, c, w.url+"/console/devices/pot-nan")
	if !strings.Contains(body, "<td>–</td>") || !strings.Contains(body, "<dd>–</dd>") {
		t.Errorf("the device page does not show the missing values as –:\n%s", body)
	}
}

var codeBlock = regexp.MustCompile(`(?s)<code>.*?</code>`)
