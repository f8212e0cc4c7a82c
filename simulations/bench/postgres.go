package main

import (
	"context"
	"fmt"
	"time"

	"github.com/sprout-iot/sprout/store/pgtest"
)

// startBenchPostgres starts a throwaway Postgres for the "sprout, Postgres" throughput run when no
// -postgres DSN is given: the distribution's server binaries (store/pgtest finds them; without
// them this fails with how to install them), durable settings (fsync, synchronous_commit and
// full_page_writes on, Postgres' defaults), on this machine beside the node and the fleet, so the
// numbers carry the cost of a real commit. newDB creates a fresh database for each run of the
// suite; stop shuts the server down and removes its data.
func startBenchPostgres() (newDB func(run int) (string, error), stop func(), err error) {
	if _, err := pgtest.FindBinaries(); err != nil {
		return nil, nil, err
	}
	srv, err := pgtest.NewServer(pgtest.Config{Durable: true, MaxConnections: 400})
	if err != nil {
		return nil, nil, err
	}
	newDB = func(run int) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		dsn, err := srv.CreateDatabase(ctx, fmt.Sprintf("sprout_bench_run%d", run))
		if err != nil {
			return "", fmt.Errorf("bench Postgres: %w", err)
		}
		return dsn, nil
	}
	return newDB, func() { srv.Close() }, nil
}
