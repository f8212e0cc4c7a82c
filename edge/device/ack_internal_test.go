package device

import (
	"bytes"
	"math"
	"testing"

	"github.com/sprout-iot/sprout/messages"
	"github.com/sprout-iot/sprout/messages/devicepb"
)

func TestAppendAckEncodesAsTheMarshaller(t *testing.T) {
	for _, seq := range []uint64{0, 1, 127, 128, 1 << 20, math.MaxUint64} {
		want, err := messages.AppendFrame([]byte{9}, &devicepb.Frame{Body: &devicepb.Frame_Ack{Ack: &devicepb.Ack{Seq: seq}}})
		if err != nil {
			t.Fatal(err)
		}
		if got := appendAck([]byte{9}, seq); !bytes.Equal(got, want) {
			t.Fatalf("seq %d: got % x, want % x", seq, got, want)
		}
	}
}
