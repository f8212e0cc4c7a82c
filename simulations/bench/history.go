package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/store"
	"github.com/sprout-iot/sprout/store/postgres"
	"github.com/sprout-iot/sprout/store/sqlite"
)

var (
	histReadings = flag.Int("history-readings", 100_000_000, "readings in the history-query dataset (loaded once into -history-cache, reused while complete); 0 skips the history part")
	histBase     = flag.Int("history-baseline-readings", 1_000_000, "readings in the baseline dataset the same queries run against in the same run (shows how query time scales with the store's size)")
	histDays     = flag.Int("history-days", 30, "days of history per pot in the datasets")
	histInterval = flag.Duration("history-interval", time.Minute, "one reading per pot this often in the datasets")
	histBatch    = flag.Int("history-batch", 60, "readings per Append while loading (one pot's consecutive readings; the fleet's hour h is loaded before hour h+1)")
	histWorkers  = flag.Int("history-workers", 16, "goroutines calling Append while loading")
	histQueries  = flag.Int("history-queries", 200, "queries of each kind, each for a random pot")
	histCache    = flag.String("history-cache", defaultHistoryCache(), "where the history datasets are kept between runs (outside the repository)")
	histPG       = flag.String("history-postgres", "auto", "Postgres for the history part: a postgres:// DSN (the dataset is loaded into that database), auto (a server of the bench's own with its data under the cache; needs the Postgres binaries), or off")
	histBackends = flag.String("history-backends", "sqlite,postgres", "backends of the history part")
)

func defaultHistoryCache() string {
	d, err := os.UserCacheDir()
	if err != nil {
		d = os.TempDir()
	}
	return filepath.Join(d, "sprout", "bench-history")
}

// HistoryResult is one backend's history-query benchmark.
type HistoryResult struct {
	Backend  string         `json:"backend"`
	Dataset  HistoryDataset `json:"dataset"`
	Baseline HistoryDataset `json:"baseline"`
	// Readings: the last 24 h of raw readings of one pot; Buckets: its last 30 days (-history-days)
	// in 1 h buckets from an hour-aligned start. Each on the big dataset and the baseline one.
	Readings     Latency           `json:"readings_24h"`
	Buckets      Latency           `json:"buckets_30d"`
	BaseReadings Latency           `json:"baseline_readings_24h"`
	BaseBuckets  Latency           `json:"baseline_buckets_30d"`
	Profiles     map[string]string `json:"-"`
}

// HistoryDataset describes one cached dataset and how it was loaded.
type HistoryDataset struct {
	Key        string    `json:"key"`
	Prefix     string    `json:"prefix"` // of its pots' ids
	Readings   int64     `json:"readings"`
	Pots       int       `json:"pots"`
	PerPot     int       `json:"per_pot"`
	Interval   string    `json:"interval"`
	Batch      int       `json:"batch"`
	End        time.Time `json:"end"` // the dataset's "now": queries ask for the 24 h and 30 days before it
	LoadedAt   time.Time `json:"loaded_at"`
	LoadSecs   float64   `json:"load_seconds"`
	PerSecond  float64   `json:"readings_per_second"`
	MaintSecs  float64   `json:"maintain_seconds"` // store.Maintainer.Maintain after loading (rollups); 0: not implemented
	Reused     bool      `json:"reused"`           // loaded by an earlier run
	Maintained bool      `json:"maintained"`
}

// Latency is a query latency distribution.
type Latency struct {
	N      int     `json:"n"`
	Rows   float64 `json:"mean_rows"` // readings or buckets returned, on average
	P50Ms  float64 `json:"p50_ms"`
	P99Ms  float64 `json:"p99_ms"`
	MaxMs  float64 `json:"max_ms"`
	Errors int     `json:"errors"`
	Short  int     `json:"short"` // queries that returned fewer rows than the dataset holds for them
}

