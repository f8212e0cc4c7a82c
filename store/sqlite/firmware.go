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

var _ actors.FirmwareStore = (*Store)(nil)

// PutFirmware stores an image; its bytes are shared with any other product's identical image.
func (s *Store) PutFirmware(ctx context.Context, img actors.FirmwareImage, data []byte) error {
	if err := store.ValidateFirmware(img, data); err != nil {
		return err
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return readErr("put firmware", err)
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.ExecContext(ctx, `INSERT INTO firmware_blobs (sha256, data) VALUES (?, ?) ON CONFLICT (sha256) DO NOTHING`,
		img.SHA256, data); err != nil {
		return readErr("put firmware", err)
	}
	res, err := tx.ExecContext(ctx, `INSERT INTO firmware (product, version, sha256, size, signature, created_at)
		VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (product, version) DO NOTHING`,
		img.Product, img.Version, img.SHA256, img.Size, img.Signature, store.Micros(img.CreatedAt))
	if err != nil {
		return readErr("put firmware", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("store/sqlite: put firmware %s %s: %w", img.Product, img.Version, actors.ErrFirmwareExists)
	}
	return nilOr("put firmware", tx.Commit())
}

const firmwareColumns = `product, version, sha256, size, signature, created_at`

func scanFirmware(row interface{ Scan(...any) error }) (actors.FirmwareImage, error) {
	var (
		f  actors.FirmwareImage
		at int64
	)
	if err := row.Scan(&f.Product, &f.Version, &f.SHA256, &f.Size, &f.Signature, &at); err != nil {
		return f, err
	}
	f.CreatedAt = store.FromMicros(at)
	return f, nil
}

// GetFirmware returns an image's metadata.
func (s *Store) GetFirmware(ctx context.Context, product, version string) (actors.FirmwareImage, error) {
	f, err := scanFirmware(s.r.QueryRowContext(ctx, `SELECT `+firmwareColumns+` FROM firmware WHERE product = ? AND version = ?`, product, version))
	if errors.Is(err, sql.ErrNoRows) {
		return f, fmt.Errorf("store/sqlite: firmware %s %s: %w", product, version, actors.ErrUnknownFirmware)
	}
	if err != nil {
		return f, readErr("get firmware", err)
	}
	return f, nil
}

// ListFirmware returns a product's images (every product's if product is empty), newest first.
func (s *Store) ListFirmware(ctx context.Context, product string) ([]actors.FirmwareImage, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+firmwareColumns+` FROM firmware WHERE ? = '' OR product = ?
		ORDER BY created_at DESC, product, version`, product, product)
	if err != nil {
		return nil, readErr("list firmware", err)
	}
	defer rows.Close()
	var out []actors.FirmwareImage
	for rows.Next() {
		f, err := scanFirmware(rows)
		if err != nil {
			return nil, readErr("list firmware", err)
		}
		out = append(out, f)
	}
	return out, nilOr("list firmware", rows.Err())
}

// ReadFirmware returns at most n bytes of an image from off.
func (s *Store) ReadFirmware(ctx context.Context, sha256 []byte, off, n int) ([]byte, error) {
	if off < 0 || n < 0 {
		return nil, fmt.Errorf("%w: negative offset or length", store.ErrInvalid)
	}
	var b []byte
	err := s.r.QueryRowContext(ctx, `SELECT substr(data, ?, ?) FROM firmware_blobs WHERE sha256 = ?`, off+1, n, sha256).Scan(&b)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("store/sqlite: firmware %x: %w", sha256, actors.ErrUnknownFirmware)
	}
	if err != nil {
		return nil, readErr("read firmware", err)
	}
	return b, nil
}

