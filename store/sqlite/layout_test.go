package sqlite_test

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/store/sqlite"
)

// TestKilledWhileCompactingNothingIsLostOrCountedTwice kills a process that appends while its
// compactor folds the log into chunks all the time (every few ms, chunks of 3 readings, hours
// merged at once): a chunk written without its log rows deleted (or the reverse) would show up
// as a reading twice (or not at all) after the restart.
func TestKilledWhileCompactingNothingIsLostOrCountedTwice(t *testing.T) {
	dir := t.TempDir()
	os.Setenv("SPROUT_SQLITE_COMPACT", "1")
	cmd, lines := startHelper(t, "append", dir)
	os.Unsetenv("SPROUT_SQLITE_COMPACT")
	acked := map[string]uint64{}
	for n := 0; n < 3000 && lines.Scan(); n++ {
		var id string
		var seq uint64
		if _, err := fmt.Sscanf(lines.Text(), "acked %s %d", &id, &seq); err != nil {
			t.Fatalf("helper: %s", lines.Text())
		}
		acked[id] = max(acked[id], seq)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	s, err := sqlite.Open(dir, sqlite.Options{})
	if err != nil {
		t.Fatalf("Open after SIGKILL: %v", err)
	}
	defer s.Close()
	ctx := context.Background()
	check := func(when string) {
		for id, seq := range acked {
			rs, err := s.Readings(ctx, id, time.Unix(0, 0), time.Now().Add(time.Hour), 0)
			if err != nil {
				t.Fatal(err)
			}
			seen := map[uint64]bool{}
			for _, r := range rs {
				if seen[r.Seq] {
					t.Fatalf("%s: %s: seq %d stored twice", when, id, r.Seq)
				}
				seen[r.Seq] = true
			}
			for q := uint64(1); q <= seq; q++ {
				if !seen[q] {
					t.Fatalf("%s: %s: acknowledged seq %d missing (acked up to %d, %d stored)", when, id, q, seq, len(rs))
				}
			}
			var n int
			bs, err := s.Buckets(ctx, id, time.Now().Add(-time.Hour).Truncate(time.Hour), time.Now().Add(time.Hour), time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			for _, b := range bs {
				n += b.Count
			}
			if n != len(rs) {
				t.Fatalf("%s: %s: buckets count %d readings, Readings returns %d", when, id, n, len(rs))
			}
		}
	}
	check("after restart")
	if err := s.Compact(ctx, time.Now().Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if s.TailRows() != 0 {
		t.Fatalf("%d readings left in the tail after compacting everything", s.TailRows())
	}
	check("after compacting and merging")
}

// TestMigrationMovesOldReadingsIntoChunks opens a database left by a sprout at schema 8, with
// readings in the old table, and finds every one of them, aggregated and deduplicated as before.
func TestMigrationMovesOldReadingsIntoChunks(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	if err := sqlite.MigrateTo(ctx, dir, 8); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", filepath.Join(dir, sqlite.FileName))
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	var want = map[string][]actors.Reading{}
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	ins, err := tx.Prepare(`INSERT INTO readings (device_id, seq, device_time, received_at, soil_moisture, temperature, tank_level, supply_mv)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		t.Fatal(err)
	}
	for d, id := range []string{"pot-a", "pot-b", "植物-🌱"} {
		for i := range 5000 { // more than one chunk per hour for pot-a (a reading every 0.72 s / 3 s)
			seq := uint64(i + 1)
			at := t0.Add(time.Duration(i) * time.Duration(720+d*2000) * time.Millisecond)
			r := actors.Reading{Seq: seq, ReceivedAt: at, SoilMoisture: float32(i%40) + 0.5, Temperature: 20, TankLevel: float32(d), SupplyMillivolt: 3300}
			var moist, devTime any = float64(r.SoilMoisture), nil
			if i%9 == 0 {
				r.SoilMoisture, moist = float32(math.NaN()), nil
			}
			if i%2 == 0 {
				r.DeviceTime, devTime = at.Add(-time.Second), at.Add(-time.Second).UnixMicro()
			}
			if _, err := ins.Exec(id, int64(seq), devTime, at.UnixMicro(), moist, float64(r.Temperature), float64(r.TankLevel), 3300); err != nil {
				t.Fatal(err)
			}
			want[id] = append(want[id], r)
		}
	}
	ins.Close()
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	db.Close()

	s, err := sqlite.Open(dir, sqlite.Options{})
	if err != nil {
		t.Fatalf("Open on schema 8 with readings: %v", err)
	}
	defer s.Close()
	for id, rs := range want {
		got, err := s.Readings(ctx, id, t0.Add(-time.Hour), t0.Add(10*time.Hour), 0)
		if err != nil || len(got) != len(rs) {
			t.Fatalf("%s: %d readings after migration (%v), want %d", id, len(got), err, len(rs))
		}
		for i := range rs {
			g, w := got[i], rs[i]
			if g.Seq != w.Seq || !g.ReceivedAt.Equal(w.ReceivedAt) || !g.DeviceTime.Equal(w.DeviceTime) ||
				!(g.SoilMoisture == w.SoilMoisture || (g.SoilMoisture != g.SoilMoisture && w.SoilMoisture != w.SoilMoisture)) {
				t.Fatalf("%s reading %d: got %+v, want %+v", id, i, g, w)
			}
		}
		rec, err := s.LoadDevice(ctx, id)
		if err != nil || rec.LastSeq != 5000 || rec.Latest == nil || rec.Latest.Seq != 5000 {
			t.Fatalf("%s: LoadDevice = %+v, %v", id, rec, err)
		}
		// Resends of migrated readings are recognised.
		if err := s.Append(ctx, id, actors.Batch{Readings: []actors.Reading{{Seq: 17, ReceivedAt: t0.Add(9 * time.Hour)}}}); err != nil {
			t.Fatal(err)
		}
		var n int
		bs, err := s.Buckets(ctx, id, t0, t0.Add(10*time.Hour), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range bs {
			n += b.Count
		}
		if n != len(rs) {
			t.Fatalf("%s: buckets count %d, want %d", id, n, len(rs))
		}
	}
	s.Close()
	db, err = sql.Open("sqlite", filepath.Join(dir, sqlite.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var old int
	if err := db.QueryRow(`SELECT count(*) FROM sqlite_master WHERE name = 'readings'`).Scan(&old); err != nil || old != 0 {
		t.Fatalf("old readings table still there (%d, %v)", old, err)
	}
	var version int64
	if err := db.QueryRow(`SELECT max(version_id) FROM goose_db_version`).Scan(&version); err != nil || version < 9 {
		t.Fatalf("schema version %d, %v; want 9 or later", version, err)
	}
}