func latencyOf(d []time.Duration) Latency {
	l := Latency{N: len(d)}
	if len(d) == 0 {
		return l
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	l.P50Ms, l.P99Ms, l.MaxMs = ms(d[len(d)/2]), ms(d[min(len(d)-1, len(d)*99/100)]), ms(d[len(d)-1])
	return l
}

// historyShape is a dataset's shape: pots x per-pot readings at a fixed interval.
type historyShape struct {
	readings int
	days     int
	interval time.Duration
	batch    int
	tag      string // added to the key (the database a DSN names)
}

func (h historyShape) perPot() int {
	per := int(time.Duration(h.days) * 24 * time.Hour / h.interval)
	return max(1, min(per, h.readings))
}

func (h historyShape) pots() int { return (h.readings + h.perPot() - 1) / h.perPot() }

func (h historyShape) key(backend string, schema int64) string {
	return fmt.Sprintf("%s-v%d-%dr-%dd-%s-b%d", backend, schema, h.readings, h.days, h.interval, h.batch)
}

// potID is pot i of a dataset: each dataset's pots have their own ids, so that two datasets can
// share a database (a -history-postgres DSN).
func (d HistoryDataset) potID(i int) string { return fmt.Sprintf("%s%05d", d.Prefix, i) }

// historyBench runs the history part for each backend asked for.
func historyBench(ctx context.Context, run int, prof *profiler) ([]*HistoryResult, error) {
	if *histReadings <= 0 {
		return nil, nil
	}
	if err := os.MkdirAll(*histCache, 0o755); err != nil {
		return nil, err
	}
	big := historyShape{readings: *histReadings, days: *histDays, interval: *histInterval, batch: max(1, *histBatch)}
	base := big
	base.readings = *histBase
	var out []*HistoryResult
	for _, backend := range strings.Split(*histBackends, ",") {
		var r *HistoryResult
		var err error
		switch strings.TrimSpace(backend) {
		case "sqlite":
			r, err = historySQLite(ctx, run, prof, big, base)
		case "postgres":
			if *histPG == "off" || *histPG == "" {
				continue
			}
			r, err = historyPostgres(ctx, run, prof, big, base)
		case "":
			continue
		default:
			return nil, fmt.Errorf("history: unknown backend %q (sqlite, postgres)", backend)
		}
		if err != nil {
			return out, fmt.Errorf("history %s: %w", backend, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// opener opens the store holding one dataset.
type opener func(ctx context.Context, key string) (actors.Store, func(), error)

func historySQLite(ctx context.Context, run int, prof *profiler, big, base historyShape) (*HistoryResult, error) {
	probe, err := os.MkdirTemp("", "sprout-schema-probe")
	if err != nil {
		return nil, err
	}
	schema, err := sqlite.Migrate(ctx, probe)
	os.RemoveAll(probe)
	if err != nil {
		return nil, err
	}
	open := func(ctx context.Context, key string) (actors.Store, func(), error) {
		s, err := sqlite.Open(filepath.Join(*histCache, key), sqlite.Options{})
		if err != nil {
			return nil, nil, err
		}
		return s, func() { s.Close() }, nil
	}
	discard := func(key string) error { return os.RemoveAll(filepath.Join(*histCache, key)) }
	return historyRun(ctx, "sqlite", schema, run, prof, big, base, open, discard)
}

func historyPostgres(ctx context.Context, run int, prof *profiler, big, base historyShape) (*HistoryResult, error) {
	if *histPG != "auto" {
		// A given database: both datasets go into it (their pots have distinct ids), keyed by the
		// DSN so that another database is not taken for a loaded one.
		sum := sha256.Sum256([]byte(*histPG))
		dsn := *histPG
		schema, err := postgres.Migrate(ctx, dsn)
		if err != nil {
			return nil, err
		}
		open := func(ctx context.Context, key string) (actors.Store, func(), error) {
			s, err := postgres.Open(ctx, dsn, postgres.Options{})
			if err != nil {
				return nil, nil, err
			}
			return s, func() { s.Close() }, nil
		}
		big.tag, base.tag = "dsn"+hex.EncodeToString(sum[:4]), "dsn"+hex.EncodeToString(sum[:4])
		return historyRun(ctx, "postgres", schema, run, prof, big, base, open, func(string) error { return nil })
	}
	srv, err := startCachedPostgres(ctx, filepath.Join(pgCacheRoot(), "pgdata"))
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	schema, err := srv.schemaVersion(ctx)
	if err != nil {
		return nil, err
	}
	open := func(ctx context.Context, key string) (actors.Store, func(), error) {
		dsn, err := srv.database(ctx, key)
		if err != nil {
			return nil, nil, err
		}
		s, err := postgres.Open(ctx, dsn, postgres.Options{})
		if err != nil {
			return nil, nil, err
		}
		return s, func() { s.Close() }, nil
	}
	return historyRun(ctx, "postgres", schema, run, prof, big, base, open, func(key string) error { return srv.drop(ctx, key) })
}

// historyRun loads (or reuses) both datasets of one backend and times the queries on each.
func historyRun(ctx context.Context, backend string, schema int64, run int, prof *profiler, big, base historyShape,
	open opener, discard func(key string) error) (*HistoryResult, error) {
	r := &HistoryResult{Backend: backend}
	for _, ds := range []struct {
		shape       historyShape
		into        *HistoryDataset
		rd, bk      *Latency
		profReading string
		profBuckets string
	}{
		{base, &r.Baseline, &r.BaseReadings, &r.BaseBuckets, "", ""},
		{big, &r.Dataset, &r.Readings, &r.Buckets, "history-" + backend + "-readings", "history-" + backend + "-buckets"},
	} {
		if ds.shape.readings <= 0 {
			continue
		}
		key := ds.shape.key(backend, schema)
		if ds.shape.tag != "" {
			key += "-" + ds.shape.tag
		}
		d, st, closeStore, err := dataset(ctx, backend, key, ds.shape, open, discard)
		if err != nil {
			return nil, err
		}
		*ds.into = d
		fmt.Fprintf(os.Stderr, "history %s: %d queries of each kind on %d readings (%d pots) ...\n", backend, *histQueries, d.Readings, d.Pots)
		cpu := prof.self()
		*ds.rd = queryReadings(ctx, st, d)
		rdProf := cpu.stop()
		cpu = prof.self()
		*ds.bk = queryBuckets(ctx, st, d)
		bkProf := cpu.stop()
		closeStore()
		fmt.Fprintf(os.Stderr, "  readings 24 h: p50 %.2f ms p99 %.2f ms max %.1f ms (%.0f rows); buckets: p50 %.2f ms p99 %.2f ms max %.1f ms (%.0f rows)\n",
			ds.rd.P50Ms, ds.rd.P99Ms, ds.rd.MaxMs, ds.rd.Rows, ds.bk.P50Ms, ds.bk.P99Ms, ds.bk.MaxMs, ds.bk.Rows)
		if ds.profReading != "" {
			if r.Profiles == nil {
				r.Profiles = map[string]string{}
			}
			for _, p := range []struct {
				id  string
				lat Latency
				raw string
			}{{ds.profReading, *ds.rd, rdProf}, {ds.profBuckets, *ds.bk, bkProf}} {
				if !historyMet(p.lat) {
					title := "CPU profile of the bench process during the queries (the store's client runs in it; SQLite runs in it whole)"
					if path := prof.save(p.id, run, profSection{title: title, raw: p.raw}); path != "" {
						r.Profiles[p.id] = path
					}
				}
			}
		}
	}
	return r, nil
}

// historyTargetMs is issue 15's target for both history queries.
const historyTargetMs = 10

func historyMet(l Latency) bool { return l.N > 0 && l.Errors == 0 && l.P99Ms < historyTargetMs }

// dataset returns a complete dataset, loading it first unless an earlier run did (its marker file
// is written only after a complete load and checked against the store).
func dataset(ctx context.Context, backend, key string, sh historyShape, open opener, discard func(string) error) (HistoryDataset, actors.Store, func(), error) {
	marker := filepath.Join(*histCache, key+".complete.json")
	var d HistoryDataset
	if b, err := os.ReadFile(marker); err == nil && json.Unmarshal(b, &d) == nil && d.Key == key {
		st, closeStore, err := open(ctx, key)
		if err != nil {
			return d, nil, nil, err
		}
		if err := checkDataset(ctx, st, d); err == nil {
			d.Reused = true
			fmt.Fprintf(os.Stderr, "history %s: reusing %s (loaded %s at %.0f readings/s)\n", backend, key, d.LoadedAt.Format(time.DateTime), d.PerSecond)
			return d, st, closeStore, nil
		} else {
			fmt.Fprintf(os.Stderr, "history %s: %s is marked complete but %v: loading it again\n", backend, key, err)
		}
		closeStore()
		// Whatever the store still holds was loaded with that end time: keep it.
		b, _ := json.Marshal(HistoryDataset{Key: key, End: d.End})
		_ = os.WriteFile(filepath.Join(*histCache, key+".loading.json"), b, 0o644)
		os.Remove(marker)
	}
	// Older datasets of this backend and size (another schema version) are removed first: each
	// large one takes gigabytes.
	prefix := fmt.Sprintf("%s-v", backend)
	suffix := fmt.Sprintf("-%dr-%dd-%s-b%d", sh.readings, sh.days, sh.interval, sh.batch)
	if old, _ := filepath.Glob(filepath.Join(*histCache, prefix+"*"+suffix+"*.complete.json")); len(old) > 0 {
		for _, m := range old {
			k := strings.TrimSuffix(filepath.Base(m), ".complete.json")
			if k != key {
				fmt.Fprintf(os.Stderr, "history %s: removing the older dataset %s\n", backend, k)
				_ = discard(k)
				os.Remove(m)
			}
		}
	}
	loading := filepath.Join(*histCache, key+".loading.json")
	if _, err := os.Stat(loading); err != nil {
		// A fresh load starts from an empty store: rows left by a load this cache has no record
		// of would carry another end time.
		if err := discard(key); err != nil {
			return d, nil, nil, err
		}
	}
	st, closeStore, err := open(ctx, key)
	if err != nil {
		return d, nil, nil, err
	}
	// A load that was cut short is finished with the same end time (Append skips the readings
	// already stored), so that the dataset stays one fleet's history.
	end := time.Now().UTC().Truncate(time.Minute)
	var prev HistoryDataset
	if b, err := os.ReadFile(loading); err == nil && json.Unmarshal(b, &prev) == nil && !prev.End.IsZero() {
		end = prev.End
		fmt.Fprintf(os.Stderr, "history %s: finishing the interrupted load of %s\n", backend, key)
	} else {
		probe := HistoryDataset{Prefix: fmt.Sprintf("h%d-", sh.readings)}
		if rec, err := st.LoadDevice(ctx, probe.potID(0)); err == nil && rec.LastSeq > 0 {
			closeStore()
			return d, nil, nil, fmt.Errorf("the store for %s already holds readings of pot %s from a load this cache (%s) has no record of: "+
				"give an empty database, or the cache that loaded it", key, probe.potID(0), *histCache)
		}
		b, _ := json.Marshal(HistoryDataset{Key: key, End: end})
		if err := os.WriteFile(loading, b, 0o644); err != nil {
			closeStore()
			return d, nil, nil, err
		}
	}
	d, err = loadDataset(ctx, st, key, sh, end)
	if err != nil {
		closeStore()
		return d, nil, nil, err
	}
	if m, ok := st.(store.Maintainer); ok {
		fmt.Fprintf(os.Stderr, "history %s: Maintain (rollups) ...\n", backend)
		t := time.Now()
		if _, err := m.Maintain(ctx, store.RetentionOptions{Now: d.End}); err != nil {
			closeStore()
			return d, nil, nil, fmt.Errorf("maintain: %w", err)
		}
		d.MaintSecs, d.Maintained = time.Since(t).Seconds(), true
	}
	if err := checkDataset(ctx, st, d); err != nil {
		closeStore()
		return d, nil, nil, fmt.Errorf("after loading %s: %w", key, err)
	}
	b, _ := json.MarshalIndent(d, "", " ")
	if err := os.WriteFile(marker, b, 0o644); err != nil {
		closeStore()
		return d, nil, nil, err
	}
	os.Remove(loading)
	return d, st, closeStore, nil
}

// checkDataset checks that the first and last pots hold every reading the dataset says.
func checkDataset(ctx context.Context, st actors.Store, d HistoryDataset) error {
	for _, i := range []int{0, d.Pots - 1} {
		want := uint64(d.PerPot)
		if i == d.Pots-1 {
			want = uint64(int(d.Readings) - (d.Pots-1)*d.PerPot)
		}
		rec, err := st.LoadDevice(ctx, d.potID(i))
		if err != nil {
			return err
		}
		if rec.LastSeq != want {
			return fmt.Errorf("pot %s holds seq %d, want %d", d.potID(i), rec.LastSeq, want)
		}
	}
	return nil
}

// reading is pot p's k-th reading (seq k+1) of a dataset ending at end: a fleet of pots in
// homes, each reporting at its own second of the interval, drying out over days, watered when
// dry, warmer by day, its tank emptying with each watering; about one reading in a thousand
// has a soil sensor that gave NaN.
func reading(p, k, perPot int, end time.Time, interval time.Duration, rng *rand.Rand) actors.Reading {
	start := end.Add(-time.Duration(perPot) * interval)
	offset := time.Duration(p*7919%997) * interval / 997
	at := start.Add(time.Duration(k)*interval + offset)
	hours := at.Sub(start).Hours()
	cycle := 72 + float64(p%48) // hours between waterings
	phase := math.Mod(hours+float64(p%37), cycle) / cycle
	m := float32(65 - 40*phase + rng.Float64()*2)
	if rng.IntN(1000) == 0 {
		m = float32(math.NaN())
	}
	day := float64(at.Unix()%86400) / 86400
	return actors.Reading{
		Seq:             uint64(k + 1),
		DeviceTime:      at.Add(-time.Duration(20+rng.IntN(60)) * time.Millisecond),
		ReceivedAt:      at,
		SoilMoisture:    m,
		Temperature:     float32(21 + 4*math.Sin(2*math.Pi*(day-0.3)) + rng.Float64()*0.5),
		TankLevel:       float32(100 - math.Mod(hours/cycle, 14)*6.5),
		SupplyMillivolt: uint32(3270 + rng.IntN(60)),
	}
}

// loadDataset registers the pots and appends their readings through actors.Store, hour after
// hour of the fleet's time (so that the store sees the fleet's writes in time order), each
// Append one pot's -history-batch consecutive readings, from -history-workers goroutines.
func loadDataset(ctx context.Context, st actors.Store, key string, sh historyShape, end time.Time) (HistoryDataset, error) {
	per, pots := sh.perPot(), sh.pots()
	d := HistoryDataset{Key: key, Readings: int64(sh.readings), Pots: pots, PerPot: per, Interval: sh.interval.String(),
		Batch: sh.batch, End: end, LoadedAt: time.Now().UTC(), Prefix: fmt.Sprintf("h%d-", sh.readings)}
	fmt.Fprintf(os.Stderr, "history: loading %s: %d pots x %d readings (every %s), %d per Append, %d goroutines ...\n",
		key, pots, per, sh.interval, sh.batch, *histWorkers)
	for i := 0; i < pots; i++ {
		err := st.CreateDevice(ctx, actors.Device{ID: d.potID(i), Product: "bench-pot", Secret: []byte("history-bench-secret-0123456789"), CreatedAt: end.Add(-time.Duration(per) * sh.interval)})
		if err != nil && !errors.Is(err, actors.ErrDeviceExists) {
			return d, fmt.Errorf("create %s: %w", d.potID(i), err)
		}
	}
	type job struct{ pot, from, to int }
	jobs := make(chan job, 4*(*histWorkers))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var loaded atomic.Int64
	var firstErr error
	var errOnce sync.Once
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < max(1, *histWorkers); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]actors.Reading, 0, sh.batch)
			for j := range jobs {
				rng := rand.New(rand.NewPCG(uint64(j.pot), uint64(j.from)))
				buf = buf[:0]
				for k := j.from; k < j.to; k++ {
					buf = append(buf, reading(j.pot, k, per, end, sh.interval, rng))
				}
				var err error
				for attempt := 0; attempt < 20; attempt++ {
					if err = st.Append(ctx, d.potID(j.pot), actors.Batch{Readings: buf}); !errors.Is(err, actors.ErrUnavailable) {
						break
					}
					time.Sleep(time.Duration(attempt+1) * 100 * time.Millisecond)
				}
				if err != nil {
					errOnce.Do(func() { firstErr = fmt.Errorf("append %s: %w", d.potID(j.pot), err); cancel() })
					continue
				}
				loaded.Add(int64(len(buf)))
			}
		}()
	}
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(10 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				n := loaded.Load()
				rate := float64(n) / time.Since(start).Seconds()
				eta := time.Duration(float64(int64(sh.readings)-n)/max(rate, 1)) * time.Second
				fmt.Fprintf(os.Stderr, "  %d of %d readings, %.0f/s, about %v left\n", n, sh.readings, rate, eta.Round(time.Second))
			}
		}
	}()
