package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/store"
)

// retentionConfig is how long readings are kept and how often the store is maintained.
type retentionConfig struct{ raw, aggregates, pushes, events, every time.Duration }

func (c *retentionConfig) register(fs *flagSet) {
	fs.dur(&c.raw, "retention-raw", store.DefaultRawRetention, "how long raw readings are kept (each device's latest is kept whatever its age); at least 1h")
	fs.dur(&c.aggregates, "retention-aggregates", store.DefaultAggregateRetention, "how long hourly aggregates of readings are kept (charts over older ranges); at least --retention-raw")
	fs.dur(&c.pushes, "retention-pushes", store.DefaultPushRetention, "how long the push outbox keeps pushes already sent or failed for good (pending ones never expire); at least 1h")
	fs.dur(&c.events, "retention-events", store.DefaultEventRetention, "how long the device event log is kept (alerts, commands, presence, bindings; each device's last device event stays); at least 24h")
	fs.dur(&c.every, "maintenance-interval", time.Hour, "how often the store rolls up complete hours and deletes expired data (0: never; with Postgres one node at a time does it)")
}

// options are the RetentionOptions of each run (Now: the time of the run).
func (c retentionConfig) options() store.RetentionOptions {
	return store.RetentionOptions{Raw: c.raw, Aggregates: c.aggregates, Pushes: c.pushes, Events: c.events}
}

// maintenanceFirstDelay is how long after start the first run begins: late enough not to compete
// with a node's start (grains activating, devices reconnecting), soon enough that a node
// restarted more often than every interval still maintains its store.
const maintenanceFirstDelay = 30 * time.Second

// startMaintenance runs st's Maintain every `every` (the first run maintenanceFirstDelay after the
// start, or sooner when every is shorter) until ctx is done, logging what each run did. It does
// nothing when every <= 0 or the store keeps no aggregates (store.Maintainer): the in-memory store.
func startMaintenance(ctx context.Context, st actors.Store, every time.Duration, opts store.RetentionOptions, log *slog.Logger) {
	m, ok := maintainerOf(st)
	if !ok || every <= 0 {
		log.Info("store maintenance off: raw readings, events and finished pushes are kept forever", "interval", every, "store_supports_it", ok)
		return
	}
	if _, err := opts.WithDefaults(); err != nil {
		log.Error("store maintenance off: bad retention settings", "err", err)
		return
	}
	go func() {
		t := time.NewTimer(min(every, maintenanceFirstDelay))
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			maintainOnce(ctx, m, opts, log)
			t.Reset(every)
		}
	}()
}

func maintainOnce(ctx context.Context, m store.Maintainer, opts store.RetentionOptions, log *slog.Logger) {
	st, err := m.Maintain(ctx, opts)
	switch {
	case ctx.Err() != nil:
		return // shutting down; the next start carries on where this run stopped
	case err != nil:
		log.Error("store maintenance failed; retrying at the next interval", "err", err,
			"hours_rolled", st.HoursRolled, "raw_deleted", st.RawDeleted, "aggregates_deleted", st.AggregatesDeleted,
			"pushes_deleted", st.PushesDeleted, "events_deleted", st.EventsDeleted)
		return
	case st.Skipped:
		log.Debug("store maintenance skipped: another node is doing it")
		return
	}
	level := slog.LevelDebug
	if st.HoursRolled > 0 || st.RawDeleted > 0 || st.AggregatesDeleted > 0 || st.PushesDeleted > 0 || st.EventsDeleted > 0 {
		level = slog.LevelInfo
	}
	log.Log(ctx, level, "store maintenance done", "hours_rolled", st.HoursRolled, "hour_rows", st.HourRows,
		"raw_deleted", st.RawDeleted, "aggregates_deleted", st.AggregatesDeleted, "pushes_deleted", st.PushesDeleted,
		"events_deleted", st.EventsDeleted, "rolled_until", st.RolledUntil, "raw_from", st.RawFrom, "took", st.Took)
}

// maintainerOf finds the Maintainer behind st, looking through the debug delay wrapper.
func maintainerOf(st actors.Store) (store.Maintainer, bool) {
	switch s := st.(type) {
	case *slowStore:
		st = s.Store
	case *slowUserStore:
		st = s.Store
	}
	m, ok := st.(store.Maintainer)
	return m, ok
}
