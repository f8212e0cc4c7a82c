package firmware_test

// A hostile server: the C firmware (vdev) against a small fake edge written here that does not
// know the pot's secret. It answers Hello with a Challenge, ignores the pot's Auth, and sends a
// Welcome whose config allows a one-hour pump run, then a one-hour WATER command. The pot must
// check the Welcome's server proof, close, back off, and never run the pump. A second fake edge
// that does know the secret (a compromised server) still cannot get past the firmware's
// build-time hard limits.

import (
	"bufio"
	"encoding/hex"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sprout-iot/sprout/messages"
	"github.com/sprout-iot/sprout/messages/devicepb"
)

const oneHourMs = 3600 * 1000

func buildVdev(t *testing.T) string {
	t.Helper()
	root := repoRoot(t)
	if out, err := exec.Command("make", "-C", filepath.Join(root, "firmware"), "vdev").CombinedOutput(); err != nil {
		t.Fatalf("make -C firmware vdev: %v\n%s", err, out)
	}
	return filepath.Join(root, "firmware", "build", "vdev")
}

// fakeEdge is one accepted pot connection seen from the server's side.
type fakeEdge struct {
	t  *testing.T
	nc net.Conn
	r  *bufio.Reader
}

func (e *fakeEdge) read() (*devicepb.Frame, error) {
	_ = e.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	f := &devicepb.Frame{}
	return f, messages.ReadFrame(e.r, messages.DefaultMaxFrameBytes, f)
}

func (e *fakeEdge) write(f *devicepb.Frame) {
	b, err := messages.AppendFrame(nil, f)
	if err != nil {
		e.t.Fatal(err)
	}
	_, _ = e.nc.Write(b)
}

// handshake reads Hello and Auth and answers with a Welcome carrying config and proof(dn, sn).
func (e *fakeEdge) handshake(cfg *devicepb.Config, proof func(dn, sn []byte) []byte) {
	e.t.Helper()
	f, err := e.read()
	if err != nil || f.GetHello() == nil {
		e.t.Fatalf("expected Hello: %v %v", f, err)
	}
	dn := f.GetHello().DeviceNonce
	sn := make([]byte, messages.NonceBytes)
	for i := range sn {
		sn[i] = byte(0x30 + i)
	}
	e.write(&devicepb.Frame{Body: &devicepb.Frame_Challenge{Challenge: &devicepb.Challenge{ServerNonce: sn}}})
	if f, err = e.read(); err != nil || f.GetAuth() == nil {
		e.t.Fatalf("expected Auth: %v %v", f, err)
	}
	e.write(&devicepb.Frame{Body: &devicepb.Frame_Welcome{Welcome: &devicepb.Welcome{
		SessionId: "hostile", ServerTimeMs: time.Now().UnixMilli(), Config: cfg, ServerProof: proof(dn, sn)}}})
}

func water(id string, ms uint32) *devicepb.Frame {
	return &devicepb.Frame{Body: &devicepb.Frame_Command{Command: &devicepb.Command{
		CommandId: id, Kind: devicepb.CommandKind_COMMAND_KIND_WATER, WaterMs: ms, DeadlineMs: 10000}}}
}

func startVdev(t *testing.T, vdev, addr, secret string) (*exec.Cmd, *lockedBuffer) {
	t.Helper()
	log := &lockedBuffer{}
	cmd := exec.Command(vdev, "--server", addr, "--id", "hostile-pot", "--secret", secret,
		"--state-dir", t.TempDir(), "--report-interval-ms", "60000", "--backoff-max-ms", "2000", "--verbose")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("vdev log:\n%s", log.String())
		}
	})
	return cmd, log
}

func accept(t *testing.T, l net.Listener) *fakeEdge {
	t.Helper()
	_ = l.(*net.TCPListener).SetDeadline(time.Now().Add(20 * time.Second))
	nc, err := l.Accept()
	if err != nil {
		t.Fatalf("the pot did not connect: %v", err)
	}
	t.Cleanup(func() { nc.Close() })
	return &fakeEdge{t: t, nc: nc, r: bufio.NewReader(nc)}
}