feed:
	for from := 0; from < per; from += sh.batch {
		for p := 0; p < pots; p++ {
			n := per
			if p == pots-1 {
				n = sh.readings - (pots-1)*per
			}
			if from >= n {
				continue
			}
			select {
			case jobs <- job{p, from, min(from+sh.batch, n)}:
			case <-ctx.Done():
				break feed
			}
		}
	}
	close(jobs)
	wg.Wait()
	close(done)
	if firstErr != nil {
		return d, firstErr
	}
	if err := ctx.Err(); err != nil {
		return d, err
	}
	d.LoadSecs = time.Since(start).Seconds()
	d.PerSecond = float64(loaded.Load()) / d.LoadSecs
	fmt.Fprintf(os.Stderr, "  loaded %d readings in %.0f s: %.0f readings/s\n", loaded.Load(), d.LoadSecs, d.PerSecond)
	return d, nil
}

// randomPots picks n pots (with repeats) from a fixed seed, the same in every run.
func randomPots(d HistoryDataset, n int, seed uint64) []int {
	rng := rand.New(rand.NewPCG(seed, uint64(d.Pots)))
	out := make([]int, n)
	for i := range out {
		// The last pot may hold fewer readings: leave it out unless it is the only one.
		out[i] = rng.IntN(max(1, d.Pots-1))
	}
	return out
}

