package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/sprout-iot/sprout/simulations/fleet"
	"github.com/sprout-iot/sprout/simulations/plant"
)

var (
	runs = flag.Int("runs", 1, "run the whole suite (or the -only parts) this many times; the report shows every run, each beside its own baselines (make bench: 2)")
	only = flag.String("only", "", "run only these parts, comma-separated: "+strings.Join(allParts, ", ")+", "+strings.Join(extraParts, ", ")+
		"; the report keeps the other parts' results from the last run that measured them (kept in -json)")
)

// allParts are the suite's parts, in the order they run.
var allParts = []string{"telemetry", "idle", "big", "wechat", "cluster", "mqtt", "history"}

// extraParts run only when named in -only (make bench-ota): too long for every make bench.
var extraParts = []string{"ota"}

// partMeasures are the measures (issue 15's targets) each part reports, by id: the names of their
// profiles in docs/profiles/.
var partMeasures = map[string][]string{
	"telemetry": {"telemetry-embedded", "telemetry-postgres", "telemetry-nostorage"},
	"idle":      {"rss-10k", "command-10k"},
	"big":       {"rss-50k"},
	"wechat":    {"tap-push"},
	"cluster":   {"command-cross-member"},
	"history":   {"history-sqlite-readings", "history-sqlite-buckets", "history-postgres-readings", "history-postgres-buckets"},
}

func selectedParts() ([]string, error) {
	if *onlyMQTT {
		return []string{"mqtt"}, nil
	}
	if *only == "" {
		return allParts, nil
	}
	var ps []string
	for _, p := range strings.Split(*only, ",") {
		p = strings.TrimSpace(p)
		if !slices.Contains(allParts, p) && !slices.Contains(extraParts, p) {
			return nil, fmt.Errorf("-only: unknown part %q (parts: %s)", p, strings.Join(append(allParts, extraParts...), ", "))
		}
		ps = append(ps, p)
	}
	return ps, nil
}

// env is what every run shares.
type env struct {
	bin, self, tmp string
	cs             []fleet.Credential
	credFile       string
	newPG          func(run int) (string, error) // a database for the run ("" and nil: no Postgres)
}

func run() error {
	parts, err := selectedParts()
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "sprout-bench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	e := &env{tmp: tmp}
	e.bin = *sproutPath
	if e.bin == "" && !(len(parts) == 1 && parts[0] == "history") {
		e.bin = filepath.Join(tmp, "sprout")
		if b, err := exec.Command("go", "build", "-o", e.bin, "./cmd/sprout").CombinedOutput(); err != nil {
			return fmt.Errorf("building sprout: %v\n%s", err, b)
		}
	}
	e.self, _ = os.Executable()
	e.cs = fleet.NewCredentials("bench-", max(*devices, *idle, *mqttDevices, *mqttIdle, 1))
	e.credFile = filepath.Join(tmp, "creds.json")
	if err := fleet.SaveCredentials(e.credFile, e.cs); err != nil {
		return err
	}
	needPG := (has(parts, "telemetry") && *devices > 0) || (has(parts, "cluster") && *clDevices > 0) || (has(parts, "big") && *bigPots > 0)
	if *pgDSN != "" {
		dsn := *pgDSN
		e.newPG = func(int) (string, error) { return dsn, nil }
	} else if needPG {
		if newDB, stopPG, err := startBenchPostgres(); err == nil {
			defer stopPG()
			e.newPG = newDB
		} else {
			fmt.Fprintln(os.Stderr, "bench: Postgres runs skipped:", err)
		}
	}
	for _, p := range parts {
		clearProfiles(partMeasures[p])
	}
	var all []*Results
	for i := 1; i <= max(1, *runs); i++ {
		fmt.Fprintf(os.Stderr, "=== run %d of %d: %s ===\n", i, max(1, *runs), strings.Join(parts, ", "))
		res, err := runOnce(e, i, parts)
		if res != nil && (err == nil || res.TookSecs > 0) {
			all = append(all, res)
		}
		if err != nil {
			if len(all) > 0 {
				_ = writeReport(parts, all)
			}
			return fmt.Errorf("run %d: %w", i, err)
		}
		fmt.Fprintf(os.Stderr, "=== run %d took %s ===\n", i, time.Duration(res.TookSecs*float64(time.Second)).Round(time.Second))
	}
	return writeReport(parts, all)
}

