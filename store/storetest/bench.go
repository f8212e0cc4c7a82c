package storetest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/store"
)

var benchRun atomic.Int64

// BenchConfig shapes the load of BenchAppend.
type BenchConfig struct {
	Devices         int  // concurrent grains, each appending one step at a time (default 1000)
	ReadingsPerStep int  // readings per Append (default 1)
	Snapshot        bool // each step also replaces the device's snapshot
	// Fenced appends as a device grain does: the devices are registered first, each one's first
	// Append claims it with an activation epoch and every later one carries that epoch.
	Fenced bool
}

// BenchAppend measures Append as grains drive it: cfg.Devices goroutines, each appending one step
// at a time and waiting for it, until b.N steps are stored in all. It reports rows/s (readings),
// appends/s, and the p50, p99 and max latency of one Append.
func BenchAppend(b *testing.B, s actors.Store, cfg BenchConfig) {
	devices, readingsPerStep := max(cfg.Devices, 1), max(cfg.ReadingsPerStep, 1)
	if cfg.Devices == 0 {
		devices = 1000
	}
	run := benchRun.Add(1)
	ctx := context.Background()
	var next atomic.Int64
	lat := make([][]time.Duration, devices)
	var wg sync.WaitGroup
	var failed atomic.Value
	statser, _ := s.(interface{ Stats() store.CommitStats })
	var before store.CommitStats
	if statser != nil {
		before = statser.Stats()
	}
	idOf := func(d int) string { return fmt.Sprintf("bench-%d-%04d", run, d) }
	if cfg.Fenced {
		for d := range devices {
			if err := s.CreateDevice(ctx, actors.Device{ID: idOf(d), Product: "bench", Secret: []byte("bench-secret-0123456789abcdef"), CreatedAt: time.Now()}); err != nil {
				b.Fatalf("CreateDevice: %v", err)
			}
		}
	}
	b.ResetTimer()
	start := time.Now()
	for d := range devices {
		wg.Go(func() {
			id := idOf(d)
			var seq uint64
			epoch, claimed := uint64(d)+1, false
			for next.Add(1) <= int64(b.N) {
				st := actors.Batch{Readings: make([]actors.Reading, readingsPerStep)}
				if cfg.Fenced {
					st.Epoch, st.Claim, claimed = epoch, !claimed, true
				}
				if cfg.Snapshot {
					st.Snapshot = []byte("snapshot-of-" + id)
				}
				for i := range st.Readings {
					seq++
					st.Readings[i] = actors.Reading{Seq: seq, DeviceTime: time.Now(), ReceivedAt: time.Now(),
						SoilMoisture: 41.5, Temperature: 22.25, TankLevel: 80, SupplyMillivolt: 3300}
				}
				t := time.Now()
				if err := s.Append(ctx, id, st); err != nil {
					failed.CompareAndSwap(nil, err)
					return
				}
				lat[d] = append(lat[d], time.Since(t))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatalf("Append: %v", err)
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	q := func(p float64) float64 {
		if len(all) == 0 {
			return 0
		}
		return float64(all[min(len(all)-1, int(p*float64(len(all))))].Microseconds()) / 1000
	}
	b.ReportMetric(float64(b.N*readingsPerStep)/elapsed.Seconds(), "rows/s")
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "appends/s")
	b.ReportMetric(q(0.50), "p50_ms")
	b.ReportMetric(q(0.99), "p99_ms")
	b.ReportMetric(q(1), "max_ms")
	if statser != nil {
		after := statser.Stats()
		if tx := after.Transactions - before.Transactions; tx > 0 {
			b.ReportMetric(float64(after.Requests-before.Requests)/float64(tx), "appends/tx")
		}
	}
}