// CreateRollout stores a rollout and its targets in one transaction.
func (s *Store) CreateRollout(ctx context.Context, r actors.Rollout, targets []actors.RolloutTarget) error {
	if err := store.ValidateRollout(r, targets); err != nil {
		return err
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return readErr("create rollout", err)
	}
	defer func() { _ = tx.Rollback() }()
	opened := r.StageOpenedAt
	if opened.IsZero() {
		opened = r.CreatedAt
	}
	res, err := tx.ExecContext(ctx, `INSERT INTO rollouts (id, product, version, stages, stage, failure_threshold, state, reason, created_at, updated_at,
			tag, stage_timeout_ms, stage_opened_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
		r.ID, r.Product, r.Version, store.FormatStages(r.Stages), r.Stage, r.FailureThreshold, string(r.State), r.Reason,
		store.Micros(r.CreatedAt), store.Micros(r.UpdatedAt), r.Tag, r.StageTimeout.Milliseconds(), store.Micros(opened))
	if err != nil {
		return readErr("create rollout", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("store/sqlite: rollout %q: %w", r.ID, actors.ErrRolloutExists)
	}
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO rollout_targets (rollout_id, device_id, stage, state, percent, reason, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return readErr("create rollout", err)
	}
	defer stmt.Close()
	for _, t := range targets {
		if _, err := stmt.ExecContext(ctx, r.ID, t.DeviceID, t.Stage, t.State, t.Percent, t.Reason, store.Micros(t.UpdatedAt)); err != nil {
			return readErr("create rollout", err)
		}
	}
	return nilOr("create rollout", tx.Commit())
}

const rolloutColumns = `id, product, version, stages, stage, failure_threshold, state, reason, created_at, updated_at,
	tag, stage_timeout_ms, stage_opened_at`

func scanRollout(row interface{ Scan(...any) error }) (actors.Rollout, error) {
	var (
		r                    actors.Rollout
		stages, state        string
		created, upd, opened int64
		timeoutMs            int64
	)
	if err := row.Scan(&r.ID, &r.Product, &r.Version, &stages, &r.Stage, &r.FailureThreshold, &state, &r.Reason, &created, &upd,
		&r.Tag, &timeoutMs, &opened); err != nil {
		return r, err
	}
	r.Stages, r.State = store.ParseStages(stages), actors.RolloutState(state)
	r.CreatedAt, r.UpdatedAt = store.FromMicros(created), store.FromMicros(upd)
	r.StageTimeout = time.Duration(timeoutMs) * time.Millisecond
	if opened != 0 {
		r.StageOpenedAt = store.FromMicros(opened)
	}
	return r, nil
}

// GetRollout returns a rollout.
func (s *Store) GetRollout(ctx context.Context, id string) (actors.Rollout, error) {
	r, err := scanRollout(s.r.QueryRowContext(ctx, `SELECT `+rolloutColumns+` FROM rollouts WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return r, fmt.Errorf("store/sqlite: rollout %q: %w", id, actors.ErrUnknownRollout)
	}
	if err != nil {
		return r, readErr("get rollout", err)
	}
	return r, nil
}

// ListRollouts returns every rollout, newest first.
func (s *Store) ListRollouts(ctx context.Context) ([]actors.Rollout, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+rolloutColumns+` FROM rollouts ORDER BY created_at DESC, id`)
	if err != nil {
		return nil, readErr("list rollouts", err)
	}
	defer rows.Close()
	var out []actors.Rollout
	for rows.Next() {
		r, err := scanRollout(rows)
		if err != nil {
			return nil, readErr("list rollouts", err)
		}
		out = append(out, r)
	}
	return out, nilOr("list rollouts", rows.Err())
}

