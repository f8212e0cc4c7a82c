package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/store"
	"github.com/sprout-iot/sprout/store/pgtest"
	"github.com/sprout-iot/sprout/store/postgres"
	"github.com/sprout-iot/sprout/store/storetest"
)

// TestPostgresRestartDuringBurst stops the database under a burst of appends from 200 grains and
// starts it again: while it is down Append fails with ErrUnavailable within WriteTimeout (no
// hangs), nothing acknowledged is lost, and the same store carries on once it is back.
func TestPostgresRestartDuringBurst(t *testing.T) {
	srv := pgtest.Start(t) // a server of its own: stopping it must not disturb other tests
	dsn := srv.NewDatabase(t)
	const writeTimeout = 1500 * time.Millisecond
	s := open(t, dsn, postgres.Options{
		CommitOptions: store.CommitOptions{
			WriteTimeout: writeTimeout, RetryBackoff: 20 * time.Millisecond, MaxRetryBackoff: 200 * time.Millisecond,
		},
		ConnectTimeout: 500 * time.Millisecond,
	})

	const devices = 200
	var (
		stop       atomic.Bool
		restarted  atomic.Int64 // unix nanos when the server was back
		failures   atomic.Int64
		slowest    atomic.Int64
		acked      = make([][]uint64, devices)
		okAfter    = make([]bool, devices) // an append succeeded after the restart
		wrongError = make(chan error, devices)
		wg         sync.WaitGroup
	)
	for d := range devices {
		wg.Go(func() {
			id := fmt.Sprintf("pot-%03d", d)
			for seq := uint64(1); !stop.Load(); {
				start := time.Now()
				err := s.Append(context.Background(), id, actors.Batch{
					Readings: []actors.Reading{{Seq: seq, ReceivedAt: time.Now(), SoilMoisture: 40, SupplyMillivolt: 3300}},
					Snapshot: []byte(id),
				})
				took := time.Since(start)
				for cur := slowest.Load(); int64(took) > cur && !slowest.CompareAndSwap(cur, int64(took)); cur = slowest.Load() {
				}
				if err != nil {
					if !errors.Is(err, actors.ErrUnavailable) {
						wrongError <- fmt.Errorf("%s seq %d: %w", id, seq, err)
						return
					}
					failures.Add(1)
					time.Sleep(20 * time.Millisecond)
					continue // a grain keeps the frame and retries it (the device would resend it)
				}
				acked[d] = append(acked[d], seq)
				if r := restarted.Load(); r != 0 && start.UnixNano() > r {
					okAfter[d] = true
				}
				seq++
			}
		})
	}

	time.Sleep(500 * time.Millisecond)
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	down := time.Now()
	ctx := context.Background()
	time.Sleep(200 * time.Millisecond)
	if _, err := s.LoadDevice(ctx, "pot-000"); !errors.Is(err, actors.ErrUnavailable) {
		t.Errorf("LoadDevice while the database is down = %v, want ErrUnavailable", err)
	}
	time.Sleep(2*writeTimeout - 200*time.Millisecond)
	if failures.Load() == 0 {
		t.Errorf("no Append failed during %v of downtime", time.Since(down))
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	restarted.Store(time.Now().UnixNano())
	t.Logf("database down for %v; %d appends failed meanwhile", time.Since(down), failures.Load())
	time.Sleep(1500 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	close(wrongError)
	for err := range wrongError {
		t.Errorf("Append failed with something other than ErrUnavailable: %v", err)
	}

	// Bounded: no Append waits much beyond WriteTimeout, whatever the database does.
	if max := time.Duration(slowest.Load()); max > writeTimeout+time.Second {
		t.Errorf("slowest Append took %v, WriteTimeout is %v", max, writeTimeout)
	}
	total := 0
	for d := range devices {
		id := fmt.Sprintf("pot-%03d", d)
		if !okAfter[d] {
			t.Errorf("%s: no Append succeeded after the restart", id)
		}
		rs, err := s.Readings(ctx, id, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), 0)
		if err != nil {
			t.Fatal(err)
		}
		stored := map[uint64]bool{}
		for _, r := range rs {
			stored[r.Seq] = true
		}
		for _, seq := range acked[d] {
			if !stored[seq] {
				t.Fatalf("%s: seq %d was acknowledged but is not stored", id, seq)
			}
		}
		total += len(acked[d])
	}
	t.Logf("%d appends acknowledged, all stored; slowest Append %v", total, time.Duration(slowest.Load()))
}

func TestOpenWithDatabaseDownFailsWithErrUnavailable(t *testing.T) {
	srv := pgtest.Start(t)
	dsn := srv.NewDatabase(t)
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err := postgres.Open(context.Background(), dsn, postgres.Options{ConnectTimeout: time.Second})
	if !errors.Is(err, actors.ErrUnavailable) || time.Since(start) > 3*time.Second {
		t.Fatalf("Open with the database down = %v after %v, want ErrUnavailable within about ConnectTimeout", err, time.Since(start))
	}
}

func TestMigrateReportsTheSchemaVersion(t *testing.T) {
	dsn := pg.NewDatabase(t)
	ctx := context.Background()
	// Nodes starting at once migrate one at a time (advisory lock) and agree on the result.
	var wg sync.WaitGroup
	versions := make([]int64, 4)
	errs := make([]error, 4)
	for i := range versions {
		wg.Go(func() { versions[i], errs[i] = postgres.Migrate(ctx, dsn) })
	}
	wg.Wait()
	for i := range versions {
		if errs[i] != nil || versions[i] < 2 || versions[i] != versions[0] {
			t.Fatalf("Migrate %d = %d, %v; want the same version (2 or later) from every node", i, versions[i], errs[i])
		}
	}
	s := open(t, dsn, postgres.Options{})
	if err := s.Append(ctx, "pot-1", actors.Batch{Snapshot: []byte("x")}); err != nil {
		t.Fatalf("Append on a database migrated ahead of Open: %v", err)
	}
}

// TestRowRefusedByTheDatabaseFailsAlone makes the database itself refuse one device's rows (a CHECK
// constraint added for the test): that Append fails, and the others committed in the same group
// commit are stored.
func TestRowRefusedByTheDatabaseFailsAlone(t *testing.T) {
	dsn := pg.NewDatabase(t)
	s := open(t, dsn, postgres.Options{CommitOptions: store.CommitOptions{MaxWait: 50 * time.Millisecond, WaitAfterRows: 1}})
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), `ALTER TABLE readings ADD CONSTRAINT test_refuse CHECK (device_id <> 'pot-evil')`); err != nil {
		t.Fatal(err)
	}
	storetest.CheckRefusedRowFailsAlone(t, s, "pot-evil")
}
