package sqlite

import (
	"context"
	"database/sql"
	"io/fs"
	"time"

	"github.com/pressly/goose/v3"
)

// Pragma reads a pragma on the writer connection (tests check durability settings).
func (s *Store) Pragma(ctx context.Context, name string) string {
	var v string
	s.w.QueryRowContext(ctx, "PRAGMA "+name).Scan(&v)
	return v
}

// TailRows is the number of readings not yet compacted into chunks.
func (s *Store) TailRows() int {
	s.tail.mu.RLock()
	defer s.tail.mu.RUnlock()
	return s.tail.rows
}

// CompactErr is the compactor's last error, "" if none.
func (s *Store) CompactErr() string {
	v, _ := s.compactErr.Load().(string)
	return v
}

// Compact folds the whole log into chunks and merges the hours complete at now.
func (s *Store) Compact(ctx context.Context, now time.Time) error {
	if _, err := s.compact(ctx, true); err != nil {
		return err
	}
	_, err := s.merge(ctx, now)
	return err
}

// MigrateTo creates (or migrates) the database in dir up to version, without the conversion
// steps Open runs: a database as an older sprout left it.
func MigrateTo(ctx context.Context, dir string, version int64) error {
	db, err := sql.Open("sqlite", dsn(dir, Options{}.withDefaults(), false))
	if err != nil {
		return err
	}
	defer db.Close()
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return err
	}
	p, err := goose.NewProvider(goose.DialectSQLite3, db, sub, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return err
	}
	_, err = p.UpTo(ctx, version)
	return err
}
