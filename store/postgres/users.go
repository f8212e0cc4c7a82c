package postgres

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/store"
)

var _ actors.UserStore = (*Store)(nil)

// Bind records a binding; binding an existing pair again keeps its first role and time.
func (s *Store) Bind(ctx context.Context, b actors.Binding) error {
	if err := store.ValidateBinding(b); err != nil {
		return err
	}
	if _, err := s.pool.Exec(ctx, `INSERT INTO bindings (device_id, open_id, role, bound_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (device_id, open_id) DO NOTHING`, b.DeviceID, b.OpenID, b.Role, b.BoundAt); err != nil {
		return readErr("bind "+b.OpenID+" to "+b.DeviceID, err)
	}
	return nil
}

// Unbind removes a binding; removing a missing one is not an error.
func (s *Store) Unbind(ctx context.Context, deviceID, openID string) error {
	if store.ValidID(deviceID) != nil || store.ValidOpenID(openID) != nil {
		return nil // no such binding can exist
	}
	if _, err := s.pool.Exec(ctx, `DELETE FROM bindings WHERE device_id = $1 AND open_id = $2`, deviceID, openID); err != nil {
		return readErr("unbind "+openID+" from "+deviceID, err)
	}
	return nil
}

// DeviceBindings lists a device's users, oldest first (the first is the owner).
func (s *Store) DeviceBindings(ctx context.Context, deviceID string) ([]actors.Binding, error) {
	if store.ValidID(deviceID) != nil {
		return nil, nil
	}
	return s.bindings(ctx, `SELECT device_id, open_id, role, bound_at FROM bindings WHERE device_id = $1
		ORDER BY bound_at, open_id`, deviceID)
}

// UserBindings lists a user's devices, oldest first.
func (s *Store) UserBindings(ctx context.Context, openID string) ([]actors.Binding, error) {
	if store.ValidOpenID(openID) != nil {
		return nil, nil
	}
	return s.bindings(ctx, `SELECT device_id, open_id, role, bound_at FROM bindings WHERE open_id = $1
		ORDER BY bound_at, device_id`, openID)
}

