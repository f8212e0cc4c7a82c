// Command bench runs Sprout's benchmarks end to end and writes docs/benchmarks.md: real server
// processes, the fleet simulator as their clients on the same machine, and each result next to a
// baseline measured in the same run (these machines are shared and noisy).
//
//	go run ./simulations/bench -out docs/benchmarks.md
package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sprout-iot/sprout/simulations/baseline"
	"github.com/sprout-iot/sprout/simulations/fleet"
)

var (
	out        = flag.String("out", "docs/benchmarks.md", "where to write the report (markdown)")
	jsonOut    = flag.String("json", "", "also write the raw results as JSON")
	role       = flag.String("role", "", "internal: run as a baseline server (-role baseline)")
	addr       = flag.String("addr", "", "internal: listen address for -role baseline")
	creds      = flag.String("creds", "", "internal: credentials file for -role baseline")
	devices    = flag.Int("devices", 2000, "plants in the throughput runs")
	window     = flag.Int("window", 4, "frames in flight per plant in the throughput runs")
	duration   = flag.Duration("duration", 12*time.Second, "length of each throughput run")
	idle       = flag.Int("idle-devices", 10000, "plants in the memory and command runs")
	cmdRate    = flag.Int("command-rate", 1000, "commands per second in the command run")
	cmdTime    = flag.Duration("command-duration", 10*time.Second, "length of the command run")
	sproutPath = flag.String("sprout", "", "the sprout binary (default: build ./cmd/sprout)")
	clDevices  = flag.Int("cluster-devices", 300, "plants in the one-node vs three-node run (needs Postgres and Consul); 0 skips it")
	clTime     = flag.Duration("cluster-duration", 10*time.Second, "length of each cluster throughput run")
	wxUsers    = flag.Int("wechat-users", 500, "WeChat users (one pot each) in the tap and alert run; 0 skips it")
	wxRate     = flag.Int("wechat-rate", 1000, "taps per second in the tap run")
	wxTime     = flag.Duration("wechat-duration", 5*time.Second, "length of the tap run")
	pgDSN      = flag.String("postgres", os.Getenv("SPROUT_BENCH_POSTGRES"), "a postgres:// DSN to include the Postgres store (empty: skipped)")
)

