package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/actors/actortest"
)

// Backing is one empty database for a test; every call to its Open opens a store on that same
// database (the previous one closed), as a restarted node would.
type Backing func(t *testing.T) (open func(t *testing.T) actors.Store)

// RunReopen runs the part of the contract that needs a store opened again on the same data:
// what Close and a restart keep.
func RunReopen(t *testing.T, backing Backing) {
	t.Run("DataSurvivesReopen", func(t *testing.T) { testReopen(t, backing(t)) })
	t.Run("CloseWritesEveryAcceptedAppend", func(t *testing.T) { testCloseFlushes(t, backing(t)) })
	t.Run("ReadingsNotYetFoldedSurviveReopen", func(t *testing.T) { testReopenWithTail(t, backing(t)) })
}

func testReopen(t *testing.T, open func(t *testing.T) actors.Store) {
	s := open(t)
	mustCreate(t, s, device("pot-1"))
	mustAppend(t, s, "pot-1", actors.Batch{
		Readings: []actors.Reading{reading(1, 1), reading(2, 2)},
		Events:   []actors.Event{deviceEvent(3, 3)},
		Snapshot: []byte("snap"),
	})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t)
	ctx := ctxFor(t)
	if d, err := s.GetDevice(ctx, "pot-1"); err != nil || !sameDevice(d, device("pot-1")) {
		t.Fatalf("after reopen GetDevice = %+v, %v", d, err)
	}
	rec, err := s.LoadDevice(ctx, "pot-1")
	if err != nil || rec.LastSeq != 3 || string(rec.Snapshot) != "snap" || rec.Latest == nil || rec.Latest.Seq != 2 {
		t.Fatalf("after reopen LoadDevice = %+v, %v", rec, err)
	}
	// Appending continues where it stopped; resends are still recognised.
	mustAppend(t, s, "pot-1", actors.Batch{Readings: []actors.Reading{reading(2, 2), reading(4, 4)}})
	rs, _ := s.Readings(ctx, "pot-1", at(0), at(100), 0)
	checkReadings(t, rs, []actors.Reading{reading(1, 1), reading(2, 2), reading(4, 4)})
}

func testCloseFlushes(t *testing.T, open func(t *testing.T) actors.Store) {
	s := open(t)
	const devices = 200
	acked := make([]atomic.Uint64, devices) // highest seq each device's Append returned nil for
	var wg sync.WaitGroup
	for d := range devices {
		wg.Go(func() {
			id := fmt.Sprintf("pot-%03d", d)
			for seq := uint64(1); ; seq++ {
				err := s.Append(context.Background(), id, actors.Batch{Readings: []actors.Reading{reading(seq, int(seq))}})
				if err != nil {
					if !errors.Is(err, actors.ErrUnavailable) {
						t.Errorf("Append during Close = %v, want nil or ErrUnavailable", err)
					}
					return
				}
				acked[d].Store(seq)
			}
		})
	}
	// Close while every device is appending: each has had a few appends acknowledged.
	actortest.Eventually(t, 30*time.Second, "three acknowledged appends from every device", func() bool {
		for d := range acked {
			if acked[d].Load() < 3 {
				return false
			}
		}
		return true
	})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	s = open(t)
	total := uint64(0)
	for d := range devices {
		id := fmt.Sprintf("pot-%03d", d)
		rec, err := s.LoadDevice(ctxFor(t), id)
		if err != nil {
			t.Fatal(err)
		}
		// Everything acknowledged is there, and nothing refused.
		if rec.LastSeq != acked[d].Load() {
			t.Fatalf("%s: stored up to seq %d, acknowledged up to %d", id, rec.LastSeq, acked[d].Load())
		}
		total += acked[d].Load()
	}
	if total == 0 {
		t.Fatal("no append was acknowledged before Close: the test proved nothing")
	}
	t.Logf("%d appends acknowledged before Close, all present after reopen", total)
}

// CheckRefusedRowFailsAlone appends for 50 devices and evil at once, in one group commit, after
// the caller made the database refuse evil's readings (a constraint or trigger only the test adds).
// The refusal must fail evil's Append alone, with an error that is not ErrUnavailable.
func CheckRefusedRowFailsAlone(t *testing.T, s actors.Store, evil string) {
	t.Helper()
	ctx := ctxFor(t)
	ids := []string{evil}
	for i := range 50 {
		ids = append(ids, fmt.Sprintf("pot-%02d", i))
	}
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Go(func() {
			errs[i] = s.Append(ctx, id, actors.Batch{Readings: []actors.Reading{reading(1, 1)}, Snapshot: []byte(id)})
		})
	}
	wg.Wait()
	if errs[0] == nil || errors.Is(errs[0], actors.ErrUnavailable) {
		t.Fatalf("Append refused by the database = %v, want a refusal that is not ErrUnavailable", errs[0])
	}
	t.Logf("refused: %v", errs[0])
	for i, id := range ids[1:] {
		if errs[i+1] != nil {
			t.Fatalf("%s failed beside a refused append: %v", id, errs[i+1])
		}
		if rec, err := s.LoadDevice(ctx, id); err != nil || rec.LastSeq != 1 || string(rec.Snapshot) != id {
			t.Fatalf("%s acknowledged but not stored: %+v, %v", id, rec, err)
		}
	}
	if rec, _ := s.LoadDevice(ctx, evil); rec.LastSeq != 0 || rec.Snapshot != nil {
		t.Fatalf("the refused append was partly stored: %+v", rec)
	}
}
