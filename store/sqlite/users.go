package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/store"
)

var _ actors.UserStore = (*Store)(nil)

// Bind records a binding; binding an existing pair again keeps its first role and time.
func (s *Store) Bind(ctx context.Context, b actors.Binding) error {
	if err := store.ValidateBinding(b); err != nil {
		return err
	}
	return s.write(ctx, "bind "+b.OpenID+" to "+b.DeviceID, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO bindings (device_id, open_id, role, bound_at) VALUES (?, ?, ?, ?)
			ON CONFLICT (device_id, open_id) DO NOTHING`, b.DeviceID, b.OpenID, b.Role, store.Micros(b.BoundAt))
		return err
	})
}

// Unbind removes a binding; removing a missing one is not an error.
func (s *Store) Unbind(ctx context.Context, deviceID, openID string) error {
	return s.write(ctx, "unbind "+openID+" from "+deviceID, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM bindings WHERE device_id = ? AND open_id = ?`, deviceID, openID)
		return err
	})
}

// DeviceBindings lists a device's users, oldest first (the first is the owner).
func (s *Store) DeviceBindings(ctx context.Context, deviceID string) ([]actors.Binding, error) {
	return s.bindings(ctx, `SELECT device_id, open_id, role, bound_at FROM bindings WHERE device_id = ?
		ORDER BY bound_at, open_id`, deviceID)
}

// UserBindings lists a user's devices, oldest first.
func (s *Store) UserBindings(ctx context.Context, openID string) ([]actors.Binding, error) {
	return s.bindings(ctx, `SELECT device_id, open_id, role, bound_at FROM bindings WHERE open_id = ?
		ORDER BY bound_at, device_id`, openID)
}

func (s *Store) bindings(ctx context.Context, q, id string) ([]actors.Binding, error) {
	rows, err := s.r.QueryContext(ctx, q, id)
	if err != nil {
		return nil, readErr("bindings of "+id, err)
	}
	defer rows.Close()
	var out []actors.Binding
	for rows.Next() {
		var (
			b  actors.Binding
			at int64
		)
		if err := rows.Scan(&b.DeviceID, &b.OpenID, &b.Role, &at); err != nil {
			return nil, readErr("bindings of "+id, err)
		}
		b.BoundAt = store.FromMicros(at)
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, readErr("bindings of "+id, err)
	}
	return out, nil
}

// LoadUser returns a user grain's snapshot, nil if none.
func (s *Store) LoadUser(ctx context.Context, openID string) ([]byte, error) {
	var snap []byte
	err := s.r.QueryRowContext(ctx, `SELECT snapshot FROM users WHERE open_id = ?`, openID).Scan(&snap)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, readErr("load user "+openID, err)
	}
	if snap == nil {
		snap = []byte{}
	}
	return snap, nil
}

