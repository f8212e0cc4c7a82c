package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/store"
)

// CreateDevice adds a device to the registry; ErrDeviceExists if the id is taken.
func (s *Store) CreateDevice(ctx context.Context, d actors.Device) error {
	if err := store.ValidateDevice(d); err != nil {
		return err
	}
	secret := d.Secret
	if secret == nil {
		secret = []byte{}
	}
	res, err := s.w.ExecContext(ctx, `INSERT INTO devices (id, product, secret, created_at, revoked_at)
		VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
		d.ID, d.Product, secret, store.Micros(d.CreatedAt), nullMicros(d.RevokedAt))
	if err != nil {
		return readErr("create device "+d.ID, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return readErr("create device "+d.ID, err)
	} else if n == 0 {
		return fmt.Errorf("store/sqlite: create device %q: %w", d.ID, actors.ErrDeviceExists)
	}
	return nil
}

const deviceColumns = `id, product, secret, created_at, revoked_at`

func scanDevice(row interface{ Scan(...any) error }) (actors.Device, error) {
	var (
		d       actors.Device
		created int64
		revoked sql.NullInt64
	)
	if err := row.Scan(&d.ID, &d.Product, &d.Secret, &created, &revoked); err != nil {
		return d, err
	}
	if d.Secret == nil {
		d.Secret = []byte{}
	}
	d.CreatedAt = store.FromMicros(created)
	if revoked.Valid {
		d.RevokedAt = store.FromMicros(revoked.Int64)
	}
	return d, nil
}

// GetDevice returns a registered device; ErrUnknownDevice if there is none.
func (s *Store) GetDevice(ctx context.Context, id string) (actors.Device, error) {
	if store.ValidID(id) != nil {
		return actors.Device{}, fmt.Errorf("store/sqlite: get device %q: %w", id, actors.ErrUnknownDevice)
	}
	d, err := scanDevice(s.r.QueryRowContext(ctx, `SELECT `+deviceColumns+` FROM devices WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return actors.Device{}, fmt.Errorf("store/sqlite: get device %q: %w", id, actors.ErrUnknownDevice)
	}
	if err != nil {
		return actors.Device{}, readErr("get device "+id, err)
	}
	return d, nil
}

