package postgres

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
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return readErr("set tags", err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	var n int
	// FOR UPDATE: two operators tagging the same pot at once end with one's tags, not a mix.
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM (SELECT 1 FROM devices WHERE id = $1 FOR UPDATE) d`, id).Scan(&n); err != nil {
		return readErr("set tags", err)
	}
	if n == 0 {
		return fmt.Errorf("store/postgres: set tags of %q: %w", id, actors.ErrUnknownDevice)
	}
	if _, err := tx.Exec(ctx, `DELETE FROM device_tags WHERE device_id = $1`, id); err != nil {
		return readErr("set tags", err)
	}
	if len(tags) > 0 {
		if _, err := tx.Exec(ctx, `INSERT INTO device_tags (device_id, tag) SELECT $1, unnest($2::text[])`, id, tags); err != nil {
			return readErr("set tags", err)
		}
	}
	return nilOr("set tags", tx.Commit(ctx))
}

// DeviceTags returns a device's tags, sorted.
func (s *Store) DeviceTags(ctx context.Context, id string) ([]string, error) {
	return s.textColumn(ctx, "device tags", `SELECT tag FROM device_tags WHERE device_id = $1 ORDER BY tag`, id)
}

// TaggedDevices returns the ids of the devices with a tag, sorted.
func (s *Store) TaggedDevices(ctx context.Context, tag string) ([]string, error) {
	return s.textColumn(ctx, "tagged devices", `SELECT device_id FROM device_tags WHERE tag = $1 ORDER BY device_id`, tag)
}

func (s *Store) textColumn(ctx context.Context, what, q string, arg string) ([]string, error) {
	rows, err := s.pool.Query(ctx, q, arg)
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
