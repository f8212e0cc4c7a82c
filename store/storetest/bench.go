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
)

var benchRun atomic.Int64

// BenchAppend measures Append as grains drive it: devices goroutines, each appending one step at a
// time (readingsPerStep readings and a snapshot) and waiting for it, until b.N steps are stored in
// all. It reports rows/s (readings), steps/s, and the p50, p99 and max latency of one Append.
func BenchAppend(b *testing.B, s actors.Store, devices, readingsPerStep int) {
	run := benchRun.Add(1)
	ctx := context.Background()
	var next atomic.Int64
	lat := make([][]time.Duration, devices)
	var wg sync.WaitGroup
	var failed atomic.Value
	b.ResetTimer()
	start := time.Now()
	for d := range devices {
		wg.Go(func() {
			id := fmt.Sprintf("bench-%d-%04d", run, d)
			var seq uint64
			for next.Add(1) <= int64(b.N) {
				st := actors.Batch{Readings: make([]actors.Reading, readingsPerStep), Snapshot: []byte("snapshot-of-" + id)}
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
}