// SaveUser replaces a user grain's snapshot.
func (s *Store) SaveUser(ctx context.Context, openID string, snapshot []byte) error {
	if err := store.ValidOpenID(openID); err != nil {
		return err
	}
	if snapshot == nil {
		snapshot = []byte{}
	}
	return s.write(ctx, "save user "+openID, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO users (open_id, snapshot, updated_at) VALUES (?, ?, ?)
			ON CONFLICT (open_id) DO UPDATE SET snapshot = excluded.snapshot, updated_at = excluded.updated_at`,
			openID, snapshot, store.Micros(time.Now()))
		return err
	})
}

// EnqueuePushes adds pushes to the outbox in one transaction; an ID already there is ignored.
func (s *Store) EnqueuePushes(ctx context.Context, ps []actors.Push) error {
	for _, p := range ps {
		if err := store.ValidatePush(p); err != nil {
			return err
		}
	}
	if len(ps) == 0 {
		return nil
	}
	return s.write(ctx, "enqueue pushes", func(ctx context.Context, tx *sql.Tx) error {
		for _, p := range ps {
			status := p.Status
			if status == "" {
				status = actors.PushPending
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO pushes
				(id, open_id, kind, payload, created_at, status, attempts, next_attempt_at, last_error, sent_at, order_key)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
				p.ID, p.OpenID, p.Kind, p.Payload, store.Micros(p.CreatedAt), status, p.Attempts,
				nullMicros(p.NextAttemptAt), store.CleanText(p.LastError), nullMicros(p.SentAt), store.CleanText(p.OrderKey)); err != nil {
				return fmt.Errorf("push %s: %w", p.ID, err)
			}
		}
		return nil
	})
}

const pushColumns = `id, open_id, kind, payload, created_at, status, attempts, next_attempt_at, last_error, sent_at,
	order_key, channel, errcode, msg_id, receipt`

func scanPushes(rows *sql.Rows) ([]actors.Push, error) {
	defer rows.Close()
	var out []actors.Push
	for rows.Next() {
		var (
			p             actors.Push
			created       int64
			next, sentAt  sql.NullInt64
			payload       []byte
			attempts      int64
			status, lastE string
			errcode       int64
		)
		if err := rows.Scan(&p.ID, &p.OpenID, &p.Kind, &payload, &created, &status, &attempts, &next, &lastE, &sentAt,
			&p.OrderKey, &p.Channel, &errcode, &p.MsgID, &p.Receipt); err != nil {
			return nil, err
		}
		p.Payload, p.Status, p.Attempts, p.LastError, p.ErrCode = payload, status, int(attempts), lastE, int(errcode)
		p.CreatedAt = store.FromMicros(created)
		if next.Valid {
			p.NextAttemptAt = store.FromMicros(next.Int64)
		}
		if sentAt.Valid {
			p.SentAt = store.FromMicros(sentAt.Int64)
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// ClaimPushes leases up to limit pending pushes due at now to owner for lease, oldest first.
func (s *Store) ClaimPushes(ctx context.Context, owner string, now time.Time, lease time.Duration, limit int) ([]actors.Push, error) {
	if limit <= 0 {
		return nil, nil
	}
	if err := store.ValidOpenID(owner); err != nil {
		return nil, fmt.Errorf("store/sqlite: claim pushes: owner: %w", err)
	}
	tok := store.LeaseToken(owner)
	at := store.Micros(now)
	rows, err := s.w.QueryContext(ctx, `UPDATE pushes SET lease_owner = ?1, lease_until = ?3
		WHERE id IN (SELECT id FROM pushes p
			WHERE status = 'pending' AND (next_attempt_at IS NULL OR next_attempt_at <= ?2)
				AND (lease_until IS NULL OR lease_until <= ?2)
				AND (order_key = '' OR NOT EXISTS (SELECT 1 FROM pushes o
					WHERE o.order_key = p.order_key AND o.status = 'pending'
						AND (o.created_at < p.created_at OR (o.created_at = p.created_at AND o.id < p.id))))
			ORDER BY created_at, id LIMIT ?4)
		RETURNING `+pushColumns, tok, at, store.Micros(now.Add(lease)), min(limit, store.MaxQueryLimit))
	if err != nil {
		return nil, readErr("claim pushes", err)
	}
	out, err := scanPushes(rows)
	if err != nil {
		return nil, readErr("claim pushes", err)
	}
	for i := range out {
		out[i].Lease = tok
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.Before(out[j].CreatedAt)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// RenewPush extends the lease p.Lease names to now+lease, if it still holds the push.
func (s *Store) RenewPush(ctx context.Context, p actors.Push, now time.Time, lease time.Duration) error {
	if err := store.ValidateCompletion(p); err != nil {
		return err
	}
	return s.write(ctx, "renew push "+p.ID, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE pushes SET lease_until = ?
			WHERE id = ? AND lease_owner = ? AND status = 'pending'`, store.Micros(now.Add(lease)), p.ID, p.Lease)
		return leaseHeld(res, err, p)
	})
}

