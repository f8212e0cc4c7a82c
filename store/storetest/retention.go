package storetest

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/store"
)

// retentionTests are the contract of store.Maintainer, run by Run on stores that implement it.
var retentionTests = []struct {
	name string
	fn   func(*testing.T, actors.Store, store.Maintainer)
}{
	{"BucketsAnswerFromAggregatesOnceRawReadingsExpire", testRollUpAndExpire},
	{"MaintainTwiceChangesNothing", testMaintainIdempotent},
	{"ReadingsLateInAnHourAreRolledUpOnceItIsComplete", testRollOnlyCompleteHours},
	{"ExpiredAggregatesAreDeleted", testAggregatesExpire},
	{"EachDevicesLatestReadingIsKept", testLatestReadingKept},
	{"FinerBucketsOverExpiredRangesCountWholeHours", testFineBucketsOverExpired},
	{"MaintainDeletesInChunksBesideAppends", testMaintainBesideAppends},
	{"MaintainRefusesBadOptions", testMaintainBadOptions},
	{"FinishedPushesExpirePendingOnesStay", testPushesExpire},
	{"EventsExpireButEachDevicesLastSeqStays", testEventsExpire},
}

func runRetentionTests(t *testing.T, open Opener) {
	for _, tt := range retentionTests {
		t.Run(tt.name, func(t *testing.T) {
			s := open(t)
			m, ok := s.(store.Maintainer)
			if !ok {
				t.Skip("this store does not implement store.Maintainer")
			}
			tt.fn(t, s, m)
		})
	}
}

// hr is t0 plus h hours and min minutes (t0 is on a whole hour).
func hr(h, min int) time.Time {
	return t0.Add(time.Duration(h)*time.Hour + time.Duration(min)*time.Minute)
}

func maintain(t *testing.T, m store.Maintainer, o store.RetentionOptions) store.MaintainStats {
	t.Helper()
	st, err := m.Maintain(ctxFor(t), o)
	if err != nil {
		t.Fatalf("Maintain(%+v): %v", o, err)
	}
	return st
}

func mustBuckets(t *testing.T, s actors.Store, id string, from, to time.Time, width time.Duration) []actors.Bucket {
	t.Helper()
	b, err := s.Buckets(ctxFor(t), id, from, to, width)
	if err != nil {
		t.Fatalf("Buckets(%s, %s, %s, %s): %v", id, from, to, width, err)
	}
	return b
}

// history appends readings over several hours to pot-1 and pot-2 (pot-1: hours 0, 1, 3, 4, 5
// with NaNs in hour 0 and only NaN moisture in hour 3, none in hour 2; pot-2: hours 1 and 4) and
// one reading in hour 6, and returns how many readings fell in hours 0-2.
func history(t *testing.T, s actors.Store) (early int) {
	t.Helper()
	nan := float32(math.NaN())
	var seq1, seq2 uint64
	var p1, p2 []actors.Reading
	add := func(rs *[]actors.Reading, seq *uint64, h, min int, moist, temp, tank float32) {
		*seq++
		*rs = append(*rs, actors.Reading{Seq: *seq, ReceivedAt: hr(h, min), SoilMoisture: moist, Temperature: temp, TankLevel: tank, SupplyMillivolt: 3300})
		if h <= 2 {
			early++
		}
	}
	for _, h := range []int{0, 1, 3, 4, 5} {
		for i, min := range []int{0, 7, 31, 59} {
			moist := float32(10*h+i) + 0.5
			switch {
			case h == 0 && i == 1, h == 3:
				moist = nan
			}
			add(&p1, &seq1, h, min, moist, 15+float32(h)+float32(i)/4, 90-float32(3*h+i))
		}
	}
	for _, h := range []int{1, 4} {
		add(&p2, &seq2, h, 10, 33, 21, 70)
		add(&p2, &seq2, h, 40, 35, 22, 69)
	}
	add(&p1, &seq1, 6, 5, 42, 18, 60)
	mustAppend(t, s, "pot-1", actors.Batch{Readings: p1})
	mustAppend(t, s, "pot-2", actors.Batch{Readings: p2})
	return early
}

