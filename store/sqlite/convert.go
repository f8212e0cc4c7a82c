package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/store"
)

// convertReadings moves the rows of the pre-00009 table `readings` into sealed chunks, one device
// per transaction (its chunks written and its rows deleted together, so an interrupted conversion
// resumes where it stopped), then drops the table. It runs after the migrations, in Open and in
// Migrate; on a database without the old table it does nothing.
func convertReadings(ctx context.Context, db *sql.DB, maxChunk int) (int64, error) {
	var n int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'readings'`).Scan(&n); err != nil {
		return 0, fmt.Errorf("store/sqlite: convert readings: %w", err)
	}
	if n == 0 {
		return 0, nil
	}
	var total int64
	for {
		var id string
		err := db.QueryRowContext(ctx, `SELECT device_id FROM readings LIMIT 1`).Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			break
		}
		if err != nil {
			return total, fmt.Errorf("store/sqlite: convert readings: %w", err)
		}
		moved, err := convertDevice(ctx, db, id, maxChunk)
		if err != nil {
			return total, fmt.Errorf("store/sqlite: convert the readings of %q: %w", id, err)
		}
		total += moved
	}
	if _, err := db.ExecContext(ctx, `DROP TABLE readings`); err != nil {
		return total, fmt.Errorf("store/sqlite: drop the old readings table: %w", err)
	}
	return total, nil
}

func convertDevice(ctx context.Context, db *sql.DB, id string, maxChunk int) (moved int64, err error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer func() {
		if err != nil {
			tx.Rollback()
		}
	}()
	rows, err := tx.QueryContext(ctx, `SELECT seq, device_time, received_at, soil_moisture, temperature, tank_level, supply_mv
		FROM readings WHERE device_id = ? ORDER BY received_at, seq`, id)
	if err != nil {
		return 0, err
	}
	byHour := map[int64][]actors.Reading{}
	var hours []int64
	for rows.Next() {
		var (
			r                   actors.Reading
			seq, received, mv   int64
			devTime             sql.NullInt64
			moisture, temp, tnk *float64
		)
		if err := rows.Scan(&seq, &devTime, &received, &moisture, &temp, &tnk, &mv); err != nil {
			rows.Close()
			return 0, err
		}
		r.Seq = uint64(seq)
		if devTime.Valid {
			r.DeviceTime = store.FromMicros(devTime.Int64)
		}
		r.ReceivedAt = store.FromMicros(received)
		r.SoilMoisture, r.Temperature, r.TankLevel = store.MetricValue(moisture), store.MetricValue(temp), store.MetricValue(tnk)
		r.SupplyMillivolt = uint32(mv)
		h := floorHour(received)
		if _, ok := byHour[h]; !ok {
			hours = append(hours, h)
		}
		byHour[h] = append(byHour[h], r)
		moved++
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	w := chunkWriter{ctx: ctx, tx: tx, max: maxChunk}
	defer w.close()
	for _, h := range hours {
		// Appended after any part already there (none, unless the table was refilled by hand).
		if err := w.write(chunkKey{id, h}, byHour[h], -1, true); err != nil {
			return 0, err
		}
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM readings WHERE device_id = ?`, id); err != nil {
		return 0, err
	}
	return moved, tx.Commit()
}
