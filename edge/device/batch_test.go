package device_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/edge/device"
	"github.com/sprout-iot/sprout/messages/deviceclient"
	"github.com/sprout-iot/sprout/messages/devicepb"
	"github.com/sprout-iot/sprout/store/memory"
)

// Frames a pot writes together reach its grain together (one store append for the lot): these
// tests check what the pot sees of that, an ack for each in its order, each reading stored once,
// and what it sees when the store fails under a batch.

// countingStore is a real store that counts appends and can be made to fail them.
type countingStore struct {
	actors.Store
	appends atomic.Int64
	fail    atomic.Bool
}

func (s *countingStore) Append(ctx context.Context, id string, b actors.Batch) error {
	if s.fail.Load() {
		return fmt.Errorf("test: writes fail: %w", actors.ErrUnavailable)
	}
	s.appends.Add(1)
	return s.Store.Append(ctx, id, b)
}

func eventFrame(seq uint64, k devicepb.EventKind) *devicepb.Frame {
	return &devicepb.Frame{Body: &devicepb.Frame_Event{Event: &devicepb.Event{Seq: seq, Kind: k}}}
}

// awaitAcks reads frames until n acks came and returns their seqs in the order they came.
func awaitAcks(t *testing.T, c *deviceclient.Conn, n int) []uint64 {
	t.Helper()
	var seqs []uint64
	for len(seqs) < n {
		f, err := c.Recv(5 * time.Second)
		if err != nil {
			t.Fatalf("after acks %v: %v", seqs, err)
		}
		if cl := f.GetClose(); cl != nil {
			t.Fatalf("after acks %v: closed: %s %s", seqs, cl.Reason, cl.Detail)
		}
		if a := f.GetAck(); a != nil {
			seqs = append(seqs, a.Seq)
		}
	}
	return seqs
}

func storedSeqs(t *testing.T, st actors.Store, id string) []uint64 {
	t.Helper()
	rs, err := st.Readings(context.Background(), id, time.Time{}, time.Now().Add(time.Hour), 100)
	if err != nil {
		t.Fatal(err)
	}
	seqs := make([]uint64, len(rs))
	for i, r := range rs {
		seqs[i] = r.Seq
	}
	return seqs
}

func TestFramesWrittenTogetherAreAckedInOrderAndStoredOnce(t *testing.T) {
	t.Parallel()
	bothReadPaths(t, func(t *testing.T, opts device.Options) {
		st := &countingStore{Store: memory.New()}
		n := startNode(t, st, opts)
		secret := n.addDevice(t, "pot-1")
		c := n.connect(t, "pot-1", secret)
		before := st.appends.Load()
		// Readings, a repeated one (the pot missed its ack), an event, and a Ping in the middle:
		// the Ping is answered by the edge, the rest by the grain, every report acked in order.
		ping := &devicepb.Frame{Body: &devicepb.Frame_Ping{Ping: &devicepb.Ping{Nonce: 9}}}
		if err := c.SendRaw(encode(t, telemetryFrame(1), telemetryFrame(2), telemetryFrame(2),
			eventFrame(3, devicepb.EventKind_EVENT_KIND_TANK_REFILLED), telemetryFrame(4), ping,
			telemetryFrame(5), telemetryFrame(6))); err != nil {
			t.Fatal(err)
		}
		want := []uint64{1, 2, 2, 3, 4, 5, 6}
		if got := awaitAcks(t, c, len(want)); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("acks %v, want %v", got, want)
		}
		if got := storedSeqs(t, st, "pot-1"); fmt.Sprint(got) != "[1 2 4 5 6]" {
			t.Fatalf("stored readings %v, want [1 2 4 5 6]", got)
		}
		evs, err := st.Events(context.Background(), "pot-1", time.Time{}, time.Now().Add(time.Hour), 100)
		if err != nil || !hasEventSeq(evs, 3) {
			t.Fatalf("the pot's event is not in the log: %v %v", evs, err)
		}
		t.Logf("%d appends for %d reports", st.appends.Load()-before, len(want))
		// Seven reports in one write: two batches (the Ping splits them), not seven appends.
		if k := st.appends.Load() - before; k >= int64(len(want)) {
			t.Fatalf("%d appends for %d reports written together", k, len(want))
		}
		if st := n.state(t, "pot-1"); st.Latest.GetSeq() != 6 {
			t.Fatalf("latest reading %d, want 6", st.Latest.GetSeq())
		}
	})
}

func hasEventSeq(evs []actors.Event, seq uint64) bool {
	for _, e := range evs {
		if e.Seq == seq {
			return true
		}
	}
	return false
}

func TestABatchTheStoreRefusesIsNeitherAckedNorLost(t *testing.T) {
	t.Parallel()
	bothReadPaths(t, func(t *testing.T, opts device.Options) {
		st := &countingStore{Store: memory.New()}
		n := startNode(t, st, opts)
		secret := n.addDevice(t, "pot-1")
		c := n.connect(t, "pot-1", secret)
		if err := c.Send(telemetryFrame(1)); err != nil {
			t.Fatal(err)
		}
		awaitAcks(t, c, 1)

		st.fail.Store(true)
		if err := c.SendRaw(encode(t, telemetryFrame(2), telemetryFrame(3), telemetryFrame(4))); err != nil {
			t.Fatal(err)
		}
		// The pot is told the store is unavailable, and gets no ack for what was not stored.
		for {
			f, err := c.Recv(5 * time.Second)
			if err != nil {
				t.Fatalf("waiting for Close: %v", err)
			}
			if a := f.GetAck(); a != nil {
				t.Fatalf("ack %d for a reading the store refused", a.Seq)
			}
			if cl := f.GetClose(); cl != nil {
				if cl.Reason != devicepb.CloseReason_CLOSE_REASON_UNAVAILABLE {
					t.Fatalf("closed with %s, want UNAVAILABLE", cl.Reason)
				}
				break
			}
		}
		_ = c.Close()

		// The pot reconnects and sends what was not acked; each reading is stored once.
		st.fail.Store(false)
		c = n.connect(t, "pot-1", secret)
		if err := c.SendRaw(encode(t, telemetryFrame(2), telemetryFrame(3), telemetryFrame(4))); err != nil {
			t.Fatal(err)
		}
		if got := awaitAcks(t, c, 3); fmt.Sprint(got) != "[2 3 4]" {
			t.Fatalf("acks after reconnecting %v, want [2 3 4]", got)
		}
		if got := storedSeqs(t, st, "pot-1"); fmt.Sprint(got) != "[1 2 3 4]" {
			t.Fatalf("stored readings %v, want [1 2 3 4]", got)
		}
	})
}