// CompletePush records a push's fate and ends its lease, if p.Lease still holds the push.
func (s *Store) CompletePush(ctx context.Context, p actors.Push) error {
	if err := store.ValidateCompletion(p); err != nil {
		return err
	}
	if err := store.ValidateStatus(p); err != nil {
		return err
	}
	return s.write(ctx, "complete push "+p.ID, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE pushes SET status = ?, attempts = ?, next_attempt_at = ?,
				last_error = ?, sent_at = ?, channel = ?, errcode = ?, msg_id = ?, lease_owner = NULL, lease_until = NULL
			WHERE id = ? AND lease_owner = ? AND status = 'pending'`,
			p.Status, p.Attempts, nullMicros(p.NextAttemptAt), store.CleanText(p.LastError), nullMicros(p.SentAt),
			store.CleanText(p.Channel), p.ErrCode, store.CleanText(p.MsgID), p.ID, p.Lease)
		return leaseHeld(res, err, p)
	})
}

// leaseHeld turns a fenced update's result into ErrLeaseLost when it changed nothing.
func leaseHeld(res sql.Result, err error, p actors.Push) error {
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		return fmt.Errorf("push %s: lease %s: %w", p.ID, p.Lease, actors.ErrLeaseLost)
	}
	return nil
}

// UserPushes lists a user's pushes, newest first; limit <= 0 means MaxQueryLimit.
func (s *Store) UserPushes(ctx context.Context, openID string, limit int) ([]actors.Push, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+pushColumns+` FROM pushes WHERE open_id = ?
		ORDER BY created_at DESC, id DESC LIMIT ?`, openID, store.QueryLimit(limit))
	if err != nil {
		return nil, readErr("pushes of "+openID, err)
	}
	out, err := scanPushes(rows)
	if err != nil {
		return nil, readErr(fmt.Sprintf("pushes of %s", openID), err)
	}
	return out, nil
}

// RecordContact applies one event to a user's reachability in one transaction.
func (s *Store) RecordContact(ctx context.Context, openID string, ev actors.ContactEvent) error {
	if err := store.ValidOpenID(openID); err != nil {
		return err
	}
	return s.write(ctx, "record contact of "+openID, func(ctx context.Context, tx *sql.Tx) error {
		c, err := contact(ctx, tx, openID)
		if err != nil {
			return err
		}
		c = actors.ApplyContact(c, ev)
		_, err = tx.ExecContext(ctx, `INSERT INTO wechat_contacts (open_id, unfollowed, kind, at, until, sends_left)
			VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (open_id) DO UPDATE SET unfollowed = excluded.unfollowed,
			kind = excluded.kind, at = excluded.at, until = excluded.until, sends_left = excluded.sends_left`,
			openID, c.Unfollowed, c.Kind, store.Micros(c.At), store.Micros(c.Until), c.SendsLeft)
		return err
	})
}

type queryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func contact(ctx context.Context, q queryer, openID string) (actors.Contact, error) {
	var (
		c         actors.Contact
		at, until int64
	)
	err := q.QueryRowContext(ctx, `SELECT unfollowed, kind, at, until, sends_left FROM wechat_contacts WHERE open_id = ?`, openID).
		Scan(&c.Unfollowed, &c.Kind, &at, &until, &c.SendsLeft)
	if errors.Is(err, sql.ErrNoRows) {
		return actors.Contact{}, nil
	}
	if err != nil {
		return actors.Contact{}, err
	}
	c.At, c.Until = store.FromMicros(at), store.FromMicros(until)
	return c, nil
}

// Contact returns a user's reachability (the zero Contact if none is recorded).
func (s *Store) Contact(ctx context.Context, openID string) (actors.Contact, error) {
	c, err := contact(ctx, s.r, openID)
	if err != nil {
		return c, readErr("contact of "+openID, err)
	}
	return c, nil
}

// TakeServiceSend consumes one customer-service send of the user's open window.
func (s *Store) TakeServiceSend(ctx context.Context, openID string, now time.Time) (bool, error) {
	var took bool
	err := s.write(ctx, "take a service send of "+openID, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE wechat_contacts SET sends_left = sends_left - 1
			WHERE open_id = ? AND unfollowed = 0 AND sends_left > 0 AND until > ?`, openID, store.Micros(now))
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		took = n == 1
		return err
	})
	return took, err
}

// RecordReceipt records a template's delivery receipt on the push sent with msgID.
func (s *Store) RecordReceipt(ctx context.Context, msgID, status string) (bool, error) {
	if msgID == "" {
		return false, nil
	}
	var found bool
	err := s.write(ctx, "record receipt "+msgID, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE pushes SET receipt = ? WHERE msg_id = ?`, store.CleanText(status), store.CleanText(msgID))
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		found = n > 0
		return err
	})
	return found, err
}

// FailedPushes lists pushes failed for good, newest first.
func (s *Store) FailedPushes(ctx context.Context, limit int) ([]actors.Push, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+pushColumns+` FROM pushes WHERE status = 'failed'
		ORDER BY created_at DESC, id DESC LIMIT ?`, store.QueryLimit(limit))
	if err != nil {
		return nil, readErr("failed pushes", err)
	}
	out, err := scanPushes(rows)
	if err != nil {
		return nil, readErr("failed pushes", err)
	}
	return out, nil
}

// RetryPush puts a failed or skipped push back in the queue, due at now.
func (s *Store) RetryPush(ctx context.Context, id string, now time.Time) error {
	return s.write(ctx, "retry push "+id, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE pushes SET status = 'pending', attempts = 0, last_error = '', errcode = 0,
				next_attempt_at = ?, lease_owner = NULL, lease_until = NULL
			WHERE id = ? AND status IN ('failed', 'skipped')`, store.Micros(now), id)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return fmt.Errorf("push %s: %w", id, actors.ErrNotFailed)
		}
		return nil
	})
}
