package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

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
	tag, err := s.pool.Exec(ctx, `INSERT INTO devices (id, product, secret, created_at, revoked_at)
		VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING`,
		d.ID, d.Product, secret, d.CreatedAt, nullTime(d.RevokedAt))
	if err != nil {
		return readErr("create device "+d.ID, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("store/postgres: create device %q: %w", d.ID, actors.ErrDeviceExists)
	}
	return nil
}

func nullTime(t time.Time) pgtype.Timestamptz { return pgtype.Timestamptz{Time: t, Valid: !t.IsZero()} }

func fromTime(t pgtype.Timestamptz) time.Time {
	if !t.Valid {
		return time.Time{}
	}
	return t.Time.UTC()
}

const deviceColumns = `id, product, secret, created_at, revoked_at`

func scanDevice(row pgx.Row) (actors.Device, error) {
	var (
		d       actors.Device
		revoked pgtype.Timestamptz
	)
	if err := row.Scan(&d.ID, &d.Product, &d.Secret, &d.CreatedAt, &revoked); err != nil {
		return d, err
	}
	if d.Secret == nil {
		d.Secret = []byte{}
	}
	d.CreatedAt = d.CreatedAt.UTC()
	d.RevokedAt = fromTime(revoked)
	return d, nil
}

// GetDevice returns a registered device; ErrUnknownDevice if there is none.
func (s *Store) GetDevice(ctx context.Context, id string) (actors.Device, error) {
	if store.ValidID(id) != nil {
		return actors.Device{}, fmt.Errorf("store/postgres: get device %q: %w", id, actors.ErrUnknownDevice)
	}
	d, err := scanDevice(s.pool.QueryRow(ctx, `SELECT `+deviceColumns+` FROM devices WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return actors.Device{}, fmt.Errorf("store/postgres: get device %q: %w", id, actors.ErrUnknownDevice)
	}
	if err != nil {
		return actors.Device{}, readErr("get device "+id, err)
	}
	return d, nil
}

// ListDevices returns devices in byte order of id (the column is COLLATE "C"), after q.AfterID.
func (s *Store) ListDevices(ctx context.Context, q actors.ListQuery) ([]actors.Device, error) {
	if err := store.ValidCursor(q.AfterID); err != nil {
		return nil, fmt.Errorf("store/postgres: list devices: %w", err)
	}
	rows, err := s.pool.Query(ctx, `SELECT `+deviceColumns+` FROM devices WHERE id > $1 ORDER BY id LIMIT $2`,
		q.AfterID, store.ListLimit(q.Limit))
	if err != nil {
		return nil, readErr("list devices", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (actors.Device, error) { return scanDevice(r) })
	if err != nil {
		return nil, readErr("list devices", err)
	}
	return out, nil
}

// RevokeDevice marks a device revoked at at. Revoking it again keeps the first time.
func (s *Store) RevokeDevice(ctx context.Context, id string, at time.Time) error {
	if store.ValidID(id) != nil {
		return fmt.Errorf("store/postgres: revoke device %q: %w", id, actors.ErrUnknownDevice)
	}
	if at.IsZero() {
		return fmt.Errorf("store/postgres: revoke device %q: %w: zero time", id, store.ErrInvalid)
	}
	tag, err := s.pool.Exec(ctx, `UPDATE devices SET revoked_at = coalesce(revoked_at, $1) WHERE id = $2`, at, id)
	if err != nil {
		return readErr("revoke device "+id, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("store/postgres: revoke device %q: %w", id, actors.ErrUnknownDevice)
	}
	return nil
}

const readingColumns = `seq, device_time, received_at, soil_moisture, temperature, tank_level, supply_mv`

func scanReading(row pgx.Row, extra ...any) (actors.Reading, error) {
	var (
		r                   actors.Reading
		seq, mv             int64
		devTime             pgtype.Timestamptz
		moisture, temp, tnk pgtype.Float4
	)
	if err := row.Scan(append([]any{&seq, &devTime, &r.ReceivedAt, &moisture, &temp, &tnk, &mv}, extra...)...); err != nil {
		return r, err
	}
	r.Seq = uint64(seq)
	r.DeviceTime = fromTime(devTime)
	r.ReceivedAt = r.ReceivedAt.UTC()
	r.SoilMoisture, r.Temperature, r.TankLevel = metricValue(moisture), metricValue(temp), metricValue(tnk)
	r.SupplyMillivolt = uint32(mv)
	return r, nil
}

func metricValue(f pgtype.Float4) float32 {
	if !f.Valid {
		return store.MetricValue(nil)
	}
	return f.Float32
}

// LoadDevice returns the latest snapshot, the highest stored seq and the latest reading, in one
// statement (one round trip).
func (s *Store) LoadDevice(ctx context.Context, id string) (actors.Recovered, error) {
	var rec actors.Recovered
	if store.ValidID(id) != nil {
		return rec, nil
	}
	row := s.pool.QueryRow(ctx, `SELECT
			(SELECT body FROM snapshots WHERE device_id = $1),
			(SELECT max(seq) FROM device_events WHERE device_id = $1 AND seq > 0),
			r.seq IS NOT NULL, r.seq, r.device_time, r.received_at, r.soil_moisture, r.temperature, r.tank_level, r.supply_mv
		FROM (SELECT 1) AS one
		LEFT JOIN LATERAL (SELECT `+readingColumns+` FROM readings WHERE device_id = $1 ORDER BY seq DESC LIMIT 1) AS r ON true`, id)
	var (
		snap      []byte
		eventSeq  pgtype.Int8
		hasRead   bool
		seq, mv   pgtype.Int8
		devTime   pgtype.Timestamptz
		received  pgtype.Timestamptz
		m, tp, tk pgtype.Float4
	)
	if err := row.Scan(&snap, &eventSeq, &hasRead, &seq, &devTime, &received, &m, &tp, &tk, &mv); err != nil {
		return rec, readErr("load device "+id, err)
	}
	rec.Snapshot = snap // pgx gives nil for NULL (no snapshot) and non-nil for an empty bytea
	if hasRead {
		rec.Latest = &actors.Reading{
			Seq: uint64(seq.Int64), DeviceTime: fromTime(devTime), ReceivedAt: fromTime(received),
			SoilMoisture: metricValue(m), Temperature: metricValue(tp), TankLevel: metricValue(tk),
			SupplyMillivolt: uint32(mv.Int64),
		}
		rec.LastSeq = rec.Latest.Seq
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
	rows, err := s.pool.Query(ctx, `SELECT `+readingColumns+` FROM readings
		WHERE device_id = $1 AND received_at >= $2 AND received_at < $3
		ORDER BY received_at, seq LIMIT $4`, deviceID, from, to, store.QueryLimit(limit))
	if err != nil {
		return nil, readErr("readings of "+deviceID, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (actors.Reading, error) { return scanReading(r) })
	if err != nil {
		return nil, readErr("readings of "+deviceID, err)
	}
	return out, nil
}

// Buckets returns per-bucket min/avg/max of each metric. Buckets start at from + k*bucket
// (date_bin with from as origin); only buckets holding readings are returned. NaN metrics (stored
// as NULL) are left out of the aggregates.
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
	rows, err := s.pool.Query(ctx, `WITH cut AS (SELECT coalesce(raw_from, '-infinity') AS raw_from FROM retention),
		parts AS (
			SELECT date_bin($2::float8 * interval '1 microsecond', received_at, $1) AS b, count(*) AS c,
				count(soil_moisture) AS mn, min(soil_moisture) AS mlo, sum(soil_moisture::float8) AS msum, max(soil_moisture) AS mhi,
				count(temperature) AS tn, min(temperature) AS tlo, sum(temperature::float8) AS tsum, max(temperature) AS thi,
				count(tank_level) AS kn, min(tank_level) AS klo, sum(tank_level::float8) AS ksum, max(tank_level) AS khi
			FROM readings
			WHERE device_id = $3 AND received_at >= greatest($1, (SELECT raw_from FROM cut)) AND received_at < $4
			GROUP BY b
			UNION ALL
			SELECT date_bin($2::float8 * interval '1 microsecond', hour, $1) AS b, sum(count)::bigint,
				sum(moisture_n)::bigint, min(moisture_min), sum(moisture_avg * moisture_n), max(moisture_max),
				sum(temp_n)::bigint, min(temp_min), sum(temp_avg * temp_n), max(temp_max),
				sum(tank_n)::bigint, min(tank_min), sum(tank_avg * tank_n), max(tank_max)
			FROM reading_hours
			WHERE device_id = $3 AND hour >= $1 AND hour < least($4, (SELECT raw_from FROM cut))
			GROUP BY b)
		SELECT b, sum(c)::bigint,
			min(mlo)::float8, sum(msum) / nullif(sum(mn), 0)::float8, max(mhi)::float8,
			min(tlo)::float8, sum(tsum) / nullif(sum(tn), 0)::float8, max(thi)::float8,
			min(klo)::float8, sum(ksum) / nullif(sum(kn), 0)::float8, max(khi)::float8
		FROM parts GROUP BY b ORDER BY b`, from, width, deviceID, to)
	if err != nil {
		return nil, readErr("buckets of "+deviceID, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (actors.Bucket, error) {
		var (
			b     actors.Bucket
			count int64
			agg   [9]*float64
		)
		err := r.Scan(&b.Start, &count, &agg[0], &agg[1], &agg[2], &agg[3], &agg[4], &agg[5], &agg[6], &agg[7], &agg[8])
		b.Start = b.Start.UTC()
		b.Count = int(count)
		b.MoistureMin, b.MoistureAvg, b.MoistureMax = store.MetricValue(agg[0]), store.MetricValue(agg[1]), store.MetricValue(agg[2])
		b.TempMin, b.TempAvg, b.TempMax = store.MetricValue(agg[3]), store.MetricValue(agg[4]), store.MetricValue(agg[5])
		b.TankMin, b.TankAvg, b.TankMax = store.MetricValue(agg[6]), store.MetricValue(agg[7]), store.MetricValue(agg[8])
		return b, err
	})
	if err != nil {
		return nil, readErr("buckets of "+deviceID, err)
	}
	return out, nil
}

// Events returns logged events with from <= At < to, oldest first (in logging order within one instant).
func (s *Store) Events(ctx context.Context, deviceID string, from, to time.Time, limit int) ([]actors.Event, error) {
	if store.ValidID(deviceID) != nil {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT at, kind, seq, body::text FROM device_events
		WHERE device_id = $1 AND at >= $2 AND at < $3 ORDER BY at, id LIMIT $4`,
		deviceID, from, to, store.QueryLimit(limit))
	if err != nil {
		return nil, readErr("events of "+deviceID, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (actors.Event, error) {
		var (
			e    actors.Event
			seq  int64
			body pgtype.Text
		)
		err := r.Scan(&e.At, &e.Kind, &seq, &body)
		e.At = e.At.UTC()
		e.Seq = uint64(seq)
		if body.Valid {
			e.Body = []byte(body.String)
		}
		return e, err
	})
	if err != nil {
		return nil, readErr("events of "+deviceID, err)
	}
	return out, nil
}
