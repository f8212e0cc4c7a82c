package sqlite_test

import (
	"testing"
	"time"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/store/sqlite"
	"github.com/sprout-iot/sprout/store/storetest"
)

func open(t *testing.T, dir string) actors.Store {
	t.Helper()
	s, err := sqlite.Open(dir, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) actors.Store { return open(t, t.TempDir()) })
}

func TestContractReopen(t *testing.T) {
	storetest.RunReopen(t, func(t *testing.T) func(t *testing.T) actors.Store {
		dir := t.TempDir()
		return func(t *testing.T) actors.Store { return open(t, dir) }
	})
}

func benchAppend(b *testing.B, cfg storetest.BenchConfig) {
	s, err := sqlite.Open(b.TempDir(), sqlite.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	storetest.BenchAppend(b, s, cfg)
}

// BenchmarkAppend: 1000 grains, one reading per Append, synchronous=FULL.
func BenchmarkAppend(b *testing.B) { benchAppend(b, storetest.BenchConfig{Devices: 1000}) }

// BenchmarkAppendFenced: as BenchmarkAppend, each Append carrying its grain's activation epoch (what
// a node's grains send: the store checks it against the device's claim).
func BenchmarkAppendFenced(b *testing.B) {
	benchAppend(b, storetest.BenchConfig{Devices: 1000, Fenced: true})
}

// BenchmarkAppendWithSnapshot: each step also replaces the grain's snapshot.
func BenchmarkAppendWithSnapshot(b *testing.B) {
	benchAppend(b, storetest.BenchConfig{Devices: 1000, Snapshot: true})
}

// compacting are options under which the compactor folds every commit at once into chunks of at
// most 3 readings (two parts a transaction, so every fold takes several) and merges hours as soon as they end: the whole contract again, on chunks.
var compacting = sqlite.Options{CompactAge: time.Millisecond, MaxChunkReadings: 3, CompactBatch: 7, CompactParts: 2, MergeSettle: time.Millisecond}

func TestContractCompactingConstantly(t *testing.T) {
	storetest.Run(t, func(t *testing.T) actors.Store {
		s, err := sqlite.Open(t.TempDir(), compacting)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

func TestContractReopenCompactingConstantly(t *testing.T) {
	storetest.RunReopen(t, func(t *testing.T) func(t *testing.T) actors.Store {
		dir := t.TempDir()
		return func(t *testing.T) actors.Store {
			s, err := sqlite.Open(dir, compacting)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}
	})
}
