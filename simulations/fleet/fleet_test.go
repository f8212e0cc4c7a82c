package fleet_test

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sprout-iot/sprout/messages/devicepb"
	"github.com/sprout-iot/sprout/simulations/baseline"
	"github.com/sprout-iot/sprout/simulations/fleet"
	"github.com/sprout-iot/sprout/simulations/plant"
)

func startBaseline(t testing.TB, creds []fleet.Credential, tune func(*baseline.Server)) (*baseline.Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &baseline.Server{SecretFor: fleet.Secrets(creds)}
	if tune != nil {
		tune(srv)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { ln.Close(); <-done })
	return srv, ln.Addr().String()
}

func TestFleetAgainstBaselineGetsEveryFrameAcked(t *testing.T) {
	creds := fleet.NewCredentials("pot", 200)
	srv, addr := startBaseline(t, creds, nil)
	var progress int
	r, err := fleet.Run(context.Background(), fleet.Options{
		Devices: creds, Servers: []string{addr}, ConnectRate: 2000,
		ReportInterval: 20 * time.Millisecond, Window: 4, Duration: 3 * time.Second,
		Progress: func(fleet.Snapshot) { progress++ },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + r.Summary())
	if r.ConnectedMax != 200 || r.ConnectedFinal != 200 || r.Reconnects != 0 {
		t.Errorf("connected max %d, final %d, reconnects %d: want 200, 200, 0", r.ConnectedMax, r.ConnectedFinal, r.Reconnects)
	}
	if r.FramesSent == 0 || r.FramesSent != r.FramesAcked || r.FramesAcked != srv.Acks() || r.FramesDropped != 0 {
		t.Errorf("sent %d, acked %d, server acked %d, dropped %d: want every sent frame acked",
			r.FramesSent, r.FramesAcked, srv.Acks(), r.FramesDropped)
	}
	// 200 plants every 20 ms is 10k frames/s at most. On a shared 2-core machine under -race the
	// schedule slips a lot, so the lower bound only catches a stall.
	if r.FramesPerSecond < 1000 || r.FramesPerSecond > 10500 {
		t.Errorf("%.0f frames/s, want at most 10k and not a stall", r.FramesPerSecond)
	}
	l := r.AckLatency
	if l.Count != r.FramesAcked || l.P50 <= 0 || l.P50 > l.P90 || l.P90 > l.P99 || l.P99 > l.P999 || l.P999 > l.Max {
		t.Errorf("latency %+v is not ordered or misses samples", l)
	}
	if len(r.Errors) != 0 || len(r.Series) < 2 || progress != len(r.Series) {
		t.Errorf("errors %v, %d seconds in the series, %d progress calls", r.Errors, len(r.Series), progress)
	}
}

func TestFleetResendsWithoutGapsAfterTheServerClosesEveryConnection(t *testing.T) {
	const devices = 50
	creds := fleet.NewCredentials("pot", devices)
	var mu sync.Mutex
	maxSeq := map[string]uint64{}
	var gaps []string
	srv, addr := startBaseline(t, creds, func(s *baseline.Server) {
		s.OnAck = func(id string, seq uint64) {
			mu.Lock()
			defer mu.Unlock()
			if seq > maxSeq[id]+1 && len(gaps) < 10 {
				gaps = append(gaps, id)
			}
			maxSeq[id] = max(maxSeq[id], seq)
		}
	})
	closeAt := time.AfterFunc(time.Second, func() {
		srv.CloseConnections(devicepb.CloseReason_CLOSE_REASON_SERVER_SHUTDOWN, 100*time.Millisecond)
	})
	defer closeAt.Stop()
	r, err := fleet.Run(context.Background(), fleet.Options{
		Devices: creds, Servers: []string{addr}, ConnectRate: 1000,
		ReportInterval: plant.Flood, Window: 8, Duration: 2500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + r.Summary())
	if r.Reconnects != devices || r.ConnectedFinal != devices {
		t.Errorf("reconnects %d, connected at stop %d: want %d each", r.Reconnects, r.ConnectedFinal, devices)
	}
	if r.FramesResent == 0 {
		t.Error("no frame was resent, though the server closed with frames in flight")
	}
	if r.Errors["closed: SERVER_SHUTDOWN"] != devices || len(r.Errors) != 1 {
		t.Errorf("errors %v: want %d SERVER_SHUTDOWN closes and nothing else", r.Errors, devices)
	}
	// Flood only makes a reading when it can send it, and shutdown waits for in-flight acks: every
	// reading is acknowledged exactly once.
	if r.Stats.Readings != r.FramesAcked || r.FramesDropped != 0 {
		t.Errorf("readings %d, acked %d, dropped %d", r.Stats.Readings, r.FramesAcked, r.FramesDropped)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(gaps) > 0 || len(maxSeq) != devices {
		t.Errorf("seq gaps at %v; %d devices seen", gaps, len(maxSeq))
	}
}

func TestRefusedDevicesAreCountedByReason(t *testing.T) {
	good := fleet.NewCredentials("pot", 3)
	_, addr := startBaseline(t, good, nil)
	wrong := fleet.NewCredentials("pot", 2) // same ids, other secrets
	unknown := fleet.NewCredentials("stranger", 4)
	r, err := fleet.Run(context.Background(), fleet.Options{
		Devices: append(wrong, unknown...), Servers: []string{addr}, Duration: 500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if r.Errors["closed: AUTH_FAILED"] != 2 || r.Errors["closed: UNKNOWN_DEVICE"] != 4 || r.ConnectedMax != 0 {
		t.Fatalf("errors %v, connected max %d: want 2 AUTH_FAILED, 4 UNKNOWN_DEVICE, one attempt each", r.Errors, r.ConnectedMax)
	}
}

func TestCredentialsReadTheDeviceAddFormatAndRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "devices.json")
	if err := os.WriteFile(path, []byte(`[{"id":"pot-1","secret":"00ff10"},{"id":"pot-2","secret":"abcd"}]`), 0o600); err != nil {
		t.Fatal(err)
	}
	creds, err := fleet.LoadCredentials(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(creds) != 2 || creds[0].ID != "pot-1" || string(creds[0].Secret) != "\x00\xff\x10" {
		t.Fatalf("loaded %+v", creds)
	}
	again := filepath.Join(dir, "again.json")
	if err := fleet.SaveCredentials(again, creds); err != nil {
		t.Fatal(err)
	}
	back, err := fleet.LoadCredentials(again)
	if err != nil || len(back) != 2 || string(back[1].Secret) != string(creds[1].Secret) {
		t.Fatalf("round trip gave %+v, %v", back, err)
	}
	for name, body := range map[string]string{
		"not hex":   `[{"id":"a","secret":"zz"}]`,
		"no secret": `[{"id":"a"}]`,
		"not array": `{"id":"a","secret":"00"}`,
	} {
		p := filepath.Join(dir, "bad.json")
		_ = os.WriteFile(p, []byte(body), 0o600)
		if _, err := fleet.LoadCredentials(p); err == nil {
			t.Errorf("%s: loaded without error", name)
		}
	}
}

func TestReportIsJSONAndFitsOneScreen(t *testing.T) {
	creds := fleet.NewCredentials("pot", 20)
	_, addr := startBaseline(t, creds, nil)
	r, err := fleet.Run(context.Background(), fleet.Options{
		Devices: creds, Servers: []string{addr}, ReportInterval: 10 * time.Millisecond, Duration: 1500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var back fleet.Report
	if err := json.Unmarshal(b, &back); err != nil || back.FramesAcked != r.FramesAcked || back.AckLatency.P99 != r.AckLatency.P99 {
		t.Fatalf("JSON round trip: %v, acked %d vs %d", err, back.FramesAcked, r.FramesAcked)
	}
	if lines := strings.Count(r.Summary(), "\n"); lines > 24 {
		t.Fatalf("summary has %d lines", lines)
	}
	for _, want := range []string{"20 devices", "p99", "acked/s"} {
		if !strings.Contains(r.Summary(), want) {
			t.Fatalf("summary lacks %q:\n%s", want, r.Summary())
		}
	}
}

func TestRunRejectsEmptyOptions(t *testing.T) {
	if _, err := fleet.Run(context.Background(), fleet.Options{Servers: []string{"127.0.0.1:1"}}); err == nil {
		t.Error("no devices: want an error")
	}
	if _, err := fleet.Run(context.Background(), fleet.Options{Devices: fleet.NewCredentials("p", 1)}); err == nil {
		t.Error("no servers: want an error")
	}
}
