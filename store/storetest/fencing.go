package storetest

import (
	"errors"
	"testing"

	"github.com/sprout-iot/sprout/actors"
)

// testFencing: the activation that claimed a device last is the only one whose writes land; the
// superseded activation's writes fail with ErrFenced and store nothing.
func testFencing(t *testing.T, s actors.Store) {
	ctx := ctxFor(t)
	mustCreate(t, s, device("pot-f"))
	const a, b = 0x1111, 0x2222
	if err := s.Append(ctx, "pot-f", actors.Batch{Epoch: a, Claim: true, Readings: []actors.Reading{reading(1, 1)}}); err != nil {
		t.Fatalf("first activation's claim: %v", err)
	}
	if err := s.Append(ctx, "pot-f", actors.Batch{Epoch: a, Readings: []actors.Reading{reading(2, 2)}}); err != nil {
		t.Fatalf("first activation's write: %v", err)
	}
	if err := s.Append(ctx, "pot-f", actors.Batch{Epoch: b, Claim: true, Readings: []actors.Reading{reading(3, 3)}}); err != nil {
		t.Fatalf("second activation's claim: %v", err)
	}
	err := s.Append(ctx, "pot-f", actors.Batch{Epoch: a, Readings: []actors.Reading{reading(4, 4)},
		Events: []actors.Event{{At: at(4), Kind: actors.EventKindAlertRaised, Body: []byte(`{}`)}}, Snapshot: []byte("stale")})
	if !errors.Is(err, actors.ErrFenced) {
		t.Fatalf("superseded activation's write: want ErrFenced, got %v", err)
	}
	if err := s.Append(ctx, "pot-f", actors.Batch{Epoch: b, Readings: []actors.Reading{reading(5, 5)}}); err != nil {
		t.Fatalf("current activation's write: %v", err)
	}
	rs, err := s.Readings(ctx, "pot-f", at(-3600), at(3600), 100)
	if err != nil {
		t.Fatal(err)
	}
	var seqs []uint64
	for _, r := range rs {
		seqs = append(seqs, r.Seq)
	}
	if len(seqs) != 4 || seqs[3] != 5 {
		t.Fatalf("stored seqs %v, want [1 2 3 5]", seqs)
	}
	evs, _ := s.Events(ctx, "pot-f", at(-3600), at(3600), 100)
	if len(evs) != 0 {
		t.Fatalf("a fenced write stored %d events", len(evs))
	}
	rec, _ := s.LoadDevice(ctx, "pot-f")
	if string(rec.Snapshot) == "stale" {
		t.Fatal("a fenced write replaced the snapshot")
	}
	// Unfenced writes (epoch 0) are not affected.
	if err := s.Append(ctx, "pot-f", actors.Batch{Readings: []actors.Reading{reading(6, 6)}}); err != nil {
		t.Fatalf("unfenced write: %v", err)
	}
}