// ListDevices returns devices in byte order of id, after q.AfterID, at most q.Limit.
func (s *Store) ListDevices(ctx context.Context, q actors.ListQuery) ([]actors.Device, error) {
	if err := store.ValidCursor(q.AfterID); err != nil {
		return nil, fmt.Errorf("store/sqlite: list devices: %w", err)
	}
	rows, err := s.r.QueryContext(ctx, `SELECT `+deviceColumns+` FROM devices WHERE id > ? ORDER BY id LIMIT ?`,
		q.AfterID, store.ListLimit(q.Limit))
	if err != nil {
		return nil, readErr("list devices", err)
	}
	defer rows.Close()
	var out []actors.Device
	for rows.Next() {
		d, err := scanDevice(rows)
		if err != nil {
			return nil, readErr("list devices", err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, readErr("list devices", err)
	}
	return out, nil
}

// RevokeDevice marks a device revoked at at. Revoking it again keeps the first time.
func (s *Store) RevokeDevice(ctx context.Context, id string, at time.Time) error {
	if store.ValidID(id) != nil {
		return fmt.Errorf("store/sqlite: revoke device %q: %w", id, actors.ErrUnknownDevice)
	}
	if at.IsZero() {
		return fmt.Errorf("store/sqlite: revoke device %q: %w: zero time", id, store.ErrInvalid)
	}
	res, err := s.w.ExecContext(ctx, `UPDATE devices SET revoked_at = coalesce(revoked_at, ?) WHERE id = ?`,
		store.Micros(at), id)
	if err != nil {
		return readErr("revoke device "+id, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return readErr("revoke device "+id, err)
	} else if n == 0 {
		return fmt.Errorf("store/sqlite: revoke device %q: %w", id, actors.ErrUnknownDevice)
	}
	return nil
}

// readView opens a read-only transaction on the query connections together with a copy of the
// device's tail: taken under tail.mu, so that a compaction (which commits holding it) is either
// wholly before both or wholly after both. It also returns raw_from (NULL: nothing expired).
func (s *Store) readView(ctx context.Context, id string) (*sql.Tx, []actors.Reading, sql.NullInt64, error) {
	var rawFrom sql.NullInt64
	s.tail.mu.RLock()
	defer s.tail.mu.RUnlock()
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, nil, rawFrom, err
	}
	// The first read fixes the transaction's snapshot of the database.
	if err := tx.QueryRowContext(ctx, `SELECT raw_from FROM retention`).Scan(&rawFrom); err != nil {
		tx.Rollback()
		return nil, nil, rawFrom, err
	}
	return tx, s.tail.readings(id), rawFrom, nil
}

// LoadDevice returns the latest snapshot, the highest stored seq and the latest reading.
func (s *Store) LoadDevice(ctx context.Context, id string) (actors.Recovered, error) {
	var rec actors.Recovered
	if store.ValidID(id) != nil {
		return rec, nil
	}
	tx, tl, _, err := s.readView(ctx, id)
	if err != nil {
		return rec, readErr("load device "+id, err)
	}
	defer tx.Rollback()

	var snap []byte
	err = tx.QueryRowContext(ctx, `SELECT body FROM snapshots WHERE device_id = ?`, id).Scan(&snap)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return rec, readErr("load snapshot of "+id, err)
	default:
		if snap == nil {
			snap = []byte{}
		}
		rec.Snapshot = snap
	}

	// The latest reading: the highest seq, in the tail or in the chunk with the highest seq_max.
	var latest *actors.Reading
	for i := range tl {
		if latest == nil || tl[i].Seq > latest.Seq {
			latest = &tl[i]
		}
	}
	var blob, seqMax int64
	err = tx.QueryRowContext(ctx, `SELECT blob, seq_max FROM reading_chunks WHERE device_id = ?
		ORDER BY seq_max DESC LIMIT 1`, id).Scan(&blob, &seqMax)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return rec, readErr("load latest reading of "+id, err)
	case latest == nil || uint64(seqMax) > latest.Seq:
		rs, err := loadBlob(ctx, tx, blob, nil)
		if err != nil {
			return rec, readErr("load latest reading of "+id, err)
		}
		for i := range rs {
			if rs[i].Seq == uint64(seqMax) {
				latest = &rs[i]
			}
		}
	}
	if latest != nil {
		r := *latest
		rec.Latest = &r
		rec.LastSeq = r.Seq
	}

	var eventSeq sql.NullInt64
	if err := tx.QueryRowContext(ctx, `SELECT max(seq) FROM device_events WHERE device_id = ? AND seq > 0`,
		id).Scan(&eventSeq); err != nil {
		return rec, readErr("load last event seq of "+id, err)
	}
	if eventSeq.Valid && uint64(eventSeq.Int64) > rec.LastSeq {
		rec.LastSeq = uint64(eventSeq.Int64)
	}
	return rec, nil
}

// chunkRow is a chunk's key, aggregates and blob id as queries read them.
type chunkRow struct {
	hour int64
	a    agg
	blob int64
}

// chunks calls fn for each chunk of the device with from <= hour < to, by hour then part; fn
// returns false to stop.
func chunks(ctx context.Context, tx *sql.Tx, id string, from, to int64, fn func(*chunkRow) (bool, error)) error {
	rows, err := tx.QueryContext(ctx, `SELECT hour, count, moisture_n, coalesce(moisture_min, 0), moisture_sum,
			coalesce(moisture_max, 0), temp_n, coalesce(temp_min, 0), temp_sum, coalesce(temp_max, 0),
			tank_n, coalesce(tank_min, 0), tank_sum, coalesce(tank_max, 0), blob
		FROM reading_chunks WHERE device_id = ? AND hour >= ? AND hour < ? ORDER BY hour, part`, id, from, to)
	if err != nil {
		return err
	}
	defer rows.Close()
	var c chunkRow
	for rows.Next() {
		a := &c.a
		if err := rows.Scan(&c.hour, &a.count, &a.n[0], &a.lo[0], &a.sum[0], &a.hi[0], &a.n[1], &a.lo[1], &a.sum[1],
			&a.hi[1], &a.n[2], &a.lo[2], &a.sum[2], &a.hi[2], &c.blob); err != nil {
			return err
		}
		if more, err := fn(&c); err != nil || !more {
			return err
		}
	}
	return rows.Err()
}

