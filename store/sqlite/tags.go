package sqlite

import (
	"context"
	"fmt"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/store"
)

var _ actors.TagStore = (*Store)(nil)

// SetDeviceTags replaces a device's tags in one transaction.
func (s *Store) SetDeviceTags(ctx context.Context, id string, tags []string) error {
	tags, err := actors.NormalizeTags(tags)
	if err != nil {
		return fmt.Errorf("%w: %v", store.ErrInvalid, err)
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return readErr("set tags", err)
	}
	defer func() { _ = tx.Rollback() }()
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM devices WHERE id = ?`, id).Scan(&n); err != nil {
		return readErr("set tags", err)
	}
	if n == 0 {
		return fmt.Errorf("store/sqlite: set tags of %q: %w", id, actors.ErrUnknownDevice)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM device_tags WHERE device_id = ?`, id); err != nil {
		return readErr("set tags", err)
	}
	for _, t := range tags {
		if _, err := tx.ExecContext(ctx, `INSERT INTO device_tags (device_id, tag) VALUES (?, ?)`, id, t); err != nil {
			return readErr("set tags", err)
		}
	}
	return nilOr("set tags", tx.Commit())
}

// DeviceTags returns a device's tags, sorted.
func (s *Store) DeviceTags(ctx context.Context, id string) ([]string, error) {
	return s.textColumn(ctx, "device tags", `SELECT tag FROM device_tags WHERE device_id = ? ORDER BY tag`, id)
}

// TaggedDevices returns the ids of the devices with a tag, sorted.
func (s *Store) TaggedDevices(ctx context.Context, tag string) ([]string, error) {
	return s.textColumn(ctx, "tagged devices", `SELECT device_id FROM device_tags WHERE tag = ? ORDER BY device_id`, tag)
}

func (s *Store) textColumn(ctx context.Context, what, q string, arg string) ([]string, error) {
	rows, err := s.r.QueryContext(ctx, q, arg)
	if err != nil {
		return nil, readErr(what, err)
	}
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, readErr(what, err)
		}
		out = append(out, v)
	}
	return out, nilOr(what, rows.Err())
}
