package pgtest_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/sprout-iot/sprout/store/pgtest"
)

func query(t *testing.T, dsn, sql string) string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect %s: %v", dsn, err)
	}
	defer conn.Close(ctx)
	var v string
	if err := conn.QueryRow(ctx, sql).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestServerGivesEachTestItsOwnDatabaseAndSurvivesRestart(t *testing.T) {
	srv := pgtest.Start(t)
	a, b := srv.NewDatabase(t), srv.NewDatabase(t)
	if a == b {
		t.Fatalf("two databases share a DSN: %s", a)
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `CREATE TABLE kept (v text); INSERT INTO kept VALUES ('still here')`); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	if got := query(t, b, `SELECT count(*)::text FROM pg_tables WHERE tablename = 'kept'`); got != "0" {
		t.Fatalf("a table created in one database is visible in another")
	}
	if got := query(t, a, `SHOW fsync`); got != "off" {
		t.Errorf("fsync = %s on a test server, want off", got)
	}

	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := pgx.Connect(ctx, a); err == nil {
		t.Fatal("connected to a stopped server")
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	if got := query(t, a, `SELECT v FROM kept`); got != "still here" {
		t.Fatalf("after restart: %q", got)
	}
}

func TestDurableServerKeepsFsync(t *testing.T) {
	srv := pgtest.Start(t, pgtest.Config{Durable: true})
	if got := query(t, srv.NewDatabase(t), `SHOW fsync`); got != "on" {
		t.Fatalf("fsync = %s on a durable server", got)
	}
}

func TestFindBinaries(t *testing.T) {
	dir, err := pgtest.FindBinaries()
	if err != nil {
		t.Fatal(err) // names the apt package; CI installs it
	}
	for _, b := range []string{"initdb", "pg_ctl", "postgres"} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			t.Errorf("%s: %v", b, err)
		}
	}
}
