package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sprout-iot/sprout/store/pgtest"
	"github.com/sprout-iot/sprout/store/postgres"
)

// cachedPostgres is a Postgres server whose data directory outlives the bench, so that the
// history datasets (gigabytes each) are loaded once. Durable settings (Postgres' defaults). It is
// started for the history part and stopped after it; its data stays.
type cachedPostgres struct {
	bin, data string
	port      int
	runAs     bool
}

// pgCacheRoot is where the cached server's data lives: under -history-cache, unless we are root
// and that directory is not reachable by the postgres user (a home directory of mode 0700), when
// it is /var/tmp/sprout-bench-history (kept across reboots, unlike /tmp).
func pgCacheRoot() string {
	if os.Geteuid() == 0 {
		return "/var/tmp/sprout-bench-history"
	}
	return *histCache
}

func (s *cachedPostgres) run(name string, args ...string) ([]byte, error) {
	path := filepath.Join(s.bin, name)
	var cmd *exec.Cmd
	if s.runAs {
		cmd = exec.Command("runuser", append([]string{"-u", "postgres", "--", path}, args...)...)
	} else {
		cmd = exec.Command(path, args...)
	}
	cmd.Dir = os.TempDir()
	cmd.Env = append(os.Environ(), "LC_ALL=C.UTF-8", "PGTZ=UTC")
	return cmd.CombinedOutput()
}

func startCachedPostgres(ctx context.Context, data string) (*cachedPostgres, error) {
	bin, err := pgtest.FindBinaries()
	if err != nil {
		return nil, err
	}
	s := &cachedPostgres{bin: bin, data: data, runAs: os.Geteuid() == 0}
	if err := os.MkdirAll(filepath.Dir(data), 0o755); err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(data, "PG_VERSION")); err != nil {
		fmt.Fprintf(os.Stderr, "history postgres: initdb %s ...\n", data)
		os.RemoveAll(data)
		if err := os.Mkdir(data, 0o700); err != nil {
			return nil, err
		}
		if s.runAs {
			u, err := user.Lookup("postgres")
			if err != nil {
				return nil, fmt.Errorf("running as root, Postgres must run as the postgres user: %w", err)
			}
			uid, _ := strconv.Atoi(u.Uid)
			gid, _ := strconv.Atoi(u.Gid)
			if err := os.Chown(data, uid, gid); err != nil {
				return nil, err
			}
		}
		if out, err := s.run("initdb", "-D", data, "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8"); err != nil {
			os.RemoveAll(data)
			return nil, fmt.Errorf("initdb: %w\n%s", err, out)
		}
	}
	// A server left running by a killed bench is stopped first.
	if _, err := os.Stat(filepath.Join(data, "postmaster.pid")); err == nil {
		_, _ = s.run("pg_ctl", "-D", data, "-m", "fast", "-w", "-t", "60", "stop")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s.port = l.Addr().(*net.TCPAddr).Port
	l.Close()
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c timezone=UTC -c max_wal_size=4GB", s.port, os.TempDir())
	if out, err := s.run("pg_ctl", "-D", data, "-l", filepath.Join(data, "bench-server.log"), "-o", opts, "-w", "-t", "120", "start"); err != nil {
		return nil, fmt.Errorf("pg_ctl start: %w\n%s", err, out)
	}
	return s, nil
}

func (s *cachedPostgres) stop() {
	_, _ = s.run("pg_ctl", "-D", s.data, "-m", "fast", "-w", "-t", "120", "stop")
}

func (s *cachedPostgres) dsn(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.port, db)
}

var notIdent = regexp.MustCompile(`[^a-z0-9_]+`)

func dbName(key string) string { return notIdent.ReplaceAllString(key, "_") }

func (s *cachedPostgres) exec(ctx context.Context, sql string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	c, err := pgx.Connect(ctx, s.dsn("postgres"))
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	_, err = c.Exec(ctx, sql)
	return err
}

// database returns the DSN of the dataset's database, creating it if needed.
func (s *cachedPostgres) database(ctx context.Context, key string) (string, error) {
	name := dbName(key)
	err := s.exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	if err != nil && !regexp.MustCompile(`already exists`).MatchString(err.Error()) {
		return "", err
	}
	return s.dsn(name), nil
}

func (s *cachedPostgres) drop(ctx context.Context, key string) error {
	return s.exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{dbName(key)}.Sanitize()+" WITH (FORCE)")
}

// schemaVersion migrates a scratch database to learn the schema version this build writes.
func (s *cachedPostgres) schemaVersion(ctx context.Context) (int64, error) {
	const probe = "sprout_schema_probe"
	_ = s.drop(ctx, probe)
	dsn, err := s.database(ctx, probe)
	if err != nil {
		return 0, err
	}
	defer s.drop(ctx, probe)
	return postgres.Migrate(ctx, dsn)
}
