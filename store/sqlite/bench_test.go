package sqlite_test

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/store"
	"github.com/sprout-iot/sprout/store/sqlite"
	"github.com/sprout-iot/sprout/store/storetest"
)

// wchar is the bytes this process has passed to write(2) so far (/proc/self/io): WAL frames,
// checkpoints into the database file, everything SQLite writes.
func wchar(b *testing.B) int64 {
	data, err := os.ReadFile("/proc/self/io")
	if err != nil {
		b.Skipf("no /proc/self/io: %v", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "wchar: "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}

type statser interface{ Stats() store.CommitStats }

// benchWrites runs BenchAppend and reports the bytes written per committed transaction.
func benchWrites(b *testing.B, s actors.Store, cfg storetest.BenchConfig) {
	before, tx0 := wchar(b), s.(statser).Stats().Transactions
	storetest.BenchAppend(b, s, cfg)
	if tx := s.(statser).Stats().Transactions - tx0; tx > 0 {
		b.ReportMetric(float64(wchar(b)-before)/float64(tx), "wbytes/tx")
	}
}

// BenchmarkLayout compares, in one run, the readings layout before schema 9 (a row per reading
// in a (device_id, seq) B-tree plus two time indexes, as WriteBatch wrote it) with the log and
// chunks: 1000 grains appending one reading per step.
func BenchmarkLayout(b *testing.B) {
	b.Run("old=row-per-reading", func(b *testing.B) {
		s := openOldLayout(b)
		defer s.Close()
		benchWrites(b, s, storetest.BenchConfig{Devices: 1000})
	})
	b.Run("new=log+chunks", func(b *testing.B) {
		s, err := sqlite.Open(b.TempDir(), sqlite.Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		benchWrites(b, s, storetest.BenchConfig{Devices: 1000})
	})
}

// BenchmarkLoadLargeBatches is a bulk load as simulations/bench does it: 8 writers, each Append
// 1000 readings of one device.
func BenchmarkLoadLargeBatches(b *testing.B) {
	s, err := sqlite.Open(b.TempDir(), sqlite.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	benchWrites(b, s, storetest.BenchConfig{Devices: 8, ReadingsPerStep: 1000})
}

// oldStore is the pre-schema-9 readings write path, kept here only to measure against.
type oldStore struct {
	actors.Store // nil: only Append and Stats are used
	db           *sql.DB
	c            *store.Committer
	ins          *sql.Stmt
}

func (o *oldStore) Append(ctx context.Context, id string, b actors.Batch) error {
	return o.c.Append(ctx, id, b)
}
func (o *oldStore) Stats() store.CommitStats { return o.c.Stats() }
func (o *oldStore) Close() error {
	o.c.Close()
	return o.db.Close()
}
func (o *oldStore) Transient(error) bool { return false }
func (o *oldStore) WriteBatch(ctx context.Context, reqs []*store.Request) error {
	tx, err := o.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	ins := tx.StmtContext(ctx, o.ins)
	for _, r := range reqs {
		for _, rd := range r.Batch.Readings {
			var dt any
			if !rd.DeviceTime.IsZero() {
				dt = store.Micros(rd.DeviceTime)
			}
			if _, err := ins.ExecContext(ctx, r.DeviceID, int64(rd.Seq), dt, store.Micros(rd.ReceivedAt), store.Metric(rd.SoilMoisture),
				store.Metric(rd.Temperature), store.Metric(rd.TankLevel), int64(rd.SupplyMillivolt)); err != nil {
				tx.Rollback()
				return err
			}
		}
	}
	return tx.Commit()
}

func openOldLayout(b *testing.B) *oldStore {
	path := filepath.Join(b.TempDir(), "old.db")
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=cache_size(-32768)&_txlock=immediate")
	if err != nil {
		b.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(`CREATE TABLE readings (device_id TEXT NOT NULL, seq INTEGER NOT NULL, device_time INTEGER,
			received_at INTEGER NOT NULL, soil_moisture REAL, temperature REAL, tank_level REAL, supply_mv INTEGER NOT NULL,
			PRIMARY KEY (device_id, seq)) STRICT, WITHOUT ROWID;
		CREATE INDEX readings_by_time ON readings (device_id, received_at);
		CREATE INDEX readings_by_received ON readings (received_at);`); err != nil {
		b.Fatal(err)
	}
	o := &oldStore{db: db}
	if o.ins, err = db.Prepare(`INSERT INTO readings (device_id, seq, device_time, received_at, soil_moisture, temperature, tank_level, supply_mv)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (device_id, seq) DO NOTHING`); err != nil {
		b.Fatal(err)
	}
	o.c = store.NewCommitter(store.CommitOptions{}, o)
	return o
}

// BenchmarkHistory builds a store of SPROUT_BENCH_READINGS readings (default 1,000,000; the
// numbers in store/README.md use 10,000,000) through Append in batches of 1000: 2000 devices, one
// reading every 30 days / (readings per device), then measures a device's last 24 h of raw
// readings and its 30 days in hourly buckets. SPROUT_BENCH_DIR keeps the store between runs.
func BenchmarkHistory(b *testing.B) {
	total := 1_000_000
	if v := os.Getenv("SPROUT_BENCH_READINGS"); v != "" {
		total, _ = strconv.Atoi(v)
	}
	const devices = 2000
	per := total / devices
	end := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	span := 30 * 24 * time.Hour
	step := span / time.Duration(per)
	dir := os.Getenv("SPROUT_BENCH_DIR")
	if dir == "" {
		dir = b.TempDir()
	}
	s, err := sqlite.Open(dir, sqlite.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	id := func(d int) string { return fmt.Sprintf("hist-%05d", d) }
	if rec, _ := s.LoadDevice(ctx, id(devices-1)); rec.LastSeq < uint64(per) {
		began := time.Now()
		var wg sync.WaitGroup
		work := make(chan int)
		for range 8 {
			wg.Go(func() {
				for d := range work {
					for first := 0; first < per; first += 1000 {
						batch := make([]actors.Reading, 0, 1000)
						for i := first; i < min(first+1000, per); i++ {
							at := end.Add(-span + time.Duration(i)*step + time.Duration(d)*time.Millisecond)
							batch = append(batch, actors.Reading{Seq: uint64(i + 1), ReceivedAt: at, DeviceTime: at,
								SoilMoisture: float32(i % 100), Temperature: 20 + float32(i%7), TankLevel: 50, SupplyMillivolt: 3300})
						}
						if err := s.Append(ctx, id(d), actors.Batch{Readings: batch}); err != nil {
							b.Error(err)
							return
						}
					}
				}
			})
		}
		for d := range devices {
			work <- d
		}
		close(work)
		wg.Wait()
		loaded := time.Since(began)
		if err := s.Compact(ctx, time.Time{}); err != nil {
			b.Fatal(err)
		}
		b.Logf("compacted in %s", (time.Since(began) - loaded).Round(time.Millisecond))
		if err := s.Compact(ctx, time.Now()); err != nil {
			b.Fatal(err)
		}
		b.Logf("loaded %d readings in %s (%.0f readings/s through Append), compacted and merged in %s more",
			devices*per, loaded.Round(time.Millisecond), float64(devices*per)/loaded.Seconds(), (time.Since(began) - loaded).Round(time.Millisecond))
		if fi, err := os.Stat(filepath.Join(dir, sqlite.FileName)); err == nil {
			b.Logf("database: %.1f MB, %.1f bytes a reading", float64(fi.Size())/1e6, float64(fi.Size())/float64(devices*per))
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	b.Run("raw-24h", func(b *testing.B) {
		for b.Loop() {
			rs, err := s.Readings(ctx, id(rng.IntN(devices)), end.Add(-24*time.Hour), end, 0)
			if err != nil || len(rs) == 0 {
				b.Fatalf("%d readings, %v", len(rs), err)
			}
		}
	})
	b.Run("hourly-30d", func(b *testing.B) {
		for b.Loop() {
			bs, err := s.Buckets(ctx, id(rng.IntN(devices)), end.Add(-span), end, time.Hour)
			if err != nil || len(bs) < min(700, per/2) {
				b.Fatalf("%d buckets, %v", len(bs), err)
			}
		}
	})
}
