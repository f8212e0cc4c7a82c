package edgetest

import (
	"context"
	"sync/atomic"

	"github.com/sprout-iot/sprout/actors"
)

// BlipStore is a real store (and its bindings) whose device loads fail with
// actors.ErrUnavailable while Down is set: a storage blip as a device grain sees it on
// activation. Everything else passes through.
type BlipStore struct {
	actors.Store
	actors.UserStore
	Down atomic.Bool
}

// NewBlipStore wraps st, which must also be an actors.UserStore (memory and SQLite are).
func NewBlipStore(st actors.Store) *BlipStore {
	return &BlipStore{Store: st, UserStore: st.(actors.UserStore)}
}

func (s *BlipStore) GetDevice(ctx context.Context, id string) (actors.Device, error) {
	if s.Down.Load() {
		return actors.Device{}, actors.ErrUnavailable
	}
	return s.Store.GetDevice(ctx, id)
}

func (s *BlipStore) LoadDevice(ctx context.Context, id string) (actors.Recovered, error) {
	if s.Down.Load() {
		return actors.Recovered{}, actors.ErrUnavailable
	}
	return s.Store.LoadDevice(ctx, id)
}

// Close closes the wrapped store (both embedded interfaces name one).
func (s *BlipStore) Close() error { return s.Store.Close() }
