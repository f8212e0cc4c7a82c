package device_test

import (
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/sprout-iot/sprout/edge/device"
	"github.com/sprout-iot/sprout/messages/actorpb"
	"github.com/sprout-iot/sprout/messages/devicepb"
	"github.com/sprout-iot/sprout/store/memory"
)

// rawResult encodes a Frame{command_result} by hand, so that its strings can be invalid UTF-8
// (what an older pot's firmware sent when it cut a detail in the middle of a character).
func rawResult(id, detail string, status devicepb.CommandStatus) []byte {
	var r []byte
	r = protowire.AppendTag(r, 1, protowire.BytesType)
	r = protowire.AppendString(r, id)
	r = protowire.AppendTag(r, 2, protowire.VarintType)
	r = protowire.AppendVarint(r, uint64(status))
	r = protowire.AppendTag(r, 3, protowire.BytesType)
	r = protowire.AppendString(r, detail)
	var f []byte
	f = protowire.AppendTag(f, 8, protowire.BytesType)
	f = protowire.AppendBytes(f, r)
	return protowire.AppendBytes(nil, f) // the uvarint length prefix, then the body
}

// A result whose detail is cut in the middle of a UTF-8 character is refused as a frame: the
// node says so in its log and its stats, and the session stays up (acks keep coming, the next
// result is delivered). Before, the node dropped the whole connection as a protocol error, and
// the pot reconnected, was sent the open command again, answered the same broken frame, and so
// on until the flapping ban.
func TestAResultWithInvalidUTF8IsRefusedWithoutDroppingTheSession(t *testing.T) {
	t.Parallel()
	n := startNode(t, memory.New(), device.Options{})
	secret := n.addDevice(t, "pot-1")
	c := n.connect(t, "pot-1", secret)

	outcome := make(chan *actorpb.CommandOutcome, 1)
	go func() { outcome <- n.command(t, "pot-1", water("cmd-1", 5*time.Second)) }()
	f, err := c.Recv(5 * time.Second)
	if err != nil || f.GetCommand() == nil {
		t.Fatalf("want the command, got %v %v", f, err)
	}
	cut := "busy: the pump is running command 浇水"[:len("busy: the pump is running command 浇水")-1]
	if err := c.SendRaw(rawResult("cmd-1", cut, devicepb.CommandStatus_COMMAND_STATUS_BUSY)); err != nil {
		t.Fatal(err)
	}
	// The session is still up: a reading sent after the broken frame is acked.
	if err := c.Report(&devicepb.Telemetry{Seq: 1, SoilMoisturePct: 40}, 5*time.Second, nil); err != nil {
		t.Fatalf("the session ended after an invalid result frame: %v", err)
	}
	if got := n.edge.Stats().Refused["command_result: invalid UTF-8 in detail"]; got != 1 {
		t.Fatalf("refused frames: %v, want the invalid result counted once", n.edge.Stats().Refused)
	}
	// A valid result for the same command is then delivered as usual.
	if err := c.Send(&devicepb.Frame{Body: &devicepb.Frame_CommandResult{CommandResult: &devicepb.CommandResult{
		CommandId: "cmd-1", Status: devicepb.CommandStatus_COMMAND_STATUS_DONE, WateredMl: 30}}}); err != nil {
		t.Fatal(err)
	}
	select {
	case out := <-outcome:
		if out.Outcome != actorpb.Outcome_OUTCOME_DONE {
			t.Fatalf("want done, got %v", out)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no outcome")
	}
	if st := n.state(t, "pot-1"); !st.Online {
		t.Fatalf("the pot went offline: %v", st)
	}

	// A frame that is broken in any other way still ends the session as a protocol error.
	bad := []byte{0x03, 0x42, 0x05, 0x0a} // command_result announcing 5 bytes, holding 1
	if err := c.SendRaw(bad); err != nil {
		t.Fatal(err)
	}
	for {
		f, err := c.Recv(5 * time.Second)
		if err != nil {
			t.Fatalf("want Close(PROTOCOL_ERROR), the connection ended with %v", err)
		}
		if cl := f.GetClose(); cl != nil {
			if cl.Reason != devicepb.CloseReason_CLOSE_REASON_PROTOCOL_ERROR {
				t.Fatalf("close %v, want PROTOCOL_ERROR", cl)
			}
			return
		}
	}
}
