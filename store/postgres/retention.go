package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sprout-iot/sprout/store"
)

var _ store.Maintainer = (*Store)(nil)

// MaintenanceLockKey is the advisory lock (pg_try_advisory_lock) a node holds while it maintains
// the database, so that one node at a time does. ("sprout.maintain" in ASCII, truncated.)
const MaintenanceLockKey int64 = 0x7370726f75746d61

// Maintain rolls complete hours up into reading_hours, then deletes expired raw readings and
// aggregates (see store.Maintainer), in transactions of at most opts.Chunk deleted rows. One node
// at a time: when another holds MaintenanceLockKey, Maintain returns at once with Skipped set.
// Rolling up reads under MVCC and writes only reading_hours, so appends never wait for it.
func (s *Store) Maintain(ctx context.Context, opts store.RetentionOptions) (store.MaintainStats, error) {
	opts, err := opts.WithDefaults()
	if err != nil {
		return store.MaintainStats{}, err
	}
	began := time.Now()
	var st store.MaintainStats
	// A session-level advisory lock needs one connection for the whole run; if the connection
	// dies the server releases the lock, and the work is idempotent anyway.
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return st, readErr("maintain: connect", err)
	}
	defer conn.Release()
	var locked bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, MaintenanceLockKey).Scan(&locked); err != nil {
		return st, readErr("maintain: take the maintenance lock", err)
	}
	if !locked {
		st.Skipped = true
		st.Took = time.Since(began)
		return st, nil
	}
	defer func() {
		// Unlock with a fresh context: ctx may be done. Failing that, drop the connection,
		// which releases the lock.
		uctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := conn.Exec(uctx, `SELECT pg_advisory_unlock($1)`, MaintenanceLockKey); err != nil {
			conn.Conn().Close(uctx)
		}
	}()

	var rolled, rawFrom pgtype.Timestamptz
	if err := conn.QueryRow(ctx, `SELECT rolled_until, raw_from FROM retention`).Scan(&rolled, &rawFrom); err != nil {
		return st, readErr("maintain: read retention state", err)
	}
	if rolled, err = rollUp(ctx, conn, opts, rolled, &st); err != nil {
		return st, err
	}
	// Raw readings expire only once rolled up. raw_from moves first: from then on Buckets reads
	// the aggregates below it, so a half-done deletion is never visible.
	cut := opts.RawCutoff()
	if rolled.Time.Before(cut) {
		cut = rolled.Time
	}
	if !rawFrom.Valid || cut.After(rawFrom.Time) {
		if _, err := conn.Exec(ctx, `UPDATE retention SET raw_from = $1`, cut); err != nil {
			return st, readErr("maintain: set raw_from", err)
		}
		rawFrom = pgtype.Timestamptz{Time: cut, Valid: true}
	}
	if st.RawDeleted, err = deleteChunks(ctx, conn, opts.Chunk, `DELETE FROM readings WHERE (device_id, seq) IN (
			SELECT device_id, seq FROM readings AS r WHERE received_at < $1
			AND EXISTS (SELECT 1 FROM readings AS n WHERE n.device_id = r.device_id AND n.seq > r.seq)
			LIMIT $2)`, rawFrom.Time); err != nil {
		return st, readErr("maintain: delete expired readings", err)
	}
	if st.AggregatesDeleted, err = deleteChunks(ctx, conn, opts.Chunk, `DELETE FROM reading_hours WHERE (device_id, hour) IN (
			SELECT device_id, hour FROM reading_hours WHERE hour < $1 LIMIT $2)`, opts.AggregateCutoff()); err != nil {
		return st, readErr("maintain: delete expired aggregates", err)
	}
	if st.PushesDeleted, err = deleteChunks(ctx, conn, opts.Chunk, `DELETE FROM pushes WHERE id IN (
			SELECT id FROM pushes WHERE status <> 'pending' AND created_at < $1 LIMIT $2)`, opts.PushCutoff()); err != nil {
		return st, readErr("maintain: delete expired pushes", err)
	}
	if st.EventsDeleted, err = deleteChunks(ctx, conn, opts.Chunk, `DELETE FROM device_events WHERE id IN (
			SELECT id FROM device_events AS e WHERE at < $1
			AND NOT (seq > 0 AND NOT EXISTS (SELECT 1 FROM device_events AS n WHERE n.device_id = e.device_id AND n.seq > 0 AND n.seq > e.seq))
			LIMIT $2)`, opts.EventCutoff()); err != nil {
		return st, readErr("maintain: delete expired events", err)
	}
	st.RolledUntil = rolled.Time.UTC()
	st.RawFrom = rawFrom.Time.UTC()
	st.Took = time.Since(began)
	return st, nil
}

