package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/cluster/observe"
)

// CommitOptions are the limits of the group committer. Every backend's Options embeds them; the
// zero value of each field means its default.
type CommitOptions struct {
	// QueueSize is how many Append calls may wait for the committer. When the queue is full Append
	// fails at once with ErrUnavailable instead of holding more memory. Default 16384.
	QueueSize int
	// MaxBatch is how many rows (readings + events + snapshots) one transaction takes before it is
	// committed. A single Append larger than this is committed alone. Default 1000.
	MaxBatch int
	// MaxWait is how long the committer waits, after the first request of a batch, for more to
	// arrive, when load is high (see WaitAfterRows). Negative means never wait: commit whatever is
	// queued. Default 2 ms.
	MaxWait time.Duration
	// WaitAfterRows and WaitWhenBusy say when load is high enough to wait MaxWait for company:
	// when the previous batch had at least WaitAfterRows rows (default 64), or when the database
	// was busy with this committer's transactions (begin to commit, including waiting for the
	// connection) for at least WaitWhenBusy of the recent time (default 0.5). Under light load a
	// request is committed at once, so a lone command or reading pays no wait (what queued during
	// the previous commit still joins); under load, waiting buys fewer, bigger transactions, which
	// is what keeps a busy single-writer SQLite ahead. WaitAfterRows 1 always waits.
	WaitAfterRows int
	WaitWhenBusy  float64
	// WriteTimeout bounds one Append from queueing to durable: past it, Append returns
	// ErrUnavailable (the database is down or too slow) and the step is guaranteed not to be
	// written later. Default 5 s.
	WriteTimeout time.Duration
	// RetryBackoff is the first pause before retrying a batch that failed because the database was
	// unreachable; it doubles per retry up to MaxRetryBackoff. Defaults 20 ms and 500 ms.
	RetryBackoff    time.Duration
	MaxRetryBackoff time.Duration
	// Committers is how many batches may be in flight at once. SQLite has one writer and ignores
	// this; Postgres benefits from a few. Default 1 (each backend documents its own default).
	Committers int
}

// Defaults for CommitOptions.
const (
	DefaultQueueSize       = 16384
	DefaultMaxBatch        = 1000
	DefaultMaxWait         = 2 * time.Millisecond
	DefaultWaitAfterRows   = 64
	DefaultWaitWhenBusy    = 0.5
	DefaultWriteTimeout    = 5 * time.Second
	DefaultRetryBackoff    = 20 * time.Millisecond
	DefaultMaxRetryBackoff = 500 * time.Millisecond
)

// WithDefaults returns o with every zero field set to its default.
func (o CommitOptions) WithDefaults() CommitOptions {
	if o.QueueSize <= 0 {
		o.QueueSize = DefaultQueueSize
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = DefaultMaxBatch
	}
	if o.MaxWait == 0 {
		o.MaxWait = DefaultMaxWait
	}
	if o.WaitAfterRows <= 0 {
		o.WaitAfterRows = DefaultWaitAfterRows
	}
	if o.WaitWhenBusy <= 0 {
		o.WaitWhenBusy = DefaultWaitWhenBusy
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = DefaultWriteTimeout
	}
	if o.RetryBackoff <= 0 {
		o.RetryBackoff = DefaultRetryBackoff
	}
	if o.MaxRetryBackoff <= 0 {
		o.MaxRetryBackoff = DefaultMaxRetryBackoff
	}
	if o.MaxRetryBackoff < o.RetryBackoff {
		o.MaxRetryBackoff = o.RetryBackoff
	}
	if o.Committers <= 0 {
		o.Committers = 1
	}
	return o
}

// A Request is one Append waiting to be written. Backends read DeviceID and Batch; the rest belongs
// to the committer.
type Request struct {
	DeviceID string
	Batch    actors.Batch
	// Fenced is set by the backend inside WriteBatch when the request's epoch no longer owns the
	// device: the request is not written and its caller gets actors.ErrFenced.
	Fenced bool

	rows     int
	deadline time.Time
	state    atomic.Int32 // queued -> claimed (by the committer) or abandoned (by the caller)
	done     chan error   // buffered; receives exactly one result once claimed
}

const (
	queued int32 = iota
	claimed
	abandoned
)

// Backend is what a storage backend gives the committer.
type Backend interface {
	// WriteBatch writes every request in one transaction, or none of them. Readings whose
	// (device, seq) is stored and device events whose seq is stored are skipped, not errors.
	WriteBatch(ctx context.Context, reqs []*Request) error
	// Transient reports whether err means the database could not be reached or was overloaded
	// (retry the same batch later) rather than that the batch itself was refused.
	Transient(err error) bool
}

