package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/store"
)

var _ store.Maintainer = (*Store)(nil)

const hourMicros = int64(time.Hour / time.Microsecond)

// floorHour is the start of the UTC hour holding us (µs since the epoch).
func floorHour(us int64) int64 { return store.Micros(store.FromMicros(us).Truncate(time.Hour)) }

// Maintain rolls complete hours up into reading_hours, then deletes expired raw readings and
// aggregates (see store.Maintainer). Reads run on the query-only connections, writes in chunks of
// opts.Chunk rows on the writer between group commits, so appends wait for one chunk at most.
// Calls are serialised; SQLite has one node anyway.
func (s *Store) Maintain(ctx context.Context, opts store.RetentionOptions) (store.MaintainStats, error) {
	opts, err := opts.WithDefaults()
	if err != nil {
		return store.MaintainStats{}, err
	}
	s.maint.Lock()
	defer s.maint.Unlock()
	began := time.Now()
	var st store.MaintainStats
	// Everything in the log goes into chunks first: rollup and expiry read chunks.
	if _, err := s.compact(ctx, true); err != nil {
		return st, err
	}
	rolled, rawFrom, err := s.retentionState(ctx)
	if err != nil {
		return st, err
	}
	if rolled, err = s.rollUp(ctx, opts, rolled, &st); err != nil {
		return st, err
	}
	// Raw readings expire only once rolled up.
	cut := min(store.Micros(opts.RawCutoff()), rolled.Int64)
	if !rawFrom.Valid || cut > rawFrom.Int64 {
		// Move raw_from first: from now on Buckets reads the aggregates below it, so a half-done
		// deletion is never visible.
		if _, err := s.w.ExecContext(ctx, `UPDATE retention SET raw_from = ?`, cut); err != nil {
			return st, readErr("maintain: set raw_from", err)
		}
		rawFrom = sql.NullInt64{Int64: cut, Valid: true}
	}
	if st.RawDeleted, err = s.expireChunks(ctx, rawFrom.Int64, opts.Chunk); err != nil {
		return st, readErr("maintain: delete expired readings", err)
	}
	if st.AggregatesDeleted, err = s.deleteChunks(ctx, opts.Chunk, `DELETE FROM reading_hours WHERE (device_id, hour) IN (
			SELECT device_id, hour FROM reading_hours WHERE hour < ?1 LIMIT ?2)`,
		store.Micros(opts.AggregateCutoff())); err != nil {
		return st, readErr("maintain: delete expired aggregates", err)
	}
	if st.PushesDeleted, err = s.deleteChunks(ctx, opts.Chunk, `DELETE FROM pushes WHERE id IN (
			SELECT id FROM pushes WHERE status <> 'pending' AND created_at < ?1 LIMIT ?2)`,
		store.Micros(opts.PushCutoff())); err != nil {
		return st, readErr("maintain: delete expired pushes", err)
	}
	if st.EventsDeleted, err = s.deleteChunks(ctx, opts.Chunk, `DELETE FROM device_events WHERE id IN (
			SELECT id FROM device_events AS e WHERE at < ?1
			AND NOT (seq > 0 AND NOT EXISTS (SELECT 1 FROM device_events AS n WHERE n.device_id = e.device_id AND n.seq > 0 AND n.seq > e.seq))
			LIMIT ?2)`, store.Micros(opts.EventCutoff())); err != nil {
		return st, readErr("maintain: delete expired events", err)
	}
	st.RolledUntil = store.FromMicros(rolled.Int64)
	st.RawFrom = store.FromMicros(rawFrom.Int64)
	st.Took = time.Since(began)
	return st, nil
}

func (s *Store) retentionState(ctx context.Context) (rolled, rawFrom sql.NullInt64, err error) {
	err = s.r.QueryRowContext(ctx, `SELECT rolled_until, raw_from FROM retention`).Scan(&rolled, &rawFrom)
	if err != nil {
		err = readErr("maintain: read retention state", err)
	}
	return rolled, rawFrom, err
}

