package store

import (
	"context"
	"fmt"
	"time"
)

// Maintainer is implemented by stores that keep raw readings for a limited time and hourly
// aggregates for longer (both store/sqlite and store/postgres). A node calls Maintain
// periodically (cmd/sprout: every --maintenance-interval).
type Maintainer interface {
	// Maintain rolls every complete hour not yet rolled up into the hourly aggregates, then
	// deletes raw readings, aggregates, device events and finished pushes past their retention,
	// in chunks of opts.Chunk rows, each
	// its own short transaction. Running it again with the same options changes nothing.
	Maintain(ctx context.Context, opts RetentionOptions) (MaintainStats, error)
}

// RetentionOptions say how long data is kept. The zero value means the defaults.
type RetentionOptions struct {
	// Raw is how long raw readings are kept (by ReceivedAt). Default 30 days, at least 1 hour.
	// Each device's latest reading is kept whatever its age: it is what a grain recovers on
	// activation (LoadDevice).
	Raw time.Duration
	// Aggregates is how long hourly aggregates are kept. Default 400 days; at least Raw.
	Aggregates time.Duration
	// Pushes is how long the outbox keeps a push whose fate is recorded (sent, or failed for
	// good), by CreatedAt: what an operator reads when a user says "I got nothing". Pending pushes
	// never expire. Default 30 days, at least 1 hour.
	Pushes time.Duration
	// Events is how long the device event log is kept (alerts, commands and their outcomes,
	// presence, bindings, device events), by At. Each device's event with the highest seq is kept
	// whatever its age (with the latest reading it is how a grain knows the last seq it acked).
	// Default 400 days, at least 1 day.
	Events time.Duration
	// Now is the time retention is measured from. Zero: time.Now(). Tests set it.
	Now time.Time
	// Settle is how long after an hour ends before it is rolled up: appends received during the
	// hour may still be committing (up to WriteTimeout), or come from a node whose clock is a
	// little behind. A reading committed into an hour already rolled up is in the raw data but
	// not in the aggregates. Default 1 minute.
	Settle time.Duration
	// Chunk is the most rows one delete or aggregate write touches: each chunk is its own
	// transaction, so appends wait for one chunk at most. Default 5000.
	Chunk int
}

// Defaults for RetentionOptions.
const (
	DefaultRawRetention       = 30 * 24 * time.Hour
	DefaultAggregateRetention = 400 * 24 * time.Hour
	DefaultPushRetention      = 30 * 24 * time.Hour
	DefaultEventRetention     = 400 * 24 * time.Hour
	DefaultSettle             = time.Minute
	DefaultChunk              = 5000
)

// WithDefaults fills in zero fields and checks the rest: negative durations, Raw under an hour
// and Aggregates shorter than Raw are ErrInvalid.
func (o RetentionOptions) WithDefaults() (RetentionOptions, error) {
	if o.Raw == 0 {
		o.Raw = DefaultRawRetention
	}
	if o.Aggregates == 0 {
		o.Aggregates = max(DefaultAggregateRetention, o.Raw)
	}
	if o.Pushes == 0 {
		o.Pushes = DefaultPushRetention
	}
	if o.Events == 0 {
		o.Events = DefaultEventRetention
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	if o.Settle == 0 {
		o.Settle = DefaultSettle
	}
	if o.Chunk == 0 {
		o.Chunk = DefaultChunk
	}
	switch {
	case o.Raw < time.Hour:
		return o, fmt.Errorf("%w: raw retention %s is shorter than an hour", ErrInvalid, o.Raw)
	case o.Pushes < time.Hour:
		return o, fmt.Errorf("%w: push retention %s is shorter than an hour", ErrInvalid, o.Pushes)
	case o.Events < 24*time.Hour:
		return o, fmt.Errorf("%w: event retention %s is shorter than a day", ErrInvalid, o.Events)
	case o.Aggregates < o.Raw:
		return o, fmt.Errorf("%w: aggregate retention %s is shorter than raw retention %s", ErrInvalid, o.Aggregates, o.Raw)
	case o.Settle < 0 || o.Settle > time.Hour:
		return o, fmt.Errorf("%w: settle %s is not within 0..1h", ErrInvalid, o.Settle)
	case o.Chunk < 0:
		return o, fmt.Errorf("%w: chunk %d is negative", ErrInvalid, o.Chunk)
	}
	return o, nil
}

// RollUpTo is the end of the last complete hour: every hour before it can be rolled up.
func (o RetentionOptions) RollUpTo() time.Time { return o.Now.Add(-o.Settle).Truncate(time.Hour) }

// RawCutoff is the hour before which raw readings have expired.
func (o RetentionOptions) RawCutoff() time.Time { return o.Now.Add(-o.Raw).Truncate(time.Hour) }

// AggregateCutoff is the hour before which aggregates have expired.
func (o RetentionOptions) AggregateCutoff() time.Time {
	return o.Now.Add(-o.Aggregates).Truncate(time.Hour)
}

// EventCutoff is the time before which device events have expired.
func (o RetentionOptions) EventCutoff() time.Time { return o.Now.Add(-o.Events) }

// PushCutoff is the time before which sent and failed pushes have expired.
func (o RetentionOptions) PushCutoff() time.Time { return o.Now.Add(-o.Pushes) }

// MaintainStats says what one Maintain did.
type MaintainStats struct {
	// Skipped: another node was maintaining the same database (Postgres); this one did nothing.
	Skipped bool
	// HoursRolled is the number of hours rolled up; HourRows the (device, hour) aggregates written.
	HoursRolled int
	HourRows    int64
	// RawDeleted and AggregatesDeleted count the rows deleted past their retention.
	RawDeleted        int64
	AggregatesDeleted int64
	// PushesDeleted counts sent and failed pushes deleted past their retention; EventsDeleted
	// device events.
	PushesDeleted int64
	EventsDeleted int64
	// RolledUntil: every hour before it is in the aggregates. RawFrom: raw readings before it
	// have expired (apart from each device's latest), and Buckets answers from the aggregates.
	// Zero until the first rollup and the first expiry.
	RolledUntil time.Time
	RawFrom     time.Time
	// Took is how long the run took.
	Took time.Duration
}
