package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/sprout-iot/sprout/simulations/fleet"
	"github.com/sprout-iot/sprout/simulations/plant"
)

// The OTA part (issue 16): a staged rollout of one image to a fleet of simulated pots that keep
// reporting, on one `sprout serve` node with the embedded store; telemetry ack latency and node
// memory before the rollout (the baseline, same node, same pots) and during it, and the time until
// every pot runs the new image. `make bench-ota`; not in `make bench` (at full size it takes
// about as long as the rest of the suite).
var (
	otaPots     = flag.Int("ota-pots", 2000, "simulated pots in the OTA part (-only ota); 0 skips it")
	otaImage    = flag.Int("ota-image-bytes", 1<<20, "size of the random firmware image rolled out")
	otaPaces    = flag.String("ota-paces", "400:60s,2000:60s,10000:12m", "the OTA part's runs, comma-separated: node-wide chunks/s (--ota-chunks-per-second)[:longest rollout phase]; a run whose rollout is not done by then reports how far it got and a projection")
	otaStages   = flag.String("ota-stages", "1,10,100", "the rollout's stages (percent)")
	otaInterval = flag.Duration("ota-report-interval", time.Second, "each pot's telemetry interval during the OTA part")
	otaBefore   = flag.Duration("ota-before", 20*time.Second, "length of the phase without a rollout (the baseline)")
)

// otaProduct and the versions: the API provisions pots as sprout-pot; plants start as sim-1.0.0.
const (
	otaProduct = plant.DefaultProduct
	otaFrom    = plant.DefaultFirmware
	otaTo      = "sim-2.0.0"
)

// OTAResult is the OTA part: one OTARun per pace, same fleet and image.
type OTAResult struct {
	Pots             int       `json:"pots"`
	ImageBytes       int       `json:"image_bytes"`
	ChunkBytes       int       `json:"chunk_bytes"`
	Stages           []int     `json:"stages"`
	ReportIntervalMs float64   `json:"report_interval_ms"`
	BeforeSecs       float64   `json:"before_seconds"`
	Runs             []OTARun  `json:"runs"`
	Note             string    `json:"note,omitempty"`
	Started          time.Time `json:"started"`
}

// OTARun is one rollout at one pace.
type OTARun struct {
	Pace      int     `json:"chunks_per_second_limit"`
	LimitSecs float64 `json:"limit_seconds"`
	Completed bool    `json:"completed"`
	// TookSecs: rollout start to the rollout completed (every pot running the new version, as the
	// node records it); if not completed, the length of the rollout phase.
	TookSecs      float64        `json:"took_seconds"`
	ProjectedSecs float64        `json:"projected_seconds,omitempty"` // when not completed: elapsed + chunks left / chunks/s achieved
	Running       int            `json:"running"`                     // pots running the new version (node's count) at the end
	States        map[string]int `json:"states"`                      // rollout targets by state at the end
	PotsConfirmed uint64         `json:"pots_confirmed"`              // pots that said RUNNING (simulator's count)
	Chunks        uint64         `json:"chunks"`
	ChunksPerSec  float64        `json:"chunks_per_second"`      // mean over the rollout phase
	PeakChunksSec float64        `json:"peak_chunks_per_second"` // best second
	// Telemetry ack latency (write to Ack, after a durable write) before and during the rollout.
	Before, During plant.Latency `json:"-"`
	BeforeMs       LatencyMs     `json:"before"`
	DuringMs       LatencyMs     `json:"during"`
	// DuringLaterMs leaves out the rollout's first otaSettle (its start writes every pot's target
	// and looks up every connected pot's offer).
	DuringLaterMs  LatencyMs  `json:"during_after_start"`
	ReadingsPerSec [2]float64 `json:"readings_per_second"` // acked, before and during
	// Node RSS (MiB): median and peak of the samples (every 500 ms) before and during.
	RSSBefore     float64 `json:"rss_before_mib"`
	RSSBeforePeak float64 `json:"rss_before_peak_mib"`
	RSSDuring     float64 `json:"rss_during_mib"`
	RSSDuringPeak float64 `json:"rss_during_peak_mib"`
	// Node CPU, in cores (1.0 = one core busy), before and during.
	CPUBefore float64           `json:"cpu_before_cores"`
	CPUDuring float64           `json:"cpu_during_cores"`
	Errors    map[string]uint64 `json:"errors,omitempty"`
	OTAFailed uint64            `json:"ota_failed"`
	Profile   string            `json:"profile,omitempty"` // node CPU at the rollout's start, relative to the report
}

