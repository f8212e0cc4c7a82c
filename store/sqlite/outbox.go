package sqlite

import (
	"context"
	"fmt"
)

// PendingPushes counts the outbox's pending pushes (the outbox depth metric); the partial index
// pushes_pending makes it cheap.
func (s *Store) PendingPushes(ctx context.Context) (int64, error) {
	var n int64
	if err := s.r.QueryRowContext(ctx, `SELECT count(*) FROM pushes WHERE status = 'pending'`).Scan(&n); err != nil {
		return 0, fmt.Errorf("store/sqlite: count pending pushes: %w", err)
	}
	return n, nil
}