// Readings returns raw readings with from <= ReceivedAt < to, oldest first.
func (s *Store) Readings(ctx context.Context, deviceID string, from, to time.Time, limit int) ([]actors.Reading, error) {
	if store.ValidID(deviceID) != nil {
		return nil, nil
	}
	limit = store.QueryLimit(limit)
	lo, hi := store.Micros(from), store.Micros(to)
	if lo >= hi {
		return nil, nil
	}
	tx, tl, _, err := s.readView(ctx, deviceID)
	if err != nil {
		return nil, readErr("readings of "+deviceID, err)
	}
	defer tx.Rollback()
	in := func(r *actors.Reading) bool {
		t := store.Micros(r.ReceivedAt)
		return t >= lo && t < hi
	}
	var tail []actors.Reading
	for i := range tl {
		if in(&tl[i]) {
			tail = append(tail, tl[i])
		}
	}
	// Chunks hour by hour: once the readings before the next hour (chunks and tail) reach limit,
	// nothing later can be among the first limit.
	var out []actors.Reading
	cur := int64(-1 << 63)
	enough := func(next int64) bool {
		n := len(out)
		for i := range tail {
			if store.Micros(tail[i].ReceivedAt) < next {
				n++
			}
		}
		return n >= limit
	}
	var buf []actors.Reading
	err = chunks(ctx, tx, deviceID, floorHour(lo), hi, func(c *chunkRow) (bool, error) {
		if c.hour != cur {
			if cur != -1<<63 && enough(c.hour) {
				return false, nil
			}
			cur = c.hour
		}
		var err error
		if buf, err = loadBlob(ctx, tx, c.blob, buf[:0]); err != nil {
			return false, err
		}
		for i := range buf {
			if in(&buf[i]) {
				out = append(out, buf[i])
			}
		}
		return true, nil
	})
	if err != nil {
		return nil, readErr("readings of "+deviceID, err)
	}
	out = append(out, tail...)
	slices.SortFunc(out, byTime)
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// Buckets returns per-bucket min/avg/max of each metric. Buckets start at from + k*bucket; only
// buckets holding readings are returned. NaN metrics are left out of the aggregates.
//
// Raw readings are read from the chunks and the tail; a chunk whose whole hour falls in one
// bucket (buckets of whole hours starting on a whole hour) answers from its aggregates, others
// are decoded. Below retention.raw_from (where Maintain has expired the raw readings) the hourly
// aggregates in reading_hours answer instead, each hour counted whole in the bucket holding its
// start; a bucket straddling raw_from combines both. Averages combine weighted by each part's
// count of values.
func (s *Store) Buckets(ctx context.Context, deviceID string, from, to time.Time, bucket time.Duration) ([]actors.Bucket, error) {
	width, err := store.BucketWidth(from, to, bucket)
	if err != nil {
		return nil, err
	}
	if store.ValidID(deviceID) != nil {
		return nil, nil
	}
	start, end := store.Micros(from), store.Micros(to)
	if start >= end {
		return nil, nil
	}
	tx, tl, rawFrom, err := s.readView(ctx, deviceID)
	if err != nil {
		return nil, readErr("buckets of "+deviceID, err)
	}
	defer tx.Rollback()
	cut := int64(-1 << 63)
	if rawFrom.Valid {
		cut = rawFrom.Int64
	}
	parts := map[int64]*agg{}
	part := func(k int64) *agg {
		a := parts[k]
		if a == nil {
			a = &agg{}
			parts[k] = a
		}
		return a
	}
	// Below raw_from: the hourly aggregates.
	if start < cut {
		rows, err := tx.QueryContext(ctx, `SELECT (hour - ?1) / ?2, count,
				moisture_n, coalesce(moisture_min, 0), coalesce(moisture_avg * moisture_n, 0), coalesce(moisture_max, 0),
				temp_n, coalesce(temp_min, 0), coalesce(temp_avg * temp_n, 0), coalesce(temp_max, 0),
				tank_n, coalesce(tank_min, 0), coalesce(tank_avg * tank_n, 0), coalesce(tank_max, 0)
			FROM reading_hours WHERE device_id = ?3 AND hour >= ?1 AND hour < min(?4, ?5)`,
			start, width, deviceID, end, cut)
		if err != nil {
			return nil, readErr("buckets of "+deviceID, err)
		}
		for rows.Next() {
			var (
				k int64
				a agg
			)
			if err := rows.Scan(&k, &a.count, &a.n[0], &a.lo[0], &a.sum[0], &a.hi[0], &a.n[1], &a.lo[1], &a.sum[1],
				&a.hi[1], &a.n[2], &a.lo[2], &a.sum[2], &a.hi[2]); err != nil {
				rows.Close()
				return nil, readErr("buckets of "+deviceID, err)
			}
			part(k).merge(&a)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, readErr("buckets of "+deviceID, err)
		}
	}
	// From raw_from on: chunks and the tail.
	lo := max(start, cut)
	if lo < end {
		wholeHours := width%hourMicros == 0 && floorHour(start) == start
		add := func(r *actors.Reading) {
			if t := store.Micros(r.ReceivedAt); t >= lo && t < end {
				part((t - start) / width).add(r)
			}
		}
		var buf []actors.Reading
		err := chunks(ctx, tx, deviceID, floorHour(lo), end, func(c *chunkRow) (bool, error) {
			if wholeHours && c.hour >= lo && c.hour+hourMicros <= end {
				part((c.hour - start) / width).merge(&c.a)
				return true, nil
			}
			var err error
			if buf, err = loadBlob(ctx, tx, c.blob, buf[:0]); err != nil {
				return false, err
			}
			for i := range buf {
				add(&buf[i])
			}
			return true, nil
		})
		if err != nil {
			return nil, readErr("buckets of "+deviceID, err)
		}
		for i := range tl {
			add(&tl[i])
		}
	}
	keys := make([]int64, 0, len(parts))
	for k, a := range parts {
		if a.count > 0 {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	out := make([]actors.Bucket, 0, len(keys))
	for _, k := range keys {
		out = append(out, parts[k].bucket(store.FromMicros(start+k*width)))
	}
	return out, nil
}

// Events returns logged events with from <= At < to, oldest first (in logging order within one instant).
func (s *Store) Events(ctx context.Context, deviceID string, from, to time.Time, limit int) ([]actors.Event, error) {
	if store.ValidID(deviceID) != nil {
		return nil, nil
	}
	rows, err := s.r.QueryContext(ctx, `SELECT at, kind, seq, body FROM device_events
		WHERE device_id = ? AND at >= ? AND at < ? ORDER BY at, id LIMIT ?`,
		deviceID, store.Micros(from), store.Micros(to), store.QueryLimit(limit))
	if err != nil {
		return nil, readErr("events of "+deviceID, err)
	}
	defer rows.Close()
	var out []actors.Event
	for rows.Next() {
		var (
			e       actors.Event
			at, seq int64
			body    sql.NullString
		)
		if err := rows.Scan(&at, &e.Kind, &seq, &body); err != nil {
			return nil, readErr("events of "+deviceID, err)
		}
		e.At = store.FromMicros(at)
		e.Seq = uint64(seq)
		if body.Valid {
			e.Body = []byte(body.String)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, readErr("events of "+deviceID, err)
	}
	return out, nil
}