func TestHostileServerWithoutTheSecretCannotRunThePump(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs vdev; skipped with -short")
	}
	vdev := buildVdev(t)
	secret := strings.Repeat("5a", 32)
	wrongKey := []byte("not the pot's secret")
	for _, tc := range []struct {
		name  string
		proof func(dn, sn []byte) []byte
	}{
		{"no proof", func(dn, sn []byte) []byte { return nil }},
		{"proof under another key", func(dn, sn []byte) []byte { return messages.ServerProof(wrongKey, dn, sn) }},
		{"the pot's own MAC replayed", func(dn, sn []byte) []byte {
			key, _ := hex.DecodeString(secret)
			return messages.MAC(key, dn, sn, "hostile-pot")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			_, log := startVdev(t, vdev, l.Addr().String(), secret)

			e := accept(t, l)
			e.handshake(&devicepb.Config{MaxWaterMs: oneHourMs, ReportIntervalS: 1}, tc.proof)
			e.write(water("one-hour", oneHourMs))
			// The pot answers with Close(AUTH_FAILED) and hangs up; no result, no reading.
			var closed *devicepb.Close
			for {
				f, err := e.read()
				if err != nil {
					break
				}
				switch b := f.Body.(type) {
				case *devicepb.Frame_Close:
					closed = b.Close
				default:
					t.Fatalf("the pot sent %T to a server that did not prove the secret", f.Body)
				}
			}
			if closed == nil || closed.Reason != devicepb.CloseReason_CLOSE_REASON_AUTH_FAILED {
				t.Fatalf("close: %v, want AUTH_FAILED", closed)
			}
			// It comes back after a backoff (not at once), and is refused the same way again.
			start := time.Now()
			e2 := accept(t, l)
			if gap := time.Since(start); gap < 300*time.Millisecond {
				t.Errorf("the pot reconnected after %v: no backoff", gap)
			}
			e2.handshake(&devicepb.Config{MaxWaterMs: oneHourMs}, tc.proof)
			e2.write(water("one-hour", oneHourMs))
			for {
				f, err := e2.read()
				if err != nil {
					break
				}
				if f.GetClose() == nil {
					t.Fatalf("the pot sent %T on the second try", f.Body)
				}
			}
			if out := log.String(); strings.Contains(out, "pump on") || !strings.Contains(out, "server proof") {
				t.Fatalf("the pump ran, or the refusal was not logged:\n%s", out)
			}
		})
	}
}

func TestCompromisedServerCannotExceedTheHardLimits(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs vdev; skipped with -short")
	}
	vdev := buildVdev(t)
	secret := strings.Repeat("a7", 32)
	key, _ := hex.DecodeString(secret)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, log := startVdev(t, vdev, l.Addr().String(), secret)
	e := accept(t, l)
	e.handshake(&devicepb.Config{MaxWaterMs: oneHourMs, MinWaterIntervalS: 1, ReportIntervalS: 1},
		func(dn, sn []byte) []byte { return messages.ServerProof(key, dn, sn) })
	e.write(water("one-hour", oneHourMs))
	e.write(water("two-minutes", 120000))
	got := map[string]*devicepb.CommandResult{}
	for len(got) < 2 {
		f, err := e.read()
		if err != nil {
			t.Fatalf("reading results: %v (have %v)", err, got)
		}
		switch b := f.Body.(type) {
		case *devicepb.Frame_CommandResult:
			got[b.CommandResult.CommandId] = b.CommandResult
		case *devicepb.Frame_Telemetry:
			e.write(&devicepb.Frame{Body: &devicepb.Frame_Ack{Ack: &devicepb.Ack{Seq: b.Telemetry.Seq}}})
		}
	}
	for id, r := range got {
		if r.Status != devicepb.CommandStatus_COMMAND_STATUS_REJECTED || !strings.Contains(r.Detail, "exceeds max_water_ms 60000") {
			t.Errorf("%s: %v %q, want REJECTED by the 60 s hard limit", id, r.Status, r.Detail)
		}
	}
	if strings.Contains(log.String(), "pump on") {
		t.Fatalf("the pump ran:\n%s", log.String())
	}
}