func (s *Store) bindings(ctx context.Context, q, id string) ([]actors.Binding, error) {
	rows, err := s.pool.Query(ctx, q, id)
	if err != nil {
		return nil, readErr("bindings of "+id, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (actors.Binding, error) {
		var b actors.Binding
		err := r.Scan(&b.DeviceID, &b.OpenID, &b.Role, &b.BoundAt)
		b.BoundAt = b.BoundAt.UTC()
		return b, err
	})
	if err != nil {
		return nil, readErr("bindings of "+id, err)
	}
	return out, nil
}

// LoadUser returns a user grain's snapshot, nil if none.
func (s *Store) LoadUser(ctx context.Context, openID string) ([]byte, error) {
	if store.ValidOpenID(openID) != nil {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT snapshot FROM users WHERE open_id = $1`, openID)
	if err != nil {
		return nil, readErr("load user "+openID, err)
	}
	snaps, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		return nil, readErr("load user "+openID, err)
	}
	if len(snaps) == 0 {
		return nil, nil
	}
	if snaps[0] == nil {
		return []byte{}, nil
	}
	return snaps[0], nil
}

// SaveUser replaces a user grain's snapshot.
func (s *Store) SaveUser(ctx context.Context, openID string, snapshot []byte) error {
	if err := store.ValidOpenID(openID); err != nil {
		return err
	}
	if snapshot == nil {
		snapshot = []byte{}
	}
	if _, err := s.pool.Exec(ctx, `INSERT INTO users (open_id, snapshot, updated_at) VALUES ($1, $2, now())
		ON CONFLICT (open_id) DO UPDATE SET snapshot = excluded.snapshot, updated_at = excluded.updated_at`,
		openID, snapshot); err != nil {
		return readErr("save user "+openID, err)
	}
	return nil
}

// EnqueuePushes adds pushes to the outbox in one statement; an ID already there is ignored.
func (s *Store) EnqueuePushes(ctx context.Context, ps []actors.Push) error {
	if len(ps) == 0 {
		return nil
	}
	var (
		ids, openIDs, kinds, statuses, lastErrs = make([]string, len(ps)), make([]string, len(ps)), make([]string, len(ps)), make([]string, len(ps)), make([]string, len(ps))
		orderKeys                               = make([]string, len(ps))
		payloads                                = make([][]byte, len(ps))
		created                                 = make([]time.Time, len(ps))
		attempts                                = make([]int32, len(ps))
		next, sent                              = make([]pgtype.Timestamptz, len(ps)), make([]pgtype.Timestamptz, len(ps))
	)
	for i, p := range ps {
		if err := store.ValidatePush(p); err != nil {
			return err
		}
		ids[i], openIDs[i], kinds[i], payloads[i], created[i] = p.ID, p.OpenID, p.Kind, p.Payload, p.CreatedAt
		statuses[i] = p.Status
		if statuses[i] == "" {
			statuses[i] = actors.PushPending
		}
		attempts[i], next[i], lastErrs[i], sent[i] = int32(p.Attempts), nullTime(p.NextAttemptAt), store.CleanText(p.LastError), nullTime(p.SentAt)
		orderKeys[i] = store.CleanText(p.OrderKey)
	}
	if _, err := s.pool.Exec(ctx, `INSERT INTO pushes
			(id, open_id, kind, payload, created_at, status, attempts, next_attempt_at, last_error, sent_at, order_key)
		SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::timestamptz[], $6::text[],
			$7::integer[], $8::timestamptz[], $9::text[], $10::timestamptz[], $11::text[])
		ON CONFLICT (id) DO NOTHING`,
		ids, openIDs, kinds, payloads, created, statuses, attempts, next, lastErrs, sent, orderKeys); err != nil {
		return readErr("enqueue pushes", err)
	}
	return nil
}

const pushColumns = `id, open_id, kind, payload, created_at, status, attempts, next_attempt_at, last_error, sent_at,
	order_key, channel, errcode, msg_id, receipt`

func collectPushes(rows pgx.Rows) ([]actors.Push, error) {
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (actors.Push, error) {
		var (
			p          actors.Push
			attempts   int32
			errcode    int32
			next, sent pgtype.Timestamptz
		)
		err := r.Scan(&p.ID, &p.OpenID, &p.Kind, &p.Payload, &p.CreatedAt, &p.Status, &attempts, &next, &p.LastError, &sent,
			&p.OrderKey, &p.Channel, &errcode, &p.MsgID, &p.Receipt)
		p.ErrCode = int(errcode)
		p.CreatedAt = p.CreatedAt.UTC()
		p.Attempts = int(attempts)
		p.NextAttemptAt, p.SentAt = fromTime(next), fromTime(sent)
		return p, err
	})
}

// ClaimPushes leases up to limit pending pushes due at now to owner for lease, oldest first.
// Pushers on several nodes claim disjoint sets (FOR UPDATE SKIP LOCKED).
func (s *Store) ClaimPushes(ctx context.Context, owner string, now time.Time, lease time.Duration, limit int) ([]actors.Push, error) {
	if limit <= 0 {
		return nil, nil
	}
	if err := store.ValidOpenID(owner); err != nil {
		return nil, fmt.Errorf("store/postgres: claim pushes: owner: %w", err)
	}
	tok := store.LeaseToken(owner)
	rows, err := s.pool.Query(ctx, `UPDATE pushes SET lease_owner = $1, lease_until = $3
		WHERE id IN (SELECT id FROM pushes p
			WHERE status = 'pending' AND (next_attempt_at IS NULL OR next_attempt_at <= $2)
				AND (lease_until IS NULL OR lease_until <= $2)
				AND (order_key = '' OR NOT EXISTS (SELECT 1 FROM pushes o
					WHERE o.order_key = p.order_key AND o.status = 'pending'
						AND (o.created_at < p.created_at OR (o.created_at = p.created_at AND o.id < p.id))))
			ORDER BY created_at, id LIMIT $4
			FOR UPDATE SKIP LOCKED)
		RETURNING `+pushColumns, tok, now, now.Add(lease), min(limit, store.MaxQueryLimit))
	if err != nil {
		return nil, readErr("claim pushes", err)
	}
	out, err := collectPushes(rows)
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
	tag, err := s.pool.Exec(ctx, `UPDATE pushes SET lease_until = $1
		WHERE id = $2 AND lease_owner = $3 AND status = 'pending'`, now.Add(lease), p.ID, p.Lease)
	if err != nil {
		return readErr("renew push "+p.ID, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("store/postgres: renew push %s: lease %s: %w", p.ID, p.Lease, actors.ErrLeaseLost)
	}
	return nil
}

// CompletePush records a push's fate and ends its lease, if p.Lease still holds the push.
func (s *Store) CompletePush(ctx context.Context, p actors.Push) error {
	if err := store.ValidateCompletion(p); err != nil {
		return err
	}
	if err := store.ValidateStatus(p); err != nil {
		return err
	}
	tag, err := s.pool.Exec(ctx, `UPDATE pushes SET status = $1, attempts = $2, next_attempt_at = $3,
			last_error = $4, sent_at = $5, channel = $8, errcode = $9, msg_id = $10, lease_owner = NULL, lease_until = NULL
		WHERE id = $6 AND lease_owner = $7 AND status = 'pending'`,
		p.Status, int32(p.Attempts), nullTime(p.NextAttemptAt), store.CleanText(p.LastError), nullTime(p.SentAt), p.ID, p.Lease,
		store.CleanText(p.Channel), int32(p.ErrCode), store.CleanText(p.MsgID))
	if err != nil {
		return readErr("complete push "+p.ID, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("store/postgres: complete push %s: lease %s: %w", p.ID, p.Lease, actors.ErrLeaseLost)
	}
	return nil
}

// UserPushes lists a user's pushes, newest first; limit <= 0 means MaxQueryLimit.
func (s *Store) UserPushes(ctx context.Context, openID string, limit int) ([]actors.Push, error) {
	if store.ValidOpenID(openID) != nil {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT `+pushColumns+` FROM pushes WHERE open_id = $1
		ORDER BY created_at DESC, id DESC LIMIT $2`, openID, store.QueryLimit(limit))
	if err != nil {
		return nil, readErr("pushes of "+openID, err)
	}
	out, err := collectPushes(rows)
	if err != nil {
		return nil, readErr("pushes of "+openID, err)
	}
	return out, nil
}

