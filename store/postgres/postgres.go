// Package postgres is Sprout's shared store: every node of a cluster appends to one Postgres
// database (14 or later) through a pgx pool. It implements actors.Store.
//
// Appends go through the group committer: each batch is three multi-row statements (readings,
// events, snapshots as unnest'ed arrays) sent in one round trip and run as one implicit transaction.
// When the database is unreachable, appends wait and retry until their WriteTimeout and then fail
// with actors.ErrUnavailable; the pool reconnects by itself once the database is back.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/store"
)

// Options tune the Postgres store. The zero value means the defaults.
type Options struct {
	// CommitOptions bound the group committer. Committers (batches in flight at once) defaults to
	// DefaultCommitters here.
	store.CommitOptions
	// MaxConns is the size of the connection pool, shared by committers and reads. Default 8.
	MaxConns int32
	// ConnectTimeout bounds establishing one connection. Default 5 s.
	ConnectTimeout time.Duration
}

// Defaults for Options.
const (
	DefaultCommitters     = 2
	DefaultMaxConns       = 8
	DefaultConnectTimeout = 5 * time.Second
)

func (o Options) withDefaults() Options {
	if o.CommitOptions.Committers <= 0 {
		o.CommitOptions.Committers = DefaultCommitters
	}
	o.CommitOptions = o.CommitOptions.WithDefaults()
	if o.MaxConns <= 0 {
		o.MaxConns = DefaultMaxConns
	}
	if o.MaxConns < int32(o.CommitOptions.Committers)+1 {
		o.MaxConns = int32(o.CommitOptions.Committers) + 1
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = DefaultConnectTimeout
	}
	return o
}

// Store is the Postgres implementation of actors.Store.
type Store struct {
	pool      *pgxpool.Pool
	c         *store.Committer
	closeOnce sync.Once
}

var _ actors.Store = (*Store)(nil)

// Open connects to the database named by dsn (a postgres:// URL or key=value string), applies
// pending migrations (serialised across nodes by an advisory lock) and starts the group committer.
func Open(ctx context.Context, dsn string, opts Options) (*Store, error) {
	opts = opts.withDefaults()
	pool, err := newPool(ctx, dsn, opts)
	if err != nil {
		return nil, err
	}
	if _, err := migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	s := &Store{pool: pool}
	s.c = store.NewCommitter(opts.CommitOptions, backend{pool})
	return s, nil
}

func newPool(ctx context.Context, dsn string, opts Options) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("store/postgres: parse DSN: %w", err)
	}
	cfg.MaxConns = opts.MaxConns
	cfg.ConnConfig.ConnectTimeout = opts.ConnectTimeout
	cfg.HealthCheckPeriod = 10 * time.Second
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("store/postgres: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("store/postgres: connect to %s:%d/%s: %w", cfg.ConnConfig.Host, cfg.ConnConfig.Port,
			cfg.ConnConfig.Database, store.Unavailable(err))
	}
	return pool, nil
}

// Close writes every queued Append and closes the pool.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.c.Close()
		s.pool.Close()
	})
	return nil
}

// Append queues one grain step for the next group commit and returns once it is durable.
func (s *Store) Append(ctx context.Context, deviceID string, b actors.Batch) error {
	return s.c.Append(ctx, deviceID, b)
}

const (
	insertReadings = `INSERT INTO readings
		(device_id, seq, device_time, received_at, soil_moisture, temperature, tank_level, supply_mv)
		SELECT * FROM unnest($1::text[], $2::bigint[], $3::timestamptz[], $4::timestamptz[],
			$5::real[], $6::real[], $7::real[], $8::bigint[])
		ON CONFLICT (device_id, seq) DO NOTHING`
	insertEvents = `INSERT INTO device_events (device_id, at, kind, seq, body)
		SELECT d, a, k, s, b::json
		FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::bigint[], $5::text[]) WITH ORDINALITY AS t(d, a, k, s, b, n)
		ORDER BY n
		ON CONFLICT (device_id, seq) WHERE seq > 0 DO NOTHING`
	upsertSnapshots = `INSERT INTO snapshots (device_id, body, updated_at)
		SELECT d, b, now() FROM unnest($1::text[], $2::bytea[]) AS t(d, b)
		ON CONFLICT (device_id) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at`
)

// backend is the committer's view of the store.
type backend struct{ pool *pgxpool.Pool }

func (b backend) Transient(err error) bool { return transient(err) }

// WriteBatch sends the batch's three statements in one round trip. Postgres runs the statements of
// one pipeline (up to its Sync) as one implicit transaction: all are stored or none.
func (b backend) WriteBatch(ctx context.Context, reqs []*store.Request) error {
	for _, r := range reqs {
		if r.Batch.Epoch != 0 {
			return b.writeFenced(ctx, reqs)
		}
	}
	batch := buildBatch(reqs)
	if batch.Len() == 0 {
		return nil
	}
	return b.pool.SendBatch(ctx, batch).Close()
}