type bucketQuery struct {
	id       string
	from, to time.Time
	width    time.Duration
}

// bucketQueries are whole-hour buckets aligned on whole hours, which the aggregates answer
// exactly; some straddle the raw/aggregate boundary.
var bucketQueries = []bucketQuery{
	{"pot-1", hr(0, 0), hr(7, 0), time.Hour},
	{"pot-1", hr(0, 0), hr(8, 0), 2 * time.Hour},
	{"pot-1", hr(1, 0), hr(7, 0), 3 * time.Hour},
	{"pot-1", hr(-24, 0), hr(24, 0), 24 * time.Hour},
	{"pot-1", hr(2, 0), hr(4, 0), time.Hour},
	{"pot-2", hr(0, 0), hr(6, 0), time.Hour},
	{"pot-2", hr(0, 0), hr(6, 0), 6 * time.Hour},
}

func allBuckets(t *testing.T, s actors.Store) [][]actors.Bucket {
	t.Helper()
	var out [][]actors.Bucket
	for _, q := range bucketQueries {
		out = append(out, mustBuckets(t, s, q.id, q.from, q.to, q.width))
	}
	return out
}

func checkAllBuckets(t *testing.T, s actors.Store, want [][]actors.Bucket) {
	t.Helper()
	for i, q := range bucketQueries {
		t.Run(fmt.Sprintf("%s/%s", q.id, q.width), func(t *testing.T) {
			checkBuckets(t, mustBuckets(t, s, q.id, q.from, q.to, q.width), want[i])
		})
	}
}

// settled are the options of most tests: one minute of settling, raw readings kept 3 hours.
func settled(now time.Time) store.RetentionOptions {
	return store.RetentionOptions{Now: now, Raw: 3 * time.Hour, Settle: time.Minute}
}

func testRollUpAndExpire(t *testing.T, s actors.Store, m store.Maintainer) {
	ctx := ctxFor(t)
	early := history(t, s)
	before := allBuckets(t, s)
	if len(before[0]) != 6 {
		t.Fatalf("history: %d hourly buckets, want 6", len(before[0]))
	}

	// Hours 0-5 are complete; raw readings before hour 3 expire.
	st := maintain(t, m, settled(hr(6, 30)))
	if st.Skipped || st.HoursRolled != 5 || st.HourRows != 7 || st.RawDeleted != int64(early) || st.AggregatesDeleted != 0 {
		t.Fatalf("Maintain: %+v; want 5 hours (7 device-hours) rolled, %d raw readings deleted", st, early)
	}
	if !st.RolledUntil.Equal(hr(6, 0)) || !st.RawFrom.Equal(hr(3, 0)) {
		t.Fatalf("Maintain: rolled until %s, raw from %s; want %s and %s", st.RolledUntil, st.RawFrom, hr(6, 0), hr(3, 0))
	}
	for _, id := range []string{"pot-1", "pot-2"} {
		if rs, err := s.Readings(ctx, id, hr(-1, 0), hr(3, 0), 0); err != nil || len(rs) != 0 {
			t.Fatalf("%s: %d raw readings before raw_from (%v), want none", id, len(rs), err)
		}
	}
	if rs, err := s.Readings(ctx, "pot-1", hr(3, 0), hr(7, 0), 0); err != nil || len(rs) != 13 {
		t.Fatalf("pot-1: %d raw readings after raw_from (%v), want 13", len(rs), err)
	}
	checkAllBuckets(t, s, before)

	// Spelled out, the first hour of pot-1 (one NaN moisture) from the aggregates alone.
	checkBuckets(t, mustBuckets(t, s, "pot-1", hr(0, 0), hr(1, 0), time.Hour), []actors.Bucket{{
		Start: hr(0, 0), Count: 4,
		MoistureMin: 0.5, MoistureAvg: (0.5 + 2.5 + 3.5) / 3, MoistureMax: 3.5,
		TempMin: 15, TempAvg: 15 + 1.5/4, TempMax: 15.75,
		TankMin: 87, TankAvg: 88.5, TankMax: 90,
	}})
}

