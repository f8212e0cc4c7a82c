// Package sqlite is Sprout's embedded store: one SQLite file in the node's data directory, for a
// single node (a multi-node cluster needs store/postgres). It implements actors.Store.
//
// Durability: WAL with synchronous=FULL, so an Append that returned nil survives SIGKILL and power
// loss. Writes go through one connection (SQLite has one writer anyway) fed by the group committer
// (grain steps) and a coalescer (user snapshots, bindings, the push outbox), so that concurrent
// writers share transactions and fsyncs; reads use a small pool of query-only connections that WAL
// lets run beside the writer. An exclusive lock on the data directory keeps a second process from
// opening it.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/store"
)

// FileName is the database file inside the data directory.
const FileName = "sprout.db"

// Options tune the SQLite store. The zero value means the defaults.
type Options struct {
	// CommitOptions bound the group committer (queue, batch size, waits, timeouts). Committers is
	// ignored: SQLite has one writer.
	store.CommitOptions
	// BusyTimeout is how long a connection waits for a lock held by another connection of this
	// process (a checkpoint, a registry write) before failing with SQLITE_BUSY. Default 5 s.
	BusyTimeout time.Duration
	// ReadConns is the number of query-only connections for reads. Default 4.
	ReadConns int
	// CacheKiB is the page cache of the writer connection. Default 32768 (32 MiB).
	CacheKiB int

	// Readings: each group commit appends one reading_log row; the compactor folds log rows into
	// per-device hourly chunks (store/README.md, "Readings: a log and hourly chunks").

	// CompactAge is how long a reading stays in the log (and in the in-memory tail) before the
	// compactor folds it into its device's chunk for the hour. Default 5 s.
	CompactAge time.Duration
	// CompactRows bounds the tail: beyond this many uncompacted readings the oldest are folded
	// at once, whatever their age. It bounds the tail's memory (about 80 bytes a reading) and the
	// work of Open, which reads the log back. Default 200000.
	CompactRows int
	// CompactBatch is the most readings one compaction or merge transaction folds (appends wait
	// for it on the one writer). Default 20000.
	CompactBatch int
	// CompactParts is the most chunk parts (one per device and hour) one compaction transaction
	// writes. A fold of the log takes a device's readings whole, a few devices per transaction,
	// so each transaction stays short (appends wait for it) while parts stay large. Default 32 (a
	// flood from 2000 pots: 128 gave 26.6k acked frames/s, 32 gave 35.9-37.8k, 16 26.9k).
	CompactParts int
	// MaxChunkReadings is the most readings one chunk holds; a device's hour with more is kept in
	// several parts. Default 4096.
	MaxChunkReadings int
	// MergeSettle is how long after an hour ends the compactor merges the hour's parts into
	// sealed chunks. A reading arriving later adds a part, merged at the next pass. Default 1 min.
	MergeSettle time.Duration
}

// Defaults for Options.
const (
	DefaultBusyTimeout = 5 * time.Second
	DefaultReadConns   = 4
	DefaultCacheKiB    = 32 << 10

	DefaultCompactAge       = 5 * time.Second
	DefaultCompactRows      = 200000
	DefaultCompactBatch     = 20000
	DefaultCompactParts     = 32
	DefaultMaxChunkReadings = 4096
	DefaultMergeSettle      = time.Minute
)

func (o Options) withDefaults() Options {
	o.CommitOptions = o.CommitOptions.WithDefaults()
	o.CommitOptions.Committers = 1
	if o.BusyTimeout <= 0 {
		o.BusyTimeout = DefaultBusyTimeout
	}
	if o.ReadConns <= 0 {
		o.ReadConns = DefaultReadConns
	}
	if o.CacheKiB <= 0 {
		o.CacheKiB = DefaultCacheKiB
	}
	if o.CompactAge <= 0 {
		o.CompactAge = DefaultCompactAge
	}
	if o.CompactRows <= 0 {
		o.CompactRows = DefaultCompactRows
	}
	if o.CompactBatch <= 0 {
		o.CompactBatch = DefaultCompactBatch
	}
	if o.CompactParts <= 0 {
		o.CompactParts = DefaultCompactParts
	}
	if o.MaxChunkReadings <= 0 {
		o.MaxChunkReadings = DefaultMaxChunkReadings
	}
	if o.MergeSettle <= 0 {
		o.MergeSettle = DefaultMergeSettle
	}
	return o
}