// writeFenced is WriteBatch for requests that carry activation epochs: in one transaction it first
// applies the claims, then locks the other devices' rows (FOR SHARE, so a concurrent claim waits)
// and marks the requests whose epoch was superseded, then writes the rest.
func (b backend) writeFenced(ctx context.Context, reqs []*store.Request) (err error) {
	tx, err := b.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback(context.WithoutCancel(ctx))
		}
	}()
	claims := map[string]int64{}
	var check []string
	for _, r := range reqs {
		switch {
		case r.Batch.Claim:
			claims[r.DeviceID] = int64(r.Batch.Epoch)
		case r.Batch.Epoch != 0:
			check = append(check, r.DeviceID)
		}
	}
	if len(claims) > 0 {
		ids := slices.Sorted(maps.Keys(claims))
		epochs := make([]int64, len(ids))
		for i, id := range ids {
			epochs[i] = claims[id]
		}
		if _, err = tx.Exec(ctx, `UPDATE devices d SET epoch = u.e FROM unnest($1::text[], $2::bigint[]) AS u(id, e) WHERE d.id = u.id`, ids, epochs); err != nil {
			return fmt.Errorf("claim devices: %w", err)
		}
	}
	if len(check) > 0 {
		slices.Sort(check)
		rows, qerr := tx.Query(ctx, `SELECT id, epoch FROM devices WHERE id = ANY($1) ORDER BY id FOR SHARE`, check)
		if qerr != nil {
			return fmt.Errorf("check device epochs: %w", qerr)
		}
		current := map[string]int64{}
		for rows.Next() {
			var id string
			var e int64
			if err = rows.Scan(&id, &e); err != nil {
				rows.Close()
				return err
			}
			current[id] = e
		}
		rows.Close()
		if err = rows.Err(); err != nil {
			return err
		}
		for _, r := range reqs {
			if !r.Batch.Claim && r.Batch.Epoch != 0 {
				if e, ok := claims[r.DeviceID]; ok {
					current[r.DeviceID] = e // claimed earlier in this very batch
				}
				r.Fenced = current[r.DeviceID] != int64(r.Batch.Epoch)
			}
		}
	}
	if batch := buildBatch(reqs); batch.Len() > 0 {
		if err = tx.SendBatch(ctx, batch).Close(); err != nil {
			return err
		}
	}
	return tx.Commit(ctx)
}

// buildBatch turns the batch's unfenced requests into three multi-row statements.
func buildBatch(reqs []*store.Request) *pgx.Batch {
	var (
		nr, ne int
		snaps  = map[string][]byte{} // the last snapshot per device wins
	)
	live := reqs[:0:0]
	for _, r := range reqs {
		if !r.Fenced {
			live = append(live, r)
		}
	}
	reqs = live
	for _, r := range reqs {
		nr += len(r.Batch.Readings)
		ne += len(r.Batch.Events)
	}
	batch := &pgx.Batch{}
	if nr > 0 {
		var (
			ids                  = make([]string, 0, nr)
			seqs                 = make([]int64, 0, nr)
			devTimes             = make([]pgtype.Timestamptz, 0, nr)
			received             = make([]time.Time, 0, nr)
			moisture, temp, tank = make([]pgtype.Float4, 0, nr), make([]pgtype.Float4, 0, nr), make([]pgtype.Float4, 0, nr)
			mv                   = make([]int64, 0, nr)
		)
		for _, r := range reqs {
			for i := range r.Batch.Readings {
				rd := &r.Batch.Readings[i]
				ids = append(ids, r.DeviceID)
				seqs = append(seqs, int64(rd.Seq))
				devTimes = append(devTimes, pgtype.Timestamptz{Time: rd.DeviceTime, Valid: !rd.DeviceTime.IsZero()})
				received = append(received, rd.ReceivedAt)
				moisture = append(moisture, metric(rd.SoilMoisture))
				temp = append(temp, metric(rd.Temperature))
				tank = append(tank, metric(rd.TankLevel))
				mv = append(mv, int64(rd.SupplyMillivolt))
			}
		}
		batch.Queue(insertReadings, ids, seqs, devTimes, received, moisture, temp, tank, mv)
	}
	if ne > 0 {
		var (
			ids    = make([]string, 0, ne)
			ats    = make([]time.Time, 0, ne)
			kinds  = make([]string, 0, ne)
			seqs   = make([]int64, 0, ne)
			bodies = make([]pgtype.Text, 0, ne)
		)
		for _, r := range reqs {
			for i := range r.Batch.Events {
				e := &r.Batch.Events[i]
				ids = append(ids, r.DeviceID)
				ats = append(ats, e.At)
				kinds = append(kinds, e.Kind)
				seqs = append(seqs, int64(e.Seq))
				bodies = append(bodies, pgtype.Text{String: string(e.Body), Valid: e.Body != nil})
			}
		}
		batch.Queue(insertEvents, ids, ats, kinds, seqs, bodies)
	}
	for _, r := range reqs {
		if r.Batch.Snapshot != nil {
			snaps[r.DeviceID] = r.Batch.Snapshot
		}
	}
	if len(snaps) > 0 {
		// In id order, so that concurrent committers lock snapshot rows in the same order.
		ids := slices.Sorted(maps.Keys(snaps))
		bodies := make([][]byte, len(ids))
		for i, id := range ids {
			bodies[i] = snaps[id]
		}
		batch.Queue(upsertSnapshots, ids, bodies)
	}
	return batch
}

func metric(f float32) pgtype.Float4 { return pgtype.Float4{Float32: f, Valid: f == f} }

// transient reports whether err means "try again later" (the server is unreachable, restarting,
// overloaded, or the transaction lost a race) rather than "the server refused this data".
func transient(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code[:2] {
		case "08", // connection exception
			"40", // transaction rollback: serialization failure, deadlock
			"53", // insufficient resources: disk full, out of memory, too many connections
			"57", // operator intervention: admin shutdown, crash shutdown, cannot connect now
			"58": // system error: I/O error
			return true
		}
		return false
	}
	// Not an error the server sent: a dial failure, a dropped connection, a closed pool. (A value
	// pgx cannot encode would land here too; ValidateBatch keeps those out.)
	return true
}

// readErr wraps a failed read so that callers can tell "try later" (ErrUnavailable) apart.
func readErr(what string, err error) error {
	if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) && transient(err) {
		err = store.Unavailable(err)
	}
	return fmt.Errorf("store/postgres: %s: %w", what, err)
}

// Stats returns the group committer's counters.
func (s *Store) Stats() store.CommitStats { return s.c.Stats() }
