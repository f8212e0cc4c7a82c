package main

// These tests run the bench program itself with tiny numbers (never the full bench, which the
// integrator runs on an otherwise idle machine): the history part on both backends, and the whole
// suite twice, the many-pots run as 200 pots over 2 nodes and 2 simulator processes.

import (
	"context"
	"encoding/json"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sprout-iot/sprout/store/pgtest"
)

func TestMain(m *testing.M) {
	flag.Parse()
	if *role == "baseline" { // startBaseline runs this binary as the baseline server
		runBaselineServer()
		return
	}
	os.Exit(m.Run())
}

func set(t *testing.T, kv ...string) {
	t.Helper()
	for i := 0; i < len(kv); i += 2 {
		old := flag.Lookup(kv[i]).Value.String()
		if err := flag.Set(kv[i], kv[i+1]); err != nil {
			t.Fatal(err)
		}
		name := kv[i]
		t.Cleanup(func() { _ = flag.Set(name, old) })
	}
}

func TestHistoryLoadsOnceQueriesBothBackendsAndReusesTheDataset(t *testing.T) {
	dir := t.TempDir()
	dsn := pgtest.New(t)
	set(t, "history-readings", "20000", "history-baseline-readings", "3000", "history-days", "2",
		"history-cache", filepath.Join(dir, "cache"), "history-queries", "20", "history-postgres", dsn,
		"history-backends", "sqlite,postgres", "out", filepath.Join(dir, "docs", "benchmarks.md"))
	ctx := context.Background()
	for pass := 1; pass <= 2; pass++ {
		hs, err := historyBench(ctx, pass, newProfiler(pass, t.TempDir()))
		if err != nil {
			t.Fatal(err)
		}
		if len(hs) != 2 {
			t.Fatalf("pass %d: %d backends measured, want 2", pass, len(hs))
		}
		for _, h := range hs {
			d := h.Dataset
			// 2 days at one a minute: 2,880 per pot, 7 pots (the last one partial).
			if d.Readings != 20000 || d.Pots != 7 || d.PerPot != 2880 || h.Baseline.Readings != 3000 {
				t.Fatalf("%s: dataset %+v, baseline %+v", h.Backend, d, h.Baseline)
			}
			if d.Reused != (pass == 2) || h.Baseline.Reused != (pass == 2) {
				t.Fatalf("%s pass %d: reused = %v/%v; want the datasets loaded once and reused after", h.Backend, pass, d.Reused, h.Baseline.Reused)
			}
			if !d.Maintained {
				t.Errorf("%s: Maintain was not run after loading", h.Backend)
			}
			for name, l := range map[string]Latency{"readings": h.Readings, "buckets": h.Buckets, "baseline readings": h.BaseReadings, "baseline buckets": h.BaseBuckets} {
				if l.N != 20 || l.Errors != 0 || l.Short != 0 || l.P50Ms <= 0 || l.MaxMs < l.P99Ms {
					t.Errorf("%s %s: %+v", h.Backend, name, l)
				}
			}
			// The last 24 h at one reading a minute, and 2 days of hourly buckets from an hour-aligned start.
			if h.Readings.Rows != 1440 {
				t.Errorf("%s: %v readings in 24 h, want 1440", h.Backend, h.Readings.Rows)
			}
			if h.Buckets.Rows < 47 || h.Buckets.Rows > 49 {
				t.Errorf("%s: %v hourly buckets over 2 days", h.Backend, h.Buckets.Rows)
			}
			for id, p := range h.Profiles {
				if b, err := os.ReadFile(filepath.Join(dir, "docs", p)); err != nil || !strings.Contains(string(b), "flat%") {
					t.Errorf("%s: profile %s: %v\n%s", id, p, err, b)
				}
			}
		}
	}
	markers, _ := filepath.Glob(filepath.Join(dir, "cache", "*.complete.json"))
	if len(markers) != 4 {
		t.Fatalf("markers %v, want one per dataset and backend", markers)
	}
	// A marker whose store does not hold the dataset is not trusted: the dataset is loaded again.
	os.RemoveAll(strings.TrimSuffix(markersWith(markers, "sqlite-", "-20000r-"), ".complete.json"))
	set(t, "history-backends", "sqlite")
	hs, err := historyBench(ctx, 3, newProfiler(3, t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	if hs[0].Dataset.Reused || !hs[0].Baseline.Reused || hs[0].Readings.Rows != 1440 {
		t.Fatalf("after losing the store: dataset reused %v (want reloaded), baseline reused %v, %v rows", hs[0].Dataset.Reused, hs[0].Baseline.Reused, hs[0].Readings.Rows)
	}
}

func markersWith(ms []string, parts ...string) string {
	for _, m := range ms {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(filepath.Base(m), p)
		}
		if ok {
			return m
		}
	}
	return ""
}

// TestSuiteRunsTwiceWithTinyNumbers runs every part twice with tiny counts and checks the report:
// both runs, each measure beside its baseline, the many-pots run over 2 nodes.
func TestSuiteRunsTwiceWithTinyNumbers(t *testing.T) {
	if testing.Short() {
		t.Skip("builds sprout and starts many servers")
	}
	if os.Getenv("SPROUT_TEST_BENCH_SUITE") == "" {
		t.Skip("takes about 5 minutes: run it with make test-bench (SPROUT_TEST_BENCH_SUITE=1)")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "sprout")
	if b, err := exec.Command("go", "build", "-o", bin, "github.com/sprout-iot/sprout/cmd/sprout").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	out := filepath.Join(dir, "docs", "benchmarks.md")
	set(t, "sprout", bin, "out", out, "runs", "2",
		"devices", "50", "duration", "2s",
		"idle-devices", "200", "command-rate", "50", "command-duration", "1s",
		"big-idle-devices", "200", "big-per-node", "100", "big-per-sim", "100", "big-connect-rate", "200",
		"wechat-users", "20", "wechat-rate", "20", "wechat-duration", "1s",
		"cluster-devices", "30", "cluster-duration", "3s",
		"mqtt-devices", "20", "mqtt-duration", "2s", "mqtt-idle-devices", "50",
		"history-readings", "5000", "history-baseline-readings", "1000", "history-days", "1", "history-queries", "10",
		"history-cache", filepath.Join(dir, "cache"), "history-backends", "sqlite")
	start := time.Now()
	if err := run(); err != nil {
		t.Fatal(err)
	}
	t.Logf("two tiny runs took %v", time.Since(start))
	b, err := os.ReadFile(filepath.Join(dir, "docs", "benchmarks.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Runs) != 2 {
		t.Fatalf("%d runs in the report, want 2", len(rep.Runs))
	}
	for _, r := range rep.Runs {
		if len(r.Throughput) < 5 || r.Throughput[0].FramesPerSec <= 0 || r.Memory == nil || r.Memory.BaselinePerDev <= 0 ||
			r.Commands == nil || r.Commands.Done == 0 || len(r.WeChat) != 2 || r.Cluster == nil || r.MQTT == nil || len(r.History) != 1 {
			t.Fatalf("run %d is missing parts: %+v", r.Run, r)
		}
		g := r.BigIdle
		if g == nil || g.Pots != 200 || g.Nodes != 2 || g.SimProcesses != 2 || g.BaseProcesses != 2 ||
			g.BytesPerPot <= 0 || g.BasePerPot <= 0 || g.ConnectSecs <= 0 || g.BaseConnectSecs <= 0 {
			t.Fatalf("run %d: many-pots run %+v", r.Run, g)
		}
		for id, p := range r.Profiles {
			if _, err := os.Stat(filepath.Join(dir, "docs", p)); err != nil {
				t.Errorf("run %d: profile of %s: %v", r.Run, id, err)
			}
		}
	}
	md, _ := os.ReadFile(out)
	text := string(md)
	for _, want := range []string{"## Issue 15's targets", "| run 1 | baseline, run 1 | run 2 | baseline, run 2 |",
		"telemetry frames/s, embedded store", "RSS per idle pot, 200 pots, 2 nodes", "time to connect 200 pots",
		"command round trip, 3 nodes, cross-member", "tap -> result pushed", "history, sqlite", "## MQTT and TLS"} {
		if !strings.Contains(text, want) {
			t.Errorf("report lacks %q:\n%s", want, text)
		}
	}

	// -only replaces one part and keeps the others.
	set(t, "only", "history", "runs", "1")
	if err := run(); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(filepath.Join(dir, "docs", "benchmarks.json"))
	var after Report
	if err := json.Unmarshal(b, &after); err != nil {
		t.Fatal(err)
	}
	if len(after.Runs) != 2 || after.Runs[0].BigIdle == nil || after.Runs[1].Cluster == nil || !after.Runs[0].History[0].Dataset.Reused {
		t.Fatalf("-only history lost the other parts or reloaded the dataset: %+v", after.Runs)
	}
}

// TestOTAPartRollsOutToEveryPotAndReportsBothPhases runs -only ota with tiny numbers: 30 pots, a
// 20 KiB image, one pace stopped early and one to completion.
func TestOTAPartRollsOutToEveryPotAndReportsBothPhases(t *testing.T) {
	if testing.Short() {
		t.Skip("builds sprout and starts servers")
	}
	if os.Getenv("SPROUT_TEST_BENCH_SUITE") == "" {
		t.Skip("builds sprout and runs about a minute: make test-bench (SPROUT_TEST_BENCH_SUITE=1)")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "sprout")
	if b, err := exec.Command("go", "build", "-o", bin, "github.com/sprout-iot/sprout/cmd/sprout").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	out := filepath.Join(dir, "docs", "benchmarks.md")
	set(t, "sprout", bin, "out", out, "runs", "1", "only", "ota", "ota-pots", "30", "ota-image-bytes", "20000",
		"ota-paces", "50:3s,5000:1m", "ota-before", "3s", "ota-report-interval", "200ms", "ota-stages", "10,100")
	if err := run(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "docs", "benchmarks.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	o := rep.Runs[0].OTA
	if o == nil || len(o.Runs) != 2 || o.Pots != 30 {
		t.Fatalf("OTA part: %+v", o)
	}
	slow, fast := o.Runs[0], o.Runs[1]
	if slow.Completed || slow.ProjectedSecs <= slow.TookSecs || slow.Chunks == 0 {
		t.Errorf("at 50 chunks/s for 3 s: %+v; want stopped early with a projection", slow)
	}
	if !fast.Completed || fast.Running != 30 || fast.PotsConfirmed != 30 || fast.OTAFailed != 0 || len(fast.Errors) != 0 {
		t.Errorf("at 5000 chunks/s: %+v; want all 30 running, nothing failed", fast)
	}
	for _, x := range o.Runs {
		if x.BeforeMs.N == 0 || x.DuringMs.N == 0 || x.RSSBefore <= 0 || x.RSSDuringPeak <= 0 {
			t.Errorf("pace %d: missing measures %+v", x.Pace, x)
		}
	}
	md, _ := os.ReadFile(out)
	for _, want := range []string{"## Firmware rollout (OTA) while the fleet reports", "30 pots x 19 KiB, node pace 5000 chunks/s", "completed in"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
}
