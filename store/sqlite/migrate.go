package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"

	"github.com/pressly/goose/v3"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Migrate applies pending schema migrations to the store in dir (taking the directory's lock, so
// no node may be running on it) and returns the schema version. Open does the same; Migrate is for
// `sprout migrate`, to upgrade ahead of a start.
func Migrate(ctx context.Context, dir string) (int64, error) {
	lock, err := lockDir(dir)
	if err != nil {
		return 0, err
	}
	defer lock.release()
	db, err := sql.Open("sqlite", dsn(dir, Options{}.withDefaults(), false))
	if err != nil {
		return 0, fmt.Errorf("store/sqlite: open %s: %w", dir, err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	return migrate(ctx, db)
}

func migrate(ctx context.Context, db *sql.DB) (int64, error) {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return 0, err
	}
	p, err := goose.NewProvider(goose.DialectSQLite3, db, sub, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return 0, fmt.Errorf("store/sqlite: migrations: %w", err)
	}
	current, err := p.GetDBVersion(ctx)
	if err != nil {
		return 0, fmt.Errorf("store/sqlite: read schema version: %w", err)
	}
	sources := p.ListSources()
	known := sources[len(sources)-1].Version
	if current > known {
		return 0, fmt.Errorf("store/sqlite: the database schema is at version %d, newer than this build of sprout knows (%d): run a newer sprout", current, known)
	}
	if _, err := p.Up(ctx); err != nil {
		return 0, fmt.Errorf("store/sqlite: migrate: %w", err)
	}
	// 00009: the rows of the old readings table move into chunks (Go code, convert.go).
	if _, err := convertReadings(ctx, db, DefaultMaxChunkReadings); err != nil {
		return 0, err
	}
	return p.GetDBVersion(ctx)
}
