package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sprout-iot/sprout/simulations/plant"
)

// Report is what docs/benchmarks.md is rendered from; its JSON (-json, default beside -out) keeps
// every run's raw results so that a later -only run replaces some parts and keeps the others.
type Report struct {
	Machine string     `json:"machine"`
	Written time.Time  `json:"written"`
	Command string     `json:"command"`
	Runs    []*Results `json:"runs"`
}

func dataPath() string {
	if *jsonOut != "" {
		return *jsonOut
	}
	return strings.TrimSuffix(*out, filepath.Ext(*out)) + ".json"
}

// adopt takes the given parts' results from n.
func (r *Results) adopt(n *Results, parts []string) {
	for _, p := range parts {
		switch p {
		case "telemetry":
			r.Throughput = n.Throughput
		case "idle":
			r.Memory, r.Commands = n.Memory, n.Commands
		case "big":
			r.BigIdle = n.BigIdle
		case "wechat":
			r.WeChat = n.WeChat
		case "cluster":
			r.Cluster = n.Cluster
		case "mqtt":
			r.MQTT = n.MQTT
		case "history":
			r.History = n.History
		case "ota":
			r.OTA = n.OTA
		}
		if r.Profiles == nil {
			r.Profiles = map[string]string{}
		}
		for _, id := range partMeasures[p] {
			delete(r.Profiles, id)
			if v, ok := n.Profiles[id]; ok {
				r.Profiles[id] = v
			}
		}
		if !has(r.Parts, p) {
			r.Parts = append(r.Parts, p)
		}
	}
	r.Started, r.TookSecs = n.Started, n.TookSecs
}

// writeReport merges this invocation's runs into the saved results (all of them when every part
// ran) and renders docs/benchmarks.md.
func writeReport(parts []string, runs []*Results) error {
	rep := &Report{Machine: machine(), Written: time.Now().UTC(), Command: "go run ./simulations/bench " + strings.Join(os.Args[1:], " ")}
	var old Report
	if b, err := os.ReadFile(dataPath()); err == nil {
		_ = json.Unmarshal(b, &old)
	}
	full := true
	for _, p := range allParts {
		full = full && has(parts, p)
	}
	if full {
		rep.Runs = runs
		// The extra parts (make bench-ota) are kept from the last run that measured them.
		for i, r := range rep.Runs {
			if i < len(old.Runs) && old.Runs[i] != nil && r.OTA == nil && old.Runs[i].OTA != nil {
				r.adopt(&Results{OTA: old.Runs[i].OTA, Started: r.Started, TookSecs: r.TookSecs}, []string{"ota"})
			}
		}
	} else {
		rep.Runs = old.Runs
		for i, n := range runs {
			if i < len(rep.Runs) && rep.Runs[i] != nil {
				rep.Runs[i].adopt(n, parts)
			} else {
				rep.Runs = append(rep.Runs, n)
			}
		}
	}
	b, _ := json.MarshalIndent(rep, "", " ")
	if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(dataPath(), b, 0o644); err != nil {
		return err
	}
	text := render(rep)
	fmt.Print(text)
	return os.WriteFile(*out, []byte(text), 0o644)
}

// measure is one of issue 15's targets as one run measured it.
type measure struct {
	id, name, target string
	value, base      string
	met              *bool // nil: no target, or not measured
}

func boolp(b bool) *bool { return &b }

func kb(b float64) string { return fmt.Sprintf("%.1f KB", b/1000) }

