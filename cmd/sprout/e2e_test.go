package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sprout-iot/sprout/actors/actortest"
	"github.com/sprout-iot/sprout/messages/devicepb"
	"github.com/sprout-iot/sprout/simulations/fleet"
	"github.com/sprout-iot/sprout/simulations/plant"
)

// These tests run the real binary as a separate process, as an operator would.

var sproutBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sprout-e2e")
	if err != nil {
		panic(err)
	}
	sproutBin = filepath.Join(dir, "sprout")
	// Nodes started by these tests listen where each test says; MQTT's default port (:1883) would
	// be shared by every node started at once. The MQTT tests set their own address.
	os.Setenv("SPROUT_MQTT_ADDR", "")
	if out, err := exec.Command("go", "build", "-o", sproutBin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building sprout: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// handedOut holds the ports freeAddr has returned: a port is free until its server binds it, so
// without this two addresses of one test (or of two parallel tests) could be the same port.
var handedOut sync.Map

// freeAddr picks a free loopback port below the kernel's ephemeral range (32768-60999), so
// that no outgoing connection can take it while a test restarts a server on the same address.
// It never returns a port twice in one test binary.
func freeAddr(t *testing.T) string {
	t.Helper()
	for i := 0; i < 100; i++ {
		port := 20000 + rand.IntN(12000)
		if _, taken := handedOut.LoadOrStore(port, true); taken {
			continue
		}
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		ln.Close()
		return addr
	}
	t.Fatal("no free port below the ephemeral range")
	return ""
}

type server struct {
	cmd      *exec.Cmd
	edge     string
	http     string
	dataDir  string
	token    string
	logs     *bytes.Buffer
	extraEnv []string
}

func newServer(t *testing.T, dataDir string) *server {
	return &server{edge: freeAddr(t), http: freeAddr(t), dataDir: dataDir, token: "e2e-token", logs: &bytes.Buffer{}}
}

func (s *server) start(t *testing.T) {
	t.Helper()
	s.cmd = exec.Command(sproutBin, "serve")
	s.cmd.Env = append(os.Environ(), "SPROUT_DATA_DIR="+s.dataDir, "SPROUT_EDGE_ADDR="+s.edge,
		"SPROUT_HTTP_ADDR="+s.http, "SPROUT_ADMIN_TOKEN="+s.token, "SPROUT_LOG_LEVEL=warn")
	s.cmd.Env = append(s.cmd.Env, s.extraEnv...)
	s.cmd.Stdout, s.cmd.Stderr = s.logs, s.logs
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if s.cmd.ProcessState == nil {
			_ = s.cmd.Process.Kill()
			_ = s.cmd.Wait()
		}
		if t.Failed() {
			t.Logf("server log:\n%s", s.logs.String())
		}
	})
	// The server's log is printed by the cleanup above if this fails.
	actortest.Eventually(t, 20*time.Second, "sprout serve ready (GET /readyz 200)", func() bool {
		resp, err := http.Get("http://" + s.http + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
}

func (s *server) kill(t *testing.T) {
	t.Helper()
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	_ = s.cmd.Wait()
}

func (s *server) get(t *testing.T, path string, v any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+s.http+path, nil)
	req.Header.Set("Authorization", "Bearer "+s.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s %s", path, resp.Status, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
}

func provisionDevices(t *testing.T, dataDir, prefix string, n int) []fleet.Credential {
	t.Helper()
	out, err := exec.Command(sproutBin, "device", "add", "--data-dir", dataDir, "--count", fmt.Sprint(n), "--prefix", prefix, "--json").Output()
	if err != nil {
		t.Fatalf("device add: %v", err)
	}
	var cs []fleet.Credential
	if err := json.Unmarshal(out, &cs); err != nil {
		t.Fatalf("device add output: %v\n%s", err, out)
	}
	return cs
}

func TestServeWithSim(t *testing.T) {
	dir := t.TempDir()
	creds := provisionDevices(t, dir, "e2e-", 50)
	credFile := filepath.Join(dir, "creds.json")
	b, _ := json.Marshal(creds)
	_ = os.WriteFile(credFile, b, 0o600)
	s := newServer(t, dir)
	s.start(t)
	repFile := filepath.Join(dir, "report.json")
	out, err := exec.Command(sproutBin, "sim", "--server", s.edge, "--creds", credFile, "--devices", "50",
		"--duration", "4s", "--report-interval", "100ms", "--json", repFile, "--quiet").CombinedOutput()
	if err != nil {
		t.Fatalf("sim: %v\n%s", err, out)
	}
	var rep fleet.Report
	rb, _ := os.ReadFile(repFile)
	if err := json.Unmarshal(rb, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.ConnectedMax != 50 || rep.FramesAcked == 0 || rep.FramesAcked+uint64(50) < rep.FramesSent {
		t.Fatalf("sim report: connected %d, sent %d, acked %d\n%s", rep.ConnectedMax, rep.FramesSent, rep.FramesAcked, out)
	}
	var state struct {
		LastSeq uint64 `json:"last_seq"`
	}
	s.get(t, "/api/v1/devices/e2e-0001", &state)
	if state.LastSeq == 0 {
		t.Fatal("no telemetry stored for e2e-0001")
	}
}

// TestAckedFramesSurviveSIGKILL: frames are acked only once stored. Devices stream readings; the
// server is SIGKILLed mid-stream and restarted; every acked frame is in the store, and the resent
// frames (the devices resend everything not acked, and some that were) are not stored twice.
func TestAckedFramesSurviveSIGKILL(t *testing.T) {
	dir := t.TempDir()
	const devices = 20
	creds := provisionDevices(t, dir, "kill-", devices)
	s := newServer(t, dir)
	s.start(t)

	var mu sync.Mutex
	acked := map[string]map[uint64]bool{}
	sent := map[string]uint64{}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, c := range creds {
		acked[c.ID] = map[uint64]bool{}
		wg.Add(1)
		go func(c fleet.Credential) {
			defer wg.Done()
			conn, err := plant.Dial(s.edge, "", time.Second)
			if err != nil {
				return
			}
			defer conn.Close()
			if _, err := conn.Handshake(plant.Hello{DeviceID: c.ID, Secret: c.Secret}, 5*time.Second); err != nil {
				return
			}
			for seq := uint64(1); ctx.Err() == nil; seq++ {
				mu.Lock()
				sent[c.ID] = seq
				mu.Unlock()
				err := conn.Report(&devicepb.Telemetry{Seq: seq, SoilMoisturePct: 40, TemperatureC: 20, TankLevelPct: 80}, 2*time.Second, nil)
				if err != nil {
					return // the server died
				}
				mu.Lock()
				acked[c.ID][seq] = true
				mu.Unlock()
			}
		}(c)
	}
	// Kill mid-stream: once every device has had ten frames acked.
	actortest.Eventually(t, 15*time.Second, "ten acked frames from every device", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, a := range acked {
			if len(a) < 10 {
				return false
			}
		}
		return true
	})
	s.kill(t)
	cancel()
	wg.Wait()
	total := 0
	for _, a := range acked {
		total += len(a)
	}
	if total < devices*10 {
		t.Fatalf("only %d frames acked before the kill; the test needs a stream", total)
	}

	s.start(t)
	// Every device reconnects and resends from seq 1 (a worst case: all of it again).
	for _, c := range creds {
		conn, err := plant.Dial(s.edge, "", time.Second)
		if err != nil {
			t.Fatal(err)
		}
		w, err := conn.Handshake(plant.Hello{DeviceID: c.ID, Secret: c.Secret}, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		maxAcked := uint64(len(acked[c.ID]))
		last := sent[c.ID]
		mu.Unlock()
		if w.LastSeq < maxAcked {
			t.Fatalf("%s: Welcome.last_seq %d < acked %d: an acked frame was lost", c.ID, w.LastSeq, maxAcked)
		}
		for seq := uint64(1); seq <= last; seq++ {
			if err := conn.Report(&devicepb.Telemetry{Seq: seq, SoilMoisturePct: 40, TemperatureC: 20, TankLevelPct: 80}, 2*time.Second, nil); err != nil {
				t.Fatalf("%s resend %d: %v", c.ID, seq, err)
			}
		}
		conn.Close()
		var rs struct {
			Readings []struct {
				Seq uint64 `json:"seq"`
			} `json:"readings"`
		}
		s.get(t, "/api/v1/devices/"+c.ID+"/readings?limit=10000&from=2000-01-01T00:00:00Z", &rs)
		seen := map[uint64]int{}
		for _, r := range rs.Readings {
			seen[r.Seq]++
		}
		for seq := range acked[c.ID] {
			if seen[seq] == 0 {
				t.Fatalf("%s: acked seq %d missing after SIGKILL", c.ID, seq)
			}
		}
		for seq, n := range seen {
			if n > 1 {
				t.Fatalf("%s: seq %d stored %d times", c.ID, seq, n)
			}
		}
		if uint64(len(seen)) != last {
			t.Fatalf("%s: %d distinct readings stored, want %d", c.ID, len(seen), last)
		}
	}
}

func TestDeviceAddRefusesADuplicateAndBadIDs(t *testing.T) {
	dir := t.TempDir()
	if out, err := exec.Command(sproutBin, "device", "add", "--data-dir", dir, "--id", "pot-a").CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	for _, id := range []string{"pot-a", "has space", ""} {
		args := []string{"device", "add", "--data-dir", dir, "--id", id}
		if id == "" {
			args = append(args, "--secret", "zz")
		}
		out, err := exec.Command(sproutBin, args...).CombinedOutput()
		if err == nil {
			t.Fatalf("device add %q should fail: %s", id, out)
		}
	}
	out, err := exec.Command(sproutBin, "device", "list", "--data-dir", dir).Output()
	if err != nil || !bytes.Contains(out, []byte("pot-a")) || bytes.Contains(out, []byte("secret")) {
		t.Fatalf("device list: %v %s", err, out)
	}
	_ = hex.EncodeToString
}

func TestServeHelpDocumentsTheEnvironment(t *testing.T) {
	out, _ := exec.Command(sproutBin, "serve", "--help").CombinedOutput()
	for _, v := range []string{"SPROUT_DATA_DIR", "SPROUT_EDGE_ADDR", "SPROUT_HTTP_ADDR", "SPROUT_DB", "SPROUT_IDLE_TIMEOUT", "SPROUT_MAX_CONNECTIONS"} {
		if !bytes.Contains(out, []byte(v)) {
			t.Errorf("serve --help does not mention %s", v)
		}
	}
}

func TestSecondServerOnTheSameDataDirIsRefused(t *testing.T) {
	dir := t.TempDir()
	s := newServer(t, dir)
	s.start(t)
	cmd := exec.Command(sproutBin, "serve")
	cmd.Env = append(os.Environ(), "SPROUT_DATA_DIR="+dir, "SPROUT_EDGE_ADDR="+freeAddr(t), "SPROUT_HTTP_ADDR="+freeAddr(t))
	out, err := cmd.CombinedOutput()
	if err == nil || !bytes.Contains(out, []byte("in use")) {
		t.Fatalf("a second node on the same SQLite data dir must be refused with a clear message: %v %s", err, out)
	}
}

// TestSimSpreadsPlantsOverProcesses: `sprout sim --processes 3` runs the plants in three child
// processes on their own source addresses and merges their reports.
func TestSimSpreadsPlantsOverProcesses(t *testing.T) {
	dir := t.TempDir()
	creds := provisionDevices(t, dir, "mp-", 30)
	credFile := filepath.Join(dir, "creds.json")
	b, _ := json.Marshal(creds)
	_ = os.WriteFile(credFile, b, 0o600)
	s := newServer(t, dir)
	s.start(t)
	repFile := filepath.Join(dir, "report.json")
	out, err := exec.Command(sproutBin, "sim", "--processes", "3", "--server", s.edge, "--creds", credFile, "--devices", "30",
		"--duration", "3s", "--report-interval", "100ms", "--json", repFile, "--quiet").CombinedOutput()
	if err != nil {
		t.Fatalf("sim: %v\n%s", err, out)
	}
	var rep fleet.Report
	rb, _ := os.ReadFile(repFile)
	if err := json.Unmarshal(rb, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Devices != 30 || rep.ConnectedMax != 30 || rep.FramesAcked == 0 {
		t.Fatalf("merged report: devices %d connected %d acked %d\n%s", rep.Devices, rep.ConnectedMax, rep.FramesAcked, out)
	}
	if !bytes.Contains(out, []byte("3 processes")) {
		t.Fatalf("summary: %s", out)
	}
}
