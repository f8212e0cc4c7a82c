package storetest

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/store"
)

// layoutTests are what a store laid out for append (a log of commits, folded later into
// per-device chunks: store/sqlite since schema 9; time-partitioned tables on Postgres) makes
// risky: readings on both sides of a fold, seqs below the device's highest, aggregates of merged
// parts with NaNs, hour boundaries, and expiry of whole chunks. They use only actors.Store and
// store.Maintainer; Maintain with a Now before every reading expires and rolls up nothing, and is
// how a test asks a store to fold what it holds (a store may also fold at any other time).
var layoutTests = []struct {
	name string
	fn   func(*testing.T, actors.Store)
}{
	{"DuplicateSeqsAcrossAFoldAreSkipped", testDuplicatesAcrossFold},
	{"SeqsBelowTheHighestAreStoredOnce", testSeqsBelowMax},
	{"BucketsOfPartsWithNaNsMatchTheReadings", testBucketsOfParts},
	{"QueriesAcrossHourBoundaries", testHourBoundaries},
	{"ExpiryOfFoldedReadingsKeepsTheLatest", testExpiryOfFolded},
}

func runLayoutTests(t *testing.T, open Opener) {
	for _, tt := range layoutTests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, open(t)) })
	}
}

// fold asks the store to fold what it holds, if it is a Maintainer; nothing expires.
func fold(t *testing.T, s actors.Store) {
	t.Helper()
	if m, ok := s.(store.Maintainer); ok {
		maintain(t, m, store.RetentionOptions{Now: hr(-48, 0)})
	}
}

// rd is a reading of seq received at t, with values derived from seq (NaN moisture when
// seq%5 == 0, NaN temperature when seq%7 == 0).
func rd(seq uint64, t time.Time) actors.Reading {
	r := actors.Reading{Seq: seq, ReceivedAt: t, DeviceTime: t.Add(-time.Second), SoilMoisture: float32(seq%50) + 0.5,
		Temperature: 10 + float32(seq%13)/2, TankLevel: 100 - float32(seq%90), SupplyMillivolt: 3000 + uint32(seq)}
	if seq%5 == 0 {
		r.SoilMoisture = float32(math.NaN())
	}
	if seq%7 == 0 {
		r.Temperature = float32(math.NaN())
	}
	return r
}

func byReceived(rs []actors.Reading) []actors.Reading {
	out := slices.Clone(rs)
	slices.SortStableFunc(out, func(a, b actors.Reading) int {
		if c := a.ReceivedAt.Compare(b.ReceivedAt); c != 0 {
			return c
		}
		return cmp.Compare(a.Seq, b.Seq)
	})
	return out
}