// LatencyMs is a plant.Latency in milliseconds, for the JSON.
type LatencyMs struct {
	N    uint64  `json:"n"`
	P50  float64 `json:"p50_ms"`
	P90  float64 `json:"p90_ms"`
	P99  float64 `json:"p99_ms"`
	P999 float64 `json:"p999_ms"`
	Max  float64 `json:"max_ms"`
}

func latMs(l plant.Latency) LatencyMs {
	return LatencyMs{N: l.Count, P50: ms(l.P50), P90: ms(l.P90), P99: ms(l.P99), P999: ms(l.P999), Max: ms(l.Max)}
}

type otaPace struct {
	pace  int
	limit time.Duration
}

func parseOTAPaces(s string) ([]otaPace, error) {
	var out []otaPace
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		p := otaPace{limit: 30 * time.Minute}
		num, lim, ok := strings.Cut(f, ":")
		n, err := strconv.Atoi(num)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("-ota-paces: %q: chunks/s must be a positive number", f)
		}
		p.pace = n
		if ok {
			if p.limit, err = time.ParseDuration(lim); err != nil || p.limit <= 0 {
				return nil, fmt.Errorf("-ota-paces: %q: bad duration", f)
			}
		}
		out = append(out, p)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("-ota-paces: no pace")
	}
	return out, nil
}