// rollUp aggregates every hour from rolled until opts.RollUpTo() that holds readings, one hour per
// transaction, and returns the new rolled_until.
func rollUp(ctx context.Context, conn *pgxpool.Conn, opts store.RetentionOptions, rolled pgtype.Timestamptz, st *store.MaintainStats) (pgtype.Timestamptz, error) {
	limit := opts.RollUpTo()
	if rolled.Valid && !rolled.Time.Before(limit) {
		return rolled, nil
	}
	from := pgtype.Timestamptz{InfinityModifier: pgtype.NegativeInfinity, Valid: true}
	if rolled.Valid {
		from = rolled
	}
	for {
		// Skip the hours without readings.
		var next pgtype.Timestamptz
		if err := conn.QueryRow(ctx, `SELECT min(received_at) FROM readings WHERE received_at >= $1`, from).Scan(&next); err != nil {
			return rolled, readErr("maintain: find the next hour to roll up", err)
		}
		if !next.Valid || !next.Time.Truncate(time.Hour).Before(limit) {
			break
		}
		hour := next.Time.Truncate(time.Hour)
		n, err := rollHour(ctx, conn, hour)
		if err != nil {
			return rolled, readErr(fmt.Sprintf("maintain: roll up %s", hour.UTC().Format(time.RFC3339)), err)
		}
		st.HoursRolled++
		st.HourRows += n
		rolled = pgtype.Timestamptz{Time: hour.Add(time.Hour), Valid: true}
		from = rolled
	}
	if !rolled.Valid || rolled.Time.Before(limit) {
		if _, err := conn.Exec(ctx, `UPDATE retention SET rolled_until = $1`, limit); err != nil {
			return rolled, readErr("maintain: set rolled_until", err)
		}
		rolled = pgtype.Timestamptz{Time: limit, Valid: true}
	}
	return rolled, nil
}

// rollHour writes the aggregates of one hour and moves rolled_until past it, in one transaction.
// Re-rolling an hour replaces its rows.
func rollHour(ctx context.Context, conn *pgxpool.Conn, hour time.Time) (int64, error) {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	tag, err := tx.Exec(ctx, `INSERT INTO reading_hours (device_id, hour, count,
			moisture_n, moisture_min, moisture_avg, moisture_max, temp_n, temp_min, temp_avg, temp_max,
			tank_n, tank_min, tank_avg, tank_max)
		SELECT device_id, $1, count(*),
			count(soil_moisture), min(soil_moisture), avg(soil_moisture), max(soil_moisture),
			count(temperature), min(temperature), avg(temperature), max(temperature),
			count(tank_level), min(tank_level), avg(tank_level), max(tank_level)
		FROM readings WHERE received_at >= $1 AND received_at < $2
		GROUP BY device_id
		ON CONFLICT (device_id, hour) DO UPDATE SET count = excluded.count,
			moisture_n = excluded.moisture_n, moisture_min = excluded.moisture_min,
			moisture_avg = excluded.moisture_avg, moisture_max = excluded.moisture_max,
			temp_n = excluded.temp_n, temp_min = excluded.temp_min, temp_avg = excluded.temp_avg,
			temp_max = excluded.temp_max, tank_n = excluded.tank_n, tank_min = excluded.tank_min,
			tank_avg = excluded.tank_avg, tank_max = excluded.tank_max`, hour, hour.Add(time.Hour))
	if err != nil {
		return 0, err
	}
	if _, err := tx.Exec(ctx, `UPDATE retention SET rolled_until = $1`, hour.Add(time.Hour)); err != nil {
		return 0, err
	}
	return tag.RowsAffected(), tx.Commit(ctx)
}

// deleteChunks runs del ($1 = arg, $2 = chunk) until it deletes fewer than chunk rows, each run
// its own transaction.
func deleteChunks(ctx context.Context, conn *pgxpool.Conn, chunk int, del string, arg time.Time) (int64, error) {
	var total int64
	for {
		tag, err := conn.Exec(ctx, del, arg, chunk)
		if err != nil {
			return total, err
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < int64(chunk) {
			return total, nil
		}
	}
}
