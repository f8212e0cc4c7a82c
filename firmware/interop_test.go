package firmware_test

// Interop: the C firmware (vdev, the POSIX port) against the real server (sprout serve).
// Three virtual pots authenticate and report; one starts dry and raises an alert; one waters on
// command and returns its result; one stays silent and the command times out. Then the server
// is SIGKILLed and restarted on the same store: the pots reconnect, resend what was not acked,
// and no seq is stored twice or lost.
//
// It builds vdev with `make -C firmware vdev` and the server with `go build ./cmd/sprout`, and is
// skipped only when cmd/sprout does not exist (or with -short).

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sprout-iot/sprout/actors/actortest"
)

type pot struct {
	id, secret string
	flags      []string
	cmd        *exec.Cmd
	log        *lockedBuffer
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type server struct {
	bin, dataDir, edge, http string
	extraEnv                 []string // more SPROUT_* settings (TLS)
	cmd                      *exec.Cmd
	log                      *lockedBuffer
}

const adminToken = "interop-token"

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func (s *server) start(t *testing.T) {
	t.Helper()
	s.log = &lockedBuffer{}
	s.cmd = exec.Command(s.bin, "serve")
	s.cmd.Env = append(os.Environ(), "SPROUT_DATA_DIR="+s.dataDir, "SPROUT_EDGE_ADDR="+s.edge,
		"SPROUT_HTTP_ADDR="+s.http, "SPROUT_ADMIN_TOKEN="+adminToken, "SPROUT_LOG_FORMAT=text", "SPROUT_DB=")
	// Only the listeners a test asks for (the MQTT and TLS defaults are fixed ports); extraEnv
	// comes last and wins.
	s.cmd.Env = append(s.cmd.Env, "SPROUT_MQTT_ADDR=", "SPROUT_MQTTS_ADDR=", "SPROUT_EDGE_TLS_ADDR=")
	s.cmd.Env = append(s.cmd.Env, s.extraEnv...)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start sprout serve: %v", err)
	}
	actortest.Eventually(t, 20*time.Second, "sprout serve /healthz", func() bool {
		resp, err := http.Get("http://" + s.http + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

func (s *server) kill(t *testing.T) {
	t.Helper()
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	_ = s.cmd.Wait()
	s.cmd = nil
}

func api(t *testing.T, s *server, method, path string, body any, out any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, "http://"+s.http+path, rd)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: %d %s: %v", method, path, resp.StatusCode, raw, err)
		}
	}
	return resp.StatusCode
}

type deviceJSON struct {
	Online  bool   `json:"online"`
	LastSeq uint64 `json:"last_seq"`
	Alerts  []struct {
		Kind   string `json:"kind"`
		Active bool   `json:"active"`
	} `json:"alerts"`
}

type outcomeJSON struct {
	CommandID string `json:"command_id"`
	Outcome   string `json:"outcome"`
	Detail    string `json:"detail"`
	WateredMl uint32 `json:"watered_ml"`
}

func device(t *testing.T, s *server, id string) deviceJSON {
	var d deviceJSON
	api(t, s, "GET", "/api/v1/devices/"+id, nil, &d)
	return d
}

// storedSeqs returns every seq the server stored for id (readings and events), in order.
func storedSeqs(t *testing.T, s *server, id string, since time.Time) []uint64 {
	t.Helper()
	q := "?from=" + since.Add(-time.Minute).UTC().Format(time.RFC3339) + "&to=" +
		time.Now().Add(time.Minute).UTC().Format(time.RFC3339) + "&limit=100000"
	var rs struct {
		Readings []struct {
			Seq uint64 `json:"seq"`
		} `json:"readings"`
	}
	var es struct {
		Events []struct {
			Seq uint64 `json:"seq"`
		} `json:"events"`
	}
	api(t, s, "GET", "/api/v1/devices/"+id+"/readings"+q, nil, &rs)
	api(t, s, "GET", "/api/v1/devices/"+id+"/events"+q, nil, &es)
	var seqs []uint64
	for _, r := range rs.Readings {
		seqs = append(seqs, r.Seq)
	}
	for _, e := range es.Events {
		if e.Seq != 0 {
			seqs = append(seqs, e.Seq)
		}
	}
	return seqs
}

func repoRoot(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(wd) // this file lives in firmware/
}

func TestInteropVirtualDevicesAgainstSproutServe(t *testing.T) {
	if testing.Short() {
		t.Skip("interop test builds and runs processes; skipped with -short")
	}
	root := repoRoot(t)
	if _, err := os.Stat(filepath.Join(root, "cmd", "sprout")); err != nil {
		t.Skip("cmd/sprout does not exist yet: nothing to interoperate with")
	}
	tmp := t.TempDir()
	if out, err := exec.Command("make", "-C", filepath.Join(root, "firmware"), "vdev").CombinedOutput(); err != nil {
		t.Fatalf("make -C firmware vdev: %v\n%s", err, out)
	}
	vdev := filepath.Join(root, "firmware", "build", "vdev")
	bin := filepath.Join(tmp, "sprout")
	build := exec.Command("go", "build", "-o", bin, "./cmd/sprout")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/sprout: %v\n%s", err, out)
	}

	srv := &server{bin: bin, dataDir: filepath.Join(tmp, "data"), edge: freePort(t), http: freePort(t)}
	pots := []*pot{
		{id: "interop-pot-1"},
		{id: "interop-pot-dry", flags: []string{"--start-dry", "--dry-rate", "0"}},
		{id: "interop-pot-silent", flags: []string{"--silent"}},
	}
	secretLine := regexp.MustCompile(`id=(\S+) secret=([0-9a-f]+)`)
	for _, p := range pots {
		out, err := exec.Command(bin, "device", "add", "--data-dir", srv.dataDir, "--id", p.id).CombinedOutput()
		m := secretLine.FindStringSubmatch(string(out))
		if err != nil || m == nil || m[1] != p.id {
			t.Fatalf("sprout device add --id %s: %v\n%s", p.id, err, out)
		}
		p.secret = m[2]
	}

	started := time.Now()
	srv.start(t)
	t.Cleanup(func() {
		if srv.cmd != nil {
			_ = srv.cmd.Process.Signal(syscall.SIGTERM)
			_ = srv.cmd.Wait()
		}
		if t.Failed() {
			t.Logf("server log:\n%s", srv.log.String())
		}
	})
	for _, p := range pots {
		args := append([]string{"--server", srv.edge, "--id", p.id, "--secret", p.secret,
			"--state-dir", filepath.Join(tmp, p.id), "--report-interval-ms", "400", "--backoff-max-ms", "2000"}, p.flags...)
		p.log = &lockedBuffer{}
		p.cmd = exec.Command(vdev, args...)
		p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
		if err := p.cmd.Start(); err != nil {
			t.Fatalf("start vdev: %v", err)
		}
		t.Cleanup(func() {
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			_ = p.cmd.Wait()
			if t.Failed() {
				t.Logf("%s log:\n%s", p.id, p.log.String())
			}
		})
	}

	// Authenticate and report.
	for _, p := range pots {
		actortest.Eventually(t, 20*time.Second, p.id+" online with readings", func() bool {
			d := device(t, srv, p.id)
			return d.Online && d.LastSeq >= 3
		})
	}

	// Raise an alert: the dry pot reports moisture under the threshold.
	actortest.Eventually(t, 20*time.Second, "a soil_dry alert on the dry pot", func() bool {
		for _, a := range device(t, srv, "interop-pot-dry").Alerts {
			if a.Kind == "soil_dry" && a.Active {
				return true
			}
		}
		return false
	})

	// A water command runs the pump and returns its result.
	var res outcomeJSON
	api(t, srv, "POST", "/api/v1/devices/interop-pot-1/commands",
		map[string]any{"kind": "water", "water_ms": 1500, "timeout_ms": 10000}, &res)
	if res.Outcome != "done" || res.WateredMl != 30 {
		t.Fatalf("water command: %+v, want done with 30 ml (1.5 s at 20 ml/s)", res)
	}
	// The same command id again: its result comes back, the pump does not run twice.
	var again outcomeJSON
	api(t, srv, "POST", "/api/v1/devices/interop-pot-1/commands",
		map[string]any{"command_id": res.CommandID, "kind": "water", "water_ms": 1500, "timeout_ms": 10000}, &again)
	if again.Outcome != "done" {
		t.Fatalf("repeated command id: %+v, want its earlier result (done)", again)
	}
	// Safety rules answer REJECTED: watering again within min_water_interval_s.
	var soon outcomeJSON
	api(t, srv, "POST", "/api/v1/devices/interop-pot-1/commands",
		map[string]any{"kind": "water", "water_ms": 1000, "timeout_ms": 10000}, &soon)
	if soon.Outcome != "rejected" || !strings.Contains(soon.Detail, "too soon") {
		t.Fatalf("second water within the minimum interval: %+v, want rejected (too soon)", soon)
	}
	// A pot that never answers: the server times the command out.
	var silent outcomeJSON
	api(t, srv, "POST", "/api/v1/devices/interop-pot-silent/commands",
		map[string]any{"kind": "water", "water_ms": 1000, "timeout_ms": 1500}, &silent)
	if silent.Outcome != "timed_out" {
		t.Fatalf("command to the silent pot: %+v, want timed_out", silent)
	}

	// A command id of non-ASCII characters (36 bytes, the protocol's limit) while the pump runs:
	// the BUSY answer to another command quotes that id, cut to the detail's 64 bytes. Cut in
	// the middle of a character, it was invalid UTF-8: the node dropped the session, the pot
	// reconnected and was sent the open commands again, and so on (about once a second, until
	// the flapping ban). Now the cut is on a character boundary and the session stays up.
	dryLog := pots[1].log
	sessionsBefore := strings.Count(dryLog.String(), "online: session")
	// "busy: the pump is running command " is 34 bytes, leaving 30 for the id: 1 + 29 bytes of
	// this one ends one byte short of a character.
	longID := "w" + strings.Repeat("浇水", 5) + "浇" // 34 bytes
	watered := make(chan outcomeJSON, 1)
	go func() {
		var o outcomeJSON
		api(t, srv, "POST", "/api/v1/devices/interop-pot-dry/commands",
			map[string]any{"command_id": longID, "kind": "water", "water_ms": 3000, "timeout_ms": 10000}, &o)
		watered <- o
	}()
	actortest.Eventually(t, 10*time.Second, "the dry pot's pump running", func() bool {
		return strings.Contains(dryLog.String(), "pump on for 3000 ms")
	})
	var busy outcomeJSON
	api(t, srv, "POST", "/api/v1/devices/interop-pot-dry/commands",
		map[string]any{"kind": "read_now", "timeout_ms": 2000}, &busy)
	if busy.Outcome != "busy" || !strings.Contains(busy.Detail, "浇水") {
		t.Fatalf("a command while the pump runs a non-ASCII command id: %+v, want busy quoting the id", busy)
	}
	if o := <-watered; o.Outcome != "done" || o.WateredMl != 60 {
		t.Fatalf("the non-ASCII water command: %+v, want done with 60 ml", o)
	}
	if n := strings.Count(dryLog.String(), "online: session"); n != sessionsBefore {
		t.Fatalf("the dry pot reconnected %d times during the BUSY answer", n-sessionsBefore)
	}

	// Kill the server hard while the pots keep measuring, then restart it on the same store.
	srv.kill(t)
	time.Sleep(3 * time.Second) // ~7 readings per pot taken while the server is down
	srv.start(t)

	for _, p := range pots {
		// The pot's own counter: everything below it must end up stored exactly once.
		var next uint64
		actortest.Eventually(t, 30*time.Second, p.id+" reconnected and caught up", func() bool {
			b, err := os.ReadFile(filepath.Join(tmp, p.id, "seq"))
			if err != nil || len(b) != 8 {
				return false
			}
			next = 0
			for i := 7; i >= 0; i-- {
				next = next<<8 | uint64(b[i])
			}
			d := device(t, srv, p.id)
			return d.Online && d.LastSeq+1 >= next-1 && next > 10
		})
		seqs := storedSeqs(t, srv, p.id, started)
		seen := map[uint64]int{}
		var max uint64
		for _, s := range seqs {
			seen[s]++
			if s > max {
				max = s
			}
		}
		for s, n := range seen {
			if n > 1 {
				t.Errorf("%s: seq %d stored %d times", p.id, s, n)
			}
		}
		for s := uint64(1); s <= max; s++ {
			if seen[s] == 0 {
				t.Errorf("%s: seq %d missing (stored %d of 1..%d)", p.id, s, len(seen), max)
			}
		}
	}

	// The resend really happened: the pots say so when they stop.
	resent := 0
	for _, p := range pots {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		_ = p.cmd.Wait()
		resent += statField(p.log.String(), "resent")
	}
	if resent <= len(pots) { // each pot resends its boot reading on its first connection
		t.Errorf("the pots resent %d records in all: nothing after the server restart", resent)
	}
	t.Logf("readings resent after the restart: %d", resent)
}

// statField reads a number from vdev's final "stats:" line.
func statField(log, name string) int {
	sc := bufio.NewScanner(strings.NewReader(log))
	n := 0
	for sc.Scan() {
		line := sc.Text()
		if i := strings.Index(line, "stats:"); i >= 0 {
			f := strings.Fields(line[i:])
			for j := 0; j+1 < len(f); j++ {
				if f[j] == name {
					n, _ = strconv.Atoi(f[j+1])
				}
			}
		}
	}
	return n
}
