package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/store"
)

var _ actors.FirmwareStore = (*Store)(nil)

// PutFirmware stores an image; its bytes are shared with any other product's identical image.
func (s *Store) PutFirmware(ctx context.Context, img actors.FirmwareImage, data []byte) error {
	if err := store.ValidateFirmware(img, data); err != nil {
		return err
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return readErr("put firmware", err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, `INSERT INTO firmware_blobs (sha256, data) VALUES ($1, $2) ON CONFLICT (sha256) DO NOTHING`,
		img.SHA256, data); err != nil {
		return readErr("put firmware", err)
	}
	res, err := tx.Exec(ctx, `INSERT INTO firmware (product, version, sha256, size, signature, created_at)
		VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (product, version) DO NOTHING`,
		img.Product, img.Version, img.SHA256, img.Size, img.Signature, img.CreatedAt)
	if err != nil {
		return readErr("put firmware", err)
	}
	if res.RowsAffected() == 0 {
		return fmt.Errorf("store/postgres: put firmware %s %s: %w", img.Product, img.Version, actors.ErrFirmwareExists)
	}
	return nilOr("put firmware", tx.Commit(ctx))
}

const firmwareColumns = `product, version, sha256, size, signature, created_at`

func scanFirmware(row pgx.Row) (actors.FirmwareImage, error) {
	var f actors.FirmwareImage
	if err := row.Scan(&f.Product, &f.Version, &f.SHA256, &f.Size, &f.Signature, &f.CreatedAt); err != nil {
		return f, err
	}
	f.CreatedAt = f.CreatedAt.UTC()
	return f, nil
}

// GetFirmware returns an image's metadata.
func (s *Store) GetFirmware(ctx context.Context, product, version string) (actors.FirmwareImage, error) {
	f, err := scanFirmware(s.pool.QueryRow(ctx, `SELECT `+firmwareColumns+` FROM firmware WHERE product = $1 AND version = $2`, product, version))
	if errors.Is(err, pgx.ErrNoRows) {
		return f, fmt.Errorf("store/postgres: firmware %s %s: %w", product, version, actors.ErrUnknownFirmware)
	}
	if err != nil {
		return f, readErr("get firmware", err)
	}
	return f, nil
}

// ListFirmware returns a product's images (every product's if product is empty), newest first.
func (s *Store) ListFirmware(ctx context.Context, product string) ([]actors.FirmwareImage, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+firmwareColumns+` FROM firmware WHERE $1 = '' OR product = $2
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
	err := s.pool.QueryRow(ctx, `SELECT substr(data, $1, $2) FROM firmware_blobs WHERE sha256 = $3`, off+1, n, sha256).Scan(&b)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("store/postgres: firmware %x: %w", sha256, actors.ErrUnknownFirmware)
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
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return readErr("create rollout", err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	opened := r.StageOpenedAt
	if opened.IsZero() {
		opened = r.CreatedAt
	}
	res, err := tx.Exec(ctx, `INSERT INTO rollouts (id, product, version, stages, stage, failure_threshold, state, reason, created_at, updated_at,
			tag, stage_timeout_ms, stage_opened_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) ON CONFLICT (id) DO NOTHING`,
		r.ID, r.Product, r.Version, store.FormatStages(r.Stages), r.Stage, r.FailureThreshold, string(r.State), r.Reason,
		r.CreatedAt, r.UpdatedAt, r.Tag, r.StageTimeout.Milliseconds(), opened)
	if err != nil {
		return readErr("create rollout", err)
	}
	if res.RowsAffected() == 0 {
		return fmt.Errorf("store/postgres: rollout %q: %w", r.ID, actors.ErrRolloutExists)
	}
	rows := make([][]any, len(targets))
	for i, t := range targets {
		rows[i] = []any{r.ID, t.DeviceID, t.Stage, t.State, t.Percent, t.Reason, t.UpdatedAt}
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"rollout_targets"},
		[]string{"rollout_id", "device_id", "stage", "state", "percent", "reason", "updated_at"}, pgx.CopyFromRows(rows)); err != nil {
		return readErr("create rollout", err)
	}
	return nilOr("create rollout", tx.Commit(ctx))
}

const rolloutColumns = `id, product, version, stages, stage, failure_threshold, state, reason, created_at, updated_at,
	tag, stage_timeout_ms, stage_opened_at`

func scanRollout(row pgx.Row) (actors.Rollout, error) {
	var (
		r             actors.Rollout
		stages, state string
		created, upd  time.Time
		opened        *time.Time
		timeoutMs     int64
	)
	if err := row.Scan(&r.ID, &r.Product, &r.Version, &stages, &r.Stage, &r.FailureThreshold, &state, &r.Reason, &created, &upd,
		&r.Tag, &timeoutMs, &opened); err != nil {
		return r, err
	}
	r.Stages, r.State = store.ParseStages(stages), actors.RolloutState(state)
	r.CreatedAt, r.UpdatedAt = created.UTC(), upd.UTC()
	r.StageTimeout = time.Duration(timeoutMs) * time.Millisecond
	if opened != nil {
		r.StageOpenedAt = opened.UTC()
	}
	return r, nil
}

// GetRollout returns a rollout.
func (s *Store) GetRollout(ctx context.Context, id string) (actors.Rollout, error) {
	r, err := scanRollout(s.pool.QueryRow(ctx, `SELECT `+rolloutColumns+` FROM rollouts WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return r, fmt.Errorf("store/postgres: rollout %q: %w", id, actors.ErrUnknownRollout)
	}
	if err != nil {
		return r, readErr("get rollout", err)
	}
	return r, nil
}

