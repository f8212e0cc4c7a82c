package fleet_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/sprout-iot/sprout/simulations/fleet"
	"github.com/sprout-iot/sprout/simulations/plant"
)

// Run 1000 plants from `sprout device add --count 1000 --json > devices.json` against two edges,
// each keeping 8 readings in flight, for a minute.
func ExampleRun() {
	creds, err := fleet.LoadCredentials("devices.json")
	if err != nil {
		log.Fatal(err)
	}
	r, err := fleet.Run(context.Background(), fleet.Options{
		Devices:        creds,
		Servers:        []string{"127.0.0.1:7070", "127.0.0.1:7071"},
		ReportInterval: plant.Flood,
		Window:         8,
		Duration:       time.Minute,
		Progress: func(s fleet.Snapshot) {
			fmt.Printf("%3.0fs %6d connected %8.0f acked/s p99 %v\n", s.Elapsed.Seconds(), s.Connected, s.AckedPerSecond, s.P99)
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(r.Summary())
}
