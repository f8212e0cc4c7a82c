package firmware_test

// Byte compatibility between the Go server's codec (messages) and the firmware's nanopb codec.
// The same frames are built here and in test/golden_cases.h. test/golden/go holds Go's
// encodings (the C tests decode them and must encode the same bytes); test/golden/c holds C's
// encodings (written by `make -C firmware golden-c`), which these tests decode.
// SPROUT_UPDATE_GOLDEN=1 go test ./firmware -run Golden rewrites test/golden/go.

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/sprout-iot/sprout/messages"
	"github.com/sprout-iot/sprout/messages/devicepb"
)

func seqBytes(n int, start byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = start + byte(i)
	}
	return b
}

type goldenCase struct {
	name  string
	frame *devicepb.Frame
}

func goldenCases() []goldenCase {
	return []goldenCase{
		{"hello", &devicepb.Frame{Body: &devicepb.Frame_Hello{Hello: &devicepb.Hello{
			DeviceId: "pot-0001", FirmwareVersion: "1.2.3", ProtocolVersion: 1, DeviceNonce: seqBytes(16, 0x10)}}}},
		{"hello_limits", &devicepb.Frame{Body: &devicepb.Frame_Hello{Hello: &devicepb.Hello{
			DeviceId: strings.Repeat("d", messages.MaxDeviceIDBytes), FirmwareVersion: strings.Repeat("v", messages.MaxFirmwareBytes),
			ProtocolVersion: 1, DeviceNonce: seqBytes(16, 0xF0)}}}},
		{"challenge", &devicepb.Frame{Body: &devicepb.Frame_Challenge{Challenge: &devicepb.Challenge{ServerNonce: seqBytes(16, 0xA0)}}}},
		{"auth", &devicepb.Frame{Body: &devicepb.Frame_Auth{Auth: &devicepb.Auth{Mac: seqBytes(32, 0x01)}}}},
		{"welcome", &devicepb.Frame{Body: &devicepb.Frame_Welcome{Welcome: &devicepb.Welcome{
			SessionId: "0b7c2f4e-1d2a-4c8e-9f00-123456789abc", ServerTimeMs: 1767225600123,
			Config: &devicepb.Config{ReportIntervalS: 60, HeartbeatIntervalS: 30, MaxWaterMs: 30000, MinWaterIntervalS: 60,
				Thresholds: &devicepb.Thresholds{SoilMoistureMinPct: 20.5, TemperatureMaxC: 35, TankEmptyPct: 5, HysteresisPct: 2.25, HysteresisC: 1.5}},
			LastSeq: 1 << 40, ServerProof: seqBytes(32, 0x40)}}}},
		{"telemetry", &devicepb.Frame{Body: &devicepb.Frame_Telemetry{Telemetry: &devicepb.Telemetry{
			Seq: 1<<32 + 7, DeviceTimeMs: 1767225600999, SoilMoisturePct: 37.5, TemperatureC: -4.25, TankLevelPct: 100, SupplyMv: 3312}}}},
		{"ack", &devicepb.Frame{Body: &devicepb.Frame_Ack{Ack: &devicepb.Ack{Seq: ^uint64(0)}}}},
		{"command_water", &devicepb.Frame{Body: &devicepb.Frame_Command{Command: &devicepb.Command{
			CommandId: "cmd-0001", Kind: devicepb.CommandKind_COMMAND_KIND_WATER, WaterMs: 3000, DeadlineMs: 10000}}}},
		{"command_set_config", &devicepb.Frame{Body: &devicepb.Frame_Command{Command: &devicepb.Command{
			CommandId: strings.Repeat("c", messages.MaxCommandIDBytes), Kind: devicepb.CommandKind_COMMAND_KIND_SET_CONFIG,
			Config: &devicepb.Config{ReportIntervalS: 300, HeartbeatIntervalS: 45, MaxWaterMs: 12000, MinWaterIntervalS: 600,
				Thresholds: &devicepb.Thresholds{SoilMoistureMinPct: 25, TemperatureMaxC: 40, TankEmptyPct: 10, HysteresisPct: 5}}}}}},
		{"command_result", &devicepb.Frame{Body: &devicepb.Frame_CommandResult{CommandResult: &devicepb.CommandResult{
			CommandId: "cmd-0001", Status: devicepb.CommandStatus_COMMAND_STATUS_REJECTED, Detail: strings.Repeat("x", messages.MaxDetailBytes)}}}},
		{"command_result_done", &devicepb.Frame{Body: &devicepb.Frame_CommandResult{CommandResult: &devicepb.CommandResult{
			CommandId: "cmd-0002", Status: devicepb.CommandStatus_COMMAND_STATUS_DONE, Detail: "watered 3000 ms", WateredMl: 60}}}},
		{"event", &devicepb.Frame{Body: &devicepb.Frame_Event{Event: &devicepb.Event{
			Seq: 42, DeviceTimeMs: 1767225601000, Kind: devicepb.EventKind_EVENT_KIND_TANK_EMPTY, Detail: "tank at 3.0% 水"}}}},
		{"ping", &devicepb.Frame{Body: &devicepb.Frame_Ping{Ping: &devicepb.Ping{Nonce: 1<<63 + 5}}}},
		{"pong", &devicepb.Frame{Body: &devicepb.Frame_Pong{Pong: &devicepb.Pong{Nonce: 1}}}},
		{"close", &devicepb.Frame{Body: &devicepb.Frame_Close{Close: &devicepb.Close{
			Reason: devicepb.CloseReason_CLOSE_REASON_SERVER_SHUTDOWN, Detail: "node draining", ReconnectAfterMs: 2500}}}},
		{"empty_ping", &devicepb.Frame{Body: &devicepb.Frame_Ping{Ping: &devicepb.Ping{}}}},
	}
}

