package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/sprout-iot/sprout/actors"
)

// TxOp is one small write (a user snapshot, pushes into the outbox, a push's fate) that a
// Coalescer runs inside a shared transaction. It must only use tx.
type TxOp[T any] func(ctx context.Context, tx T) error

// TxBackend is what a backend gives a Coalescer: transactions and plain statements on them (for
// SAVEPOINT, which both SQLite and Postgres speak).
type TxBackend[T any] interface {
	Begin(ctx context.Context) (T, error)
	Commit(ctx context.Context, tx T) error
	Rollback(tx T)
	Exec(ctx context.Context, tx T, stmt string) error
}

// CoalesceOptions bound a Coalescer. Zero fields mean the defaults.
type CoalesceOptions struct {
	// QueueSize is how many ops may wait; past it Do fails at once with ErrUnavailable.
	// Default 4096.
	QueueSize int
	// MaxBatch is how many ops one transaction takes. Default 256.
	MaxBatch int
	// Timeout bounds one transaction (begin to commit). Default 5 s.
	Timeout time.Duration
}

func (o CoalesceOptions) withDefaults() CoalesceOptions {
	if o.QueueSize <= 0 {
		o.QueueSize = 4096
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 256
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	return o
}

// Coalescer runs small writes from many goroutines in shared transactions, so that a thousand
// pushes a second cost a few dozen commits (each an fsync) instead of a thousand. It adds no wait:
// whatever queued while the previous transaction committed goes into the next one. Each op runs
// inside its own savepoint, so an op that fails is undone alone and only its caller sees the error;
// a failed commit fails every op of that transaction. A caller whose context ends before its op
// was taken gets ctx.Err() and the op never runs.
type Coalescer[T any] struct {
	opts    CoalesceOptions
	backend TxBackend[T]
	queue   chan *txReq[T]

	mu      sync.RWMutex
	closed  bool
	closing chan struct{}
	done    chan struct{}
}

type txReq[T any] struct {
	ctx context.Context
	op  TxOp[T]
	res chan error // buffered
}

// NewCoalescer starts a coalescer; Close stops it.
func NewCoalescer[T any](opts CoalesceOptions, b TxBackend[T]) *Coalescer[T] {
	opts = opts.withDefaults()
	c := &Coalescer[T]{opts: opts, backend: b, queue: make(chan *txReq[T], opts.QueueSize),
		closing: make(chan struct{}), done: make(chan struct{})}
	go c.loop()
	return c
}

// Do runs op in a shared transaction and returns once that transaction committed (nil) or op or
// the commit failed.
func (c *Coalescer[T]) Do(ctx context.Context, op TxOp[T]) error {
	r := &txReq[T]{ctx: ctx, op: op, res: make(chan error, 1)}
	c.mu.RLock()
	if c.closed {
		c.mu.RUnlock()
		return fmt.Errorf("%w: store closed", actors.ErrUnavailable)
	}
	select {
	case c.queue <- r:
	default:
		c.mu.RUnlock()
		return fmt.Errorf("%w: %d writes already queued", actors.ErrUnavailable, c.opts.QueueSize)
	}
	c.mu.RUnlock()
	return <-r.res
}

// Queued is how many ops wait for a transaction (a gauge for metrics and tests).
func (c *Coalescer[T]) Queued() int { return len(c.queue) }

// Close runs what is queued, then stops.
func (c *Coalescer[T]) Close() {
	c.mu.Lock()
	if !c.closed {
		c.closed = true
		close(c.closing)
	}
	c.mu.Unlock()
	<-c.done
}

func (c *Coalescer[T]) loop() {
	defer close(c.done)
	batch := make([]*txReq[T], 0, c.opts.MaxBatch)
	for {
		var first *txReq[T]
		select {
		case first = <-c.queue:
		case <-c.closing:
			// Close holds no more senders once closed is set; run what is left.
			for {
				select {
				case r := <-c.queue:
					c.run(append(batch[:0], r))
				default:
					return
				}
			}
		}
		batch = append(batch[:0], first)
	fill:
		for len(batch) < c.opts.MaxBatch {
			select {
			case r := <-c.queue:
				batch = append(batch, r)
			default:
				break fill
			}
		}
		c.run(batch)
	}
}

// run writes one batch in one transaction.
func (c *Coalescer[T]) run(batch []*txReq[T]) {
	live := batch[:0]
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.res <- err
			continue
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.Timeout)
	defer cancel()
	errs, err := c.write(ctx, live)
	for i, r := range live {
		if err != nil {
			r.res <- err
		} else {
			r.res <- errs[i]
		}
	}
}

func (c *Coalescer[T]) write(ctx context.Context, live []*txReq[T]) ([]error, error) {
	tx, err := c.backend.Begin(ctx)
	if err != nil {
		return nil, err
	}
	errs := make([]error, len(live))
	if len(live) == 1 {
		// Alone in its transaction: no savepoint needed, a failed op rolls the whole back.
		if errs[0] = live[0].op(ctx, tx); errs[0] != nil {
			c.backend.Rollback(tx)
			return errs, nil
		}
	} else {
		for i, r := range live {
			if errs[i], err = c.savepoint(ctx, tx, r.op); err != nil {
				c.backend.Rollback(tx)
				return nil, err
			}
		}
	}
	if err := c.backend.Commit(ctx, tx); err != nil {
		return nil, err
	}
	return errs, nil
}

// savepoint runs op inside a savepoint of tx, undoing just op when it fails (opErr). txErr means
// the transaction itself failed and must be rolled back.
func (c *Coalescer[T]) savepoint(ctx context.Context, tx T, op TxOp[T]) (opErr, txErr error) {
	if err := c.backend.Exec(ctx, tx, "SAVEPOINT op"); err != nil {
		return nil, err
	}
	if opErr = op(ctx, tx); opErr != nil {
		if err := c.backend.Exec(ctx, tx, "ROLLBACK TO SAVEPOINT op"); err != nil {
			return nil, errors.Join(opErr, err)
		}
	}
	if err := c.backend.Exec(ctx, tx, "RELEASE SAVEPOINT op"); err != nil {
		return nil, err
	}
	return opErr, nil
}