// Committer queues Append calls and writes them in batches (group commit): each batch is one
// transaction, and every caller in it returns once that transaction is durable.
type Committer struct {
	opts    CommitOptions
	backend Backend
	queue   chan *Request

	mu      sync.RWMutex // held for reading while enqueueing; for writing by Close
	closed  bool
	closing chan struct{}
	wg      sync.WaitGroup

	stats struct{ transactions, requests, rows, retries, refused, timedOut, queueFull, fenced atomic.Uint64 }
}

// CommitStats are counters since the committer started, for metrics and benchmarks.
type CommitStats struct {
	Transactions uint64 // committed batches
	Requests     uint64 // appends committed
	Rows         uint64 // readings, events and snapshots committed
	Retries      uint64 // batch attempts repeated because the database was unreachable
	Refused      uint64 // appends the database refused (after isolating them)
	TimedOut     uint64 // appends failed with ErrUnavailable after WriteTimeout
	QueueFull    uint64 // appends failed with ErrUnavailable because the queue was full
	Fenced       uint64 // appends refused because a newer activation of the device claimed it
}

// Stats returns the committer's counters.
func (c *Committer) Stats() CommitStats {
	return CommitStats{
		Transactions: c.stats.transactions.Load(), Requests: c.stats.requests.Load(), Rows: c.stats.rows.Load(),
		Retries: c.stats.retries.Load(), Refused: c.stats.refused.Load(), TimedOut: c.stats.timedOut.Load(),
		QueueFull: c.stats.queueFull.Load(), Fenced: c.stats.fenced.Load(),
	}
}

// NewCommitter starts opts.Committers committer goroutines writing through backend.
func NewCommitter(opts CommitOptions, backend Backend) *Committer {
	opts = opts.WithDefaults()
	c := &Committer{
		opts:    opts,
		backend: backend,
		queue:   make(chan *Request, opts.QueueSize),
		closing: make(chan struct{}),
	}
	for range opts.Committers {
		c.wg.Add(1)
		go c.run()
	}
	return c
}

// Options returns the options in effect, defaults applied.
func (c *Committer) Options() CommitOptions { return c.opts }

// Append validates one grain step, queues it and waits until it is durable, refused, or past
// WriteTimeout. When it returns an error the step has not been written and never will be, except
// for the one case no database can rule out: a commit whose acknowledgement was lost with the
// connection (then the step is stored and a retry is ignored as a duplicate).
func (c *Committer) Append(ctx context.Context, deviceID string, b actors.Batch) error {
	if err := ValidateBatch(deviceID, b); err != nil {
		return err
	}
	rows := len(b.Readings) + len(b.Events)
	if b.Snapshot != nil || b.Claim {
		rows++
	}
	if rows == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	r := &Request{DeviceID: deviceID, Batch: b, rows: rows, done: make(chan error, 1)}
	r.deadline = time.Now().Add(c.opts.WriteTimeout)

	c.mu.RLock()
	if c.closed {
		c.mu.RUnlock()
		return fmt.Errorf("%w: store is closed", actors.ErrUnavailable)
	}
	select {
	case c.queue <- r:
		c.mu.RUnlock()
	default:
		c.mu.RUnlock()
		c.stats.queueFull.Add(1)
		return fmt.Errorf("%w: write queue is full (%d waiting appends)", actors.ErrUnavailable, c.opts.QueueSize)
	}

	timer := time.NewTimer(c.opts.WriteTimeout)
	defer timer.Stop()
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		if r.state.CompareAndSwap(queued, abandoned) {
			return ctx.Err()
		}
	case <-timer.C:
		if r.state.CompareAndSwap(queued, abandoned) {
			c.stats.timedOut.Add(1)
			return fmt.Errorf("%w: append not written within %s", actors.ErrUnavailable, c.opts.WriteTimeout)
		}
	}
	// The committer claimed the request first: its answer comes within the deadline it writes under.
	return <-r.done
}

// Close stops accepting appends, writes everything already queued, and waits for the committers.
func (c *Committer) Close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	close(c.closing)
	c.mu.Unlock()
	c.wg.Wait()
}