// rollUp aggregates every hour from rolled until opts.RollUpTo() that holds readings, one hour at
// a time, and returns the new rolled_until.
func (s *Store) rollUp(ctx context.Context, opts store.RetentionOptions, rolled sql.NullInt64, st *store.MaintainStats) (sql.NullInt64, error) {
	limit := store.Micros(opts.RollUpTo())
	if rolled.Valid && rolled.Int64 >= limit {
		return rolled, nil
	}
	from := int64(-1 << 63)
	if rolled.Valid {
		from = rolled.Int64
	}
	for {
		// Skip the hours without readings.
		var next sql.NullInt64
		if err := s.r.QueryRowContext(ctx, `SELECT min(hour) FROM reading_chunks WHERE hour >= ?`, from).Scan(&next); err != nil {
			return rolled, readErr("maintain: find the next hour to roll up", err)
		}
		if !next.Valid || floorHour(next.Int64) >= limit {
			break
		}
		hour := floorHour(next.Int64)
		n, err := s.rollHour(ctx, hour, opts.Chunk)
		if err != nil {
			return rolled, err
		}
		st.HoursRolled++
		st.HourRows += n
		rolled = sql.NullInt64{Int64: hour + hourMicros, Valid: true}
		from = rolled.Int64
	}
	if !rolled.Valid || rolled.Int64 < limit {
		if _, err := s.w.ExecContext(ctx, `UPDATE retention SET rolled_until = ?`, limit); err != nil {
			return rolled, readErr("maintain: set rolled_until", err)
		}
		rolled = sql.NullInt64{Int64: limit, Valid: true}
	}
	return rolled, nil
}

type hourRow struct {
	device string
	count  int64
	n      [3]int64
	agg    [9]*float64 // min, avg, max of moisture, temperature, tank
}