// measures lists issue 15's measures for one run (those it measured).
func measures(r *Results) []measure {
	var ms []measure
	if len(r.Throughput) > 0 && strings.HasPrefix(r.Throughput[0].Server, "baseline") {
		b := r.Throughput[0].FramesPerSec
		for _, m := range []struct {
			server, id, name, target string
			share                    float64
		}{
			{"sprout, embedded SQLite", "telemetry-embedded", "telemetry frames/s, embedded store", ">= 50 % of the baseline", 0.5},
			{"sprout, Postgres", "telemetry-postgres", "telemetry frames/s, Postgres", ">= 40 % of the baseline", 0.4},
			{"sprout, no storage (memory)", "telemetry-nostorage", "telemetry frames/s, no storage", ">= 80 % of the baseline", 0.8},
		} {
			for _, t := range r.Throughput {
				if t.Server == m.server {
					ms = append(ms, measure{id: m.id, name: m.name, target: m.target,
						value: fmt.Sprintf("%.1fk (%.0f %%)", t.FramesPerSec/1000, 100*t.FramesPerSec/b),
						base:  fmt.Sprintf("decode+ack %.1fk", b/1000), met: boolp(t.FramesPerSec >= m.share*b)})
				}
			}
		}
	}
	if m := r.Memory; m != nil {
		ms = append(ms, measure{id: "rss-10k", name: fmt.Sprintf("RSS per idle pot, %d pots, 1 node", m.Devices), target: "<= 6 KB",
			value: kb(m.BytesPerDev), base: "goroutine+buffer " + kb(m.BaselinePerDev), met: boolp(m.BytesPerDev <= memTargetBytes)})
	}
	if m := r.BigIdle; m != nil {
		ms = append(ms, measure{id: "rss-50k", name: fmt.Sprintf("RSS per idle pot, %d pots, %d nodes", m.Pots, m.Nodes), target: "<= 6 KB",
			value: kb(m.BytesPerPot), base: fmt.Sprintf("goroutine+buffer %s (%d processes)", kb(m.BasePerPot), m.BaseProcesses), met: boolp(m.BytesPerPot <= memTargetBytes)})
		ms = append(ms, measure{id: "connect-50k", name: fmt.Sprintf("time to connect %d pots", m.Pots), target: "report",
			value: fmt.Sprintf("%.1f s", m.ConnectSecs), base: fmt.Sprintf("%.1f s (ramp %.0f/s: %.1f s at least)", m.BaseConnectSecs, m.ConnectRate, float64(m.Pots)/m.ConnectRate)})
	}
	if c := r.Commands; c != nil {
		ms = append(ms, measure{id: "command-10k", name: fmt.Sprintf("command round trip at %d/s, %d pots", c.Rate, c.Devices), target: "p99 <= 5 ms",
			value: fmt.Sprintf("p50 %.1f, p99 %.1f ms (%d of %d done)", c.P50Ms, c.P99Ms, c.Done, c.Sent), base: "-",
			met: boolp(c.Done > 0 && c.Done == c.Sent && c.P99Ms <= 5)})
	}
	if c := r.Cluster; c != nil {
		ms = append(ms, measure{id: "command-cross-member", name: "command round trip, 3 nodes, cross-member", target: "p99 <= 10 ms",
			value: fmt.Sprintf("p50 %.1f, p99 %.1f ms", c.ThreeNodeP50Ms, c.ThreeNodeP99Ms), base: fmt.Sprintf("1 node: p99 %.1f ms", c.OneNodeP99Ms),
			met: boolp(c.ThreeNodeP99Ms > 0 && c.ThreeNodeP99Ms <= 10)})
	}
	if len(r.WeChat) > 0 {
		w := r.WeChat[len(r.WeChat)-1]
		base := "-"
		if len(r.WeChat) > 1 {
			base = fmt.Sprintf("at %d/s: p99 %.1f ms", r.WeChat[0].Rate, r.WeChat[0].TapP99Ms)
		}
		ms = append(ms, measure{id: "tap-push", name: fmt.Sprintf("tap -> result pushed at %d taps/s", w.Rate), target: "p99 <= 20 ms",
			value: fmt.Sprintf("p50 %.1f, p99 %.1f ms (%.0f/s achieved)", w.TapP50Ms, w.TapP99Ms, w.Achieved), base: base,
			met: boolp(w.Pushed > 0 && w.TapP99Ms <= 20)})
	}
	for _, h := range r.History {
		for _, q := range []struct {
			kind     string
			lat, bas Latency
		}{{"readings", h.Readings, h.BaseReadings}, {"buckets", h.Buckets, h.BaseBuckets}} {
			name := fmt.Sprintf("history, %s: a pot's last 24 h of readings, %s readings stored", h.Backend, millions(h.Dataset.Readings))
			if q.kind == "buckets" {
				name = fmt.Sprintf("history, %s: a pot's %s in 1 h buckets, %s readings stored", h.Backend, dur(h.Dataset.PerPot, h.Dataset.Interval), millions(h.Dataset.Readings))
			}
			base := "-"
			if q.bas.N > 0 {
				base = fmt.Sprintf("%s stored: p99 %.1f ms", millions(h.Baseline.Readings), q.bas.P99Ms)
			}
			ms = append(ms, measure{id: "history-" + h.Backend + "-" + q.kind, name: name, target: "< 10 ms",
				value: fmt.Sprintf("p50 %.1f, p99 %.1f, max %.1f ms", q.lat.P50Ms, q.lat.P99Ms, q.lat.MaxMs), base: base, met: boolp(historyMet(q.lat))})
		}
	}
	if o := r.OTA; o != nil {
		for _, x := range o.Runs {
			done := fmt.Sprintf("%.0f s", x.TookSecs)
			if !x.Completed {
				done = fmt.Sprintf("stopped at %.0f s, %d of %d running; projected %s", x.TookSecs, x.Running, o.Pots, hms(x.ProjectedSecs))
			}
			ms = append(ms, measure{id: fmt.Sprintf("ota-%d", x.Pace),
				name:   fmt.Sprintf("staged OTA rollout (%s), %d pots x %s, node pace %d chunks/s: time to complete; telemetry ack p99 during", strings.Trim(strings.Join(strings.Fields(fmt.Sprint(o.Stages)), ","), "[]"), o.Pots, kib(o.ImageBytes), x.Pace),
				target: "report (issue 16)",
				value:  fmt.Sprintf("%s; %.0f chunks/s; p99 %.1f ms; RSS peak %.0f MiB", done, x.ChunksPerSec, x.DuringMs.P99, x.RSSDuringPeak),
				base:   fmt.Sprintf("no rollout: p99 %.1f ms; RSS peak %.0f MiB", x.BeforeMs.P99, x.RSSBeforePeak)})
		}
	}
	return ms
}