func (c *Committer) run() {
	defer c.wg.Done()
	var carry *Request // the request that did not fit in the previous batch
	batch := make([]*Request, 0, 64)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	prevRows := 0 // rows in the previous batch
	var (
		busy    float64   // recent share of time spent in transactions (moving average)
		lastEnd time.Time // when the previous batch was written
	)
	for {
		first := carry
		carry = nil
		if first == nil {
			select {
			case first = <-c.queue:
			case <-c.closing:
				select {
				case first = <-c.queue:
				default:
					return // closed and drained
				}
			}
		}
		// Idle time: from the previous commit to this batch's first request (a request already
		// waiting counts none). The deliberate wait below is not idle: the database is wanted.
		idle := time.Duration(0)
		if !lastEnd.IsZero() {
			idle = max(time.Since(lastEnd), 0)
		}
		batch = append(batch[:0], first)
		rows := first.rows
		wait := c.opts.MaxWait > 0 && (prevRows >= c.opts.WaitAfterRows || busy >= c.opts.WaitWhenBusy)
		if wait {
			timer.Reset(c.opts.MaxWait)
		}
	collect:
		for rows < c.opts.MaxBatch {
			var r *Request
			if wait {
				select {
				case r = <-c.queue:
				case <-timer.C:
					break collect
				case <-c.closing:
					select {
					case r = <-c.queue: // draining: do not wait for stragglers
					default:
						break collect
					}
				}
			} else {
				select {
				case r = <-c.queue:
				default:
					break collect
				}
			}
			if rows+r.rows > c.opts.MaxBatch {
				carry = r
				break
			}
			batch = append(batch, r)
			rows += r.rows
		}
		if wait && !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		prevRows = rows
		start := time.Now()
		c.commit(batch)
		lastEnd = time.Now()
		if d := lastEnd.Sub(start); d+idle > 0 {
			busy = 0.8*busy + 0.2*float64(d)/float64(d+idle)
		}
		clear(batch)
	}
}

// commit claims the live requests of a batch and writes them.
func (c *Committer) commit(batch []*Request) {
	now := time.Now()
	live := make([]*Request, 0, len(batch))
	for _, r := range batch {
		if !r.state.CompareAndSwap(queued, claimed) {
			continue // its caller gave up; it must not be written
		}
		if !now.Before(r.deadline) {
			c.stats.timedOut.Add(1)
			r.done <- fmt.Errorf("%w: append waited %s in the write queue", actors.ErrUnavailable, c.opts.WriteTimeout)
			continue
		}
		live = append(live, r)
	}
	if len(live) > 0 {
		c.write(live)
	}
}

// write writes reqs in one transaction, retrying while the database is unreachable and each
// request's deadline allows, and splitting the batch when the database refuses it so that one bad
// request fails alone.
func (c *Committer) write(reqs []*Request) {
	backoff := c.opts.RetryBackoff
	for {
		deadline := reqs[0].deadline
		for _, r := range reqs[1:] {
			if r.deadline.Before(deadline) {
				deadline = r.deadline
			}
		}
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		start := time.Now()
		for _, r := range reqs {
			r.Fenced = false
		}
		err := c.backend.WriteBatch(ctx, reqs)
		cancel()
		if err == nil {
			rows := 0
			for _, r := range reqs {
				if r.Fenced {
					c.stats.fenced.Add(1)
					r.done <- fmt.Errorf("store: append for device %q: %w", r.DeviceID, actors.ErrFenced)
					continue
				}
				rows += r.rows
				r.done <- nil
			}
			c.stats.transactions.Add(1)
			c.stats.requests.Add(uint64(len(reqs)))
			c.stats.rows.Add(uint64(rows))
			observe.Committed(rows, time.Since(start))
			return
		}
		if !c.backend.Transient(err) && !errors.Is(err, context.DeadlineExceeded) {
			if len(reqs) == 1 {
				c.stats.refused.Add(1)
				reqs[0].done <- fmt.Errorf("store: append for device %q refused: %w", reqs[0].DeviceID, err)
				return
			}
			for _, r := range reqs {
				c.write([]*Request{r})
			}
			return
		}
		// Unreachable or too slow: fail the requests out of time, retry the rest after a pause.
		now := time.Now()
		keep := reqs[:0]
		for _, r := range reqs {
			if now.Add(backoff).Before(r.deadline) {
				keep = append(keep, r)
			} else {
				c.stats.timedOut.Add(1)
				r.done <- Unavailable(fmt.Errorf("append not written within %s: %w", c.opts.WriteTimeout, err))
			}
		}
		clear(reqs[len(keep):])
		reqs = keep
		if len(reqs) == 0 {
			return
		}
		c.stats.retries.Add(1)
		time.Sleep(backoff)
		backoff = min(2*backoff, c.opts.MaxRetryBackoff)
	}
}
