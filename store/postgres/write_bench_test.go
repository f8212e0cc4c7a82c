package postgres_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sprout-iot/sprout/store/postgres"
)

// BenchmarkWriteMethod compares ways of writing one batch of 1000 readings in one transaction,
// with ON CONFLICT DO NOTHING, on a server with fsync on. It is why WriteBatch uses unnest.
func BenchmarkWriteMethod(b *testing.B) {
	const rows = 1000
	ctx := context.Background()
	dsn := durableServer(b).NewDatabase(b)
	if _, err := postgres.Migrate(ctx, dsn); err != nil {
		b.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	type batch struct {
		ids      []string
		seqs     []int64
		times    []time.Time
		m, tp, k []float32
		mv       []int64
	}
	run := 0
	mk := func() batch {
		run++
		var bt batch
		now := time.Now()
		for i := range rows {
			bt.ids = append(bt.ids, fmt.Sprintf("dev-%d-%04d", run, i))
			bt.seqs = append(bt.seqs, 1)
			bt.times = append(bt.times, now)
			bt.m, bt.tp, bt.k = append(bt.m, 41.5), append(bt.tp, 22.25), append(bt.k, 80)
			bt.mv = append(bt.mv, 3300)
		}
		return bt
	}
	methods := []struct {
		name  string
		write func(bt batch) error
	}{
		{"unnest", func(bt batch) error {
			_, err := pool.Exec(ctx, `INSERT INTO readings
				(device_id, seq, device_time, received_at, soil_moisture, temperature, tank_level, supply_mv)
				SELECT * FROM unnest($1::text[], $2::bigint[], $3::timestamptz[], $4::timestamptz[], $5::real[], $6::real[], $7::real[], $8::bigint[])
				ON CONFLICT (device_id, seq) DO NOTHING`, bt.ids, bt.seqs, bt.times, bt.times, bt.m, bt.tp, bt.k, bt.mv)
			return err
		}},
		{"pgx.Batch", func(bt batch) error {
			q := &pgx.Batch{}
			for i := range bt.ids {
				q.Queue(`INSERT INTO readings
					(device_id, seq, device_time, received_at, soil_moisture, temperature, tank_level, supply_mv)
					VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (device_id, seq) DO NOTHING`,
					bt.ids[i], bt.seqs[i], bt.times[i], bt.times[i], bt.m[i], bt.tp[i], bt.k[i], bt.mv[i])
			}
			return pool.SendBatch(ctx, q).Close()
		}},
		{"CopyFrom+staging", func(bt batch) error {
			return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, `CREATE TEMP TABLE IF NOT EXISTS readings_in
					(LIKE readings INCLUDING DEFAULTS) ON COMMIT DELETE ROWS`); err != nil {
					return err
				}
				src := pgx.CopyFromSlice(len(bt.ids), func(i int) ([]any, error) {
					return []any{bt.ids[i], bt.seqs[i], bt.times[i], bt.times[i], bt.m[i], bt.tp[i], bt.k[i], bt.mv[i]}, nil
				})
				if _, err := tx.CopyFrom(ctx, pgx.Identifier{"readings_in"}, []string{"device_id", "seq", "device_time",
					"received_at", "soil_moisture", "temperature", "tank_level", "supply_mv"}, src); err != nil {
					return err
				}
				_, err := tx.Exec(ctx, `INSERT INTO readings SELECT * FROM readings_in ON CONFLICT (device_id, seq) DO NOTHING`)
				return err
			})
		}},
	}
	for _, m := range methods {
		b.Run(m.name, func(b *testing.B) {
			batches := make([]batch, b.N)
			for i := range batches {
				batches[i] = mk()
			}
			b.ResetTimer()
			start := time.Now()
			for i := range b.N {
				if err := m.write(batches[i]); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*rows)/time.Since(start).Seconds(), "rows/s")
		})
	}
}
