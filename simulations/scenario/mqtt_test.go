package scenario_test

import (
	"context"
	"testing"
	"time"

	"github.com/sprout-iot/sprout/simulations/plant"
	"github.com/sprout-iot/sprout/simulations/report"
	"github.com/sprout-iot/sprout/simulations/scenario"
)

// TestScenariosOverMQTT: the steady and command-burst scenarios pass with every plant on the
// node's MQTT listener (`sprout scenario run --transport mqtt`).
func TestScenariosOverMQTT(t *testing.T) {
	for _, f := range []string{"../scenarios/steady.yaml", "../scenarios/command-burst.yaml"} {
		sc, err := scenario.Load(f)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(sc.Name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			rep, err := scenario.Run(ctx, sc, scenario.Options{Short: true, Binary: sproutBin, Transport: plant.TransportMQTT})
			if rep != nil {
				t.Logf("%s over MQTT:\n%s", sc.Name, rep.Summary())
			}
			if err != nil {
				t.Fatal(err)
			}
			if rep.Verdict != report.Pass || rep.Totals.FramesAcked == 0 {
				t.Fatalf("verdict %s, %d frames acked", rep.Verdict, rep.Totals.FramesAcked)
			}
		})
	}
}
