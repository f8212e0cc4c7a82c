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
// numbers carry the cost of a real commit. stop shuts it down and removes its data.
func startBenchPostgres() (dsn string, stop func(), err error) {
	if _, err := pgtest.FindBinaries(); err != nil {
		return "", nil, err
	}
	srv, err := pgtest.NewServer(pgtest.Config{Durable: true})
	if err != nil {
		return "", nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if dsn, err = srv.CreateDatabase(ctx, "sprout_bench"); err != nil {
		srv.Close()
		return "", nil, fmt.Errorf("bench Postgres: %w", err)
	}
	return dsn, func() { srv.Close() }, nil
}
