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

const readingColumns = `seq, device_time, received_at, soil_moisture, temperature, tank_level, supply_mv`

func scanReading(row interface{ Scan(...any) error }) (actors.Reading, error) {
	var (
		r                   actors.Reading
		seq, received, mv   int64
		devTime             sql.NullInt64
		moisture, temp, tnk *float64
	)
	if err := row.Scan(&seq, &devTime, &received, &moisture, &temp, &tnk, &mv); err != nil {
		return r, err
	}
	r.Seq = uint64(seq)
	if devTime.Valid {
		r.DeviceTime = store.FromMicros(devTime.Int64)
	}
	r.ReceivedAt = store.FromMicros(received)
	r.SoilMoisture = store.MetricValue(moisture)
	r.Temperature = store.MetricValue(temp)
	r.TankLevel = store.MetricValue(tnk)
	r.SupplyMillivolt = uint32(mv)
	return r, nil
}

// LoadDevice returns the latest snapshot, the highest stored seq and the latest reading.
func (s *Store) LoadDevice(ctx context.Context, id string) (actors.Recovered, error) {
	var rec actors.Recovered
	if store.ValidID(id) != nil {
		return rec, nil
	}
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
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

	latest, err := scanReading(tx.QueryRowContext(ctx, `SELECT `+readingColumns+` FROM readings
		WHERE device_id = ? ORDER BY seq DESC LIMIT 1`, id))
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return rec, readErr("load latest reading of "+id, err)
	default:
		rec.Latest = &latest
		rec.LastSeq = latest.Seq
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

// Readings returns raw readings with from <= ReceivedAt < to, oldest first.
func (s *Store) Readings(ctx context.Context, deviceID string, from, to time.Time, limit int) ([]actors.Reading, error) {
	if store.ValidID(deviceID) != nil {
		return nil, nil
	}
	rows, err := s.r.QueryContext(ctx, `SELECT `+readingColumns+` FROM readings
		WHERE device_id = ? AND received_at >= ? AND received_at < ?
		ORDER BY received_at, seq LIMIT ?`,
		deviceID, store.Micros(from), store.Micros(to), store.QueryLimit(limit))
	if err != nil {
		return nil, readErr("readings of "+deviceID, err)
	}
	defer rows.Close()
	var out []actors.Reading
	for rows.Next() {
		r, err := scanReading(rows)
		if err != nil {
			return nil, readErr("readings of "+deviceID, err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, readErr("readings of "+deviceID, err)
	}
	return out, nil
}

// Buckets returns per-bucket min/avg/max of each metric. Buckets start at from + k*bucket; only
// buckets holding readings are returned. NaN metrics (stored as NULL) are left out of the aggregates.
//
// Below retention.raw_from (where Maintain has expired the raw readings) the hourly aggregates in
// reading_hours answer instead, each hour counted whole in the bucket holding its start; a bucket
// straddling raw_from combines both. Averages combine weighted by each part's count of values.
func (s *Store) Buckets(ctx context.Context, deviceID string, from, to time.Time, bucket time.Duration) ([]actors.Bucket, error) {
	width, err := store.BucketWidth(from, to, bucket)
	if err != nil {
		return nil, err
	}
	if store.ValidID(deviceID) != nil {
		return nil, nil
	}
	start := store.Micros(from)
	rows, err := s.r.QueryContext(ctx, `WITH cut AS (SELECT coalesce(raw_from, -9223372036854775807) AS raw_from FROM retention),
		parts AS (
			SELECT (received_at - ?1) / ?2 AS b, count(*) AS c,
				count(soil_moisture) AS mn, min(soil_moisture) AS mlo, total(soil_moisture) AS msum, max(soil_moisture) AS mhi,
				count(temperature) AS tn, min(temperature) AS tlo, total(temperature) AS tsum, max(temperature) AS thi,
				count(tank_level) AS kn, min(tank_level) AS klo, total(tank_level) AS ksum, max(tank_level) AS khi
			FROM readings
			WHERE device_id = ?3 AND received_at >= max(?1, (SELECT raw_from FROM cut)) AND received_at < ?4
			GROUP BY b
			UNION ALL
			SELECT (hour - ?1) / ?2 AS b, sum(count),
				sum(moisture_n), min(moisture_min), total(moisture_avg * moisture_n), max(moisture_max),
				sum(temp_n), min(temp_min), total(temp_avg * temp_n), max(temp_max),
				sum(tank_n), min(tank_min), total(tank_avg * tank_n), max(tank_max)
			FROM reading_hours
			WHERE device_id = ?3 AND hour >= ?1 AND hour < min(?4, (SELECT raw_from FROM cut))
			GROUP BY b)
		SELECT b, sum(c),
			min(mlo), sum(msum) / sum(mn), max(mhi),
			min(tlo), sum(tsum) / sum(tn), max(thi),
			min(klo), sum(ksum) / sum(kn), max(khi)
		FROM parts GROUP BY b ORDER BY b`,
		start, width, deviceID, store.Micros(to))
	if err != nil {
		return nil, readErr("buckets of "+deviceID, err)
	}
	defer rows.Close()
	var out []actors.Bucket
	for rows.Next() {
		var (
			b   actors.Bucket
			k   int64
			agg [9]*float64
		)
		if err := rows.Scan(&k, &b.Count, &agg[0], &agg[1], &agg[2], &agg[3], &agg[4], &agg[5],
			&agg[6], &agg[7], &agg[8]); err != nil {
			return nil, readErr("buckets of "+deviceID, err)
		}
		b.Start = store.FromMicros(start + k*width)
		b.MoistureMin, b.MoistureAvg, b.MoistureMax = store.MetricValue(agg[0]), store.MetricValue(agg[1]), store.MetricValue(agg[2])
		b.TempMin, b.TempAvg, b.TempMax = store.MetricValue(agg[3]), store.MetricValue(agg[4]), store.MetricValue(agg[5])
		b.TankMin, b.TankAvg, b.TankMax = store.MetricValue(agg[6]), store.MetricValue(agg[7]), store.MetricValue(agg[8])
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, readErr("buckets of "+deviceID, err)
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