func kib(n int) string {
	if n >= 1<<20 && n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d KiB", n>>10)
}

func hms(secs float64) string {
	d := time.Duration(secs) * time.Second
	if d >= time.Hour {
		return fmt.Sprintf("%.1f h", d.Hours())
	}
	if d >= time.Minute {
		return fmt.Sprintf("%.1f min", d.Minutes())
	}
	return fmt.Sprintf("%.0f s", secs)
}

func millions(n int64) string {
	if n >= 1_000_000 && n%1_000_000 == 0 {
		return fmt.Sprintf("%dM", n/1_000_000)
	}
	if n >= 1_000_000 {
		return fmt.Sprintf("%.1fM", float64(n)/1e6)
	}
	return fmt.Sprintf("%d", n)
}

func render(rep *Report) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Benchmarks\n\nWritten by `make bench` (`%s`) on %s. How to run it and what each part measures: docs/simulations.md, \"Benchmarks\".\n\n",
		rep.Command, rep.Written.Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "Machine: %s. Server(s) and simulators share the machine; every ratio is against a baseline measured in the same run. ", rep.Machine)
	b.WriteString("Each measure appears once per run of the suite, beside that run's own baseline. A measure that misses its target links the profile taken while it was measured (`go tool pprof -top -nodecount=25`).\n\n")
	for _, r := range rep.Runs {
		fmt.Fprintf(&b, "- Run %d: started %s, %s, parts: %s.\n", r.Run, r.Started.Format("2006-01-02 15:04 MST"),
			time.Duration(r.TookSecs*float64(time.Second)).Round(time.Second), strings.Join(r.Parts, ", "))
	}
	b.WriteString("\n## Issue 15's targets\n\n")
	// One row per measure id, in the order the first run that has it lists it.
	var order []string
	names := map[string]measure{}
	per := make([]map[string]measure, len(rep.Runs))
	for i, r := range rep.Runs {
		per[i] = map[string]measure{}
		for _, m := range measures(r) {
			per[i][m.id] = m
			if _, ok := names[m.id]; !ok {
				order = append(order, m.id)
				names[m.id] = m
			}
		}
	}
	b.WriteString("| measure | target |")
	for _, r := range rep.Runs {
		fmt.Fprintf(&b, " run %d | baseline, run %d |", r.Run, r.Run)
	}
	b.WriteString("\n|---|---|")
	for range rep.Runs {
		b.WriteString("---|---|")
	}
	b.WriteString("\n")
	for _, id := range order {
		fmt.Fprintf(&b, "| %s | %s |", names[id].name, names[id].target)
		for i, r := range rep.Runs {
			m, ok := per[i][id]
			if !ok {
				b.WriteString(" - | - |")
				continue
			}
			v := m.value
			if m.met != nil {
				if *m.met {
					v += " met"
				} else {
					v += " **missed**"
					if p := r.Profiles[id]; p != "" {
						v += fmt.Sprintf(" ([profile](%s))", p)
					}
				}
			}
			fmt.Fprintf(&b, " %s | %s |", v, m.base)
		}
		b.WriteString("\n")
	}
	b.WriteString("\nKB is 1,000 bytes. Each section below gives the details of every run.\n")
	renderThroughput(&b, rep.Runs)
	renderMemory(&b, rep.Runs)
	renderBigIdle(&b, rep.Runs)
	renderCommands(&b, rep.Runs)
	renderHistory(&b, rep.Runs)
	renderWeChat(&b, rep.Runs)
	renderCluster(&b, rep.Runs)
	renderMQTT(&b, rep.Runs)
	renderOTA(&b, rep.Runs)
	return b.String()
}