func goldenPath(side, name string) string {
	return filepath.Join("test", "golden", side, name+".bin")
}

func updating() bool { return os.Getenv("SPROUT_UPDATE_GOLDEN") == "1" }

func TestGoldenGoEncodingIsCommitted(t *testing.T) {
	for _, c := range goldenCases() {
		got, err := messages.AppendFrame(nil, c.frame)
		if err != nil {
			t.Fatalf("%s: encode: %v", c.name, err)
		}
		path := goldenPath("go", c.name)
		if updating() {
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%s: %v (run SPROUT_UPDATE_GOLDEN=1 go test ./firmware -run Golden)", c.name, err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: Go encodes\n %x\nbut %s holds\n %x\n(the protocol changed? update both sides)", c.name, got, path, want)
		}
	}
}

func TestGoldenCFramesDecodeInGo(t *testing.T) {
	for _, c := range goldenCases() {
		path := goldenPath("c", c.name)
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%s: %v (run make -C firmware golden-c)", c.name, err)
		}
		var got devicepb.Frame
		r := bufio.NewReader(bytes.NewReader(raw))
		if err := messages.ReadFrame(r, messages.DefaultMaxFrameBytes, &got); err != nil {
			t.Fatalf("%s: Go cannot read the C frame: %v", c.name, err)
		}
		if rest, _ := r.Peek(1); len(rest) != 0 {
			t.Errorf("%s: trailing bytes after the C frame", c.name)
		}
		if !proto.Equal(&got, c.frame) {
			t.Errorf("%s: C frame decodes to\n %v\nwant\n %v", c.name, &got, c.frame)
		}
		goBytes, _ := messages.AppendFrame(nil, c.frame)
		if !bytes.Equal(raw, goBytes) {
			t.Errorf("%s: C and Go encodings differ:\n C  %x\n Go %x", c.name, raw, goBytes)
		}
	}
}

// TestGoldenMAC pins the handshake MAC: the C test recomputes it from test/golden/go/mac.txt.
func TestGoldenMAC(t *testing.T) {
	secret, _ := hex.DecodeString("7370726f75742d7365637265742d30303031aabbccddeeff")
	dn, sn := seqBytes(16, 0x10), seqBytes(16, 0xA0)
	id := "pot-0001"
	line := fmt.Sprintf("%x %x %x %s %x\n", secret, dn, sn, id, messages.MAC(secret, dn, sn, id))
	path := filepath.Join("test", "golden", "go", "mac.txt")
	if updating() {
		if err := os.WriteFile(path, []byte(line), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(want) != line {
		t.Errorf("mac.txt holds %q, Go computes %q", want, line)
	}
}

// TestGoldenServerProof pins Welcome.server_proof: the C test recomputes it from
// test/golden/go/server_proof.txt ("secret device_nonce server_nonce proof", hex).
func TestGoldenServerProof(t *testing.T) {
	secret, _ := hex.DecodeString("7370726f75742d7365637265742d30303031aabbccddeeff")
	dn, sn := seqBytes(16, 0x10), seqBytes(16, 0xA0)
	proof := messages.ServerProof(secret, dn, sn)
	if bytes.Equal(proof, messages.MAC(secret, dn, sn, "")) || bytes.Equal(proof, messages.MAC(secret, sn, dn, "")) {
		t.Fatal("the server proof equals a device MAC over the same nonces")
	}
	line := fmt.Sprintf("%x %x %x %x\n", secret, dn, sn, proof)
	path := filepath.Join("test", "golden", "go", "server_proof.txt")
	if updating() {
		if err := os.WriteFile(path, []byte(line), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(want) != line {
		t.Errorf("server_proof.txt holds %q, Go computes %q", want, line)
	}
}