// ListRollouts returns every rollout, newest first.
func (s *Store) ListRollouts(ctx context.Context) ([]actors.Rollout, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+rolloutColumns+` FROM rollouts ORDER BY created_at DESC, id`)
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
	res, err := s.pool.Exec(ctx, `UPDATE rollouts SET state = $1, stage = $2, reason = $3, updated_at = $4,
		stage_opened_at = CASE WHEN stage <> $2 OR (state <> 'running' AND $1 = 'running') THEN $4 ELSE stage_opened_at END
		WHERE id = $5`,
		string(state), stage, store.Cut(reason), at, id)
	if err != nil {
		return readErr("update rollout", err)
	}
	if res.RowsAffected() == 0 {
		return fmt.Errorf("store/postgres: rollout %q: %w", id, actors.ErrUnknownRollout)
	}
	return nil
}

const targetColumns = `rollout_id, device_id, stage, state, percent, reason, updated_at`

func scanTarget(row pgx.Row) (actors.RolloutTarget, error) {
	var (
		t  actors.RolloutTarget
		at time.Time
	)
	if err := row.Scan(&t.RolloutID, &t.DeviceID, &t.Stage, &t.State, &t.Percent, &t.Reason, &at); err != nil {
		return t, err
	}
	t.UpdatedAt = at.UTC()
	return t, nil
}

// RolloutTargets returns a rollout's targets by stage, then device id.
func (s *Store) RolloutTargets(ctx context.Context, id string) ([]actors.RolloutTarget, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+targetColumns+` FROM rollout_targets WHERE rollout_id = $1 ORDER BY stage, device_id`, id)
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
	err := s.pool.QueryRow(ctx, `SELECT r.id FROM rollout_targets t JOIN rollouts r ON r.id = t.rollout_id
		WHERE t.device_id = $1 AND r.state IN ('running', 'paused') ORDER BY r.created_at DESC LIMIT 1`, deviceID).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return actors.Rollout{}, actors.RolloutTarget{}, false, nil
	}
	if err != nil {
		return actors.Rollout{}, actors.RolloutTarget{}, false, readErr("device rollout", err)
	}
	r, err := s.GetRollout(ctx, id)
	if err != nil {
		return r, actors.RolloutTarget{}, false, err
	}
	t, err := scanTarget(s.pool.QueryRow(ctx, `SELECT `+targetColumns+` FROM rollout_targets WHERE rollout_id = $1 AND device_id = $2`, id, deviceID))
	if err != nil {
		return r, t, false, readErr("device rollout", err)
	}
	return r, t, true, nil
}

// SetTargetState records a target's state.
func (s *Store) SetTargetState(ctx context.Context, t actors.RolloutTarget) error {
	res, err := s.pool.Exec(ctx, `UPDATE rollout_targets SET state = $1, percent = $2, reason = $3, updated_at = $4
		WHERE rollout_id = $5 AND device_id = $6`, t.State, t.Percent, store.Cut(t.Reason), t.UpdatedAt, t.RolloutID, t.DeviceID)
	if err != nil {
		return readErr("set target state", err)
	}
	if res.RowsAffected() == 0 {
		return fmt.Errorf("store/postgres: %s in rollout %q: %w", t.DeviceID, t.RolloutID, actors.ErrUnknownRollout)
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
	t, err := scanTarget(s.pool.QueryRow(ctx, `SELECT `+targetColumns+` FROM rollout_targets WHERE rollout_id = $1 AND device_id = $2`, rolloutID, deviceID))
	if errors.Is(err, pgx.ErrNoRows) {
		return t, fmt.Errorf("store/postgres: %s in rollout %q: %w", deviceID, rolloutID, actors.ErrUnknownRollout)
	}
	if err != nil {
		return t, readErr("get target", err)
	}
	return t, nil
}