func testMaintainIdempotent(t *testing.T, s actors.Store, m store.Maintainer) {
	history(t, s)
	first := maintain(t, m, settled(hr(6, 30)))
	before := allBuckets(t, s)
	again := maintain(t, m, settled(hr(6, 30)))
	if again.HoursRolled != 0 || again.HourRows != 0 || again.RawDeleted != 0 || again.AggregatesDeleted != 0 ||
		!again.RolledUntil.Equal(first.RolledUntil) || !again.RawFrom.Equal(first.RawFrom) {
		t.Fatalf("second Maintain: %+v; want nothing done (first: %+v)", again, first)
	}
	checkAllBuckets(t, s, before)
	// A shorter raw retention later cannot bring expired readings back; raw_from never moves back.
	later := maintain(t, m, store.RetentionOptions{Now: hr(6, 30), Raw: 10 * time.Hour})
	if !later.RawFrom.Equal(first.RawFrom) || later.RawDeleted != 0 {
		t.Fatalf("Maintain with a longer retention: %+v; want raw_from kept at %s", later, first.RawFrom)
	}
	checkAllBuckets(t, s, before)
}

func testRollOnlyCompleteHours(t *testing.T, s actors.Store, m store.Maintainer) {
	mustAppend(t, s, "pot-1", actors.Batch{Readings: []actors.Reading{{Seq: 1, ReceivedAt: hr(0, 10), SoilMoisture: 10, Temperature: 20, TankLevel: 30}}})
	// Hour 0 ends at hr(1, 0); within the settling minute it is not complete.
	st := maintain(t, m, settled(hr(1, 0).Add(30*time.Second)))
	if st.HoursRolled != 0 || !st.RolledUntil.Equal(hr(0, 0)) {
		t.Fatalf("Maintain inside the settling time: %+v; want nothing rolled, rolled until %s", st, hr(0, 0))
	}
	// A reading arriving late in the hour, before it settled, is in its aggregate.
	mustAppend(t, s, "pot-1", actors.Batch{Readings: []actors.Reading{{Seq: 2, ReceivedAt: hr(0, 59), SoilMoisture: 20, Temperature: 22, TankLevel: 28}}})
	mustAppend(t, s, "pot-1", actors.Batch{Readings: []actors.Reading{{Seq: 3, ReceivedAt: hr(9, 0), SoilMoisture: 1, Temperature: 1, TankLevel: 1}}})
	st = maintain(t, m, settled(hr(5, 0)))
	if st.HoursRolled != 1 || st.RawDeleted != 2 || !st.RawFrom.Equal(hr(2, 0)) {
		t.Fatalf("Maintain: %+v; want hour 0 rolled and its 2 readings expired", st)
	}
	checkBuckets(t, mustBuckets(t, s, "pot-1", hr(0, 0), hr(2, 0), time.Hour), []actors.Bucket{{
		Start: hr(0, 0), Count: 2, MoistureMin: 10, MoistureAvg: 15, MoistureMax: 20,
		TempMin: 20, TempAvg: 21, TempMax: 22, TankMin: 28, TankAvg: 29, TankMax: 30,
	}})
}

func testAggregatesExpire(t *testing.T, s actors.Store, m store.Maintainer) {
	history(t, s)
	maintain(t, m, settled(hr(6, 30)))
	// Aggregates kept 5 hours from hr(10, 30): hours before 5 go (pot-1: 0, 1, 3, 4; pot-2: 1, 4).
	st := maintain(t, m, store.RetentionOptions{Now: hr(10, 30), Raw: 3 * time.Hour, Aggregates: 5 * time.Hour, Settle: time.Minute})
	if st.AggregatesDeleted != 6 || st.HoursRolled != 1 || !st.RawFrom.Equal(hr(7, 0)) {
		t.Fatalf("Maintain: %+v; want 6 aggregates deleted, hour 6 rolled, raw from %s", st, hr(7, 0))
	}
	got := mustBuckets(t, s, "pot-1", hr(0, 0), hr(8, 0), time.Hour)
	if len(got) != 2 || !got[0].Start.Equal(hr(5, 0)) || !got[1].Start.Equal(hr(6, 0)) || got[0].Count != 4 || got[1].Count != 1 {
		t.Fatalf("pot-1 buckets after aggregates expired: %+v; want hours 5 (4 readings) and 6 (1)", got)
	}
	if got := mustBuckets(t, s, "pot-2", hr(0, 0), hr(8, 0), time.Hour); len(got) != 0 {
		t.Fatalf("pot-2 buckets after everything expired: %+v, want none", got)
	}
}

