package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/store"
)

var _ actors.DesiredStore = (*Store)(nil)

// SetDesiredConfig stores (replaces) the desired configuration of a product or a pot.
func (s *Store) SetDesiredConfig(ctx context.Context, d actors.DesiredConfig) error {
	if err := store.ValidateDesired(d); err != nil {
		return err
	}
	if _, err := s.pool.Exec(ctx, `INSERT INTO desired_configs (scope, key, config, updated_at, updated_by)
		VALUES ($1, $2, $3, $4, $5) ON CONFLICT (scope, key) DO UPDATE SET config = excluded.config,
		updated_at = excluded.updated_at, updated_by = excluded.updated_by`,
		d.Scope, d.Key, string(d.Config), d.UpdatedAt, d.By); err != nil {
		return readErr("set desired config of "+d.Key, err)
	}
	return nil
}

// DeleteDesiredConfig removes a desired configuration (nil if there was none).
func (s *Store) DeleteDesiredConfig(ctx context.Context, scope, key string) error {
	if validText(key) != nil {
		return nil // no such config can exist
	}
	if _, err := s.pool.Exec(ctx, `DELETE FROM desired_configs WHERE scope = $1 AND key = $2`, scope, key); err != nil {
		return readErr("delete desired config of "+key, err)
	}
	return nil
}

// validText: text Postgres can hold (store.ValidCursor's rule).
func validText(s string) error { return store.ValidCursor(s) }

func (s *Store) desired(ctx context.Context, scope, key string) (*actors.DesiredConfig, error) {
	if validText(key) != nil {
		return nil, nil
	}
	d := actors.DesiredConfig{Scope: scope, Key: key}
	var cfg string
	err := s.pool.QueryRow(ctx, `SELECT config, updated_at, updated_by FROM desired_configs WHERE scope = $1 AND key = $2`,
		scope, key).Scan(&cfg, &d.UpdatedAt, &d.By)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, readErr("desired config of "+key, err)
	}
	d.Config, d.UpdatedAt = []byte(cfg), d.UpdatedAt.UTC()
	return &d, nil
}

// DesiredConfigs returns the product's and the pot's desired configurations (nil when unset).
func (s *Store) DesiredConfigs(ctx context.Context, product, deviceID string) (*actors.DesiredConfig, *actors.DesiredConfig, error) {
	prod, err := s.desired(ctx, actors.ScopeProduct, product)
	if err != nil {
		return nil, nil, err
	}
	dev, err := s.desired(ctx, actors.ScopeDevice, deviceID)
	return prod, dev, err
}

// ListDesiredConfigs returns every desired configuration of scope, ordered by key.
func (s *Store) ListDesiredConfigs(ctx context.Context, scope string) ([]actors.DesiredConfig, error) {
	rows, err := s.pool.Query(ctx, `SELECT key, config, updated_at, updated_by FROM desired_configs
		WHERE scope = $1 ORDER BY key`, scope)
	if err != nil {
		return nil, readErr("desired configs", err)
	}
	defer rows.Close()
	var out []actors.DesiredConfig
	for rows.Next() {
		d := actors.DesiredConfig{Scope: scope}
		var cfg string
		if err := rows.Scan(&d.Key, &cfg, &d.UpdatedAt, &d.By); err != nil {
			return nil, readErr("desired configs", err)
		}
		d.Config, d.UpdatedAt = []byte(cfg), d.UpdatedAt.UTC()
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, readErr("desired configs", err)
	}
	return out, nil
}

// ReportConfig stores (replaces) what a device grain knows of its pot's configuration.
func (s *Store) ReportConfig(ctx context.Context, r actors.ConfigReport) error {
	if err := store.ValidateReport(r); err != nil {
		return err
	}
	var drift *time.Time
	if !r.DriftSince.IsZero() {
		drift = &r.DriftSince
	}
	if _, err := s.pool.Exec(ctx, `INSERT INTO config_reports (device_id, product, desired, applied, drift_since, last_error, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (device_id) DO UPDATE SET product = excluded.product,
		desired = excluded.desired, applied = excluded.applied, drift_since = excluded.drift_since,
		last_error = excluded.last_error, updated_at = excluded.updated_at`,
		r.DeviceID, r.Product, store.NullText(r.Desired), store.NullText(r.Applied), drift, store.CleanText(r.LastError), r.UpdatedAt); err != nil {
		return readErr("report config of "+r.DeviceID, err)
	}
	return nil
}

const reportCols = `device_id, product, desired, applied, drift_since, last_error, updated_at`

func scanReport(sc interface{ Scan(...any) error }) (actors.ConfigReport, error) {
	var (
		r                actors.ConfigReport
		desired, applied *string
		drift            *time.Time
	)
	if err := sc.Scan(&r.DeviceID, &r.Product, &desired, &applied, &drift, &r.LastError, &r.UpdatedAt); err != nil {
		return r, err
	}
	r.Desired, r.Applied, r.UpdatedAt = store.TextBytes(desired), store.TextBytes(applied), r.UpdatedAt.UTC()
	if drift != nil {
		r.DriftSince = drift.UTC()
	}
	return r, nil
}

// ConfigDrift returns the reports of pots in drift matching q, by device id.
func (s *Store) ConfigDrift(ctx context.Context, q actors.DriftQuery) ([]actors.ConfigReport, error) {
	if err := store.ValidCursor(q.AfterID); err != nil {
		return nil, err
	}
	if validText(q.Product) != nil {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT `+reportCols+` FROM config_reports
		WHERE drift_since IS NOT NULL AND ($1 = '' OR product = $1) AND device_id > $2 ORDER BY device_id LIMIT $3`,
		q.Product, q.AfterID, store.ListLimit(q.Limit))
	if err != nil {
		return nil, readErr("config drift", err)
	}
	defer rows.Close()
	var out []actors.ConfigReport
	for rows.Next() {
		r, err := scanReport(rows)
		if err != nil {
			return nil, readErr("config drift", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, readErr("config drift", err)
	}
	return out, nil
}

// ConfigReport returns one pot's report.
func (s *Store) ConfigReport(ctx context.Context, deviceID string) (actors.ConfigReport, bool, error) {
	if store.ValidID(deviceID) != nil {
		return actors.ConfigReport{}, false, nil
	}
	r, err := scanReport(s.pool.QueryRow(ctx, `SELECT `+reportCols+` FROM config_reports WHERE device_id = $1`, deviceID))
	if errors.Is(err, pgx.ErrNoRows) {
		return actors.ConfigReport{}, false, nil
	}
	if err != nil {
		return actors.ConfigReport{}, false, readErr("config report of "+deviceID, err)
	}
	return r, true, nil
}
