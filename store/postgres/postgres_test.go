package postgres_test

import (
	"context"
	"testing"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/store/pgtest"
	"github.com/sprout-iot/sprout/store/postgres"
	"github.com/sprout-iot/sprout/store/storetest"
)

// pg is one Postgres server for this test binary; each test gets a database of its own on it.
var pg *pgtest.Server

func TestMain(m *testing.M) { pgtest.RunMain(m, pgtest.Config{}, &pg) }

func open(t *testing.T, dsn string, opts postgres.Options) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(context.Background(), dsn, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) actors.Store { return open(t, pg.NewDatabase(t), postgres.Options{}) })
}

func TestContractReopen(t *testing.T) {
	storetest.RunReopen(t, func(t *testing.T) func(t *testing.T) actors.Store {
		dsn := pg.NewDatabase(t)
		return func(t *testing.T) actors.Store { return open(t, dsn, postgres.Options{}) }
	})
}
