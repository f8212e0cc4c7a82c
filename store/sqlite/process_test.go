package sqlite_test

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/store"
	"github.com/sprout-iot/sprout/store/sqlite"
	"github.com/sprout-iot/sprout/store/storetest"
)

// TestHelperProcess is not a test: it is the second process the tests below start (the test
// binary re-executed), holding a data directory or appending until it is killed.
func TestHelperProcess(t *testing.T) {
	mode, dir := os.Getenv("SPROUT_SQLITE_HELPER"), os.Getenv("SPROUT_SQLITE_DIR")
	if mode == "" {
		t.Skip("helper process only")
	}
	opts := sqlite.Options{}
	if os.Getenv("SPROUT_SQLITE_COMPACT") != "" {
		opts = compacting
	}
	s, err := sqlite.Open(dir, opts)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	fmt.Println("ready")
	if mode == "hold" {
		select {}
	}
	// append: 20 devices append concurrently; a line is printed only after Append returned nil.
	var mu sync.Mutex
	for d := range 20 {
		go func() {
			id := fmt.Sprintf("pot-%02d", d)
			for seq := uint64(1); ; seq++ {
				b := actors.Batch{
					Readings: []actors.Reading{{Seq: seq, ReceivedAt: time.Now(), SoilMoisture: 40, SupplyMillivolt: 3300}},
					Snapshot: []byte(strconv.FormatUint(seq, 10)),
				}
				if err := s.Append(context.Background(), id, b); err != nil {
					fmt.Println("error", err)
					os.Exit(2)
				}
				mu.Lock()
				fmt.Println("acked", id, seq)
				mu.Unlock()
			}
		}()
	}
	select {}
}

func startHelper(t *testing.T, mode, dir string) (*exec.Cmd, *bufio.Scanner) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(), "SPROUT_SQLITE_HELPER="+mode, "SPROUT_SQLITE_DIR="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := bufio.NewScanner(out)
	if !lines.Scan() || lines.Text() != "ready" {
		t.Fatalf("helper did not start: %q %v", lines.Text(), lines.Err())
	}
	return cmd, lines
}

func TestSecondProcessCannotOpenTheDataDir(t *testing.T) {
	dir := t.TempDir()
	holder, _ := startHelper(t, "hold", dir)

	_, err := sqlite.Open(dir, sqlite.Options{})
	if !errors.Is(err, sqlite.ErrDataDirInUse) {
		t.Fatalf("Open while another process holds the dir = %v, want ErrDataDirInUse", err)
	}
	if pid := strconv.Itoa(holder.Process.Pid); !strings.Contains(err.Error(), pid) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("error %q names neither the holder's pid %s nor the dir", err, pid)
	}
	if _, err := sqlite.Migrate(context.Background(), dir); !errors.Is(err, sqlite.ErrDataDirInUse) {
		t.Fatalf("Migrate while another process holds the dir = %v, want ErrDataDirInUse", err)
	}
	t.Logf("refused with: %v", err)

	// The kernel releases the lock however the holder dies.
	holder.Process.Kill()
	holder.Wait()
	s, err := sqlite.Open(dir, sqlite.Options{})
	if err != nil {
		t.Fatalf("Open after the holder was killed: %v", err)
	}
	s.Close()
}

func TestSecondOpenInTheSameProcessFails(t *testing.T) {
	dir := t.TempDir()
	s, err := sqlite.Open(dir, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sqlite.Open(dir, sqlite.Options{}); !errors.Is(err, sqlite.ErrDataDirInUse) {
		t.Fatalf("second Open = %v, want ErrDataDirInUse", err)
	}
	s.Close()
	s, err = sqlite.Open(dir, sqlite.Options{})
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	s.Close()
}

func TestAcknowledgedAppendsSurviveSIGKILL(t *testing.T) {
	dir := t.TempDir()
	cmd, lines := startHelper(t, "append", dir)
	acked := map[string]uint64{}
	n := 0
	for n < 2000 && lines.Scan() {
		var id string
		var seq uint64
		if _, err := fmt.Sscanf(lines.Text(), "acked %s %d", &id, &seq); err != nil {
			t.Fatalf("helper: %s", lines.Text())
		}
		acked[id] = max(acked[id], seq)
		n++
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
	for id, seq := range acked {
		rec, err := s.LoadDevice(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if rec.LastSeq < seq {
			t.Fatalf("%s: acknowledged up to seq %d before SIGKILL, only %d stored", id, seq, rec.LastSeq)
		}
		if got, _ := strconv.ParseUint(string(rec.Snapshot), 10, 64); got != rec.LastSeq {
			t.Fatalf("%s: snapshot %q does not match last seq %d: a step was half stored", id, rec.Snapshot, rec.LastSeq)
		}
	}
	t.Logf("%d appends acknowledged by the killed process, all present", n)
}

func TestMigrateReportsTheSchemaVersion(t *testing.T) {
	dir := t.TempDir()
	v, err := sqlite.Migrate(context.Background(), dir)
	if err != nil || v < 2 {
		t.Fatalf("Migrate = %d, %v; want version 2 or later", v, err)
	}
	if again, err := sqlite.Migrate(context.Background(), dir); err != nil || again != v {
		t.Fatalf("Migrate again = %d, %v; want version %d, nothing to do", again, err, v)
	}
	// A database migrated by a newer sprout is refused, not written to with an old schema in mind.
	db, err := sql.Open("sqlite", filepath.Join(dir, sqlite.FileName))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO goose_db_version (version_id, is_applied) VALUES (99, 1)`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := sqlite.Open(dir, sqlite.Options{}); err == nil || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("Open on a newer schema = %v, want a clear refusal", err)
	}
}

func TestDatabaseUsesWALAndFullSync(t *testing.T) {
	dir := t.TempDir()
	s, err := sqlite.Open(dir, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := os.Stat(filepath.Join(dir, sqlite.FileName+"-wal")); err != nil {
		t.Fatalf("no WAL file beside the database: %v", err)
	}
	if got := s.Pragma(t.Context(), "synchronous"); got != "2" {
		t.Fatalf("synchronous = %s, want 2 (FULL)", got)
	}
	if got := s.Pragma(t.Context(), "journal_mode"); got != "wal" {
		t.Fatalf("journal_mode = %s, want wal", got)
	}
}

// TestRowRefusedByTheDatabaseFailsAlone makes SQLite itself refuse one device's rows (a trigger
// added for the test): that Append fails, the others in the same group commit are stored.
func TestRowRefusedByTheDatabaseFailsAlone(t *testing.T) {
	dir := t.TempDir()
	s, err := sqlite.Open(dir, sqlite.Options{CommitOptions: store.CommitOptions{MaxWait: 50 * time.Millisecond, WaitAfterRows: 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	db, err := sql.Open("sqlite", filepath.Join(dir, sqlite.FileName)+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`CREATE TRIGGER test_refuse BEFORE INSERT ON snapshots WHEN NEW.device_id = 'pot-evil'
		BEGIN SELECT RAISE(ABORT, 'refused by test trigger'); END`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	storetest.CheckRefusedRowFailsAlone(t, s, "pot-evil")
}
