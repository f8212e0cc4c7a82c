package messages

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/sprout-iot/sprout/messages/devicepb"
)

func TestFrameRoundTrip(t *testing.T) {
	in := []*devicepb.Frame{
		{Body: &devicepb.Frame_Hello{Hello: &devicepb.Hello{DeviceId: "pot-1", ProtocolVersion: 1, DeviceNonce: make([]byte, 16)}}},
		{Body: &devicepb.Frame_Telemetry{Telemetry: &devicepb.Telemetry{Seq: 1 << 40, SoilMoisturePct: 33.5}}},
		{Body: &devicepb.Frame_Close{Close: &devicepb.Close{Reason: devicepb.CloseReason_CLOSE_REASON_REPLACED}}},
	}
	var b []byte
	for _, f := range in {
		var err error
		if b, err = AppendFrame(b, f); err != nil {
			t.Fatal(err)
		}
	}
	r := bufio.NewReader(bytes.NewReader(b))
	for i, want := range in {
		got := &devicepb.Frame{}
		if err := ReadFrame(r, DefaultMaxFrameBytes, got); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if !proto.Equal(got, want) {
			t.Fatalf("frame %d: got %v want %v", i, got, want)
		}
	}
	if err := ReadFrame(r, DefaultMaxFrameBytes, &devicepb.Frame{}); err != io.EOF {
		t.Fatalf("want io.EOF at a clean end, got %v", err)
	}
}

func TestReadFrameLimits(t *testing.T) {
	cases := map[string]struct {
		in   []byte
		want error
	}{
		"oversize prefix":  {[]byte{0x81, 0x08}, ErrFrameTooLarge},
		"truncated body":   {[]byte{0x05, 0x0a}, io.ErrUnexpectedEOF},
		"truncated prefix": {[]byte{0x80}, io.ErrUnexpectedEOF},
		"overlong varint":  {bytes.Repeat([]byte{0xff}, 11), nil},
	}
	for name, tc := range cases {
		err := ReadFrame(bufio.NewReader(bytes.NewReader(tc.in)), DefaultMaxFrameBytes, &devicepb.Frame{})
		if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) {
			t.Errorf("%s: got %v, want %v", name, err, tc.want)
		}
	}
}

// FuzzReadFrame feeds arbitrary bytes to the frame decoder: it must never panic, never allocate
// beyond the limit, and whatever it accepts must re-encode within the limit.
func FuzzReadFrame(f *testing.F) {
	seeds := []*devicepb.Frame{
		{Body: &devicepb.Frame_Hello{Hello: &devicepb.Hello{DeviceId: "pot-1", FirmwareVersion: "1.0", ProtocolVersion: 1, DeviceNonce: make([]byte, 16)}}},
		{Body: &devicepb.Frame_Auth{Auth: &devicepb.Auth{Mac: make([]byte, 32)}}},
		{Body: &devicepb.Frame_Telemetry{Telemetry: &devicepb.Telemetry{Seq: 7, SoilMoisturePct: 20, TemperatureC: 30, TankLevelPct: 50, SupplyMv: 3300}}},
		{Body: &devicepb.Frame_CommandResult{CommandResult: &devicepb.CommandResult{CommandId: "c", Status: 1, Detail: "ok"}}},
		{Body: &devicepb.Frame_Event{Event: &devicepb.Event{Seq: 8, Kind: 2, Detail: "pump"}}},
	}
	for _, s := range seeds {
		b, _ := AppendFrame(nil, s)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bufio.NewReader(bytes.NewReader(data))
		for i := 0; i < 8; i++ {
			fr := &devicepb.Frame{}
			if err := ReadFrame(r, DefaultMaxFrameBytes, fr); err != nil {
				return
			}
			if _, err := AppendFrame(nil, fr); err != nil {
				t.Fatalf("accepted frame does not re-encode: %v", err)
			}
		}
	})
}
