package baseline_test

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/sprout-iot/sprout/actors/actortest"
	"github.com/sprout-iot/sprout/messages"
	"github.com/sprout-iot/sprout/messages/devicepb"
	"github.com/sprout-iot/sprout/simulations/baseline"
	"github.com/sprout-iot/sprout/simulations/fleet"
	"github.com/sprout-iot/sprout/simulations/plant"
)

var secret = []byte("0123456789abcdef")

func start(t testing.TB, srv *baseline.Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if srv.SecretFor == nil {
		srv.SecretFor = func(id string) ([]byte, bool) { return secret, id == "pot-1" }
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ln.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String()
}

func dial(t *testing.T, addr string) *plant.Conn {
	t.Helper()
	c, err := plant.Dial(addr, "", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestHandshakeRefusalsSayWhy(t *testing.T) {
	addr := start(t, &baseline.Server{})
	for _, tc := range []struct {
		name string
		id   string
		key  []byte
		want devicepb.CloseReason
	}{
		{"unknown device", "pot-2", secret, devicepb.CloseReason_CLOSE_REASON_UNKNOWN_DEVICE},
		{"wrong secret", "pot-1", []byte("nope"), devicepb.CloseReason_CLOSE_REASON_AUTH_FAILED},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := dial(t, addr).Handshake(plant.Hello{DeviceID: tc.id, Secret: tc.key}, time.Second)
			ce, ok := err.(*plant.ErrClosed)
			if !ok || ce.Reason != tc.want {
				t.Fatalf("got %v, want Close %s", err, tc.want)
			}
		})
	}
}

func TestOldProtocolVersionIsRefused(t *testing.T) {
	c := dial(t, start(t, &baseline.Server{}))
	_ = c.Send(&devicepb.Frame{Body: &devicepb.Frame_Hello{Hello: &devicepb.Hello{
		DeviceId: "pot-1", ProtocolVersion: 9, DeviceNonce: make([]byte, 16)}}})
	f, err := c.Recv(time.Second)
	if err != nil || f.GetClose().GetReason() != devicepb.CloseReason_CLOSE_REASON_UNSUPPORTED_VERSION {
		t.Fatalf("got %v, %v; want Close UNSUPPORTED_VERSION", f, err)
	}
}

func TestEveryTelemetryAndEventIsAckedAndPingsArePonged(t *testing.T) {
	hb := &devicepb.Config{ReportIntervalS: 5, HeartbeatIntervalS: 7}
	c := dial(t, start(t, &baseline.Server{Config: hb}))
	w, err := c.Handshake(plant.Hello{DeviceID: "pot-1", Secret: secret}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if w.Config.GetHeartbeatIntervalS() != 7 || w.LastSeq != 0 || w.SessionId == "" {
		t.Fatalf("welcome %v", w)
	}
	// A burst in one write: the acks come back in order.
	var burst []byte
	for seq := uint64(1); seq <= 100; seq++ {
		f := &devicepb.Frame{Body: &devicepb.Frame_Telemetry{Telemetry: &devicepb.Telemetry{Seq: seq}}}
		if seq%10 == 0 {
			f = &devicepb.Frame{Body: &devicepb.Frame_Event{Event: &devicepb.Event{Seq: seq, Kind: devicepb.EventKind_EVENT_KIND_TANK_EMPTY}}}
		}
		burst, _ = messages.AppendFrame(burst, f)
	}
	burst, _ = messages.AppendFrame(burst, &devicepb.Frame{Body: &devicepb.Frame_Ping{Ping: &devicepb.Ping{Nonce: 5}}})
	if err := c.SendRaw(burst); err != nil {
		t.Fatal(err)
	}
	for seq := uint64(1); seq <= 100; seq++ {
		f, err := c.Recv(time.Second)
		if err != nil || f.GetAck().GetSeq() != seq {
			t.Fatalf("frame %v, %v; want Ack %d", f, err, seq)
		}
	}
	if f, err := c.Recv(time.Second); err != nil || f.GetPong().GetNonce() != 5 {
		t.Fatalf("got %v, %v; want Pong 5", f, err)
	}
}

func TestOversizedFrameClosesTheConnection(t *testing.T) {
	c := dial(t, start(t, &baseline.Server{}))
	if _, err := c.Handshake(plant.Hello{DeviceID: "pot-1", Secret: secret}, time.Second); err != nil {
		t.Fatal(err)
	}
	_ = c.SendRaw([]byte{0xff, 0x7f}) // a length prefix of 16383
	f, err := c.Recv(time.Second)
	if err != nil || f.GetClose().GetReason() != devicepb.CloseReason_CLOSE_REASON_FRAME_TOO_LARGE {
		t.Fatalf("got %v, %v; want Close FRAME_TOO_LARGE", f, err)
	}
}

func TestCloseConnectionsTellsDevicesWhenToComeBack(t *testing.T) {
	srv := &baseline.Server{}
	c := dial(t, start(t, srv))
	if _, err := c.Handshake(plant.Hello{DeviceID: "pot-1", Secret: secret}, time.Second); err != nil {
		t.Fatal(err)
	}
	actortest.Eventually(t, 5*time.Second, "the connection open at the server", func() bool {
		return srv.CloseConnections(devicepb.CloseReason_CLOSE_REASON_SERVER_SHUTDOWN, 250*time.Millisecond) > 0
	})
	f, err := c.Recv(time.Second)
	if err != nil || f.GetClose().GetReconnectAfterMs() != 250 {
		t.Fatalf("got %v, %v; want Close with reconnect_after_ms 250", f, err)
	}
}

// BenchmarkBaselineTelemetry runs a fleet against the baseline server on loopback for a few
// seconds and reports acked frames per second and ack latency. Flood cases measure throughput; their
// latency is mostly queueing (Little's law: devices x window / throughput), so the paced case, well
// below saturation, is the one to read latency from. Fleet and server share the machine's cores, so
// the numbers are for comparison with the real server in the same run, not absolute. Each
// sub-benchmark runs once whatever b.N is.
func BenchmarkBaselineTelemetry(b *testing.B) {
	for _, bc := range []struct {
		devices, window int
		every           time.Duration
	}{
		{200, 1, plant.Flood}, {200, 16, plant.Flood}, {2000, 4, plant.Flood},
		{200, 4, 20 * time.Millisecond}, {2000, 4, 200 * time.Millisecond},
	} {
		name := fmt.Sprintf("devices=%d/window=%d/flood", bc.devices, bc.window)
		if bc.every != plant.Flood {
			name = fmt.Sprintf("devices=%d/window=%d/every=%v", bc.devices, bc.window, bc.every)
		}
		b.Run(name, func(b *testing.B) {
			creds := fleet.NewCredentials("pot", bc.devices)
			addr := start(b, &baseline.Server{SecretFor: fleet.Secrets(creds)})
			b.ResetTimer()
			r, err := fleet.Run(context.Background(), fleet.Options{
				Devices: creds, Servers: []string{addr}, ConnectRate: 5000,
				ReportInterval: bc.every, Window: bc.window, Duration: 4 * time.Second,
			})
			if err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			if r.ConnectedFinal != int64(bc.devices) || len(r.Errors) > 0 {
				b.Fatalf("connected %d of %d, errors %v", r.ConnectedFinal, bc.devices, r.Errors)
			}
			rate := r.SteadyFramesPerSecond
			if rate == 0 {
				rate = r.FramesPerSecond
			}
			b.ReportMetric(rate, "frames/s")
			b.ReportMetric(r.FramesPerCPUSecond, "frames/cpu-s")
			b.ReportMetric(float64(r.AckLatency.P50)/1e3, "p50_us")
			b.ReportMetric(float64(r.AckLatency.P99)/1e3, "p99_us")
			b.ReportMetric(float64(r.AckLatency.P999)/1e3, "p999_us")
			b.ReportMetric(0, "ns/op")
			b.Log("\n" + r.Summary())
		})
	}
}
