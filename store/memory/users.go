package memory

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/store"
)

var _ actors.UserStore = (*Store)(nil)

type userData struct {
	bindings map[string]map[string]actors.Binding // device -> openid -> binding
	users    map[string][]byte
	pushes   map[string]*memPush
	contacts map[string]actors.Contact
}

type memPush struct {
	p          actors.Push
	leaseUntil time.Time
}

func (s *Store) ud() *userData {
	if s.u == nil {
		s.u = &userData{bindings: map[string]map[string]actors.Binding{}, users: map[string][]byte{}, pushes: map[string]*memPush{}, contacts: map[string]actors.Contact{}}
	}
	return s.u
}

func (s *Store) Bind(_ context.Context, b actors.Binding) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.ud()
	m := u.bindings[b.DeviceID]
	if m == nil {
		m = map[string]actors.Binding{}
		u.bindings[b.DeviceID] = m
	}
	if _, ok := m[b.OpenID]; !ok {
		m[b.OpenID] = b
	}
	return nil
}

func (s *Store) Unbind(_ context.Context, deviceID, openID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.ud().bindings[deviceID], openID)
	return nil
}

func sortBindings(bs []actors.Binding) []actors.Binding {
	sort.Slice(bs, func(i, j int) bool {
		if !bs[i].BoundAt.Equal(bs[j].BoundAt) {
			return bs[i].BoundAt.Before(bs[j].BoundAt)
		}
		return bs[i].DeviceID+bs[i].OpenID < bs[j].DeviceID+bs[j].OpenID
	})
	return bs
}

func (s *Store) DeviceBindings(_ context.Context, deviceID string) ([]actors.Binding, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []actors.Binding
	if s.u != nil {
		for _, b := range s.u.bindings[deviceID] {
			out = append(out, b)
		}
	}
	return sortBindings(out), nil
}

func (s *Store) UserBindings(_ context.Context, openID string) ([]actors.Binding, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []actors.Binding
	if s.u != nil {
		for _, m := range s.u.bindings {
			if b, ok := m[openID]; ok {
				out = append(out, b)
			}
		}
	}
	return sortBindings(out), nil
}

func (s *Store) LoadUser(_ context.Context, openID string) ([]byte, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.u == nil {
		return nil, nil
	}
	return s.u.users[openID], nil
}

func (s *Store) SaveUser(_ context.Context, openID string, snapshot []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ud().users[openID] = append([]byte(nil), snapshot...)
	return nil
}