func testLatestReadingKept(t *testing.T, s actors.Store, m store.Maintainer) {
	ctx := ctxFor(t)
	old := actors.Reading{Seq: 5, ReceivedAt: hr(0, 20), DeviceTime: hr(0, 19), SoilMoisture: 41, Temperature: 19, TankLevel: 77, SupplyMillivolt: 3100}
	mustAppend(t, s, "pot-quiet", actors.Batch{Readings: []actors.Reading{old}, Events: []actors.Event{deviceEvent(4, 0)}})
	mustAppend(t, s, "pot-busy", actors.Batch{Readings: []actors.Reading{
		{Seq: 1, ReceivedAt: hr(0, 1), SoilMoisture: 1}, {Seq: 2, ReceivedAt: hr(20, 1), SoilMoisture: 2},
	}})
	st := maintain(t, m, store.RetentionOptions{Now: hr(50, 0), Raw: 24 * time.Hour})
	if st.RawDeleted != 1 {
		t.Fatalf("Maintain: %+v; want 1 raw reading deleted (pot-busy's first)", st)
	}
	rec, err := s.LoadDevice(ctx, "pot-quiet")
	if err != nil || rec.Latest == nil || !sameReading(*rec.Latest, old) || rec.LastSeq != 5 {
		t.Fatalf("LoadDevice(pot-quiet) after expiry: %+v, %v; want its one old reading, LastSeq 5", rec, err)
	}
	rec, err = s.LoadDevice(ctx, "pot-busy")
	if err != nil || rec.Latest == nil || rec.Latest.Seq != 2 {
		t.Fatalf("LoadDevice(pot-busy) after expiry: %+v, %v; want seq 2", rec, err)
	}
	// The kept reading is below raw_from: Buckets counts it once, from the aggregates.
	checkBuckets(t, mustBuckets(t, s, "pot-quiet", hr(0, 0), hr(50, 0), time.Hour), []actors.Bucket{{
		Start: hr(0, 0), Count: 1, MoistureMin: 41, MoistureAvg: 41, MoistureMax: 41,
		TempMin: 19, TempAvg: 19, TempMax: 19, TankMin: 77, TankAvg: 77, TankMax: 77,
	}})
}

func testFineBucketsOverExpired(t *testing.T, s actors.Store, m store.Maintainer) {
	mustAppend(t, s, "pot-1", actors.Batch{Readings: []actors.Reading{
		{Seq: 1, ReceivedAt: hr(0, 10), SoilMoisture: 10}, {Seq: 2, ReceivedAt: hr(0, 20), SoilMoisture: 20},
		{Seq: 3, ReceivedAt: hr(0, 50), SoilMoisture: 30}, {Seq: 4, ReceivedAt: hr(1, 50), SoilMoisture: 40},
		{Seq: 5, ReceivedAt: hr(9, 0), SoilMoisture: 50},
	}})
	maintain(t, m, settled(hr(5, 0)))
	// Once expired, an hour is counted whole in the bucket holding its start.
	got := mustBuckets(t, s, "pot-1", hr(0, 0), hr(2, 0), 15*time.Minute)
	if len(got) != 2 || !got[0].Start.Equal(hr(0, 0)) || got[0].Count != 3 || got[0].MoistureAvg != 20 ||
		!got[1].Start.Equal(hr(1, 0)) || got[1].Count != 1 {
		t.Fatalf("15-minute buckets over expired hours: %+v; want the hours whole at 00:00 (3) and 01:00 (1)", got)
	}
	// An hour starting before from is left out.
	got = mustBuckets(t, s, "pot-1", hr(0, 30), hr(2, 30), time.Hour)
	if len(got) != 1 || !got[0].Start.Equal(hr(0, 30)) || got[0].Count != 1 || got[0].MoistureAvg != 40 {
		t.Fatalf("hourly buckets from half past over expired hours: %+v; want one bucket at 00:30 holding hour 1", got)
	}
}