func parseStages(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 100 {
			return nil, fmt.Errorf("-ota-stages: %q is not a percent", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// otaBench runs the OTA part: for each pace, a fresh node, the same pots and image.
func otaBench(bin, tmp string, res *Results, prof *profiler) error {
	paces, err := parseOTAPaces(*otaPaces)
	if err != nil {
		return err
	}
	stages, err := parseStages(*otaStages)
	if err != nil {
		return err
	}
	r := &OTAResult{Pots: *otaPots, ImageBytes: *otaImage, ChunkBytes: plant.DefaultOTAChunkBytes, Stages: stages,
		ReportIntervalMs: ms(*otaInterval), BeforeSecs: otaBefore.Seconds(), Started: time.Now().UTC()}
	res.OTA = r
	dir := filepath.Join(tmp, "ota")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	keyPrefix := filepath.Join(dir, "fw")
	if b, err := exec.Command(bin, "firmware", "keygen", "--out", keyPrefix).CombinedOutput(); err != nil {
		return fmt.Errorf("firmware keygen: %v: %s", err, b)
	}
	pubHex, err := os.ReadFile(keyPrefix + ".pub")
	if err != nil {
		return err
	}
	pub, err := hex.DecodeString(strings.TrimSpace(string(pubHex)))
	if err != nil || len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("%s.pub: not a hex Ed25519 public key", keyPrefix)
	}
	image := make([]byte, *otaImage)
	_, _ = rand.Read(image)
	cs := fleet.NewCredentials("ota-", *otaPots)
	for i, pc := range paces {
		id := fmt.Sprintf("ota-%d", pc.pace)
		if res.Run == 1 {
			clearProfiles([]string{id})
		}
		fmt.Fprintf(os.Stderr, "ota: %d pots, %d KiB image, node pace %d chunks/s (at most %v of rollout) ...\n", len(cs), len(image)>>10, pc.pace, pc.limit)
		run, cpuRaw, heapRaw, err := otaRun(bin, filepath.Join(dir, fmt.Sprintf("node%d", i)), keyPrefix+".key", ed25519.PublicKey(pub), image, cs, stages, pc, prof)
		if err != nil {
			return fmt.Errorf("pace %d: %w", pc.pace, err)
		}
		if path := prof.save(id, res.Run, profSection{title: fmt.Sprintf("node CPU, the first %s of the rollout at %d chunks/s", otaProfileTime(pc), pc.pace), raw: cpuRaw},
			profSection{title: "node heap in use at the end of the rollout phase", raw: heapRaw, args: []string{"-sample_index=inuse_space"}}); path != "" {
			res.Profiles[id] = path
			run.Profile = path
		}
		r.Runs = append(r.Runs, *run)
		fmt.Fprintf(os.Stderr, "  %s\n", run.summary())
	}
	return nil
}

func (o *OTARun) summary() string {
	done := fmt.Sprintf("completed in %.0f s", o.TookSecs)
	if !o.Completed {
		done = fmt.Sprintf("not completed after %.0f s (%d running; projected %.0f s)", o.TookSecs, o.Running, o.ProjectedSecs)
	}
	return fmt.Sprintf("%s; %.0f chunks/s (peak %.0f); telemetry p50/p99 %.1f/%.1f ms before, %.1f/%.1f ms during; RSS %.0f/%.0f MiB before, %.0f/%.0f MiB during (median/peak); CPU %.2f / %.2f cores",
		done, o.ChunksPerSec, o.PeakChunksSec, o.BeforeMs.P50, o.BeforeMs.P99, o.DuringMs.P50, o.DuringMs.P99,
		o.RSSBefore, o.RSSBeforePeak, o.RSSDuring, o.RSSDuringPeak, o.CPUBefore, o.CPUDuring)
}

// otaSettle is the start of a rollout, left out of DuringLaterMs.
const otaSettle = 15 * time.Second

// otaProfileTime is how long the node's CPU is profiled from the rollout's start.
func otaProfileTime(pc otaPace) time.Duration { return min(pc.limit, 30*time.Second) }

func otaRun(bin, dataDir, keyFile string, pub ed25519.PublicKey, image []byte, cs []fleet.Credential, stages []int, pc otaPace, prof *profiler) (run *OTARun, cpuRaw, heapRaw string, err error) {
	run = &OTARun{Pace: pc.pace, LimitSecs: pc.limit.Seconds()}
	p, err := startSprout(bin, dataDir, "", cs, "SPROUT_FIRMWARE_KEY="+keyFile,
		"SPROUT_OTA_CHUNKS_PER_SECOND="+strconv.Itoa(pc.pace), fmt.Sprintf("SPROUT_MAX_FIRMWARE_BYTES=%d", max(len(image), 4<<20)))
	if err != nil {
		return nil, "", "", err
	}
	defer p.stop()
	if err := uploadFirmware(p, image); err != nil {
		return nil, "", "", err
	}
	pid := p.cmd.Process.Pid

	stats := &plant.Stats{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fleetDone := make(chan error, 1)
	go func() {
		_, err := fleet.Run(ctx, fleet.Options{Devices: cs, Servers: []string{p.edge}, ReportInterval: *otaInterval, ConnectRate: 1000,
			Plant: func(_ int, c *plant.Config) {
				c.Stats, c.OTAKey, c.Product, c.Firmware = stats, pub, otaProduct, otaFrom
				c.MinBackoff, c.MaxBackoff = 50*time.Millisecond, 2*time.Second
			}})
		fleetDone <- err
	}()
	defer func() { cancel(); <-fleetDone }()
	deadline := time.Now().Add(2 * time.Minute)
	for stats.Connected.Load() < int64(len(cs)) {
		if time.Now().After(deadline) {
			return nil, "", "", fmt.Errorf("only %d of %d pots connected", stats.Connected.Load(), len(cs))
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(3 * time.Second) // every pot has reported at least twice

	// Before: the same pots reporting, no rollout.
	mark, acked0, cpu0, t0 := stats.AckLatency.Mark(), stats.FramesAcked.Load(), procCPU(pid), time.Now()
	var before []float64
	for time.Since(t0) < *otaBefore {
		before = append(before, rss(pid)/(1<<20))
		time.Sleep(500 * time.Millisecond)
	}
	el := time.Since(t0).Seconds()
	run.Before = stats.AckLatency.Since(mark)
	run.ReadingsPerSec[0] = float64(stats.FramesAcked.Load()-acked0) / el
	run.CPUBefore = (procCPU(pid) - cpu0).Seconds() / el
	run.RSSBefore, run.RSSBeforePeak = medianPeak(before)

	// During: the rollout, from its start until it completes or the limit.
	mark, acked0, cpu0 = stats.AckLatency.Mark(), stats.FramesAcked.Load(), procCPU(pid)
	chunks0 := stats.OTAChunks.Load()
	t0 = time.Now()
	id, err := startRollout(p, stages)
	if err != nil {
		return nil, "", "", err
	}
	cpu := prof.cpu(p, otaProfileTime(pc))
	defer func() { cpuRaw = cpu.wait() }()
	var during []float64
	var later *plant.HistogramMark
	lastChunks, lastAt := chunks0, t0
	var ro rolloutState
	for {
		time.Sleep(500 * time.Millisecond)
		during = append(during, rss(pid)/(1<<20))
		now := time.Now()
		if later == nil && now.Sub(t0) >= otaSettle {
			later = stats.AckLatency.Mark()
		}
		c := stats.OTAChunks.Load()
		if now.Sub(lastAt) >= time.Second {
			run.PeakChunksSec = max(run.PeakChunksSec, float64(c-lastChunks)/now.Sub(lastAt).Seconds())
			lastChunks, lastAt = c, now
		}
		// The list has each rollout's state without its targets (GET /rollouts/ID lists every pot).
		st, err := rolloutListState(p, id)
		if err != nil {
			return nil, "", "", err
		}
		ro.State, ro.Reason = st.State, st.Reason
		if ro.State == "completed" {
			run.Completed = true
			break
		}
		if ro.State != "running" {
			_ = getJSON(p, "/api/v1/rollouts/"+id, &ro)
			return nil, "", "", fmt.Errorf("rollout %s: %s (%s): %v", id, ro.State, ro.Reason, ro.Counts)
		}
		if now.Sub(t0) >= pc.limit {
			break
		}
	}
	el = time.Since(t0).Seconds()
	run.TookSecs = el
	heapRaw = prof.heap(p)
	defer func(h string) { heapRaw = h }(heapRaw)
	if err := getJSON(p, "/api/v1/rollouts/"+id, &ro); err != nil {
		return nil, "", "", err
	}
	run.During = stats.AckLatency.Since(mark)
	run.ReadingsPerSec[1] = float64(stats.FramesAcked.Load()-acked0) / el
	run.CPUDuring = (procCPU(pid) - cpu0).Seconds() / el
	run.RSSDuring, run.RSSDuringPeak = medianPeak(during)
	run.Chunks = stats.OTAChunks.Load() - chunks0
	run.ChunksPerSec = float64(run.Chunks) / el
	run.States, run.Running = ro.Counts, ro.Counts["running"]
	run.PotsConfirmed = stats.OTAConfirmed.Load()
	run.OTAFailed = stats.OTAFailed.Load()
	run.BeforeMs, run.DuringMs = latMs(run.Before), latMs(run.During)
	if later != nil {
		run.DuringLaterMs = latMs(stats.AckLatency.Since(later))
	}
	if !run.Completed && run.ChunksPerSec > 0 {
		per := float64((len(image) + plant.DefaultOTAChunkBytes - 1) / plant.DefaultOTAChunkBytes)
		left := per*float64(len(cs)) - float64(run.Chunks)
		run.ProjectedSecs = el + left/run.ChunksPerSec
	}
	if errs := stats.Snapshot().Errors; len(errs) > 0 {
		run.Errors = errs
	}
	return run, "", "", nil
}

func medianPeak(v []float64) (float64, float64) {
	if len(v) == 0 {
		return 0, 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2], s[len(s)-1]
}

// procCPU is the process's user + system CPU time so far (from /proc/PID/stat, in clock ticks of
// 10 ms, the kernel's USER_HZ on Linux).
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		s = s[i+1:]
	}
	f := strings.Fields(s)
	// After the command: state is field 3, utime 14 and stime 15 (1-based over the whole line).
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+st) * 10 * time.Millisecond
}

func uploadFirmware(p *proc, image []byte) error {
	req, _ := http.NewRequest(http.MethodPost, "http://"+p.http+"/api/v1/firmware?product="+otaProduct+"&version="+otaTo, bytes.NewReader(image))
	req.Header.Set("Authorization", "Bearer "+p.token)
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("uploading the image: %s %s", resp.Status, b)
	}
	return nil
}

type rolloutState struct {
	ID     string         `json:"id"`
	State  string         `json:"state"`
	Reason string         `json:"reason"`
	Counts map[string]int `json:"counts"`
}

func startRollout(p *proc, stages []int) (string, error) {
	body, _ := json.Marshal(map[string]any{"product": otaProduct, "version": otaTo, "stages": stages, "failure_threshold": 0.05})
	req, _ := http.NewRequest(http.MethodPost, "http://"+p.http+"/api/v1/rollouts", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+p.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		return "", fmt.Errorf("starting the rollout: %s %s", resp.Status, b)
	}
	var ro rolloutState
	if err := json.Unmarshal(b, &ro); err != nil || ro.ID == "" {
		return "", fmt.Errorf("starting the rollout: %s", b)
	}
	return ro.ID, nil
}

func rolloutListState(p *proc, id string) (rolloutState, error) {
	var list struct {
		Rollouts []rolloutState `json:"rollouts"`
	}
	if err := getJSON(p, "/api/v1/rollouts", &list); err != nil {
		return rolloutState{}, err
	}
	for _, r := range list.Rollouts {
		if r.ID == id {
			return r, nil
		}
	}
	return rolloutState{}, fmt.Errorf("rollout %s not listed", id)
}
