package store_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/store"
)

// sqlTx runs the coalescer on a real SQLite file and counts transactions.
type sqlTx struct {
	db      *sql.DB
	begins  atomic.Int64
	gate    chan struct{} // when set, Begin waits for it
	entered chan struct{} // when set, Begin signals it first
}

func (b *sqlTx) Begin(ctx context.Context) (*sql.Tx, error) {
	if b.entered != nil {
		select {
		case b.entered <- struct{}{}:
		default:
		}
	}
	if b.gate != nil {
		<-b.gate
	}
	b.begins.Add(1)
	return b.db.BeginTx(ctx, nil)
}
func (b *sqlTx) Commit(_ context.Context, tx *sql.Tx) error { return tx.Commit() }
func (b *sqlTx) Rollback(tx *sql.Tx)                        { _ = tx.Rollback() }
func (b *sqlTx) Exec(ctx context.Context, tx *sql.Tx, stmt string) error {
	_, err := tx.ExecContext(ctx, stmt)
	return err
}

func openDB(t *testing.T) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "c.db")+"?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	if _, err := db.Exec(`CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	return db
}

func insert(id int, v any) store.TxOp[*sql.Tx] {
	return func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO t (id, v) VALUES (?, ?)`, id, v)
		return err
	}
}

func count(t *testing.T, db *sql.DB) int {
	t.Helper()
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM t`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestCoalescerSharesTransactionsAndIsolatesFailures(t *testing.T) {
	db := openDB(t)
	b := &sqlTx{db: db}
	c := store.NewCoalescer[*sql.Tx](store.CoalesceOptions{}, b)
	defer c.Close()

	const n = 400
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i%50 == 7 {
				errs[i] = c.Do(context.Background(), insert(i, nil)) // NOT NULL: refused
				return
			}
			errs[i] = c.Do(context.Background(), insert(i, fmt.Sprint(i)))
		}()
	}
	wg.Wait()
	failed := 0
	for i, err := range errs {
		switch {
		case i%50 == 7 && err == nil:
			t.Errorf("op %d should have failed", i)
		case i%50 == 7:
			failed++
		case err != nil:
			t.Errorf("op %d: %v", i, err)
		}
	}
	if got, want := count(t, db), n-failed; got != want {
		t.Fatalf("%d rows, want %d: a failed op took others with it or was half-written", got, want)
	}
	if b.begins.Load() >= n {
		t.Fatalf("%d transactions for %d concurrent writes: nothing was shared", b.begins.Load(), n)
	}
	t.Logf("%d writes in %d transactions", n, b.begins.Load())
}

func TestCoalescerBoundsItsQueueAndSkipsAbandonedOps(t *testing.T) {
	db := openDB(t)
	b := &sqlTx{db: db, gate: make(chan struct{}), entered: make(chan struct{}, 1)}
	c := store.NewCoalescer[*sql.Tx](store.CoalesceOptions{QueueSize: 2}, b)

	// The first op is taken and held at Begin; two more fill the queue; the next is refused at once.
	res := make(chan error, 3)
	go func() { res <- c.Do(context.Background(), insert(1, "a")) }()
	<-b.entered
	cancelled, cancel := context.WithCancel(context.Background())
	go func() { res <- c.Do(cancelled, insert(2, "b")) }()
	go func() { res <- c.Do(context.Background(), insert(3, "c")) }()
	for c.Queued() < 2 {
		time.Sleep(time.Millisecond)
	}
	if err := c.Do(context.Background(), insert(4, "d")); !errors.Is(err, actors.ErrUnavailable) {
		t.Fatalf("full queue: want ErrUnavailable at once, got %v", err)
	}
	cancel() // op 2's caller gives up before its op was taken: it must never run
	close(b.gate)
	for range 3 {
		<-res
	}
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM t WHERE id = 2`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("an op whose caller gave up was written (%d, %v)", n, err)
	}
	if got := count(t, db); got != 2 {
		t.Fatalf("%d rows, want 2 (ops 1 and 3)", got)
	}
	c.Close()
	if err := c.Do(context.Background(), insert(9, "z")); !errors.Is(err, actors.ErrUnavailable) {
		t.Fatalf("after Close: want ErrUnavailable, got %v", err)
	}
}