// wantBuckets computes what Buckets must return for readings stored raw (nothing expired).
func wantBuckets(rs []actors.Reading, from, to time.Time, width time.Duration) []actors.Bucket {
	type part struct {
		count       int
		n           [3]int
		lo, sum, hi [3]float64
	}
	parts := map[int64]*part{}
	for _, r := range rs {
		if r.ReceivedAt.Before(from) || !r.ReceivedAt.Before(to) {
			continue
		}
		k := int64(r.ReceivedAt.Sub(from) / width)
		p := parts[k]
		if p == nil {
			p = &part{}
			parts[k] = p
		}
		p.count++
		for i, f := range []float32{r.SoilMoisture, r.Temperature, r.TankLevel} {
			if f != f {
				continue
			}
			v := float64(f)
			if p.n[i] == 0 || v < p.lo[i] {
				p.lo[i] = v
			}
			if p.n[i] == 0 || v > p.hi[i] {
				p.hi[i] = v
			}
			p.n[i]++
			p.sum[i] += v
		}
	}
	var keys []int64
	for k := range parts {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var out []actors.Bucket
	nan := float32(math.NaN())
	for _, k := range keys {
		p := parts[k]
		var v [9]float32
		for i := range 3 {
			v[3*i], v[3*i+1], v[3*i+2] = nan, nan, nan
			if p.n[i] > 0 {
				v[3*i], v[3*i+1], v[3*i+2] = float32(p.lo[i]), float32(p.sum[i]/float64(p.n[i])), float32(p.hi[i])
			}
		}
		out = append(out, actors.Bucket{Start: from.Add(time.Duration(k) * width), Count: p.count,
			MoistureMin: v[0], MoistureAvg: v[1], MoistureMax: v[2], TempMin: v[3], TempAvg: v[4], TempMax: v[5],
			TankMin: v[6], TankAvg: v[7], TankMax: v[8]})
	}
	return out
}

// checkQueries compares Readings and Buckets over several ranges, widths and alignments with
// what the readings stored (all raw) give.
func checkQueries(t *testing.T, s actors.Store, id string, stored []actors.Reading) {
	t.Helper()
	ctx := ctxFor(t)
	sorted := byReceived(stored)
	ranges := [][2]time.Time{
		{hr(-1, 0), hr(12, 0)},
		{hr(0, 0), hr(1, 0)},
		{hr(1, 0).Add(-time.Microsecond), hr(2, 0).Add(time.Microsecond)},
		{hr(0, 30), hr(3, 30)},
		{hr(2, 0), hr(2, 0).Add(time.Microsecond)},
	}
	for _, r := range ranges {
		var want []actors.Reading
		for _, x := range sorted {
			if !x.ReceivedAt.Before(r[0]) && x.ReceivedAt.Before(r[1]) {
				want = append(want, x)
			}
		}
		got, err := s.Readings(ctx, id, r[0], r[1], 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(fmt.Sprintf("readings %s..%s", r[0].Format("15:04:05.000000"), r[1].Format("15:04:05.000000")), func(t *testing.T) {
			checkReadings(t, got, want)
		})
		for _, limit := range []int{1, 3, len(want) - 1} {
			if limit <= 0 || limit >= len(want) {
				continue
			}
			got, err := s.Readings(ctx, id, r[0], r[1], limit)
			if err != nil {
				t.Fatal(err)
			}
			checkReadings(t, got, want[:limit])
		}
	}
	for _, q := range []struct {
		from, to time.Time
		width    time.Duration
	}{
		{hr(0, 0), hr(12, 0), time.Hour},
		{hr(0, 0), hr(12, 0), 2 * time.Hour},
		{hr(-3, 0), hr(21, 0), 24 * time.Hour},
		{hr(0, 0), hr(12, 0), 15 * time.Minute},
		{hr(0, 30), hr(8, 30), time.Hour},
		{hr(0, 0).Add(time.Microsecond), hr(6, 0), time.Hour},
		{hr(1, 0), hr(2, 30), 90 * time.Minute},
		{hr(0, 0), hr(4, 0), 7 * time.Minute},
	} {
		t.Run(fmt.Sprintf("buckets %s..%s by %s", q.from.Format("15:04:05.000000"), q.to.Format("15:04"), q.width), func(t *testing.T) {
			checkBuckets(t, mustBuckets(t, s, id, q.from, q.to, q.width), wantBuckets(stored, q.from, q.to, q.width))
		})
	}
}

func testDuplicatesAcrossFold(t *testing.T, s actors.Store) {
	ctx := ctxFor(t)
	var stored []actors.Reading
	for b := range 4 {
		var batch []actors.Reading
		for i := range 10 {
			seq := uint64(b*10 + i + 1)
			batch = append(batch, rd(seq, hr(0, 0).Add(time.Duration(seq)*3*time.Minute)))
		}
		mustAppend(t, s, "pot-1", actors.Batch{Readings: batch})
		stored = append(stored, batch...)
	}
	fold(t, s) // 1..40 folded
	var tail []actors.Reading
	for seq := uint64(41); seq <= 50; seq++ {
		tail = append(tail, rd(seq, hr(0, 0).Add(time.Duration(seq)*3*time.Minute)))
	}
	mustAppend(t, s, "pot-1", actors.Batch{Readings: tail}) // 41..50 in the log
	stored = append(stored, tail...)
	resend := func(seq uint64) actors.Reading {
		r := rd(seq, hr(11, 0))
		r.SoilMoisture, r.SupplyMillivolt = 99, 1
		return r
	}
	// Resends from the folded part (1, 20, 40), from the log (45, 50), new ones (51, 53, 52,
	// 51 twice), all in one append, and again in one after a fold.
	batch := []actors.Reading{resend(1), resend(20), resend(40), resend(45), resend(50),
		rd(51, hr(9, 0)), rd(53, hr(9, 2)), rd(52, hr(9, 1)), resend(51), resend(53)}
	mustAppend(t, s, "pot-1", actors.Batch{Readings: batch})
	stored = append(stored, rd(51, hr(9, 0)), rd(53, hr(9, 2)), rd(52, hr(9, 1)))
	fold(t, s)
	mustAppend(t, s, "pot-1", actors.Batch{Readings: []actors.Reading{resend(1), resend(45), resend(52), resend(53)}})
	mustAppend(t, s, "pot-1", actors.Batch{Readings: []actors.Reading{resend(2)}})
	got, err := s.Readings(ctx, "pot-1", hr(-1, 0), hr(12, 0), 0)
	if err != nil {
		t.Fatal(err)
	}
	checkReadings(t, got, byReceived(stored))
	rec, err := s.LoadDevice(ctx, "pot-1")
	if err != nil || rec.LastSeq != 53 || rec.Latest == nil || !sameReading(*rec.Latest, rd(53, hr(9, 2))) {
		t.Fatalf("LoadDevice = %+v (latest %+v), %v; want seq 53 as sent first", rec, rec.Latest, err)
	}
	checkQueries(t, s, "pot-1", stored)
}

func testSeqsBelowMax(t *testing.T, s actors.Store) {
	ctx := ctxFor(t)
	var stored []actors.Reading
	at := func(seq uint64) time.Time { return hr(0, 0).Add(time.Duration(seq) * 4 * time.Minute) }
	var even, odd []actors.Reading
	for seq := uint64(1); seq <= 40; seq++ {
		if seq%2 == 0 {
			even = append(even, rd(seq, at(seq)))
		} else {
			odd = append(odd, rd(seq, at(seq)))
		}
	}
	mustAppend(t, s, "pot-2", actors.Batch{Readings: even[:10]})
	fold(t, s)
	mustAppend(t, s, "pot-2", actors.Batch{Readings: even[10:]})
	// Every odd seq is below the highest stored (40): each is new and must be stored.
	mustAppend(t, s, "pot-2", actors.Batch{Readings: odd[:10]})
	fold(t, s)
	mustAppend(t, s, "pot-2", actors.Batch{Readings: odd[10:]})
	stored = append(append(stored, even...), odd...)
	// All of them again, in one append and then one by one: nothing changes.
	mustAppend(t, s, "pot-2", actors.Batch{Readings: stored})
	for _, r := range []actors.Reading{odd[0], even[0], odd[19], even[19]} {
		r.TankLevel = -1
		mustAppend(t, s, "pot-2", actors.Batch{Readings: []actors.Reading{r}})
	}
	got, err := s.Readings(ctx, "pot-2", hr(-1, 0), hr(12, 0), 0)
	if err != nil {
		t.Fatal(err)
	}
	checkReadings(t, got, byReceived(stored))
	if rec, err := s.LoadDevice(ctx, "pot-2"); err != nil || rec.LastSeq != 40 || rec.Latest == nil || rec.Latest.Seq != 40 {
		t.Fatalf("LoadDevice = %+v, %v; want seq 40", rec, err)
	}
	checkQueries(t, s, "pot-2", stored)
}

func testBucketsOfParts(t *testing.T, s actors.Store) {
	nan := float32(math.NaN())
	var stored []actors.Reading
	seq := uint64(0)
	add := func(h, min int, moist, temp, tank float32) actors.Reading {
		seq++
		r := actors.Reading{Seq: seq, ReceivedAt: hr(h, min), SoilMoisture: moist, Temperature: temp, TankLevel: tank, SupplyMillivolt: 3300}
		stored = append(stored, r)
		return r
	}
	// Hour 0 in three parts: moisture all NaN; moisture set; moisture and temperature NaN.
	mustAppend(t, s, "pot-3", actors.Batch{Readings: []actors.Reading{add(0, 1, nan, 20, 50), add(0, 10, nan, 21, 51)}})
	fold(t, s)
	mustAppend(t, s, "pot-3", actors.Batch{Readings: []actors.Reading{add(0, 20, 30, 22, 52), add(0, 29, 10, 23, 53)}})
	fold(t, s)
	mustAppend(t, s, "pot-3", actors.Batch{Readings: []actors.Reading{add(0, 45, nan, nan, 54)}})
	// Hour 1: moisture NaN throughout, in two parts, one folded.
	mustAppend(t, s, "pot-3", actors.Batch{Readings: []actors.Reading{add(1, 5, nan, 1, 1)}})
	fold(t, s)
	mustAppend(t, s, "pot-3", actors.Batch{Readings: []actors.Reading{add(1, 55, nan, 2, 2)}})
	// Hour 2: nothing but NaNs.
	mustAppend(t, s, "pot-3", actors.Batch{Readings: []actors.Reading{add(2, 0, nan, nan, nan)}})
	checkBuckets(t, mustBuckets(t, s, "pot-3", hr(0, 0), hr(3, 0), time.Hour), []actors.Bucket{
		{Start: hr(0, 0), Count: 5, MoistureMin: 10, MoistureAvg: 20, MoistureMax: 30, TempMin: 20, TempAvg: 21.5, TempMax: 23, TankMin: 50, TankAvg: 52, TankMax: 54},
		{Start: hr(1, 0), Count: 2, MoistureMin: nan, MoistureAvg: nan, MoistureMax: nan, TempMin: 1, TempAvg: 1.5, TempMax: 2, TankMin: 1, TankAvg: 1.5, TankMax: 2},
		{Start: hr(2, 0), Count: 1, MoistureMin: nan, MoistureAvg: nan, MoistureMax: nan, TempMin: nan, TempAvg: nan, TempMax: nan, TankMin: nan, TankAvg: nan, TankMax: nan},
	})
	checkQueries(t, s, "pot-3", stored)
	fold(t, s)
	checkQueries(t, s, "pot-3", stored)
}

func testHourBoundaries(t *testing.T, s actors.Store) {
	var stored []actors.Reading
	seq := uint64(0)
	for h := 1; h <= 3; h++ {
		var batch []actors.Reading
		for _, d := range []time.Duration{-time.Microsecond, 0, time.Microsecond, 17 * time.Minute} {
			seq++
			batch = append(batch, rd(seq, hr(h, 0).Add(d)))
		}
		mustAppend(t, s, "pot-4", actors.Batch{Readings: batch})
		stored = append(stored, batch...)
		if h == 2 {
			fold(t, s)
		}
	}
	checkQueries(t, s, "pot-4", stored)
	fold(t, s)
	checkQueries(t, s, "pot-4", stored)
}

func testExpiryOfFolded(t *testing.T, s actors.Store) {
	m, ok := s.(store.Maintainer)
	if !ok {
		t.Skip("this store does not implement store.Maintainer")
	}
	ctx := ctxFor(t)
	// pot-r: 6 readings an hour over hours 0-9, appended an hour at a time with folds between;
	// pot-q: hours 0-2 only, so its latest reading is in an expired hour.
	var r, q []actors.Reading
	seq := uint64(0)
	for h := range 10 {
		var batch []actors.Reading
		for i := range 6 {
			seq++
			batch = append(batch, rd(seq, hr(h, i*10+1)))
		}
		mustAppend(t, s, "pot-r", actors.Batch{Readings: batch})
		r = append(r, batch...)
		if h < 3 {
			x := rd(uint64(h+1), hr(h, 30))
			mustAppend(t, s, "pot-q", actors.Batch{Readings: []actors.Reading{x}})
			q = append(q, x)
		}
		if h%3 == 1 {
			fold(t, s)
		}
	}
	beforeR := mustBuckets(t, s, "pot-r", hr(0, 0), hr(10, 0), time.Hour)
	beforeQ := mustBuckets(t, s, "pot-q", hr(0, 0), hr(10, 0), 2*time.Hour)
	// Raw readings kept 5 hours from hr(12, 30): hours before 7 expire.
	st := maintain(t, m, store.RetentionOptions{Now: hr(12, 30), Raw: 5 * time.Hour, Settle: time.Minute})
	if want := int64(7*6 + 2); st.RawDeleted != want || !st.RawFrom.Equal(hr(7, 0)) || st.HoursRolled != 10 {
		t.Fatalf("Maintain: %+v; want %d raw readings deleted (pot-r's hours 0-6, pot-q's all but its latest), raw from %s, 10 hours rolled",
			st, want, hr(7, 0))
	}
	if got, err := s.Readings(ctx, "pot-r", hr(-1, 0), hr(12, 0), 0); err != nil {
		t.Fatal(err)
	} else {
		checkReadings(t, got, r[7*6:])
	}
	if got, err := s.Readings(ctx, "pot-q", hr(-1, 0), hr(12, 0), 0); err != nil {
		t.Fatal(err)
	} else {
		checkReadings(t, got, q[2:])
	}
	if rec, err := s.LoadDevice(ctx, "pot-q"); err != nil || rec.Latest == nil || !sameReading(*rec.Latest, q[2]) || rec.LastSeq != 3 {
		t.Fatalf("LoadDevice(pot-q) = %+v, %v; want its latest reading kept", rec, err)
	}
	checkBuckets(t, mustBuckets(t, s, "pot-r", hr(0, 0), hr(10, 0), time.Hour), beforeR)
	checkBuckets(t, mustBuckets(t, s, "pot-q", hr(0, 0), hr(10, 0), 2*time.Hour), beforeQ)
	if again := maintain(t, m, store.RetentionOptions{Now: hr(12, 30), Raw: 5 * time.Hour, Settle: time.Minute}); again.RawDeleted != 0 || again.HoursRolled != 0 {
		t.Fatalf("second Maintain: %+v; want nothing done", again)
	}
	// New readings after expiry land beside the kept ones.
	mustAppend(t, s, "pot-q", actors.Batch{Readings: []actors.Reading{rd(4, hr(11, 0)), rd(3, hr(11, 1))}})
	if got, err := s.Readings(ctx, "pot-q", hr(-1, 0), hr(12, 0), 0); err != nil {
		t.Fatal(err)
	} else {
		checkReadings(t, got, []actors.Reading{q[2], rd(4, hr(11, 0))})
	}
}

// testReopenWithTail: readings still in a store's log (not folded) when it closes are all there
// after a restart, resends of them are still recognised, and they fold later like any others.
func testReopenWithTail(t *testing.T, open func(t *testing.T) actors.Store) {
	s := open(t)
	var stored []actors.Reading
	for b := range 3 {
		var batch []actors.Reading
		for i := range 5 {
			seq := uint64(b*5 + i + 1)
			batch = append(batch, rd(seq, hr(0, 0).Add(time.Duration(seq)*7*time.Minute)))
		}
		mustAppend(t, s, "pot-t", actors.Batch{Readings: batch})
		stored = append(stored, batch...)
		if b == 0 {
			fold(t, s)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for round := range 2 {
		s = open(t)
		ctx := ctxFor(t)
		mustAppend(t, s, "pot-t", actors.Batch{Readings: []actors.Reading{rd(3, hr(9, 0)), rd(12, hr(9, 0)), rd(15, hr(9, 0))}})
		got, err := s.Readings(ctx, "pot-t", hr(-1, 0), hr(12, 0), 0)
		if err != nil {
			t.Fatal(err)
		}
		checkReadings(t, got, byReceived(stored))
		if rec, err := s.LoadDevice(ctx, "pot-t"); err != nil || rec.LastSeq != 15 || rec.Latest == nil || !sameReading(*rec.Latest, stored[14]) {
			t.Fatalf("round %d: LoadDevice = %+v, %v; want seq 15", round, rec, err)
		}
		checkQueries(t, s, "pot-t", stored)
		fold(t, s)
		checkQueries(t, s, "pot-t", stored)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