func has(parts []string, p string) bool { return slices.Contains(parts, p) }

// runOnce runs the selected parts once, each server on fresh data under its own directory.
func runOnce(e *env, run int, parts []string) (*Results, error) {
	started := time.Now()
	res := &Results{Run: run, Started: started.UTC(), Parts: parts, Profiles: map[string]string{}}
	tmp := filepath.Join(e.tmp, fmt.Sprintf("run%d", run))
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	prof := newProfiler(run, tmp)
	finish := func(err error) (*Results, error) {
		res.TookSecs = time.Since(started).Seconds()
		return res, err
	}
	dsn := ""
	if e.newPG != nil {
		var err error
		if dsn, err = e.newPG(run); err != nil {
			return finish(err)
		}
	}
	cs := e.cs

	// 1. Telemetry throughput: baseline, then Sprout on each store, same fleet, same run.
	if has(parts, "telemetry") && *devices > 0 {
		type variant struct {
			name, measure string
			target        float64 // share of the baseline (issue 15); 0: none
			start         func() (*proc, error)
		}
		variants := []variant{
			{"baseline (decode + ack only)", "", 0, func() (*proc, error) {
				return startBaseline(e.self, e.credFile)
			}},
			{"sprout, no storage (memory)", "telemetry-nostorage", 0.8, func() (*proc, error) {
				return startSprout(e.bin, tmp, "memory", cs[:*devices])
			}},
			{"sprout, memory, tracing off", "", 0, func() (*proc, error) {
				return startSprout(e.bin, tmp, "memory", cs[:*devices], "OTEL_TRACES_EXPORTER=none")
			}},
			{"sprout, memory, tracing on (1 %, OTLP)", "", 0, func() (*proc, error) {
				return startSprout(e.bin, tmp, "memory", cs[:*devices], tracingEnv("0.01")...)
			}},
			{"sprout, embedded SQLite", "telemetry-embedded", 0.5, func() (*proc, error) {
				return startSprout(e.bin, filepath.Join(tmp, "sqlite"), "", cs[:*devices])
			}},
		}
		if dsn != "" {
			variants = append(variants, variant{"sprout, Postgres", "telemetry-postgres", 0.4, func() (*proc, error) {
				return startSprout(e.bin, tmp, dsn, cs[:*devices])
			}})
		}
		for _, v := range variants {
			fmt.Fprintf(os.Stderr, "throughput: %s ...\n", v.name)
			p, err := v.start()
			if err != nil {
				return finish(fmt.Errorf("%s: %w", v.name, err))
			}
			var cpu *capture
			if v.measure != "" {
				cpu = prof.cpu(p, *duration-time.Second)
			}
			rep, err := fleet.Run(context.Background(), fleet.Options{Devices: cs[:*devices], Servers: []string{p.edge},
				ReportInterval: plant.Flood, Window: *window, Duration: *duration, ConnectRate: 2000})
			raw := cpu.wait()
			p.stop()
			if err != nil {
				return finish(fmt.Errorf("%s: fleet: %w", v.name, err))
			}
			t := Throughput{Server: v.name, FramesPerSec: rep.SteadyFramesPerSecond, Acked: rep.FramesAcked,
				P50Ms: ms(rep.AckLatency.P50), P99Ms: ms(rep.AckLatency.P99), Devices: *devices, Window: *window}
			if t.FramesPerSec == 0 {
				t.FramesPerSec = rep.FramesPerSecond
			}
			fmt.Fprintf(os.Stderr, "  %.0f frames/s, p50 %.2f ms, p99 %.2f ms\n", t.FramesPerSec, t.P50Ms, t.P99Ms)
			res.Throughput = append(res.Throughput, t)
			if v.measure != "" && t.FramesPerSec < v.target*res.Throughput[0].FramesPerSec {
				if path := prof.save(v.measure, run, profSection{title: "node CPU during the flood (" + v.name + ")", raw: raw}); path != "" {
					res.Profiles[v.measure] = path
				}
			}
		}
	}

	// 2. Memory per idle pot and 3. command round trips, on one node with the embedded store.
	if has(parts, "idle") && *idle > 0 {
		if err := idleAndCommands(e.bin, e.self, tmp, e.credFile, cs[:*idle], res, prof); err != nil {
			return finish(err)
		}
	}
	// 4. Memory per idle pot with many pots: several nodes, several simulator processes.
	if has(parts, "big") && *bigPots > 0 {
		if dsn == "" {
			fmt.Fprintln(os.Stderr, "bench: many-pots memory run skipped: it needs Postgres (the nodes of a cluster share one store)")
		} else {
			r, err := bigIdle(e.bin, e.self, tmp, dsn, run, prof)
			if err != nil {
				return finish(fmt.Errorf("many-pots memory: %w", err))
			}
			res.BigIdle = r
			if r.Profile != "" {
				res.Profiles["rss-50k"] = r.Profile
			}
		}
	}
	if has(parts, "wechat") && *wxUsers > 0 {
		for _, rate := range []int{*wxRate / 5, *wxRate} {
			fmt.Fprintf(os.Stderr, "wechat: %d users tapping %d/s ...\n", *wxUsers, rate)
			var pf *profiler
			if rate == *wxRate {
				pf = prof
			}
			r, err := wechatBench(e.bin, filepath.Join(tmp, fmt.Sprintf("wx%d", rate)), "", *wxUsers, rate, *wxTime, pf)
			if err != nil {
				return finish(fmt.Errorf("wechat bench: %w", err))
			}
			res.WeChat = append(res.WeChat, r)
			if pf != nil && !(r.Pushed > 0 && r.TapP99Ms <= 20) {
				if path := prof.save("tap-push", run, profSection{title: fmt.Sprintf("node CPU during the taps at %d/s", rate), raw: r.cpuRaw}); path != "" {
					res.Profiles["tap-push"] = path
				}
			}
		}
	}
	if has(parts, "cluster") && *clDevices > 0 && dsn != "" {
		r, err := clusterBench(e.bin, tmp, dsn, *clDevices, *clTime, prof)
		if err != nil {
			return finish(fmt.Errorf("cluster bench: %w", err))
		}
		res.Cluster = r
		if r.ThreeNodeP99Ms == 0 || r.ThreeNodeP99Ms > 10 {
			var secs []profSection
			for i, raw := range r.cpuRaw {
				secs = append(secs, profSection{title: fmt.Sprintf("node %d CPU during the three-node command run (node 1 takes the API calls)", i+1), raw: raw})
			}
			if path := prof.save("command-cross-member", run, secs...); path != "" {
				res.Profiles["command-cross-member"] = path
			}
		}
	}
	if has(parts, "mqtt") && (*mqttDevices > 0 || *mqttIdle > 0) {
		if err := mqttBench(e.bin, tmp, cs, res); err != nil {
			return finish(fmt.Errorf("mqtt bench: %w", err))
		}
	}
	if has(parts, "ota") && *otaPots > 0 {
		if err := otaBench(e.bin, tmp, res, prof); err != nil {
			return finish(fmt.Errorf("ota bench: %w", err))
		}
	}
	if has(parts, "history") && *histReadings > 0 {
		hs, err := historyBench(context.Background(), run, prof)
		res.History = hs
		for _, h := range hs {
			for id, path := range h.Profiles {
				res.Profiles[id] = path
			}
		}
		if err != nil {
			return finish(err)
		}
	}
	return finish(nil)
}
