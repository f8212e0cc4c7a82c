package memory

import (
	"context"

	"github.com/sprout-iot/sprout/actors"
)

// PendingPushes counts the outbox's pending pushes (the outbox depth metric).
func (s *Store) PendingPushes(context.Context) (int64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.u == nil {
		return 0, nil
	}
	var n int64
	for _, mp := range s.u.pushes {
		if mp.p.Status == actors.PushPending {
			n++
		}
	}
	return n, nil
}
