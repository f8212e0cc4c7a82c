package sqlite

import (
	"context"
	"database/sql"
	"errors"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/store"
)

var _ actors.DesiredStore = (*Store)(nil)

// SetDesiredConfig stores (replaces) the desired configuration of a product or a pot.
func (s *Store) SetDesiredConfig(ctx context.Context, d actors.DesiredConfig) error {
	if err := store.ValidateDesired(d); err != nil {
		return err
	}
	return s.write(ctx, "set desired config of "+d.Key, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO desired_configs (scope, key, config, updated_at, updated_by)
			VALUES (?, ?, ?, ?, ?) ON CONFLICT (scope, key) DO UPDATE SET config = excluded.config,
			updated_at = excluded.updated_at, updated_by = excluded.updated_by`,
			d.Scope, d.Key, string(d.Config), store.Micros(d.UpdatedAt), d.By)
		return err
	})
}

// DeleteDesiredConfig removes a desired configuration (nil if there was none).
func (s *Store) DeleteDesiredConfig(ctx context.Context, scope, key string) error {
	return s.write(ctx, "delete desired config of "+key, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM desired_configs WHERE scope = ? AND key = ?`, scope, key)
		return err
	})
}

func (s *Store) desired(ctx context.Context, scope, key string) (*actors.DesiredConfig, error) {
	d := actors.DesiredConfig{Scope: scope, Key: key}
	var (
		cfg string
		at  int64
	)
	err := s.r.QueryRowContext(ctx, `SELECT config, updated_at, updated_by FROM desired_configs WHERE scope = ? AND key = ?`,
		scope, key).Scan(&cfg, &at, &d.By)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, readErr("desired config of "+key, err)
	}
	d.Config, d.UpdatedAt = []byte(cfg), store.FromMicros(at)
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
	rows, err := s.r.QueryContext(ctx, `SELECT key, config, updated_at, updated_by FROM desired_configs
		WHERE scope = ? ORDER BY key`, scope)
	if err != nil {
		return nil, readErr("desired configs", err)
	}
	defer rows.Close()
	var out []actors.DesiredConfig
	for rows.Next() {
		d := actors.DesiredConfig{Scope: scope}
		var (
			cfg string
			at  int64
		)
		if err := rows.Scan(&d.Key, &cfg, &at, &d.By); err != nil {
			return nil, readErr("desired configs", err)
		}
		d.Config, d.UpdatedAt = []byte(cfg), store.FromMicros(at)
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
	var drift *int64
	if !r.DriftSince.IsZero() {
		v := store.Micros(r.DriftSince)
		drift = &v
	}
	return s.write(ctx, "report config of "+r.DeviceID, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO config_reports (device_id, product, desired, applied, drift_since, last_error, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (device_id) DO UPDATE SET product = excluded.product,
			desired = excluded.desired, applied = excluded.applied, drift_since = excluded.drift_since,
			last_error = excluded.last_error, updated_at = excluded.updated_at`,
			r.DeviceID, r.Product, store.NullText(r.Desired), store.NullText(r.Applied), drift, store.CleanText(r.LastError), store.Micros(r.UpdatedAt))
		return err
	})
}

const reportCols = `device_id, product, desired, applied, drift_since, last_error, updated_at`

func scanReport(sc interface{ Scan(...any) error }) (actors.ConfigReport, error) {
	var (
		r                actors.ConfigReport
		desired, applied *string
		drift            *int64
		at               int64
	)
	if err := sc.Scan(&r.DeviceID, &r.Product, &desired, &applied, &drift, &r.LastError, &at); err != nil {
		return r, err
	}
	r.Desired, r.Applied, r.UpdatedAt = store.TextBytes(desired), store.TextBytes(applied), store.FromMicros(at)
	if drift != nil {
		r.DriftSince = store.FromMicros(*drift)
	}
	return r, nil
}

// ConfigDrift returns the reports of pots in drift matching q, by device id.
func (s *Store) ConfigDrift(ctx context.Context, q actors.DriftQuery) ([]actors.ConfigReport, error) {
	if err := store.ValidCursor(q.AfterID); err != nil {
		return nil, err
	}
	rows, err := s.r.QueryContext(ctx, `SELECT `+reportCols+` FROM config_reports
		WHERE drift_since IS NOT NULL AND (? = '' OR product = ?) AND device_id > ? ORDER BY device_id LIMIT ?`,
		q.Product, q.Product, q.AfterID, store.ListLimit(q.Limit))
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
	r, err := scanReport(s.r.QueryRowContext(ctx, `SELECT `+reportCols+` FROM config_reports WHERE device_id = ?`, deviceID))
	if errors.Is(err, sql.ErrNoRows) {
		return actors.ConfigReport{}, false, nil
	}
	if err != nil {
		return actors.ConfigReport{}, false, readErr("config report of "+deviceID, err)
	}
	return r, true, nil
}
