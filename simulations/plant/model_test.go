package plant

import (
	"math/rand/v2"
	"testing"
	"time"
)

func TestSoilDriesFasterOnWarmDaysThanAtNight(t *testing.T) {
	p := ModelParams{}.withDefaults()
	noon := time.Date(2025, 6, 1, 13, 0, 0, 0, time.UTC)
	night := time.Date(2025, 6, 1, 1, 0, 0, 0, time.UTC)
	loss := func(from time.Time) float64 {
		s := soil{p: p, at: from, moisture: 60}
		s.advance(from.Add(3 * time.Hour))
		return 60 - s.moisture
	}
	if day, dark := loss(noon), loss(night); day < 2*dark || dark <= 0 {
		t.Fatalf("3 h of drying: %.2f %% by day, %.2f %% by night; want day at least twice night", day, dark)
	}
	s := soil{p: p, at: night, moisture: 60}
	if warm, cool := s.temperature(noon.Add(2*time.Hour)), s.temperature(night.Add(2*time.Hour)); warm <= cool+5 {
		t.Fatalf("15:00 is %.1f °C, 03:00 is %.1f °C", warm, cool)
	}
}

func TestAWeekWithoutWaterDriesThePot(t *testing.T) {
	start := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	s := soil{p: ModelParams{}.withDefaults(), at: start, moisture: 60}
	s.advance(start.Add(7 * 24 * time.Hour))
	if s.moisture > 20 {
		t.Fatalf("after a week moisture is %.1f %%, want below the default alert of 20", s.moisture)
	}
}

func TestWateringRaisesMoistureAndEmptiesTheTank(t *testing.T) {
	s := soil{p: ModelParams{}.withDefaults(), at: time.Now(), moisture: 30, tank: 50}
	ml := s.water(10000) // 100 ml
	if ml != 100 || s.moisture != 50 || s.tank != 40 {
		t.Fatalf("watered %.0f ml: moisture %.1f, tank %.1f; want 100 ml, 50 %%, 40 %%", ml, s.moisture, s.tank)
	}
	s.tank = 1 // 10 ml left
	if ml := s.water(10000); ml != 10 || s.tank != 0 {
		t.Fatalf("nearly empty tank gave %.0f ml and left %.1f %%", ml, s.tank)
	}
}

func TestSensorNoiseIsCentredOnTheTruth(t *testing.T) {
	s := soil{p: ModelParams{NoisePct: 2}.withDefaults(), at: time.Now(), moisture: 40, tank: 70}
	rng := rand.New(rand.NewPCG(1, 2))
	var sum float64
	for i := 0; i < 2000; i++ {
		m, _, _, _ := s.reading(rng)
		sum += m
	}
	if mean := sum / 2000; mean < 39.7 || mean > 40.3 {
		t.Fatalf("mean of noisy readings %.2f, want about 40", mean)
	}
}

func TestHistogramQuantilesAreWithinThreePercent(t *testing.T) {
	var h Histogram
	for i := 1; i <= 100000; i++ {
		h.Record(time.Duration(i) * time.Microsecond)
	}
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		want := q * 100000 * float64(time.Microsecond)
		got := float64(h.Quantile(q))
		if got < want*0.97 || got > want*1.04 {
			t.Fatalf("q%.3f = %v, want about %v", q, time.Duration(got), time.Duration(want))
		}
	}
	if l := h.Latency(); l.Max != 100*time.Millisecond || l.Count != 100000 {
		t.Fatalf("max %v count %d", l.Max, l.Count)
	}
	for i := 0; i < histBuckets; i++ {
		if histIndex(histUpper(i)) != i {
			t.Fatalf("bucket %d: upper %d maps to %d", i, histUpper(i), histIndex(histUpper(i)))
		}
	}
}

func TestHistogramSinceCountsOnlyLaterSamples(t *testing.T) {
	var h Histogram
	for i := 0; i < 1000; i++ {
		h.Record(time.Millisecond)
	}
	m := h.Mark()
	for i := 0; i < 100; i++ {
		h.Record(50 * time.Millisecond)
	}
	l := h.Since(m)
	if l.Count != 100 || l.P50 < 48*time.Millisecond || l.P50 > 50*time.Millisecond || l.Max != 50*time.Millisecond {
		t.Fatalf("since the mark: %+v; want 100 samples of 50ms", l)
	}
	if all := h.Since(nil); all.Count != 1100 || all.P50 > 1040*time.Microsecond {
		t.Fatalf("all: %+v", all)
	}
	if l := h.Since(h.Mark()); l.Count != 0 {
		t.Fatalf("nothing after the last mark: %+v", l)
	}
}

func TestRingDropsTheOldestWhenFull(t *testing.T) {
	r := ring{limit: 3}
	var dropped []uint64
	for seq := uint64(1); seq <= 200; seq++ {
		if d, ok := r.push(entry{seq: seq}); ok {
			dropped = append(dropped, d.seq)
		}
	}
	if r.len() != 3 || r.at(0).seq != 198 || len(dropped) != 197 || dropped[0] != 1 {
		t.Fatalf("len %d, first %d, dropped %d", r.len(), r.at(0).seq, len(dropped))
	}
	if i, ok := r.find(199); !ok || i != 1 {
		t.Fatalf("find(199) = %d, %v", i, ok)
	}
	if _, ok := r.find(197); ok {
		t.Fatal("found a dropped seq")
	}
}