func queryReadings(ctx context.Context, st actors.Store, d HistoryDataset) Latency {
	iv, _ := time.ParseDuration(d.Interval)
	want := min(d.PerPot, int(24*time.Hour/iv))
	from, to := d.End.Add(-24*time.Hour), d.End
	_, _ = st.Readings(ctx, d.potID(0), from, to, 10000) // warms the connections and statements, not counted
	var lat []time.Duration
	var rows, errs, short int
	for _, p := range randomPots(d, *histQueries, 1) {
		t := time.Now()
		rs, err := st.Readings(ctx, d.potID(p), from, to, 10000)
		lat = append(lat, time.Since(t))
		if err != nil {
			errs++
			continue
		}
		rows += len(rs)
		if len(rs) < want-1 {
			short++
		}
	}
	l := latencyOf(lat)
	l.Errors, l.Short, l.Rows = errs, short, float64(rows)/float64(max(1, len(lat)-errs))
	return l
}

func queryBuckets(ctx context.Context, st actors.Store, d HistoryDataset) Latency {
	iv, _ := time.ParseDuration(d.Interval)
	span := time.Duration(d.PerPot) * iv
	from, to := d.End.Truncate(time.Hour).Add(-span.Truncate(time.Hour)), d.End
	want := int(to.Sub(from)/time.Hour) - 2
	_, _ = st.Buckets(ctx, d.potID(0), from, to, time.Hour)
	var lat []time.Duration
	var rows, errs, short int
	for _, p := range randomPots(d, *histQueries, 2) {
		t := time.Now()
		bs, err := st.Buckets(ctx, d.potID(p), from, to, time.Hour)
		lat = append(lat, time.Since(t))
		if err != nil {
			errs++
			continue
		}
		rows += len(bs)
		if len(bs) < want {
			short++
		}
	}
	l := latencyOf(lat)
	l.Errors, l.Short, l.Rows = errs, short, float64(rows)/float64(max(1, len(lat)-errs))
	return l
}
