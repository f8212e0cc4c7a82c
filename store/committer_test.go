package store_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/store"
	"github.com/sprout-iot/sprout/store/storetest"
)

var errDown = errors.New("connection refused")
var errRefused = errors.New("value refused by the database")

// fake is a backend that records what it writes and fails on demand.
type fake struct {
	mu      sync.Mutex
	batches [][]string // device ids per committed batch
	stored  map[string]bool
	down    atomic.Bool   // every write fails transiently
	upAfter atomic.Int64  // when it reaches 0 by a failed write, the database is back up
	gate    chan struct{} // when non-nil, each write waits for it
	entered chan string   // each write announces its first device here before waiting at gate
	poison  string        // a batch containing this device is refused
}

func newFake() *fake { return &fake{stored: map[string]bool{}, entered: make(chan string, 1000)} }

// writing returns the first device of the next write to begin.
func (f *fake) writing(t *testing.T) string {
	t.Helper()
	select {
	case id := <-f.entered:
		return id
	case <-time.After(10 * time.Second):
		t.Fatal("no write began")
		return ""
	}
}

func (f *fake) Transient(err error) bool { return errors.Is(err, errDown) }

func (f *fake) WriteBatch(ctx context.Context, reqs []*store.Request) error {
	if len(reqs) > 0 {
		select {
		case f.entered <- reqs[0].DeviceID:
		default:
		}
	}
	if f.gate != nil {
		select {
		case <-f.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if f.down.Load() {
		if f.upAfter.Add(-1) == 0 {
			f.down.Store(false)
		}
		return errDown
	}
	var ids []string
	for _, r := range reqs {
		if r.DeviceID == f.poison {
			return errRefused
		}
		ids = append(ids, r.DeviceID)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.batches = append(f.batches, ids)
	for _, id := range ids {
		f.stored[id] = true
	}
	return nil
}

func (f *fake) isStored(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stored[id]
}

func step(seq uint64) actors.Batch {
	return actors.Batch{Readings: []actors.Reading{{Seq: seq, ReceivedAt: time.Unix(1e9, 0)}}}
}

func appendAll(c *store.Committer, n int, prefix string) []error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = c.Append(context.Background(), fmt.Sprintf("%s-%d", prefix, i), step(1)) })
	}
	wg.Wait()
	return errs
}

func TestALoneAppendUnderLightLoadDoesNotWait(t *testing.T) {
	f := newFake()
	// A wait far longer than any commit: if the committer waited, the appends below would take it.
	c := store.NewCommitter(store.CommitOptions{MaxWait: time.Second}, f)
	defer c.Close()
	// Light load: an append now and then (a pot reporting, a command), the database mostly idle.
	for i := range 5 {
		time.Sleep(20 * time.Millisecond)
		start := time.Now()
		if err := c.Append(context.Background(), "pot", step(uint64(i+1))); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took >= time.Second {
			t.Fatalf("append %d took %v: the committer waited for company under light load", i, took)
		}
	}
}

func TestConcurrentAppendsShareTransactions(t *testing.T) {
	f := newFake()
	c := store.NewCommitter(store.CommitOptions{MaxBatch: 100, MaxWait: 20 * time.Millisecond, WaitAfterRows: 1}, f)
	defer c.Close()
	for i, err := range appendAll(c, 1000, "pot") {
		if err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
	}
	if len(f.batches) > 100 || len(f.batches) < 10 {
		t.Fatalf("1000 appends took %d transactions; want 10..100 with MaxBatch 100", len(f.batches))
	}
	for _, b := range f.batches {
		if len(b) > 100 {
			t.Fatalf("a batch of %d rows exceeds MaxBatch 100", len(b))
		}
	}
}

func TestFullQueueFailsAtOnce(t *testing.T) {
	f := newFake()
	f.gate = make(chan struct{})
	c := store.NewCommitter(store.CommitOptions{QueueSize: 4, MaxBatch: 1, MaxWait: -1, WriteTimeout: time.Minute}, f)
	defer c.Close()
	defer close(f.gate)
	// One request is being written (blocked on the gate), four wait in the queue; the rest must fail now.
	var wg sync.WaitGroup
	for i := range 5 {
		wg.Go(func() { c.Append(context.Background(), fmt.Sprintf("held-%d", i), step(1)) })
		time.Sleep(20 * time.Millisecond)
	}
	start := time.Now()
	err := c.Append(context.Background(), "one-too-many", step(1))
	if !errors.Is(err, actors.ErrUnavailable) || time.Since(start) > 100*time.Millisecond {
		t.Fatalf("Append on a full queue = %v after %v, want ErrUnavailable at once", err, time.Since(start))
	}
	f.gate <- struct{}{}
	go func() {
		for range 4 {
			f.gate <- struct{}{}
		}
	}()
	wg.Wait()
}

