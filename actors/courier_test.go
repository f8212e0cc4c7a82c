package actors_test

import (
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/actors/actortest"
	"github.com/sprout-iot/sprout/cluster"
	"github.com/sprout-iot/sprout/edge/edgetest"
	"github.com/sprout-iot/sprout/messages/actorpb"
)

// inbox is a grain kind that records the messages it receives, per identity.
type inbox struct {
	mu  sync.Mutex
	got map[string][]int64
}

func (b *inbox) kind(name string) *pcluster.Kind {
	return pcluster.NewKind(name, actor.PropsFromFunc(func(ctx actor.Context) {
		if m, ok := ctx.Message().(*actorpb.BindingChanged); ok {
			id := pcluster.GetClusterIdentity(ctx).Identity
			b.mu.Lock()
			b.got[id] = append(b.got[id], m.AtMs)
			b.mu.Unlock()
		}
	}))
}

func (b *inbox) of(id string) []int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]int64(nil), b.got[id]...)
}

func TestCourierDeliversInOrderPerTarget(t *testing.T) {
	t.Parallel()
	b := &inbox{got: map[string][]int64{}}
	m := edgetest.StartMember(t, cluster.Options{Logger: edgetest.Quiet(), Kinds: []*pcluster.Kind{b.kind("inbox")}})
	c := actors.NewCourier(m.Cluster, actors.CourierOptions{Logger: edgetest.Quiet()})
	const n = 200
	start := time.Now()
	for i := range n {
		for _, id := range []string{"alice", "bob"} {
			if !c.Send(id, "inbox", &actorpb.BindingChanged{AtMs: int64(i)}) {
				t.Fatalf("message %d to %s dropped", i, id)
			}
		}
	}
	if took := time.Since(start); took > 100*time.Millisecond {
		t.Fatalf("sending %d messages took %v: Send must not wait for look-ups", 2*n, took)
	}
	for _, id := range []string{"alice", "bob"} {
		actortest.Eventually(t, 5*time.Second, id+"'s messages", func() bool { return len(b.of(id)) == n })
		for i, at := range b.of(id) {
			if at != int64(i) {
				t.Fatalf("%s got message %d in place %d: order lost", id, at, i)
			}
		}
	}
	if c.Dropped() != 0 {
		t.Fatalf("dropped %d", c.Dropped())
	}
}

func TestCourierDropsAndCountsWhatItCannotDeliver(t *testing.T) {
	t.Parallel()
	m := edgetest.StartMember(t, cluster.Options{Logger: edgetest.Quiet()})
	c := actors.NewCourier(m.Cluster, actors.CourierOptions{Logger: edgetest.Quiet(), QueueLen: 4, Attempts: 2, Backoff: time.Millisecond})
	// No member hosts the kind: every look-up fails. The queue takes 4, the rest are dropped at
	// once, and the 4 are dropped once their look-ups are spent.
	sent := 0
	for i := range 10 {
		if c.Send("alice", "nowhere", &actorpb.BindingChanged{AtMs: int64(i)}) {
			sent++
		}
	}
	if sent < 4 || sent == 10 {
		t.Fatalf("queued %d of 10 with a queue of 4", sent)
	}
	actortest.Eventually(t, 10*time.Second, "every message dropped", func() bool { return c.Dropped() == 10 })
}
