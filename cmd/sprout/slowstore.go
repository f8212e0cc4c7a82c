package main

import (
	"context"
	"time"

	"github.com/sprout-iot/sprout/actors"
)

// slowStore delays every Append: the "slow database" scenario and backpressure tests set
// SPROUT_DEBUG_STORE_DELAY (a duration). Never set it in production.
type slowStore struct {
	actors.Store
	users actors.UserStore
	delay time.Duration
}

func (s *slowStore) Append(ctx context.Context, id string, b actors.Batch) error {
	select {
	case <-time.After(s.delay):
	case <-ctx.Done():
		return ctx.Err()
	}
	return s.Store.Append(ctx, id, b)
}

// withDebugDelay wraps st when delay > 0, keeping its UserStore side.
func withDebugDelay(st actors.Store, delay time.Duration) actors.Store {
	if delay <= 0 {
		return st
	}
	u, _ := st.(actors.UserStore)
	if u == nil {
		return &slowStore{Store: st, delay: delay}
	}
	return &slowUserStore{slowStore{Store: st, users: u, delay: delay}, u}
}

type slowUserStore struct {
	slowStore
	actors.UserStore
}