// RecordContact applies one event to a user's reachability in one transaction (the row is
// locked while the rule is applied).
func (s *Store) RecordContact(ctx context.Context, openID string, ev actors.ContactEvent) error {
	if err := store.ValidOpenID(openID); err != nil {
		return err
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO wechat_contacts (open_id, at) VALUES ($1, 'epoch') ON CONFLICT (open_id) DO NOTHING`, openID); err != nil {
			return err
		}
		c, err := contact(ctx, tx, openID, " FOR UPDATE")
		if err != nil {
			return err
		}
		c = actors.ApplyContact(c, ev)
		_, err = tx.Exec(ctx, `UPDATE wechat_contacts SET unfollowed = $2, kind = $3, at = $4, until = $5, sends_left = $6
			WHERE open_id = $1`, openID, c.Unfollowed, c.Kind, c.At, c.Until, int32(c.SendsLeft))
		return err
	})
	if err != nil {
		return readErr("record contact of "+openID, err)
	}
	return nil
}

type rowQueryer interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

var epoch = time.Unix(0, 0).UTC()

func contact(ctx context.Context, q rowQueryer, openID, lock string) (actors.Contact, error) {
	var (
		c         actors.Contact
		sends     int32
		at, until time.Time
	)
	err := q.QueryRow(ctx, `SELECT unfollowed, kind, at, until, sends_left FROM wechat_contacts WHERE open_id = $1`+lock, openID).
		Scan(&c.Unfollowed, &c.Kind, &at, &until, &sends)
	if errors.Is(err, pgx.ErrNoRows) {
		return actors.Contact{}, nil
	}
	if err != nil {
		return actors.Contact{}, err
	}
	c.SendsLeft = int(sends)
	if !at.Equal(epoch) {
		c.At = at.UTC()
	}
	if !until.Equal(epoch) {
		c.Until = until.UTC()
	}
	return c, nil
}

// Contact returns a user's reachability (the zero Contact if none is recorded).
func (s *Store) Contact(ctx context.Context, openID string) (actors.Contact, error) {
	if store.ValidOpenID(openID) != nil {
		return actors.Contact{}, nil
	}
	c, err := contact(ctx, s.pool, openID, "")
	if err != nil {
		return c, readErr("contact of "+openID, err)
	}
	return c, nil
}

// TakeServiceSend consumes one customer-service send of the user's open window.
func (s *Store) TakeServiceSend(ctx context.Context, openID string, now time.Time) (bool, error) {
	if store.ValidOpenID(openID) != nil {
		return false, nil
	}
	tag, err := s.pool.Exec(ctx, `UPDATE wechat_contacts SET sends_left = sends_left - 1
		WHERE open_id = $1 AND NOT unfollowed AND sends_left > 0 AND until > $2`, openID, now)
	if err != nil {
		return false, readErr("take a service send of "+openID, err)
	}
	return tag.RowsAffected() == 1, nil
}

// RecordReceipt records a template's delivery receipt on the push sent with msgID.
func (s *Store) RecordReceipt(ctx context.Context, msgID, status string) (bool, error) {
	if msgID == "" {
		return false, nil
	}
	tag, err := s.pool.Exec(ctx, `UPDATE pushes SET receipt = $1 WHERE msg_id = $2`, store.CleanText(status), store.CleanText(msgID))
	if err != nil {
		return false, readErr("record receipt "+msgID, err)
	}
	return tag.RowsAffected() > 0, nil
}

// FailedPushes lists pushes failed for good, newest first.
func (s *Store) FailedPushes(ctx context.Context, limit int) ([]actors.Push, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+pushColumns+` FROM pushes WHERE status = 'failed'
		ORDER BY created_at DESC, id DESC LIMIT $1`, store.QueryLimit(limit))
	if err != nil {
		return nil, readErr("failed pushes", err)
	}
	out, err := collectPushes(rows)
	if err != nil {
		return nil, readErr("failed pushes", err)
	}
	return out, nil
}

// RetryPush puts a failed or skipped push back in the queue, due at now.
func (s *Store) RetryPush(ctx context.Context, id string, now time.Time) error {
	tag, err := s.pool.Exec(ctx, `UPDATE pushes SET status = 'pending', attempts = 0, last_error = '', errcode = 0,
			next_attempt_at = $1, lease_owner = NULL, lease_until = NULL
		WHERE id = $2 AND status IN ('failed', 'skipped')`, now, store.CleanText(id))
	if err != nil {
		return readErr("retry push "+id, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("store/postgres: retry push %s: %w", id, actors.ErrNotFailed)
	}
	return nil
}
