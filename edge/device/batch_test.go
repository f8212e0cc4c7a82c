package device_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	pcluster "github.com/asynkron/protoactor-go/cluster"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/actors/actortest"
	"github.com/sprout-iot/sprout/edge/device"
	"github.com/sprout-iot/sprout/messages/actorpb"
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
	// refusedOutcomes counts failed appends that held a command's outcome.
	refusedOutcomes atomic.Int64
}

func (s *countingStore) Append(ctx context.Context, id string, b actors.Batch) error {
	if s.fail.Load() {
		for _, e := range b.Events {
			if e.Kind == actors.EventKindCommandOutcome {
				s.refusedOutcomes.Add(1)
				break
			}
		}
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

// awaitRefusal reads frames until a Close comes and returns it; an ack before it fails the test
// (the store refused what was sent).
func awaitRefusal(t *testing.T, c *deviceclient.Conn) *devicepb.Close {
	t.Helper()
	for {
		f, err := c.Recv(5 * time.Second)
		if err != nil {
			t.Fatalf("waiting for Close: %v", err)
		}
		if a := f.GetAck(); a != nil {
			t.Fatalf("ack %d for a reading the store refused", a.Seq)
		}
		if cl := f.GetClose(); cl != nil {
			return cl
		}
	}
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
		if cl := awaitRefusal(t, c); cl.Reason != devicepb.CloseReason_CLOSE_REASON_UNAVAILABLE {
			t.Fatalf("closed with %s, want UNAVAILABLE", cl.Reason)
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

// readNow asks the grain for a read_now and returns a channel that gets its outcome.
func (n *node) readNow(id, commandID string) <-chan *actorpb.CommandOutcome {
	out := make(chan *actorpb.CommandOutcome, 1)
	go func() {
		res, err := n.member.Cluster.Request(id, actors.DeviceKind, &actorpb.SendCommand{CommandId: commandID,
			Kind: devicepb.CommandKind_COMMAND_KIND_READ_NOW}, pcluster.WithTimeout(15*time.Second))
		if err != nil {
			out <- &actorpb.CommandOutcome{Detail: "request failed: " + err.Error()}
			return
		}
		out <- res.(*actorpb.CommandOutcome)
	}()
	return out
}

// awaitCommandFrame reads frames until a Command comes.
func awaitCommandFrame(t *testing.T, c *deviceclient.Conn) *devicepb.Command {
	t.Helper()
	for {
		f, err := c.Recv(5 * time.Second)
		if err != nil {
			t.Fatalf("waiting for a command: %v", err)
		}
		if cmd := f.GetCommand(); cmd != nil {
			return cmd
		}
	}
}

func resultFrame(id string) *devicepb.Frame {
	return &devicepb.Frame{Body: &devicepb.Frame_CommandResult{CommandResult: &devicepb.CommandResult{
		CommandId: id, Status: devicepb.CommandStatus_COMMAND_STATUS_DONE}}}
}

func TestAReadingAndTheResultAfterItAreOneStep(t *testing.T) {
	t.Parallel()
	bothReadPaths(t, func(t *testing.T, opts device.Options) {
		st := &countingStore{Store: memory.New()}
		n := startNode(t, st, opts)
		secret := n.addDevice(t, "pot-1")
		c := n.connect(t, "pot-1", secret)
		outcome := n.readNow("pot-1", "r1")
		cmd := awaitCommandFrame(t, c)
		before := st.appends.Load()
		// As a pot answers read_now: the fresh reading, then the result, in one write.
		if err := c.SendRaw(encode(t, telemetryFrame(1), resultFrame(cmd.CommandId))); err != nil {
			t.Fatal(err)
		}
		if got := awaitAcks(t, c, 1); got[0] != 1 {
			t.Fatalf("ack %v, want 1", got)
		}
		select {
		case out := <-outcome:
			if out.Outcome != actorpb.Outcome_OUTCOME_DONE {
				t.Fatalf("outcome %s (%s), want DONE", out.Outcome, out.Detail)
			}
		case <-time.After(15 * time.Second):
			t.Fatal("no outcome")
		}
		if got := storedSeqs(t, st, "pot-1"); fmt.Sprint(got) != "[1]" {
			t.Fatalf("stored readings %v, want [1]", got)
		}
		t.Logf("%d appends for the reading and the result", st.appends.Load()-before)
		if k := st.appends.Load() - before; k != 1 {
			t.Fatalf("%d appends for a reading and the result written with it, want 1", k)
		}
	})
}

func TestAResultWhoseStepTheStoreRefusesStillReachesTheUser(t *testing.T) {
	t.Parallel()
	bothReadPaths(t, func(t *testing.T, opts device.Options) {
		st := &countingStore{Store: memory.New()}
		n := startNodeWith(t, st, actors.DeviceOptions{StepRetry: 50 * time.Millisecond}, opts)
		secret := n.addDevice(t, "pot-1")
		c := n.connect(t, "pot-1", secret)
		outcome := n.readNow("pot-1", "r1")
		cmd := awaitCommandFrame(t, c)
		st.fail.Store(true)
		if err := c.SendRaw(encode(t, telemetryFrame(1), resultFrame(cmd.CommandId))); err != nil {
			t.Fatal(err)
		}
		awaitRefusal(t, c)
		// The grain retries the result on its own and the store refuses it again: until it is
		// stored, the requester hears nothing.
		actortest.Eventually(t, 5*time.Second, "the result retried", func() bool { return st.refusedOutcomes.Load() >= 2 })
		select {
		case out := <-outcome:
			t.Fatalf("outcome %s before the result was stored", out.Outcome)
		default:
		}
		// Storage comes back: the grain's retry stores the result and the requester hears DONE,
		// though the pot is gone.
		st.fail.Store(false)
		select {
		case out := <-outcome:
			if out.Outcome != actorpb.Outcome_OUTCOME_DONE {
				t.Fatalf("outcome %s (%s), want DONE", out.Outcome, out.Detail)
			}
		case <-time.After(15 * time.Second):
			t.Fatal("no outcome after storage came back")
		}
	})
}

func TestSingleReportsStoresEachReportOnItsOwn(t *testing.T) {
	t.Parallel()
	st := &countingStore{Store: memory.New()}
	n := startNode(t, st, device.Options{SingleReports: true})
	secret := n.addDevice(t, "pot-1")
	c := n.connect(t, "pot-1", secret)
	before := st.appends.Load()
	if err := c.SendRaw(encode(t, telemetryFrame(1), telemetryFrame(2), telemetryFrame(3))); err != nil {
		t.Fatal(err)
	}
	if got := awaitAcks(t, c, 3); fmt.Sprint(got) != "[1 2 3]" {
		t.Fatalf("acks %v, want [1 2 3]", got)
	}
	// As members before report batching expect: one Report, one append, each.
	if k := st.appends.Load() - before; k != 3 {
		t.Fatalf("%d appends for 3 reports sent one by one, want 3", k)
	}
}
