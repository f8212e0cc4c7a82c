package postgres

import (
	"context"
	"embed"
	"fmt"
	"io/fs"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Migrate applies pending schema migrations to the database named by dsn and returns the schema
// version. Open does the same; Migrate is for `sprout migrate`, to upgrade ahead of a rolling
// restart. Concurrent migrators (several nodes starting at once) wait for each other on a
// Postgres advisory lock.
func Migrate(ctx context.Context, dsn string) (int64, error) {
	pool, err := newPool(ctx, dsn, Options{}.withDefaults())
	if err != nil {
		return 0, err
	}
	defer pool.Close()
	return migrate(ctx, pool)
}

func migrate(ctx context.Context, pool *pgxpool.Pool) (int64, error) {
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return 0, err
	}
	// Probe every second (goose waits 5 s by default), for up to 5 minutes.
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockTimeout(1, 300))
	if err != nil {
		return 0, fmt.Errorf("store/postgres: migration lock: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, sub,
		goose.WithDisableGlobalRegistry(true), goose.WithSessionLocker(locker))
	if err != nil {
		return 0, fmt.Errorf("store/postgres: migrations: %w", err)
	}
	current, err := p.GetDBVersion(ctx)
	if err != nil {
		return 0, fmt.Errorf("store/postgres: read schema version: %w", err)
	}
	sources := p.ListSources()
	known := sources[len(sources)-1].Version
	if current > known {
		return 0, fmt.Errorf("store/postgres: the database schema is at version %d, newer than this build of sprout knows (%d): run a newer sprout", current, known)
	}
	if _, err := p.Up(ctx); err != nil {
		return 0, fmt.Errorf("store/postgres: migrate: %w", err)
	}
	return p.GetDBVersion(ctx)
}