// Store is the SQLite implementation of actors.Store.
type Store struct {
	dir   string
	lock  *dirLock
	w     *sql.DB // exactly one connection: the writer
	r     *sql.DB // query-only connections
	c     *store.Committer
	tx    *store.Coalescer[*sql.Tx] // small writes (users, bindings, the outbox) share transactions
	stmts struct{ log, event, snapshot, claim, epoch *sql.Stmt }
	maint sync.Mutex // one Maintain at a time
	opts  Options

	tail   tail              // readings committed to reading_log, not yet in chunks
	maxSeq map[string]uint64 // per device: highest stored seq (committer goroutine only)
	// epochs caches each device's committed activation epoch (committer goroutine only). It is
	// exact: the directory lock makes this process the only writer, and only WriteBatch's claims
	// change an epoch. It spares every fenced Append a SELECT.
	epochs                   map[string]uint64
	foldAt                   int64 // the last log row of a fold left unfinished (fold_progress), 0 if none (compactor only)
	logBuf                   []byte
	compactMu                sync.Mutex // one compaction or merge at a time
	lastMerge                time.Time
	compactStop, compactDone chan struct{}
	compactKick              chan struct{}
	closeOnce                sync.Once
	compactErr               atomic.Value // last compactor error (string), for tests and logs
}

var _ actors.Store = (*Store)(nil)

