package postgres_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/store"
	"github.com/sprout-iot/sprout/store/pgtest"
	"github.com/sprout-iot/sprout/store/postgres"
	"github.com/sprout-iot/sprout/store/storetest"
)

// pg is one Postgres server for this test binary (fsync off); each test gets a database of its own
// on it. durable (fsync on) is started by the first benchmark that needs it.
var (
	pg          *pgtest.Server
	durable     *pgtest.Server
	durableOnce sync.Once
)

func TestMain(m *testing.M) {
	var err error
	if pg, err = pgtest.NewServer(pgtest.Config{}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	pg.Close()
	if durable != nil {
		durable.Close()
	}
	os.Exit(code)
}

func durableServer(b *testing.B) *pgtest.Server {
	durableOnce.Do(func() {
		var err error
		if durable, err = pgtest.NewServer(pgtest.Config{Durable: true}); err != nil {
			b.Fatal(err)
		}
	})
	if durable == nil {
		b.Fatal("no durable Postgres server")
	}
	return durable
}

func open(t *testing.T, dsn string, opts postgres.Options) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(context.Background(), dsn, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) actors.Store { return open(t, pg.NewDatabase(t), postgres.Options{}) })
}

func TestContractReopen(t *testing.T) {
	storetest.RunReopen(t, func(t *testing.T) func(t *testing.T) actors.Store {
		dsn := pg.NewDatabase(t)
		return func(t *testing.T) actors.Store { return open(t, dsn, postgres.Options{}) }
	})
}

func benchAppend(b *testing.B, opts postgres.Options, cfg storetest.BenchConfig) {
	s, err := postgres.Open(context.Background(), durableServer(b).NewDatabase(b), opts)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	storetest.BenchAppend(b, s, cfg)
}

// BenchmarkAppend: 1000 grains, one reading per Append, on a server with fsync on.
func BenchmarkAppend(b *testing.B) {
	benchAppend(b, postgres.Options{}, storetest.BenchConfig{Devices: 1000})
}

// BenchmarkAppendFenced: as BenchmarkAppend, each Append carrying its grain's activation epoch
// (what a node's grains send).
func BenchmarkAppendFenced(b *testing.B) {
	benchAppend(b, postgres.Options{}, storetest.BenchConfig{Devices: 1000, Fenced: true})
}

// BenchmarkAppendWithSnapshot: each step also replaces the grain's snapshot.
func BenchmarkAppendWithSnapshot(b *testing.B) {
	benchAppend(b, postgres.Options{}, storetest.BenchConfig{Devices: 1000, Snapshot: true})
}

// BenchmarkAppendCommitters compares how many batches may be in flight at once.
func BenchmarkAppendCommitters(b *testing.B) {
	for _, n := range []int{1, 2, 4} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			benchAppend(b, postgres.Options{CommitOptions: store.CommitOptions{Committers: n}}, storetest.BenchConfig{Devices: 1000})
		})
	}
}