func renderThroughput(b *strings.Builder, runs []*Results) {
	var t0 *Throughput
	for _, r := range runs {
		if len(r.Throughput) > 0 {
			t0 = &r.Throughput[0]
			break
		}
	}
	if t0 == nil {
		return
	}
	b.WriteString("\n## Telemetry throughput\n\n")
	fmt.Fprintf(b, "%d plants, each keeping %d frames in flight (flood), over authenticated TCP connections; steady-state acked frames/s after the ramp. ", t0.Devices, t0.Window)
	b.WriteString("The baseline speaks the same framing and handshake, then only decodes and acks. Sprout's frames go through the device grain (dedupe, thresholds) and the store; an ack means stored.\n\n")
	b.WriteString("| run | server | frames/s | vs baseline | ack p50 | ack p99 |\n|---|---|---:|---:|---:|---:|\n")
	for _, r := range runs {
		if len(r.Throughput) == 0 {
			continue
		}
		base := r.Throughput[0].FramesPerSec
		for _, t := range r.Throughput {
			fmt.Fprintf(b, "| %d | %s | %.0f | %.0f %% | %.2f ms | %.2f ms |\n", r.Run, t.Server, t.FramesPerSec, 100*t.FramesPerSec/base, t.P50Ms, t.P99Ms)
		}
	}
	b.WriteString("\nTargets (issue 15): embedded store >= 50 % of the baseline, Postgres >= 40 %, no storage >= 80 %.\n")
}

func renderMemory(b *strings.Builder, runs []*Results) {
	first := true
	for _, r := range runs {
		m := r.Memory
		if m == nil {
			continue
		}
		if first {
			fmt.Fprintf(b, "\n## Memory per connected idle pot, one node\n\n%d plants connected and idle (reporting every 60 s, pinging every 30 s) to one node with the embedded store; RSS after every pot connected and 3 s of quiet, minus RSS before, divided by the pots.\n\n", m.Devices)
			b.WriteString("| run | RSS before | RSS after | baseline (a goroutine and a buffer per socket) | sprout (socket, connection, device grain, embedded store) |\n|---|---:|---:|---:|---:|\n")
			first = false
		}
		fmt.Fprintf(b, "| %d | %.0f MiB | %.0f MiB | %.0f B | %.0f B |\n", r.Run, m.RSSBeforeMiB, m.RSSAfterMiB, m.BaselinePerDev, m.BytesPerDev)
	}
	if !first {
		b.WriteString("\nTarget (issue 15): <= 6 KB per pot, its grain included, at 10,000 and at 50,000 pots.\n")
	}
}

