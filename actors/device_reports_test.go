package actors_test

import (
	"context"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/actors/actortest"
	"github.com/sprout-iot/sprout/edge/edgetest"
	"github.com/sprout-iot/sprout/messages/actorpb"
	"github.com/sprout-iot/sprout/messages/devicepb"
)

func telemetryFrame(seq uint64) *devicepb.Frame {
	return &devicepb.Frame{Body: &devicepb.Frame_Telemetry{Telemetry: &devicepb.Telemetry{Seq: seq, SoilMoisturePct: 50,
		TemperatureC: 20, TankLevelPct: 80}}}
}

func resultFrame(id string) *devicepb.Frame {
	return &devicepb.Frame{Body: &devicepb.Frame_CommandResult{CommandResult: &devicepb.CommandResult{CommandId: id,
		Status: devicepb.CommandStatus_COMMAND_STATUS_DONE}}}
}

// awaitAck reads frames until an Ack arrives and returns its seq.
func awaitAck(t *testing.T, c interface {
	Recv(time.Duration) (*devicepb.Frame, error)
}) uint64 {
	t.Helper()
	for {
		f, err := c.Recv(5 * time.Second)
		if err != nil {
			t.Fatalf("waiting for an Ack: %v", err)
		}
		if a := f.GetAck(); a != nil {
			return a.Seq
		}
	}
}

func TestReadingDoesNotHoldBackTheCommandResult(t *testing.T) {
	t.Parallel()
	n := startNode(t, "", actors.DeviceOptions{})
	s := edgetest.AddDevice(t, n.sql, "pot-1", "pot")
	c := edgetest.Dial(t, n.addr, "pot-1", s)
	f := n.member.Cluster.ActorSystem.Root.RequestFuture(mustPID(t, n, "pot-1"),
		&actorpb.SendCommand{CommandId: "r1", Kind: devicepb.CommandKind_COMMAND_KIND_READ_NOW, TimeoutMs: 30000}, 30*time.Second)
	awaitCommand(t, c)
	// The pot answers READ_NOW as pots do: its reading, then its result. The reading's write is
	// slow (held); the outcome must not wait for it, and the reading's Ack must.
	hold := make(chan struct{})
	n.store.holdReadings.Store(&hold)
	if err := c.Send(telemetryFrame(1)); err != nil {
		t.Fatal(err)
	}
	if err := c.Send(resultFrame("r1")); err != nil {
		t.Fatal(err)
	}
	res, err := f.Result()
	if err != nil {
		t.Fatal(err)
	}
	if out := res.(*actorpb.CommandOutcome); out.Outcome != actorpb.Outcome_OUTCOME_DONE {
		t.Fatalf("outcome %s, want DONE", out.Outcome)
	}
	if fr, err := c.Recv(100 * time.Millisecond); err == nil && fr.GetAck() != nil {
		t.Fatalf("the reading was acked before it was stored: %v", fr)
	}
	close(hold)
	if seq := awaitAck(t, c); seq != 1 {
		t.Fatalf("ack for %d, want 1", seq)
	}
	rs, err := n.sql.Readings(context.Background(), "pot-1", time.Unix(0, 0), time.Now().Add(time.Hour), 10)
	if err != nil || len(rs) != 1 {
		t.Fatalf("stored readings %v (%v), want the one acked", rs, err)
	}
}

func TestReadingWhoseWriteFailsIsStoredWhenResentAndTheCommandEndsOnce(t *testing.T) {
	t.Parallel()
	clock := clockwork.NewFakeClock()
	n := startNode(t, "", actors.DeviceOptions{Clock: clock})
	s := edgetest.AddDevice(t, n.sql, "pot-1", "pot")
	c := edgetest.Dial(t, n.addr, "pot-1", s)
	// A first reading, stored and acked.
	if err := c.Send(telemetryFrame(1)); err != nil {
		t.Fatal(err)
	}
	if seq := awaitAck(t, c); seq != 1 {
		t.Fatalf("ack %d, want 1", seq)
	}
	f := n.member.Cluster.ActorSystem.Root.RequestFuture(mustPID(t, n, "pot-1"),
		&actorpb.SendCommand{CommandId: "r1", Kind: devicepb.CommandKind_COMMAND_KIND_READ_NOW, TimeoutMs: 60000}, 30*time.Second)
	awaitCommand(t, c)
	waitTimers(t, clock, 1) // the command's deadline

	// Storage fails while the pot sends its reading and its result: the reading (written while
	// the grain goes on) and the outcome (written in the result's step) both fail.
	n.store.failWrites.Store(true)
	if err := c.Send(telemetryFrame(2)); err != nil {
		t.Fatal(err)
	}
	if err := c.Send(resultFrame("r1")); err != nil {
		t.Fatal(err)
	}
	// The reading is refused: the pot is told to come back (nothing acked that is not stored).
	if r := awaitClose(t, c); r != devicepb.CloseReason_CLOSE_REASON_UNAVAILABLE {
		t.Fatalf("close %s, want UNAVAILABLE", r)
	}
	waitTimers(t, clock, 2) // the deadline and the result step's retry
	if st := n.state(t, "pot-1"); len(st.OpenCommands) != 1 {
		t.Fatalf("the command ended although its outcome was not stored: %v", st.OpenCommands)
	}
	// Storage is back: the result step is tried again and the command ends, once.
	n.store.failWrites.Store(false)
	clock.Advance(actors.DefaultStepRetry)
	res, err := f.Result()
	if err != nil {
		t.Fatal(err)
	}
	if out := res.(*actorpb.CommandOutcome); out.Outcome != actorpb.Outcome_OUTCOME_DONE {
		t.Fatalf("outcome %s, want DONE", out.Outcome)
	}
	// The pot reconnects and sends the reading that was not acked: it is new again, stored and acked.
	c2 := edgetest.Dial(t, n.addr, "pot-1", s)
	if err := c2.Send(telemetryFrame(2)); err != nil {
		t.Fatal(err)
	}
	if seq := awaitAck(t, c2); seq != 2 {
		t.Fatalf("ack %d, want 2", seq)
	}
	actortest.Eventually(t, 5*time.Second, "the resent reading stored", func() bool {
		rs, err := n.sql.Readings(context.Background(), "pot-1", time.Unix(0, 0), time.Now().Add(time.Hour), 10)
		return err == nil && len(rs) == 2
	})
	evs := n.events(t, "pot-1")
	outcomes := 0
	for _, e := range evs {
		if e == actors.EventKindCommandOutcome {
			outcomes++
		}
	}
	if outcomes != 1 {
		t.Fatalf("%d outcomes recorded, want exactly one: %v", outcomes, evs)
	}
}
