package actors

import (
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/cluster"
)

// Courier limits.
const (
	// DefaultCourierQueue is how many messages wait per target; beyond it the newest is dropped.
	DefaultCourierQueue = 256
	// DefaultCourierAttempts is how many look-ups of a target a message gets before it is dropped.
	DefaultCourierAttempts = 4
	// DefaultCourierBackoff is the wait after the first failed look-up; it doubles after each.
	DefaultCourierBackoff = 250 * time.Millisecond
)

// CourierOptions configures a Courier. Zero fields take the defaults above.
type CourierOptions struct {
	// QueueLen bounds the messages waiting for one target (default DefaultCourierQueue).
	QueueLen int
	// Attempts is how many look-ups a message gets while its target is unreachable (default
	// DefaultCourierAttempts); after the last it is dropped, logged and counted.
	Attempts int
	// Backoff is the wait after the first failed look-up, doubled after each (default
	// DefaultCourierBackoff).
	Backoff time.Duration
	Clock   Clock
	Logger  *slog.Logger
}

// Courier sends messages from a grain to other grains by cluster identity and kind without
// blocking the sender: a cluster look-up (cluster.Get) can block for the cluster's request timeout
// when a member is lost, and a grain must never do that inside its receive loop. Send only queues;
// each target with waiting messages has one goroutine that looks it up and delivers, in the order
// the messages were sent. Delivery is at most once: a message whose target stays unreachable, or
// that finds its target's queue full, is dropped, logged and counted (Dropped), so what it carries
// must be something the receiver can do without or recover later (notices, outcomes, binding
// changes). A Courier is node-local: one per cluster member, shared by the grains on it.
type Courier struct {
	cluster *cluster.Cluster
	opts    CourierOptions
	mu      sync.Mutex
	queues  map[courierTarget]*courierQueue
	dropped atomic.Int64
}

type courierTarget struct{ identity, kind string }

type courierQueue struct {
	msgs []any // guarded by Courier.mu; a goroutine drains it while it is not empty
}

// NewCourier returns a courier sending through c.
func NewCourier(c *cluster.Cluster, o CourierOptions) *Courier {
	if o.QueueLen <= 0 {
		o.QueueLen = DefaultCourierQueue
	}
	if o.Attempts <= 0 {
		o.Attempts = DefaultCourierAttempts
	}
	if o.Backoff <= 0 {
		o.Backoff = DefaultCourierBackoff
	}
	if o.Clock == nil {
		o.Clock = RealClock()
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &Courier{cluster: c, opts: o, queues: map[courierTarget]*courierQueue{}}
}

// Send queues msg for the grain (identity, kind) and returns at once. It reports false when the
// target's queue is full and msg was dropped.
func (c *Courier) Send(identity, kind string, msg any) bool {
	t := courierTarget{identity, kind}
	c.mu.Lock()
	q := c.queues[t]
	if q == nil {
		q = &courierQueue{}
		c.queues[t] = q
		go c.drain(t, q)
	}
	if len(q.msgs) >= c.opts.QueueLen {
		c.mu.Unlock()
		c.drop(t, msg, "queue full")
		return false
	}
	q.msgs = append(q.msgs, msg)
	c.mu.Unlock()
	return true
}

// Dropped is how many messages this courier has given up on.
func (c *Courier) Dropped() int64 { return c.dropped.Load() }

func (c *Courier) drop(t courierTarget, msg any, why string) {
	c.dropped.Add(1)
	c.opts.Logger.Warn("grain unreachable; message dropped", "kind", t.kind, "identity", t.identity,
		"message", typeName(msg), "why", why)
}

// drain delivers q's messages in order and ends (removing q) once q is empty.
func (c *Courier) drain(t courierTarget, q *courierQueue) {
	for {
		c.mu.Lock()
		if len(q.msgs) == 0 {
			delete(c.queues, t)
			c.mu.Unlock()
			return
		}
		msg := q.msgs[0]
		q.msgs[0] = nil
		q.msgs = q.msgs[1:]
		c.mu.Unlock()
		c.deliver(t, msg)
	}
}

func (c *Courier) deliver(t courierTarget, msg any) {
	wait := c.opts.Backoff
	for attempt := 1; ; attempt++ {
		if pid := c.cluster.Get(t.identity, t.kind); pid != nil {
			c.cluster.ActorSystem.Root.Send(pid, msg)
			return
		}
		if attempt >= c.opts.Attempts {
			c.drop(t, msg, "look-up failed")
			return
		}
		c.opts.Clock.Sleep(wait)
		wait *= 2
	}
}

func typeName(msg any) string { return fmt.Sprintf("%T", msg) }