// rollHour writes the aggregates of the hour starting at hour (µs) and moves rolled_until past it,
// in the same transaction as the last chunk. Re-rolling an hour replaces its rows.
func (s *Store) rollHour(ctx context.Context, hour int64, chunk int) (int64, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT device_id, sum(count),
			sum(moisture_n), min(moisture_min), sum(moisture_sum) / nullif(sum(moisture_n), 0), max(moisture_max),
			sum(temp_n), min(temp_min), sum(temp_sum) / nullif(sum(temp_n), 0), max(temp_max),
			sum(tank_n), min(tank_min), sum(tank_sum) / nullif(sum(tank_n), 0), max(tank_max)
		FROM reading_chunks WHERE hour = ? GROUP BY device_id`, hour)
	if err != nil {
		return 0, readErr("maintain: aggregate an hour", err)
	}
	var out []hourRow
	for rows.Next() {
		var h hourRow
		if err := rows.Scan(&h.device, &h.count, &h.n[0], &h.agg[0], &h.agg[1], &h.agg[2],
			&h.n[1], &h.agg[3], &h.agg[4], &h.agg[5], &h.n[2], &h.agg[6], &h.agg[7], &h.agg[8]); err != nil {
			rows.Close()
			return 0, readErr("maintain: aggregate an hour", err)
		}
		out = append(out, h)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, readErr("maintain: aggregate an hour", err)
	}
	for i := 0; i < len(out) || i == 0; i += chunk {
		last := i+chunk >= len(out)
		if err := s.writeHourRows(ctx, hour, out[i:min(i+chunk, len(out))], last); err != nil {
			return 0, readErr(fmt.Sprintf("maintain: write the aggregates of %s", store.FromMicros(hour).Format(time.RFC3339)), err)
		}
	}
	return int64(len(out)), nil
}

func (s *Store) writeHourRows(ctx context.Context, hour int64, rows []hourRow, last bool) (err error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tx.Rollback()
		}
	}()
	if len(rows) > 0 {
		ins, err := tx.PrepareContext(ctx, `INSERT INTO reading_hours (device_id, hour, count,
				moisture_n, moisture_min, moisture_avg, moisture_max, temp_n, temp_min, temp_avg, temp_max,
				tank_n, tank_min, tank_avg, tank_max)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (device_id, hour) DO UPDATE SET count = excluded.count,
				moisture_n = excluded.moisture_n, moisture_min = excluded.moisture_min,
				moisture_avg = excluded.moisture_avg, moisture_max = excluded.moisture_max,
				temp_n = excluded.temp_n, temp_min = excluded.temp_min, temp_avg = excluded.temp_avg,
				temp_max = excluded.temp_max, tank_n = excluded.tank_n, tank_min = excluded.tank_min,
				tank_avg = excluded.tank_avg, tank_max = excluded.tank_max`)
		if err != nil {
			return err
		}
		defer ins.Close()
		for _, h := range rows {
			if _, err := ins.ExecContext(ctx, h.device, hour, h.count,
				h.n[0], h.agg[0], h.agg[1], h.agg[2], h.n[1], h.agg[3], h.agg[4], h.agg[5],
				h.n[2], h.agg[6], h.agg[7], h.agg[8]); err != nil {
				return err
			}
		}
	}
	if last {
		if _, err := tx.ExecContext(ctx, `UPDATE retention SET rolled_until = ?`, hour+hourMicros); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// expireChunks deletes the chunks of hours before cut, (device, hour) by (device, hour) in
// transactions of about chunk readings, except each device's latest reading (its highest seq):
// the chunk holding it is rewritten to hold that reading alone. It returns the readings deleted.
func (s *Store) expireChunks(ctx context.Context, cut int64, chunk int) (int64, error) {
	var total int64
	after := chunkKey{hour: -1 << 63}
	for {
		n, next, done, err := s.expireSome(ctx, cut, chunk, after)
		total += n
		if err != nil || done {
			return total, err
		}
		after = next
	}
}

func (s *Store) expireSome(ctx context.Context, cut int64, chunk int, after chunkKey) (deleted int64, last chunkKey, done bool, err error) {
	s.compactMu.Lock() // a merge must not rewrite the parts under us
	defer s.compactMu.Unlock()
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return 0, after, false, err
	}
	defer func() {
		if err != nil {
			tx.Rollback()
		}
	}()
	w := chunkWriter{ctx: ctx, tx: tx, max: s.opts.MaxChunkReadings}
	defer w.close()
	last = after
	for deleted < int64(chunk) {
		var k chunkKey
		err = tx.QueryRowContext(ctx, `SELECT hour, device_id FROM reading_chunks
			WHERE hour < ?1 AND (hour > ?2 OR (hour = ?2 AND device_id > ?3)) ORDER BY hour, device_id LIMIT 1`,
			cut, last.hour, last.device).Scan(&k.hour, &k.device)
		if errors.Is(err, sql.ErrNoRows) {
			done, err = true, nil
			break
		}
		if err != nil {
			return 0, after, false, err
		}
		last = k
		parts, err := readParts(ctx, tx, k)
		if err != nil {
			return 0, after, false, err
		}
		var devMax sql.NullInt64
		if err := tx.QueryRowContext(ctx, `SELECT max(seq_max) FROM reading_chunks WHERE device_id = ?`, k.device).Scan(&devMax); err != nil {
			return 0, after, false, err
		}
		s.tail.mu.RLock()
		tm, _ := s.tail.maxSeq(k.device)
		s.tail.mu.RUnlock()
		latest := -1 // the part holding the device's latest reading, if in this hour
		var count int64
		for i, p := range parts {
			count += p.count
			if p.seqMax == devMax.Int64 && uint64(p.seqMax) >= tm {
				latest = i
			}
		}
		if latest >= 0 && len(parts) == 1 && count == 1 {
			continue // already just the latest reading
		}
		var keep []actors.Reading
		if latest >= 0 {
			rs, err := loadBlob(ctx, tx, parts[latest].blob, nil)
			if err != nil {
				return 0, after, false, err
			}
			for _, r := range rs {
				if int64(r.Seq) == devMax.Int64 {
					keep = append(keep[:0], r)
				}
			}
		}
		if err := dropParts(ctx, tx, k, parts); err != nil {
			return 0, after, false, err
		}
		if len(keep) > 0 {
			if err := w.write(k, keep, 0, true); err != nil {
				return 0, after, false, err
			}
		}
		deleted += count - int64(len(keep))
	}
	if err = tx.Commit(); err != nil {
		return 0, after, false, err
	}
	return deleted, last, done, nil
}

// deleteChunks runs del (with ?1 = arg, ?2 = chunk) until it deletes fewer than chunk rows.
// Each run is its own transaction on the writer, so the group committer gets in between.
func (s *Store) deleteChunks(ctx context.Context, chunk int, del string, arg int64) (int64, error) {
	var total int64
	for {
		res, err := s.w.ExecContext(ctx, del, arg, chunk)
		if err != nil {
			return total, err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return total, err
		}
		total += n
		if n < int64(chunk) {
			return total, nil
		}
	}
}