func main() {
	flag.Parse()
	if *role == "baseline" {
		runBaselineServer()
		return
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// runBaselineServer is the baseline: the same framing and handshake, then decode and ack only.
func runBaselineServer() {
	cs, err := fleet.LoadCredentials(*creds)
	if err != nil {
		panic(err)
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		panic(err)
	}
	_ = baseline.Serve(ln, fleet.Secrets(cs))
}

// Results is everything one run of the suite measured.
type Results struct {
	Run        int               `json:"run"`
	Started    time.Time         `json:"started"`
	TookSecs   float64           `json:"took_seconds"`
	Parts      []string          `json:"parts"`
	Throughput []Throughput      `json:"throughput"`
	Memory     *MemoryResult     `json:"memory,omitempty"`
	Commands   *CommandResult    `json:"commands,omitempty"`
	BigIdle    *BigIdleResult    `json:"big_idle,omitempty"`
	WeChat     []*WeChatResult   `json:"wechat,omitempty"`
	Cluster    *ClusterResult    `json:"cluster,omitempty"`
	MQTT       *MQTTResult       `json:"mqtt,omitempty"`
	History    []*HistoryResult  `json:"history,omitempty"`
	OTA        *OTAResult        `json:"ota,omitempty"`
	Profiles   map[string]string `json:"profiles,omitempty"` // measure id -> profile text, relative to the report
}

type Throughput struct {
	Server       string  `json:"server"`
	FramesPerSec float64 `json:"frames_per_second"`
	P50Ms        float64 `json:"p50_ms"`
	P99Ms        float64 `json:"p99_ms"`
	Acked        uint64  `json:"acked"`
	Devices      int     `json:"devices"`
	Window       int     `json:"window"`
}

type MemoryResult struct {
	Devices        int     `json:"devices"`
	RSSBeforeMiB   float64 `json:"rss_before_mib"`
	RSSAfterMiB    float64 `json:"rss_after_mib"`
	BytesPerDev    float64 `json:"bytes_per_device"`
	BaselinePerDev float64 `json:"baseline_bytes_per_device"`
}

type CommandResult struct {
	Devices  int            `json:"devices"`
	Rate     int            `json:"rate"`
	Sent     int            `json:"sent"`
	Done     int            `json:"done"`
	Other    map[string]int `json:"other"`
	P50Ms    float64        `json:"p50_ms"`
	P99Ms    float64        `json:"p99_ms"`
	MaxMs    float64        `json:"max_ms"`
	Achieved float64        `json:"achieved_per_second"`
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func idleAndCommands(bin, self, tmp, credFile string, cs []fleet.Credential, res *Results, prof *profiler) error {
	fmt.Fprintf(os.Stderr, "memory: %d idle devices on the baseline ...\n", len(cs))
	bp, err := startBaseline(self, credFile)
	if err != nil {
		return err
	}
	basePer, _, _, err := idleRSS(bp, cs, nil, nil)
	bp.stop()
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "memory: %d idle devices on sprout ...\n", len(cs))
	p, err := startSprout(bin, filepath.Join(tmp, "idle"), "", cs)
	if err != nil {
		return err
	}
	defer p.stop()
	var heap, cmdCPU string
	var connCPU *capture
	per, before, after, err := idleRSS(p, cs, func(phase string) {
		switch phase {
		case "connecting":
			connCPU = prof.cpu(p, 5*time.Second)
		case "connected":
			heap = prof.heap(p)
			connCPU.wait()
		}
	}, func(ctx context.Context) error {
		cpu := prof.cpu(p, *cmdTime)
		res.Commands, err = commands(ctx, p, cs)
		cmdCPU = cpu.wait()
		return err
	})
	if err != nil {
		return err
	}
	res.Memory = &MemoryResult{Devices: len(cs), RSSBeforeMiB: before / (1 << 20), RSSAfterMiB: after / (1 << 20),
		BytesPerDev: per, BaselinePerDev: basePer}
	fmt.Fprintf(os.Stderr, "  %.0f bytes per device (baseline %.0f)\n", per, basePer)
	connRaw := connCPU.wait()
	if per > memTargetBytes {
		if path := prof.save("rss-10k", res.Run, profSection{title: "node heap in use after every pot connected", raw: heap, args: []string{"-sample_index=inuse_space"}},
			profSection{title: "node CPU, the first 5 s of connecting", raw: connRaw}); path != "" {
			res.Profiles["rss-10k"] = path
		}
	}
	if c := res.Commands; c != nil && !(c.Done > 0 && c.P99Ms <= 5 && c.Done == c.Sent) {
		if path := prof.save("command-10k", res.Run, profSection{title: "node CPU during the commands", raw: cmdCPU}); path != "" {
			res.Profiles["command-10k"] = path
		}
	}
	return nil
}

// idleRSS connects the fleet (reporting at the server's configured interval, so idle), measures
// the server's RSS per device, then runs then (if set) while they stay connected.
func idleRSS(p *proc, cs []fleet.Credential, phase func(string), then func(context.Context) error) (per, before, after float64, err error) {
	time.Sleep(500 * time.Millisecond)
	before = rss(p.cmd.Process.Pid)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var connected atomic.Int64
	done := make(chan error, 1)
	go func() {
		_, err := fleet.Run(ctx, fleet.Options{Devices: cs, Servers: []string{p.edge}, ConnectRate: 2500,
			Progress: func(s fleet.Snapshot) { connected.Store(s.Connected) }})
		done <- err
	}()
	if phase != nil {
		phase("connecting")
	}
	deadline := time.Now().Add(90 * time.Second)
	for connected.Load() < int64(len(cs)) {
		if time.Now().After(deadline) {
			return 0, 0, 0, fmt.Errorf("only %d of %d devices connected", connected.Load(), len(cs))
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(3 * time.Second)
	after = rss(p.cmd.Process.Pid)
	per = (after - before) / float64(len(cs))
	if phase != nil {
		phase("connected")
	}
	if then != nil {
		err = then(ctx)
	}
	cancel()
	<-done
	return per, before, after, err
}

// commands sends READ_NOW commands through the HTTP API at a fixed rate to random connected
// devices and measures request -> device -> result -> response.
func commands(ctx context.Context, p *proc, cs []fleet.Credential) (*CommandResult, error) {
	fmt.Fprintf(os.Stderr, "commands: %d/s for %v across %d devices ...\n", *cmdRate, *cmdTime, len(cs))
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}, Timeout: 30 * time.Second}
	n := int(float64(*cmdRate) * cmdTime.Seconds())
	lat := make([]time.Duration, n)
	outcomes := make([]string, n)
	var wg sync.WaitGroup
	start := time.Now()
	tick := time.Second / time.Duration(*cmdRate)
	for i := 0; i < n; i++ {
		if d := time.Until(start.Add(time.Duration(i) * tick)); d > 0 {
			time.Sleep(d)
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			id := cs[rand.IntN(len(cs))].ID
			body := []byte(`{"kind":"read_now","timeout_ms":5000}`)
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+p.http+"/api/v1/devices/"+id+"/commands", bytes.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+p.token)
			t := time.Now()
			resp, err := client.Do(req)
			if err != nil {
				outcomes[i] = "http error"
				lat[i] = time.Since(t)
				return
			}
			var o struct {
				Outcome string `json:"outcome"`
			}
			_ = json.NewDecoder(resp.Body).Decode(&o)
			resp.Body.Close()
			lat[i] = time.Since(t)
			outcomes[i] = o.Outcome
		}(i)
	}
	wg.Wait()
	el := time.Since(start)
	r := &CommandResult{Devices: len(cs), Rate: *cmdRate, Sent: n, Other: map[string]int{}, Achieved: float64(n) / el.Seconds()}
	var done []time.Duration
	for i, o := range outcomes {
		if o == "done" {
			r.Done++
			done = append(done, lat[i])
		} else {
			r.Other[o]++
		}
	}
	sort.Slice(done, func(i, j int) bool { return done[i] < done[j] })
	if len(done) > 0 {
		r.P50Ms, r.P99Ms, r.MaxMs = ms(done[len(done)/2]), ms(done[len(done)*99/100]), ms(done[len(done)-1])
	}
	fmt.Fprintf(os.Stderr, "  done %d/%d, p50 %.2f ms, p99 %.2f ms, max %.1f ms\n", r.Done, n, r.P50Ms, r.P99Ms, r.MaxMs)
	return r, nil
}

// proc is a server process under test.
type proc struct {
	cmd        *exec.Cmd
	edge, http string
	mqtt       string // the MQTT listener; empty: off
	token      string
	logs       *bytes.Buffer
}

func (p *proc) stop() {
	_ = p.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
}

func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func startBaseline(self, credFile string) (*proc, error) {
	p := &proc{edge: freeAddr(), logs: &bytes.Buffer{}}
	p.cmd = exec.Command(self, "-role", "baseline", "-addr", p.edge, "-creds", credFile)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	return p, waitTCP(p.edge)
}

func startSprout(bin, dataDir, db string, cs []fleet.Credential, env ...string) (*proc, error) {
	p := &proc{edge: freeAddr(), http: freeAddr(), token: "bench"}
	p.cmd = exec.Command(bin, "serve")
	p.cmd.Env = append(os.Environ(), "SPROUT_DATA_DIR="+dataDir, "SPROUT_DB="+db, "SPROUT_EDGE_ADDR="+p.edge, "SPROUT_MQTT_ADDR="+p.mqtt,
		"SPROUT_HTTP_ADDR="+p.http, "SPROUT_ADMIN_TOKEN="+p.token, "SPROUT_LOG_LEVEL=error", "SPROUT_MAX_CONNECTIONS=19000")
	p.cmd.Env = append(p.cmd.Env, env...)
	if err := startProc(p); err != nil {
		return nil, err
	}
	return p, provisionAll(p, cs)
}

// startProc starts a prepared sprout process and waits until it is ready.
func startProc(p *proc) error {
	p.logs = &bytes.Buffer{}
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		return err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + p.http + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		if time.Now().After(deadline) {
			p.stop()
			return fmt.Errorf("sprout not ready: %s", p.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func getJSON(p *proc, path string, v any) error {
	req, _ := http.NewRequest(http.MethodGet, "http://"+p.http+path, nil)
	req.Header.Set("Authorization", "Bearer "+p.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// provisionAll registers the fleet's devices through the API (8 at a time); existing ones are fine.
func provisionAll(p *proc, cs []fleet.Credential) error {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}, Timeout: 30 * time.Second}
	var next atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(cs) || firstErr.Load() != nil {
					return
				}
				body, _ := json.Marshal(map[string]string{"id": cs[i].ID, "secret": hex.EncodeToString(cs[i].Secret)})
				req, _ := http.NewRequest(http.MethodPost, "http://"+p.http+"/api/v1/devices", bytes.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+p.token)
				resp, err := client.Do(req)
				if err != nil {
					firstErr.Store(err)
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusConflict {
					firstErr.Store(fmt.Errorf("provisioning %s: %s %s", cs[i].ID, resp.Status, b))
					return
				}
			}
		}()
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return err
	}
	return nil
}

func waitTCP(a string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", a)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func rss(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb * 1024
		}
	}
	return 0
}

func machine() string {
	cpu := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "model name") {
				cpu = strings.TrimSpace(strings.SplitN(line, ":", 2)[1])
				break
			}
		}
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		f := strings.Fields(strings.SplitN(string(b), "\n", 2)[0])
		if len(f) >= 2 {
			kb, _ := strconv.ParseFloat(f[1], 64)
			mem = fmt.Sprintf(", %.0f GiB RAM", kb/(1<<20))
		}
	}
	return fmt.Sprintf("%d cores (%s)%s, %s, %s/%s", runtime.NumCPU(), cpu, mem, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