func (s *Store) EnqueuePushes(_ context.Context, ps []actors.Push) error {
	for _, p := range ps {
		if err := store.ValidatePush(p); err != nil {
			return fmt.Errorf("store/memory: enqueue pushes: %w", err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.ud()
	for _, p := range ps {
		if _, ok := u.pushes[p.ID]; ok {
			continue
		}
		if p.Status == "" {
			p.Status = actors.PushPending
		}
		u.pushes[p.ID] = &memPush{p: p}
	}
	return nil
}

func (s *Store) ClaimPushes(_ context.Context, owner string, now time.Time, lease time.Duration, limit int) ([]actors.Push, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var due []*memPush
	for _, mp := range s.ud().pushes {
		if mp.p.Status == actors.PushPending && !mp.p.NextAttemptAt.After(now) && !mp.leaseUntil.After(now) {
			due = append(due, mp)
		}
	}
	sort.Slice(due, func(i, j int) bool { return before(due[i].p, due[j].p) })
	var out []actors.Push
	tok := store.LeaseToken(owner)
	for _, mp := range due {
		if len(out) >= limit {
			break
		}
		if s.waitsForOlder(mp.p) {
			continue
		}
		mp.leaseUntil = now.Add(lease)
		mp.p.Lease = tok
		out = append(out, mp.p)
	}
	return out, nil
}

func before(a, b actors.Push) bool {
	if !a.CreatedAt.Equal(b.CreatedAt) {
		return a.CreatedAt.Before(b.CreatedAt)
	}
	return a.ID < b.ID
}

// waitsForOlder reports whether an older pending push has p's OrderKey. The caller holds s.mu.
func (s *Store) waitsForOlder(p actors.Push) bool {
	if p.OrderKey == "" {
		return false
	}
	for _, o := range s.u.pushes {
		if o.p.OrderKey == p.OrderKey && o.p.Status == actors.PushPending && before(o.p, p) {
			return true
		}
	}
	return false
}

// held returns the push p.Lease holds, or ErrLeaseLost. The caller holds s.mu.
func (s *Store) held(p actors.Push) (*memPush, error) {
	if err := store.ValidateCompletion(p); err != nil {
		return nil, err
	}
	mp, ok := s.ud().pushes[p.ID]
	if !ok || mp.p.Lease != p.Lease || mp.p.Status != actors.PushPending {
		return nil, fmt.Errorf("push %s: lease %s: %w", p.ID, p.Lease, actors.ErrLeaseLost)
	}
	return mp, nil
}

func (s *Store) RenewPush(_ context.Context, p actors.Push, now time.Time, lease time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	mp, err := s.held(p)
	if err != nil {
		return err
	}
	mp.leaseUntil = now.Add(lease)
	return nil
}

func (s *Store) CompletePush(_ context.Context, p actors.Push) error {
	if err := store.ValidateStatus(p); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	mp, err := s.held(p)
	if err != nil {
		return err
	}
	p.Lease, p.Payload, p.OpenID, p.Kind, p.CreatedAt, p.OrderKey = "", mp.p.Payload, mp.p.OpenID, mp.p.Kind, mp.p.CreatedAt, mp.p.OrderKey
	p.LastError = store.CleanText(p.LastError)
	if p.Receipt == "" {
		p.Receipt = mp.p.Receipt
	}
	mp.p = p
	mp.leaseUntil = time.Time{}
	return nil
}

func (s *Store) UserPushes(_ context.Context, openID string, limit int) ([]actors.Push, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []actors.Push
	if s.u != nil {
		for _, mp := range s.u.pushes {
			if mp.p.OpenID == openID {
				p := mp.p
				p.Lease = "" // as the SQL backends list them
				out = append(out, p)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.After(out[j].CreatedAt) })
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

func (s *Store) RecordContact(_ context.Context, openID string, ev actors.ContactEvent) error {
	if err := store.ValidOpenID(openID); err != nil {
		return fmt.Errorf("store/memory: record contact: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.ud()
	u.contacts[openID] = actors.ApplyContact(u.contacts[openID], ev)
	return nil
}

func (s *Store) Contact(_ context.Context, openID string) (actors.Contact, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.u == nil {
		return actors.Contact{}, nil
	}
	return s.u.contacts[openID], nil
}

func (s *Store) TakeServiceSend(_ context.Context, openID string, now time.Time) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.ud()
	c, ok := u.contacts[openID]
	if !ok || !c.InWindow(now) {
		return false, nil
	}
	c.SendsLeft--
	u.contacts[openID] = c
	return true, nil
}

func (s *Store) RecordReceipt(_ context.Context, msgID, status string) (bool, error) {
	if msgID == "" {
		return false, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, mp := range s.ud().pushes {
		if mp.p.MsgID == msgID {
			mp.p.Receipt = store.CleanText(status)
			return true, nil
		}
	}
	return false, nil
}

func (s *Store) FailedPushes(_ context.Context, limit int) ([]actors.Push, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []actors.Push
	if s.u != nil {
		for _, mp := range s.u.pushes {
			if mp.p.Status == actors.PushFailed {
				p := mp.p
				p.Lease = ""
				out = append(out, p)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return before(out[j], out[i]) })
	if lim := store.QueryLimit(limit); len(out) > lim {
		out = out[:lim]
	}
	return out, nil
}

func (s *Store) RetryPush(_ context.Context, id string, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	mp, ok := s.ud().pushes[id]
	if !ok || (mp.p.Status != actors.PushFailed && mp.p.Status != actors.PushSkipped) {
		return fmt.Errorf("store/memory: retry push %s: %w", id, actors.ErrNotFailed)
	}
	mp.p.Status, mp.p.Attempts, mp.p.LastError, mp.p.ErrCode, mp.p.NextAttemptAt = actors.PushPending, 0, "", 0, now
	mp.p.Lease, mp.leaseUntil = "", time.Time{}
	return nil
}