// UpdateRollout sets a rollout's state, stage and reason.
func (s *Store) UpdateRollout(ctx context.Context, id string, state actors.RolloutState, stage int, reason string, at time.Time) error {
	res, err := s.w.ExecContext(ctx, `UPDATE rollouts SET state = ?1, stage = ?2, reason = ?3, updated_at = ?4,
		stage_opened_at = CASE WHEN stage <> ?2 OR (state <> 'running' AND ?1 = 'running') THEN ?4 ELSE stage_opened_at END
		WHERE id = ?5`,
		string(state), stage, store.Cut(reason), store.Micros(at), id)
	if err != nil {
		return readErr("update rollout", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("store/sqlite: rollout %q: %w", id, actors.ErrUnknownRollout)
	}
	return nil
}

const targetColumns = `rollout_id, device_id, stage, state, percent, reason, updated_at`

func scanTarget(row interface{ Scan(...any) error }) (actors.RolloutTarget, error) {
	var (
		t  actors.RolloutTarget
		at int64
	)
	if err := row.Scan(&t.RolloutID, &t.DeviceID, &t.Stage, &t.State, &t.Percent, &t.Reason, &at); err != nil {
		return t, err
	}
	t.UpdatedAt = store.FromMicros(at)
	return t, nil
}

// RolloutTargets returns a rollout's targets by stage, then device id.
func (s *Store) RolloutTargets(ctx context.Context, id string) ([]actors.RolloutTarget, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+targetColumns+` FROM rollout_targets WHERE rollout_id = ? ORDER BY stage, device_id`, id)
	if err != nil {
		return nil, readErr("rollout targets", err)
	}
	defer rows.Close()
	var out []actors.RolloutTarget
	for rows.Next() {
		t, err := scanTarget(rows)
		if err != nil {
			return nil, readErr("rollout targets", err)
		}
		out = append(out, t)
	}
	return out, nilOr("rollout targets", rows.Err())
}

// DeviceRollout returns the newest running or paused rollout targeting the device, and its row.
func (s *Store) DeviceRollout(ctx context.Context, deviceID string) (actors.Rollout, actors.RolloutTarget, bool, error) {
	var id string
	err := s.r.QueryRowContext(ctx, `SELECT r.id FROM rollout_targets t JOIN rollouts r ON r.id = t.rollout_id
		WHERE t.device_id = ? AND r.state IN ('running', 'paused') ORDER BY r.created_at DESC LIMIT 1`, deviceID).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return actors.Rollout{}, actors.RolloutTarget{}, false, nil
	}
	if err != nil {
		return actors.Rollout{}, actors.RolloutTarget{}, false, readErr("device rollout", err)
	}
	r, err := s.GetRollout(ctx, id)
	if err != nil {
		return r, actors.RolloutTarget{}, false, err
	}
	t, err := scanTarget(s.r.QueryRowContext(ctx, `SELECT `+targetColumns+` FROM rollout_targets WHERE rollout_id = ? AND device_id = ?`, id, deviceID))
	if err != nil {
		return r, t, false, readErr("device rollout", err)
	}
	return r, t, true, nil
}

// SetTargetState records a target's state.
func (s *Store) SetTargetState(ctx context.Context, t actors.RolloutTarget) error {
	res, err := s.w.ExecContext(ctx, `UPDATE rollout_targets SET state = ?, percent = ?, reason = ?, updated_at = ?
		WHERE rollout_id = ? AND device_id = ?`, t.State, t.Percent, store.Cut(t.Reason), store.Micros(t.UpdatedAt), t.RolloutID, t.DeviceID)
	if err != nil {
		return readErr("set target state", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("store/sqlite: %s in rollout %q: %w", t.DeviceID, t.RolloutID, actors.ErrUnknownRollout)
	}
	return nil
}

// nilOr is readErr for an error that may be nil.
func nilOr(what string, err error) error {
	if err == nil {
		return nil
	}
	return readErr(what, err)
}

// GetTarget returns one target of a rollout.
func (s *Store) GetTarget(ctx context.Context, rolloutID, deviceID string) (actors.RolloutTarget, error) {
	t, err := scanTarget(s.r.QueryRowContext(ctx, `SELECT `+targetColumns+` FROM rollout_targets WHERE rollout_id = ? AND device_id = ?`, rolloutID, deviceID))
	if errors.Is(err, sql.ErrNoRows) {
		return t, fmt.Errorf("store/sqlite: %s in rollout %q: %w", deviceID, rolloutID, actors.ErrUnknownRollout)
	}
	if err != nil {
		return t, readErr("get target", err)
	}
	return t, nil
}
