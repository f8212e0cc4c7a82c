package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/store"
	"github.com/sprout-iot/sprout/store/postgres"
)

// TestMaintainRunsOnOneNodeAtATime: while another session (another node) holds the maintenance
// lock, Maintain does nothing and says so; once it is released, Maintain runs.
func TestMaintainRunsOnOneNodeAtATime(t *testing.T) {
	ctx := context.Background()
	dsn := pg.NewDatabase(t)
	s := open(t, dsn, postgres.Options{})
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	if err := s.Append(ctx, "pot-1", actors.Batch{Readings: []actors.Reading{
		{Seq: 1, ReceivedAt: t0, SoilMoisture: 1}, {Seq: 2, ReceivedAt: t0.Add(48 * time.Hour), SoilMoisture: 2},
	}}); err != nil {
		t.Fatal(err)
	}
	other, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(ctx)
	if _, err := other.Exec(ctx, `SELECT pg_advisory_lock($1)`, postgres.MaintenanceLockKey); err != nil {
		t.Fatal(err)
	}
	opts := store.RetentionOptions{Now: t0.Add(50 * time.Hour), Raw: 24 * time.Hour}
	st, err := s.Maintain(ctx, opts)
	if err != nil || !st.Skipped || st.HoursRolled != 0 || st.RawDeleted != 0 {
		t.Fatalf("Maintain while another node holds the lock: %+v, %v; want Skipped and nothing done", st, err)
	}
	if _, err := other.Exec(ctx, `SELECT pg_advisory_unlock($1)`, postgres.MaintenanceLockKey); err != nil {
		t.Fatal(err)
	}
	st, err = s.Maintain(ctx, opts)
	if err != nil || st.Skipped || st.HoursRolled != 2 || st.RawDeleted != 1 {
		t.Fatalf("Maintain after the lock was released: %+v, %v; want 2 hours rolled, 1 reading deleted", st, err)
	}
	// The lock is released after each run: the other session can take it again.
	var got bool
	if err := other.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, postgres.MaintenanceLockKey).Scan(&got); err != nil || !got {
		t.Fatalf("the maintenance lock was not released after Maintain: %v, %v", got, err)
	}
}
