package sqlite

import "context"

// Pragma reads a pragma on the writer connection (tests check durability settings).
func (s *Store) Pragma(ctx context.Context, name string) string {
	var v string
	s.w.QueryRowContext(ctx, "PRAGMA "+name).Scan(&v)
	return v
}