// Open opens (creating if needed) the store in dir: it takes the directory's lock, opens
// dir/sprout.db, applies pending migrations and starts the group committer.
func Open(dir string, opts Options) (*Store, error) {
	opts = opts.withDefaults()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("store/sqlite: create data dir: %w", err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	s := &Store{dir: dir, lock: lock, opts: opts, maxSeq: map[string]uint64{}, epochs: map[string]uint64{},
		compactStop: make(chan struct{}), compactDone: make(chan struct{}), compactKick: make(chan struct{}, 1)}
	if err := s.open(opts); err != nil {
		s.closeDBs()
		lock.release()
		return nil, err
	}
	s.c = store.NewCommitter(opts.CommitOptions, backend{s})
	s.tx = store.NewCoalescer[*sql.Tx](store.CoalesceOptions{Timeout: opts.WriteTimeout}, txBackend{s.w})
	go s.compactLoop()
	return s, nil
}

func dsn(dir string, opts Options, readOnly bool) string {
	u := "file:" + filepath.Join(dir, FileName) +
		fmt.Sprintf("?_pragma=busy_timeout(%d)", opts.BusyTimeout.Milliseconds()) +
		"&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=foreign_keys(1)"
	if readOnly {
		return u + "&_pragma=query_only(1)"
	}
	return u + fmt.Sprintf("&_pragma=cache_size(%d)&_txlock=immediate", -opts.CacheKiB)
}

func (s *Store) open(opts Options) error {
	ctx := context.Background()
	var err error
	if s.w, err = sql.Open("sqlite", dsn(s.dir, opts, false)); err != nil {
		return fmt.Errorf("store/sqlite: open %s: %w", s.dir, err)
	}
	s.w.SetMaxOpenConns(1)
	s.w.SetMaxIdleConns(1)
	s.w.SetConnMaxLifetime(0)
	s.w.SetConnMaxIdleTime(0)
	if _, err := migrate(ctx, s.w); err != nil {
		return err
	}
	if err := s.loadTail(ctx); err != nil {
		return err
	}
	if s.r, err = sql.Open("sqlite", dsn(s.dir, opts, true)); err != nil {
		return fmt.Errorf("store/sqlite: open %s: %w", s.dir, err)
	}
	s.r.SetMaxOpenConns(opts.ReadConns)
	s.r.SetMaxIdleConns(opts.ReadConns)
	s.r.SetConnMaxIdleTime(0)
	s.r.SetConnMaxLifetime(0)

	prepare := func(q string) *sql.Stmt {
		if err != nil {
			return nil
		}
		var st *sql.Stmt
		st, err = s.w.PrepareContext(ctx, q)
		return st
	}
	s.stmts.log = prepare(`INSERT INTO reading_log (data) VALUES (?)`)
	s.stmts.event = prepare(`INSERT INTO device_events (device_id, at, kind, seq, body)
		VALUES (?, ?, ?, ?, ?) ON CONFLICT (device_id, seq) WHERE seq > 0 DO NOTHING`)
	s.stmts.snapshot = prepare(`INSERT INTO snapshots (device_id, body, updated_at) VALUES (?, ?, ?)
		ON CONFLICT (device_id) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at`)
	s.stmts.claim = prepare(`UPDATE devices SET epoch = ? WHERE id = ?`)
	s.stmts.epoch = prepare(`SELECT epoch FROM devices WHERE id = ?`)
	if err != nil {
		return fmt.Errorf("store/sqlite: prepare statements: %w", err)
	}
	return nil
}

// Close writes every queued Append, then closes the database and releases the data directory.
func (s *Store) Close() error {
	s.c.Close()
	s.tx.Close()
	s.closeOnce.Do(func() {
		close(s.compactStop)
		<-s.compactDone
	})
	err := s.closeDBs()
	s.lock.release()
	return err
}

func (s *Store) closeDBs() error {
	var errs []error
	for _, st := range []*sql.Stmt{s.stmts.log, s.stmts.event, s.stmts.snapshot, s.stmts.claim, s.stmts.epoch} {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	if s.r != nil {
		errs = append(errs, s.r.Close())
	}
	if s.w != nil {
		errs = append(errs, s.w.Close())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("store/sqlite: close: %w", err)
	}
	return nil
}

// Append queues one grain step for the next group commit and returns once it is durable.
func (s *Store) Append(ctx context.Context, deviceID string, b actors.Batch) error {
	return s.c.Append(ctx, deviceID, b)
}

// txBackend is the coalescer's view of the writer connection.
type txBackend struct{ w *sql.DB }

func (b txBackend) Begin(ctx context.Context) (*sql.Tx, error) { return b.w.BeginTx(ctx, nil) }
func (b txBackend) Commit(_ context.Context, tx *sql.Tx) error { return tx.Commit() }
func (b txBackend) Rollback(tx *sql.Tx)                        { _ = tx.Rollback() }
func (b txBackend) Exec(ctx context.Context, tx *sql.Tx, stmt string) error {
	_, err := tx.ExecContext(ctx, stmt)
	return err
}

// write runs op in a transaction shared with other small writes (see store.Coalescer).
func (s *Store) write(ctx context.Context, what string, op store.TxOp[*sql.Tx]) error {
	if err := s.tx.Do(ctx, op); err != nil {
		return readErr(what, err)
	}
	return nil
}

// backend is the committer's view of the store.
type backend struct{ s *Store }

func (b backend) Transient(err error) bool { return transient(err) }

func (b backend) WriteBatch(ctx context.Context, reqs []*store.Request) (err error) {
	s := b.s
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tx.Rollback()
		}
	}()
	insEvent := tx.StmtContext(ctx, s.stmts.event)
	putSnapshot := tx.StmtContext(ctx, s.stmts.snapshot)
	claim := tx.StmtContext(ctx, s.stmts.claim)
	epochOf := tx.StmtContext(ctx, s.stmts.epoch)
	now := store.Micros(time.Now())
	dd := dedupe{s: s, tx: tx, ctx: ctx, batch: map[string][]actors.Reading{}, max: map[string]uint64{}}
	claims := map[string]uint64{} // epochs this transaction sets: cached once it commits
	// commit commits the transaction and then caches what it claimed; a failed commit drops those
	// devices from the cache (read again next time).
	commit := func() error {
		if err := tx.Commit(); err != nil {
			for id := range claims {
				delete(s.epochs, id)
			}
			return err
		}
		for id, e := range claims {
			s.epochs[id] = e
		}
		return nil
	}
	for _, r := range reqs {
		// Fencing: SQLite has one writer, so claims and checks inside this transaction are ordered
		// with every other write.
		if r.Batch.Claim {
			var res sql.Result
			if res, err = claim.ExecContext(ctx, int64(r.Batch.Epoch), r.DeviceID); err != nil {
				return fmt.Errorf("claim %q: %w", r.DeviceID, err)
			}
			claims[r.DeviceID] = r.Batch.Epoch
			if n, _ := res.RowsAffected(); n == 0 {
				claims[r.DeviceID] = 0 // no such device: nothing was claimed
			}
		} else if r.Batch.Epoch != 0 {
			cur, ok := claims[r.DeviceID]
			if !ok {
				cur, ok = s.epochs[r.DeviceID]
			}
			if !ok {
				var stored int64
				if err = epochOf.QueryRowContext(ctx, r.DeviceID).Scan(&stored); err != nil && !errors.Is(err, sql.ErrNoRows) {
					return fmt.Errorf("epoch of %q: %w", r.DeviceID, err)
				}
				err = nil
				cur = uint64(stored)
				s.epochs[r.DeviceID] = cur // committed before this transaction: true whatever it does
			}
			if cur != r.Batch.Epoch {
				r.Fenced = true
				continue
			}
		}
		for i := range r.Batch.Readings {
			if _, err = dd.accept(r.DeviceID, r.Batch.Readings[i]); err != nil {
				return fmt.Errorf("reading %d of %q: %w", r.Batch.Readings[i].Seq, r.DeviceID, err)
			}
		}
		for i := range r.Batch.Events {
			e := &r.Batch.Events[i]
			if _, err = insEvent.ExecContext(ctx, r.DeviceID, store.Micros(e.At), e.Kind, int64(e.Seq), body(e.Body)); err != nil {
				return fmt.Errorf("insert %s event of %q: %w", e.Kind, r.DeviceID, err)
			}
		}
		if r.Batch.Snapshot != nil {
			if _, err = putSnapshot.ExecContext(ctx, r.DeviceID, r.Batch.Snapshot, now); err != nil {
				return fmt.Errorf("store snapshot of %q: %w", r.DeviceID, err)
			}
		}
	}
	if len(dd.order) == 0 {
		return commit()
	}
	// All readings of the commit: one log row.
	groups := make([]logGroup, len(dd.order))
	for i, id := range dd.order {
		groups[i] = logGroup{id, dd.batch[id]}
	}
	s.logBuf = encodeLog(s.logBuf[:0], groups)
	res, err := tx.StmtContext(ctx, s.stmts.log).ExecContext(ctx, s.logBuf)
	if err != nil {
		return fmt.Errorf("append to the reading log: %w", err)
	}
	logID, err := res.LastInsertId()
	if err != nil {
		return err
	}
	if err = commit(); err != nil {
		return err
	}
	s.tail.mu.Lock()
	s.tail.add(logID, groups, time.Now())
	over := s.tail.rows > s.opts.CompactRows
	s.tail.mu.Unlock()
	for id, m := range dd.max {
		s.maxSeq[id] = m
	}
	if over {
		select {
		case s.compactKick <- struct{}{}:
		default:
		}
	}
	return nil
}

func nullMicros(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return store.Micros(t)
}

// body binds an event body as TEXT (a []byte would bind as BLOB, which a STRICT TEXT column refuses).
func body(b []byte) any {
	if b == nil {
		return nil
	}
	return string(b)
}

// transient reports whether err means "try again later" rather than "this write is refused".
func transient(err error) bool {
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_NOMEM, sqlite3.SQLITE_INTERRUPT,
			sqlite3.SQLITE_IOERR, sqlite3.SQLITE_FULL, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PROTOCOL:
			return true
		}
		return false
	}
	return true // not from SQLite itself: a closed connection, a cancelled context
}

// readErr wraps a failed read so that callers can tell "try later" (ErrUnavailable) apart.
func readErr(what string, err error) error {
	if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) && transient(err) {
		err = store.Unavailable(err)
	}
	return fmt.Errorf("store/sqlite: %s: %w", what, err)
}

// Stats returns the group committer's counters.
func (s *Store) Stats() store.CommitStats { return s.c.Stats() }