func testMaintainBesideAppends(t *testing.T, s actors.Store, m store.Maintainer) {
	ctx := ctxFor(t)
	const old = 300
	var rs []actors.Reading
	for i := range old {
		rs = append(rs, actors.Reading{Seq: uint64(i + 1), ReceivedAt: hr(i%5, i%60), SoilMoisture: float32(i)})
	}
	mustAppend(t, s, "pot-old", actors.Batch{Readings: rs})
	const writers, steps = 20, 25
	var wg sync.WaitGroup
	errc := make(chan error, writers+1)
	for w := range writers {
		wg.Go(func() {
			id := fmt.Sprintf("pot-new-%02d", w)
			for i := range steps {
				r := actors.Reading{Seq: uint64(i + 1), ReceivedAt: hr(100, i), SoilMoisture: 1}
				if err := s.Append(ctx, id, actors.Batch{Readings: []actors.Reading{r}}); err != nil {
					errc <- fmt.Errorf("Append(%s) during Maintain: %w", id, err)
					return
				}
			}
		})
	}
	wg.Go(func() {
		st, err := m.Maintain(ctx, store.RetentionOptions{Now: hr(30, 0), Raw: 24 * time.Hour, Chunk: 7})
		if err != nil {
			errc <- err
		} else if st.RawDeleted != old-1 || st.HoursRolled != 5 {
			errc <- fmt.Errorf("maintain: %+v; want %d raw readings deleted in chunks of 7, 5 hours rolled", st, old-1)
		}
	})
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	for w := range writers {
		id := fmt.Sprintf("pot-new-%02d", w)
		if got, err := s.Readings(ctx, id, hr(99, 0), hr(102, 0), 0); err != nil || len(got) != steps {
			t.Fatalf("%s: %d readings, %v; want %d", id, len(got), err, steps)
		}
	}
	var total int
	for _, b := range mustBuckets(t, s, "pot-old", hr(0, 0), hr(5, 0), 5*time.Hour) {
		total += b.Count
	}
	if total != old {
		t.Fatalf("pot-old: buckets count %d readings after expiry, want %d", total, old)
	}
}

func testMaintainBadOptions(t *testing.T, s actors.Store, m store.Maintainer) {
	history(t, s)
	for _, o := range []store.RetentionOptions{
		{Raw: 30 * time.Minute},
		{Raw: -time.Hour},
		{Raw: 48 * time.Hour, Aggregates: 24 * time.Hour},
		{Pushes: 30 * time.Minute},
		{Events: 12 * time.Hour},
		{Chunk: -1},
		{Settle: -time.Second},
	} {
		o.Now = hr(6, 30)
		if st, err := m.Maintain(ctxFor(t), o); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("Maintain(%+v) = %+v, %v; want ErrInvalid", o, st, err)
		}
	}
	if rs, err := s.Readings(ctxFor(t), "pot-1", hr(0, 0), hr(7, 0), 0); err != nil || len(rs) != 21 {
		t.Fatalf("after refused Maintains: %d readings, %v; want all 21", len(rs), err)
	}
}