func TestDatabaseDownFailsWithinWriteTimeoutAndRecovers(t *testing.T) {
	f := newFake()
	f.down.Store(true)
	const timeout = 300 * time.Millisecond
	c := store.NewCommitter(store.CommitOptions{WriteTimeout: timeout, RetryBackoff: 10 * time.Millisecond}, f)
	defer c.Close()
	start := time.Now()
	for i, err := range appendAll(c, 50, "down") {
		if !errors.Is(err, actors.ErrUnavailable) {
			t.Fatalf("append %d while down = %v, want ErrUnavailable", i, err)
		}
	}
	if took := time.Since(start); took > timeout+200*time.Millisecond {
		t.Fatalf("appends while down took %v, WriteTimeout is %v", took, timeout)
	}
	// Back up while appends are retrying (after the first of their writes failed): they succeed
	// without any restart.
	f.upAfter.Store(1)
	for i, err := range appendAll(c, 50, "up") {
		if err != nil {
			t.Fatalf("append %d after recovery: %v", i, err)
		}
	}
	if f.upAfter.Load() > 0 {
		t.Fatal("the database was never down for the appends that should retry")
	}
	// The committer wrote what came after them: the failed appends were never written, even
	// with the database back.
	for i := range 50 {
		if f.isStored(fmt.Sprintf("down-%d", i)) {
			t.Fatalf("down-%d was written after its Append failed", i)
		}
	}
}

func TestRefusedRequestFailsAloneInItsBatch(t *testing.T) {
	f := newFake()
	f.poison = "pot-13"
	c := store.NewCommitter(store.CommitOptions{MaxWait: 50 * time.Millisecond}, f)
	defer c.Close()
	errs := appendAll(c, 40, "pot")
	for i, err := range errs {
		id := fmt.Sprintf("pot-%d", i)
		switch {
		case id == f.poison && (!errors.Is(err, errRefused) || errors.Is(err, actors.ErrUnavailable)):
			t.Fatalf("%s: %v, want the database's refusal", id, err)
		case id != f.poison && err != nil:
			t.Fatalf("%s failed beside a refused request: %v", id, err)
		case id != f.poison && !f.isStored(id):
			t.Fatalf("%s acknowledged but not stored", id)
		}
	}
}

func TestAbandonedAppendIsNeverWritten(t *testing.T) {
	f := newFake()
	f.gate = make(chan struct{})
	c := store.NewCommitter(store.CommitOptions{MaxBatch: 1, MaxWait: -1}, f)
	defer c.Close()
	go c.Append(context.Background(), "first", step(1)) // occupies the committer
	if id := f.writing(t); id != "first" {
		t.Fatalf("first write = %s", id)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := c.Append(ctx, "abandoned", step(1)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Append = %v, want DeadlineExceeded", err)
	}
	close(f.gate)
	if err := c.Append(context.Background(), "after", step(1)); err != nil {
		t.Fatal(err)
	}
	if f.isStored("abandoned") {
		t.Fatal("an append whose caller gave up was written later")
	}
}

func TestCloseWritesQueuedAppendsThenRefuses(t *testing.T) {
	f := newFake()
	c := store.NewCommitter(store.CommitOptions{MaxWait: 200 * time.Millisecond}, f)
	var wg sync.WaitGroup
	var ok atomic.Int64
	for i := range 100 {
		wg.Go(func() {
			if c.Append(context.Background(), fmt.Sprintf("pot-%d", i), step(1)) == nil {
				ok.Add(1)
			}
		})
	}
	time.Sleep(50 * time.Millisecond) // all queued, the committer still waiting for more
	c.Close()
	wg.Wait()
	if ok.Load() != 100 {
		t.Fatalf("%d of 100 queued appends succeeded across Close, want all", ok.Load())
	}
	if err := c.Append(context.Background(), "late", step(1)); !errors.Is(err, actors.ErrUnavailable) {
		t.Fatalf("Append after Close = %v, want ErrUnavailable", err)
	}
}

func TestWriteTimeoutDefaultsAreNamed(t *testing.T) {
	o := store.CommitOptions{}.WithDefaults()
	if o.QueueSize != store.DefaultQueueSize || o.MaxBatch != store.DefaultMaxBatch || o.MaxWait != store.DefaultMaxWait ||
		o.WriteTimeout != store.DefaultWriteTimeout || o.RetryBackoff != store.DefaultRetryBackoff || o.Committers != 1 {
		t.Fatalf("defaults = %+v", o)
	}
}

// nop is the no-storage baseline: an actors.Store whose Append returns at once.
type nop struct{ actors.Store }

func (nop) Append(context.Context, string, actors.Batch) error { return nil }

type nopBackend struct{}

func (nopBackend) WriteBatch(context.Context, []*store.Request) error { return nil }
func (nopBackend) Transient(error) bool                               { return false }

// committerStore is the group committer over a backend that writes nothing: what batching alone costs.
type committerStore struct {
	actors.Store
	c *store.Committer
}

func (s committerStore) Stats() store.CommitStats { return s.c.Stats() }

func (s committerStore) Append(ctx context.Context, id string, b actors.Batch) error {
	return s.c.Append(ctx, id, b)
}

func BenchmarkAppendBaselineNoop(b *testing.B) {
	storetest.BenchAppend(b, nop{}, storetest.BenchConfig{Devices: 1000})
}

func BenchmarkAppendBaselineCommitterNoop(b *testing.B) {
	c := store.NewCommitter(store.CommitOptions{}, nopBackend{})
	defer c.Close()
	storetest.BenchAppend(b, committerStore{c: c}, storetest.BenchConfig{Devices: 1000})
}