func renderBigIdle(b *strings.Builder, runs []*Results) {
	first := true
	for _, r := range runs {
		m := r.BigIdle
		if m == nil {
			continue
		}
		if first {
			fmt.Fprintf(b, "\n## Memory per connected idle pot, %d pots over several nodes\n\n", m.Pots)
			fmt.Fprintf(b, "One process holds about 19,990 sockets on these machines, so the pots are spread over %d `sprout serve` nodes of one cluster (Consul, one shared Postgres; a pot's connection lives on the node it dialled, its grain wherever the cluster places it) and come from `sprout sim --processes %d` (each process on its own loopback source addresses, starting %.0f plants/s). ", m.Nodes, m.SimProcesses, m.ConnectRate/float64(m.SimProcesses))
			fmt.Fprintf(b, "RSS is summed over the nodes: after every pot connected (the nodes' `sprout_devices_connected`) and 3 s of quiet, minus before, divided by the pots. The baseline is measured the same way across %d baseline processes (a goroutine and a buffer per socket; connected = its open sockets), not extrapolated. Time to connect runs from starting the simulators to the last pot past its handshake; the simulators' ramp sets a floor.\n\n", m.BaseProcesses)
			b.WriteString("| run | pots | nodes | RSS before (sum) | RSS after (sum) | baseline per pot | sprout per pot | baseline: all connected | sprout: all connected |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
			first = false
		}
		fmt.Fprintf(b, "| %d | %d | %d | %.0f MiB | %.0f MiB | %.0f B | %.0f B | %.1f s | %.1f s |\n", r.Run, m.Pots, m.Nodes,
			m.RSSBeforeMiB, m.RSSAfterMiB, m.BasePerPot, m.BytesPerPot, m.BaseConnectSecs, m.ConnectSecs)
	}
	if !first {
		b.WriteString("\nTarget (issue 15): <= 6 KB per pot. The one-node run above uses the embedded store; these nodes use Postgres (a cluster needs one shared store).\n")
	}
}

func renderCommands(b *strings.Builder, runs []*Results) {
	first := true
	for _, r := range runs {
		c := r.Commands
		if c == nil {
			continue
		}
		if first {
			fmt.Fprintf(b, "\n## Command round trip\n\n`read_now` commands through the HTTP API (request -> grain -> pot -> result -> grain -> response) to random pots among %d connected, paced at %d/s.\n\n", c.Devices, c.Rate)
			b.WriteString("| run | achieved | sent | done | other outcomes | p50 | p99 | max |\n|---|---:|---:|---:|---|---:|---:|---:|\n")
			first = false
		}
		fmt.Fprintf(b, "| %d | %.0f/s | %d | %d | %v | %.2f ms | %.2f ms | %.1f ms |\n", r.Run, c.Achieved, c.Sent, c.Done, c.Other, c.P50Ms, c.P99Ms, c.MaxMs)
	}
	if !first {
		b.WriteString("\nTarget (issue 15): p99 <= 5 ms at 1,000 commands/s over 10,000 pots.\n")
	}
}

func renderHistory(b *strings.Builder, runs []*Results) {
	first := true
	for _, r := range runs {
		for _, h := range r.History {
			if first {
				d := h.Dataset
				b.WriteString("\n## History queries\n\n")
				fmt.Fprintf(b, "Each backend holds a dataset shaped like a fleet: %d pots x %d readings (one every %s, %s in all; `received_at` over the %s before the dataset's end, seq increasing, about one soil reading in a thousand NaN), ", d.Pots, d.PerPot, d.Interval, millions(d.Readings), dur(d.PerPot, d.Interval))
				fmt.Fprintf(b, "loaded through `actors.Store.Append` (%d consecutive readings of one pot per Append, the fleet's hours in time order, %d goroutines, the store's default options) once into a cache outside the repository and reused while complete; then `store.Maintainer.Maintain` once (hourly rollups) where the store has it. ", d.Batch, *histWorkers)
				fmt.Fprintf(b, "Timed, for %d random pots each (one caller, after one untimed query): `Readings` of the last 24 h (limit 10,000) and `Buckets` of the whole span (30 days by default) in 1 h buckets from an hour-aligned start. The baseline is the same queries against a %s-reading dataset of the same shape in the same run. SQLite runs inside the bench process; Postgres is a local server with durable settings.\n\n", h.Readings.N, millions(h.Baseline.Readings))
				b.WriteString("| run | backend | readings stored | readings 24 h p50 / p99 / max | rows | buckets 30 d p50 / p99 / max | rows | baseline (same queries): readings p99, buckets p99 | load |\n|---|---|---:|---|---:|---|---:|---|---|\n")
				first = false
			}
			load := fmt.Sprintf("%.0f readings/s (%.0f min; Maintain %.0f s), %s", h.Dataset.PerSecond, h.Dataset.LoadSecs/60, h.Dataset.MaintSecs, h.Dataset.LoadedAt.Format("2006-01-02"))
			if h.Dataset.Reused {
				load += ", reused"
			}
			errs := ""
			if n := h.Readings.Errors + h.Buckets.Errors; n > 0 {
				errs = fmt.Sprintf(" (%d errors)", n)
			}
			if n := h.Readings.Short + h.Buckets.Short; n > 0 {
				errs += fmt.Sprintf(" (%d short answers)", n)
			}
			fmt.Fprintf(b, "| %d | %s%s | %s | %.1f / %.1f / %.1f ms | %.0f | %.1f / %.1f / %.1f ms | %.0f | %s: %.1f ms, %.1f ms | %s |\n", r.Run, h.Backend, errs, millions(h.Dataset.Readings),
				h.Readings.P50Ms, h.Readings.P99Ms, h.Readings.MaxMs, h.Readings.Rows, h.Buckets.P50Ms, h.Buckets.P99Ms, h.Buckets.MaxMs, h.Buckets.Rows,
				millions(h.Baseline.Readings), h.BaseReadings.P99Ms, h.BaseBuckets.P99Ms, load)
		}
	}
	if !first {
		b.WriteString("\nTarget (issue 15): each query under 10 ms (p99 here) with 100 million readings stored.\n")
	}
}

func dur(n int, interval string) string {
	iv, err := time.ParseDuration(interval)
	if err != nil {
		return "?"
	}
	d := time.Duration(n) * iv
	if d >= 24*time.Hour {
		return fmt.Sprintf("%.0f days", d.Hours()/24)
	}
	return d.String()
}

func renderWeChat(b *strings.Builder, runs []*Results) {
	first := true
	for _, r := range runs {
		for _, w := range r.WeChat {
			if first {
				b.WriteString("\n## WeChat: tap -> result pushed, threshold -> alert pushed\n\n")
				b.WriteString("Through the simulated WeChat platform (real HTTP both ways): a user taps \"water\" (a signed callback); the latency ends when the platform records the pushed result. Each user has one pot; the pots run a 1 ms watering; a user taps again only once their last result arrived. Alerts: pots send a dry reading; the latency ends when the alert push is recorded. The node uses the embedded store, so each push is written to the outbox (fsync) before it is sent.\n\n")
				b.WriteString("| run | users | taps/s asked | achieved | taps | pushed | outcomes | tap p50 | tap p99 | alerts | alert p50 | alert p99 |\n|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|\n")
				first = false
			}
			fmt.Fprintf(b, "| %d | %d | %d | %.0f | %d | %d | %v | %.1f ms | %.1f ms | %d | %.1f ms | %.1f ms |\n", r.Run, w.Users, w.Rate, w.Achieved,
				w.Taps, w.Pushed, w.Outcomes, w.TapP50Ms, w.TapP99Ms, w.Alerts, w.AlertP50Ms, w.AlertP99Ms)
		}
	}
	if !first {
		b.WriteString("\nTargets: tap -> push p99 <= 20 ms at 1,000 taps/s (issue 15); alert p99 under 20 ms (issue 3).\n")
	}
}

func renderCluster(b *strings.Builder, runs []*Results) {
	first := true
	for _, r := range runs {
		c := r.Cluster
		if c == nil {
			continue
		}
		if first {
			b.WriteString("\n## Cluster: one node against three\n\n")
			fmt.Fprintf(b, "%d plants reporting every 50 ms (2 frames in flight) spread over the nodes' edges; Consul for membership, one shared Postgres (fsync on). Command round trips: `read_now` through node 1's HTTP API to random pots, 20 at a time; with three nodes two thirds of the grains (and connections) live on other members. Failover: node 2 SIGKILLed with every plant connected; time until every pot is online again (per its grain). All nodes share the machine's 2 cores, so three nodes are not expected to beat one here: the comparison shows the cost of crossing members.\n\n", c.Devices)
			b.WriteString("| run | 1 node: frames/s | 1 node: command p50 / p99 | 3 nodes: frames/s | 3 nodes: command p50 / p99 | failover |\n|---|---:|---:|---:|---:|---:|\n")
			first = false
		}
		fmt.Fprintf(b, "| %d | %.0f | %.1f / %.1f ms | %.0f | %.1f / %.1f ms | %.1f s (%d pots) |\n", r.Run, c.OneNodeFPS, c.OneNodeP50Ms, c.OneNodeP99Ms,
			c.ThreeNodeFPS, c.ThreeNodeP50Ms, c.ThreeNodeP99Ms, c.FailoverMs/1000, c.FailoverDevs)
	}
	if !first {
		b.WriteString("\nTargets: cross-member command p99 <= 10 ms (issue 15); failover within 10 s (issue 5).\n")
	}
}

func renderMQTT(b *strings.Builder, runs []*Results) {
	first := true
	for _, r := range runs {
		m := r.MQTT
		if m == nil || len(m.Runs) == 0 {
			continue
		}
		if first {
			b.WriteString("\n## MQTT and TLS\n\n")
			fmt.Fprintf(b, "%d clients, each keeping %d QoS 1 publishes of a JSON reading in flight, for the run's length; PUBACKs/s in the steady part. "+
				"Sprout and Mosquitto get the same load generator (paho.mqtt.golang); the TCP edge row uses the plant simulator with the same clients and window. "+
				"Only Sprout's PUBACK means stored (fsync); Mosquitto keeps QoS 1 messages in memory (persistence off) and has no subscriber to deliver them to. "+
				"Where the MQTT and TCP rows agree, the grain and the store, not the MQTT edge, bound the rate.\n\n", m.Clients, m.Window)
			b.WriteString("| run | server | readings/s | vs Mosquitto | p50 | p99 |\n|---|---|---:|---:|---:|---:|\n")
			first = false
		}
		var mosq float64
		for _, t := range m.Runs {
			if strings.HasPrefix(t.Server, "Mosquitto") {
				mosq = t.FramesPerSec
			}
		}
		for _, t := range m.Runs {
			vs := "-"
			if mosq > 0 {
				vs = fmt.Sprintf("%.2fx", t.FramesPerSec/mosq)
			}
			fmt.Fprintf(b, "| %d | %s | %.0f | %s | %.2f ms | %.2f ms |\n", r.Run, t.Server, t.FramesPerSec, vs, t.P50Ms, t.P99Ms)
		}
		if m.MosquittoNote != "" {
			fmt.Fprintf(b, "\nRun %d: %s\n", r.Run, m.MosquittoNote)
		}
	}
	if !first {
		b.WriteString("\nTarget (issue 14): Sprout's durable MQTT at least 1.5x Mosquitto's QoS 1 rate on this machine.\n")
	}
	first = true
	for _, r := range runs {
		m := r.MQTT
		if m == nil || m.IdleSessions == 0 {
			continue
		}
		if first {
			fmt.Fprintf(b, "\nServer RSS per idle connection, %d pots connected to a node with the embedded store (grains included):\n\n", m.IdleSessions)
			b.WriteString("| run | MQTT session | TLS connection to the TCP edge | plaintext TCP connection |\n|---|---:|---:|---:|\n")
			first = false
		}
		fmt.Fprintf(b, "| %d | %.0f B | %.0f B | %.0f B |\n", r.Run, m.BytesPerMQTT, m.BytesPerTLS, m.BytesPerTCP)
	}
}

func renderOTA(b *strings.Builder, runs []*Results) {
	first := true
	for _, r := range runs {
		o := r.OTA
		if o == nil || len(o.Runs) == 0 {
			continue
		}
		if first {
			b.WriteString("\n## Firmware rollout (OTA) while the fleet reports\n\n")
			fmt.Fprintf(b, "One `sprout serve` node (embedded store, `--firmware-key`), %d simulated pots (`simulations/plant` with OTA on: they check the signature and product, ask for %d-byte chunks one at a time, hash the image, reboot after %s and come back with the new version in `Hello`), "+
				"each reporting a reading every %s (window 1: the ack latency is a reading's write to its Ack, after the durable write). "+
				"The image (%s, random) is uploaded through the API; the rollout (stages %v, failure threshold 5 %%) is started through the API. "+
				"First %.0f s without a rollout (the baseline: same node, same pots, same run), then the rollout until the node records it completed (every pot running the new version) or the run's limit. "+
				"Each run is a fresh node at one `--ota-chunks-per-second`. RSS is the node's (median and peak of samples every 500 ms), CPU the node's in cores; the simulated pots run in the bench process on the same machine.\n\n",
				o.Pots, o.ChunkBytes, plant.DefaultRebootTime, time.Duration(o.ReportIntervalMs*float64(time.Millisecond)), kib(o.ImageBytes), o.Stages, o.BeforeSecs)
			b.WriteString("| run | pace (chunks/s) | rollout | chunks/s achieved (peak) | readings/s before / during | ack p50 / p99 / max, no rollout | ack p50 / p99 / max, during | p50 / p99 after its first 15 s | node RSS median / peak, no rollout | during | node CPU no rollout / during | failures |\n|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
			first = false
		}
		for _, x := range o.Runs {
			done := fmt.Sprintf("completed in %s (%d running)", hms(x.TookSecs), x.Running)
			if !x.Completed {
				done = fmt.Sprintf("stopped after %s: %d of %d running, %v; projected %s", hms(x.TookSecs), x.Running, o.Pots, x.States, hms(x.ProjectedSecs))
			}
			if x.Profile != "" {
				done += fmt.Sprintf(" ([node CPU profile](%s))", x.Profile)
			}
			fails := fmt.Sprintf("%d", x.OTAFailed)
			if len(x.Errors) > 0 {
				fails += fmt.Sprintf("; sim errors %v", x.Errors)
			}
			fmt.Fprintf(b, "| %d | %d | %s | %.0f (%.0f) | %.0f / %.0f | %.1f / %.1f / %.0f ms | %.1f / %.1f / %.0f ms | %.1f / %.1f ms | %.0f / %.0f MiB | %.0f / %.0f MiB | %.2f / %.2f | %s |\n",
				r.Run, x.Pace, done, x.ChunksPerSec, x.PeakChunksSec, x.ReadingsPerSec[0], x.ReadingsPerSec[1],
				x.BeforeMs.P50, x.BeforeMs.P99, x.BeforeMs.Max, x.DuringMs.P50, x.DuringMs.P99, x.DuringMs.Max, x.DuringLaterMs.P50, x.DuringLaterMs.P99,
				x.RSSBefore, x.RSSBeforePeak, x.RSSDuring, x.RSSDuringPeak, x.CPUBefore, x.CPUDuring, fails)
		}
	}
	if !first {
		b.WriteString("\nIssue 16: a 2,000-pot staged rollout of a 1 MiB image: time to complete, telemetry ack p99 during the rollout against without it, node memory during it. `make bench-ota`; docs/ota.md \"Benchmark\".\n")
	}
}