func testPushesExpire(t *testing.T, st actors.Store, m store.Maintainer) {
	s, ok := st.(actors.UserStore)
	if !ok {
		t.Skip("this store does not implement actors.UserStore")
	}
	ctx := ctxFor(t)
	const user = "o-retention-user"
	push := func(id string, at time.Time) actors.Push {
		return actors.Push{ID: id, OpenID: user, Kind: actors.PushText, Payload: []byte(`{"text":"x"}`), CreatedAt: at}
	}
	if err := s.EnqueuePushes(ctx, []actors.Push{push("old-sent", hr(0, 0)), push("old-failed", hr(0, 10)),
		push("old-pending", hr(0, 20)), push("new-sent", hr(40, 0))}); err != nil {
		t.Fatal(err)
	}
	claimed, err := s.ClaimPushes(ctx, "pusher", hr(41, 0), time.Minute, 10)
	if err != nil || len(claimed) != 4 {
		t.Fatalf("claim = %d pushes, %v; want 4", len(claimed), err)
	}
	fate := map[string]string{"old-sent": actors.PushSent, "old-failed": actors.PushFailed, "new-sent": actors.PushSent}
	for _, p := range claimed {
		if status, ok := fate[p.ID]; ok {
			p.Status, p.Attempts = status, 1
			if err := s.CompletePush(ctx, p); err != nil {
				t.Fatal(err)
			}
		}
	}
	o := store.RetentionOptions{Now: hr(48, 0), Pushes: 24 * time.Hour}
	if st := maintain(t, m, o); st.PushesDeleted != 2 {
		t.Fatalf("PushesDeleted = %d, want 2 (the sent and the failed push older than a day)", st.PushesDeleted)
	}
	ps, err := s.UserPushes(ctx, user, 0)
	if err != nil {
		t.Fatal(err)
	}
	left := map[string]string{}
	for _, p := range ps {
		left[p.ID] = p.Status
	}
	if len(left) != 2 || left["old-pending"] != actors.PushPending || left["new-sent"] != actors.PushSent {
		t.Fatalf("after expiry: %v; want the old pending push (still to be sent) and the recent sent one", left)
	}
	if st := maintain(t, m, o); st.PushesDeleted != 0 {
		t.Fatalf("a second Maintain deleted %d more pushes", st.PushesDeleted)
	}
}

func testEventsExpire(t *testing.T, s actors.Store, m store.Maintainer) {
	ctx := ctxFor(t)
	ev := func(at time.Time, kind string, seq uint64) actors.Event {
		return actors.Event{At: at, Kind: kind, Seq: seq, Body: []byte(`{}`)}
	}
	// pot-1: two old device events (seq 3 and 5), an old grain event, a recent grain event.
	// pot-2: one old device event, its last.
	mustAppend(t, s, "pot-1", actors.Batch{Events: []actors.Event{ev(hr(0, 0), actors.EventKindDevice, 3),
		ev(hr(0, 5), actors.EventKindDevice, 5), ev(hr(1, 0), actors.EventKindCommandSent, 0)}})
	mustAppend(t, s, "pot-1", actors.Batch{Events: []actors.Event{ev(hr(40, 0), actors.EventKindOnline, 0)}})
	mustAppend(t, s, "pot-2", actors.Batch{Events: []actors.Event{ev(hr(0, 0), actors.EventKindDevice, 7)}})
	o := store.RetentionOptions{Now: hr(48, 0), Events: 24 * time.Hour}
	if st := maintain(t, m, o); st.EventsDeleted != 2 {
		t.Fatalf("EventsDeleted = %d, want 2 (pot-1's seq 3 and its old command_sent)", st.EventsDeleted)
	}
	kinds := func(id string) []string {
		es, err := s.Events(ctx, id, hr(-1, 0), hr(49, 0), 0)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, e := range es {
			out = append(out, fmt.Sprintf("%s/%d", e.Kind, e.Seq))
		}
		return out
	}
	if got := fmt.Sprint(kinds("pot-1")); got != "[device_event/5 online/0]" {
		t.Fatalf("pot-1 after expiry: %s; want its last device event and the recent one", got)
	}
	if got := fmt.Sprint(kinds("pot-2")); got != "[device_event/7]" {
		t.Fatalf("pot-2 after expiry: %s; want its only (last) device event kept", got)
	}
	for id, want := range map[string]uint64{"pot-1": 5, "pot-2": 7} {
		if rec, err := s.LoadDevice(ctx, id); err != nil || rec.LastSeq != want {
			t.Fatalf("%s recovers LastSeq %d (%v), want %d", id, rec.LastSeq, err, want)
		}
	}
	if st := maintain(t, m, o); st.EventsDeleted != 0 {
		t.Fatalf("a second Maintain deleted %d more events", st.EventsDeleted)
	}
}
