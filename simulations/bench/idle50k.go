package main

import (
	"bufio"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sprout-iot/sprout/cluster/consultest"
	"github.com/sprout-iot/sprout/simulations/fleet"
)

var (
	bigPots        = flag.Int("big-idle-devices", 50000, "idle pots in the many-pots memory run (several nodes, `sprout sim --processes`); 0 skips it")
	bigPerNode     = flag.Int("big-per-node", 17000, "most pots per node (and per baseline process) in the many-pots run: one process holds about 19,990 sockets here")
	bigPerProc     = flag.Int("big-per-sim", 15000, "most pots per `sprout sim` process in the many-pots run")
	bigConnectRate = flag.Float64("big-connect-rate", 1500, "plants each `sprout sim` process starts per second in the many-pots run")
)

// BigIdleResult is the many-pots memory run: pots spread over several Sprout nodes (one cluster,
// Consul, a shared Postgres) and over several simulator processes; the baseline likewise over
// several baseline processes.
type BigIdleResult struct {
	Pots            int     `json:"pots"`
	Nodes           int     `json:"nodes"`
	SimProcesses    int     `json:"sim_processes"`
	ConnectRate     float64 `json:"connect_rate"` // plants started per second, all simulator processes together
	RSSBeforeMiB    float64 `json:"rss_before_mib"`
	RSSAfterMiB     float64 `json:"rss_after_mib"` // summed over nodes
	BytesPerPot     float64 `json:"bytes_per_pot"`
	ConnectSecs     float64 `json:"connect_seconds"` // simulators started -> every pot past the handshake
	BaseProcesses   int     `json:"baseline_processes"`
	BasePerPot      float64 `json:"baseline_bytes_per_pot"`
	BaseConnectSecs float64 `json:"baseline_connect_seconds"`
	Profile         string  `json:"profile,omitempty"`
}

// bigIdle runs the many-pots memory part: first the baseline (a goroutine and a buffer per
// socket) over several processes, then a Sprout cluster, each with the same simulator processes.
func bigIdle(bin, self, tmp, dsn string, run int, prof *profiler) (*BigIdleResult, error) {
	n := *bigPots
	nodes := max(1, (n+*bigPerNode-1) / *bigPerNode)
	sims := max(1, (n+*bigPerProc-1) / *bigPerProc)
	r := &BigIdleResult{Pots: n, Nodes: nodes, SimProcesses: sims, ConnectRate: *bigConnectRate * float64(sims), BaseProcesses: nodes}
	cs := fleet.NewCredentials(fmt.Sprintf("big%d-", run), n)
	credFile := filepath.Join(tmp, fmt.Sprintf("big-creds-%d.json", run))
	if err := fleet.SaveCredentials(credFile, cs); err != nil {
		return nil, err
	}

	// 1. The baseline, measured across processes as Sprout is.
	fmt.Fprintf(os.Stderr, "memory: %d idle pots on %d baseline processes ...\n", n, nodes)
	var bases []*proc
	stopBases := func() {
		for _, p := range bases {
			p.stop()
		}
	}
	for i := 0; i < nodes; i++ {
		p, err := startBaseline(self, credFile)
		if err != nil {
			stopBases()
			return nil, err
		}
		bases = append(bases, p)
	}
	per, secs, _, _, err := bigIdleRSS(bin, credFile, bases, n, sims, func() int64 {
		var open int64
		for _, p := range bases {
			open += int64(countSockets(p.cmd.Process.Pid))
		}
		return open
	}, nil)
	stopBases()
	if err != nil {
		return nil, fmt.Errorf("baseline: %w", err)
	}
	r.BasePerPot, r.BaseConnectSecs = per, secs
	fmt.Fprintf(os.Stderr, "  baseline %.0f bytes per pot, all connected in %.1f s\n", per, secs)

	// 2. Sprout: one cluster of nodes on Consul and the shared Postgres.
	agent, err := consultest.NewAgent(consultest.Config{})
	if err != nil {
		return nil, fmt.Errorf("consul: %w", err)
	}
	defer agent.Close()
	fmt.Fprintf(os.Stderr, "memory: %d idle pots on %d sprout nodes ...\n", n, nodes)
	var ps []*proc
	defer func() {
		for _, p := range ps {
			p.stop()
		}
	}()
	for i := 0; i < nodes; i++ {
		p, err := startSprout(bin, filepath.Join(tmp, fmt.Sprintf("big%d-%d", run, i)), dsn, nil,
			"SPROUT_CLUSTER=consul", "SPROUT_CONSUL_ADDR="+agent.Addr(), fmt.Sprintf("SPROUT_MAX_CONNECTIONS=%d", *bigPerNode+1000))
		if err != nil {
			return nil, err
		}
		ps = append(ps, p)
	}
	waitMembers(ps[0], nodes)
	if err := provisionAll(ps[0], cs); err != nil {
		return nil, err
	}
	var heaps []string
	var cpus []*capture
	per, secs, r.RSSBeforeMiB, r.RSSAfterMiB, err = bigIdleRSS(bin, credFile, ps, n, sims, func() int64 {
		var c int64
		for _, p := range ps {
			c += connectedGauge(p)
		}
		return c
	}, func(phase string) {
		switch phase {
		case "connecting":
			for _, p := range ps {
				cpus = append(cpus, prof.cpu(p, 10*time.Second))
			}
		case "connected":
			for _, p := range ps {
				heaps = append(heaps, prof.heap(p))
			}
		}
	})
	if err != nil {
		return nil, fmt.Errorf("sprout: %w", err)
	}
	r.BytesPerPot, r.ConnectSecs = per, secs
	fmt.Fprintf(os.Stderr, "  sprout %.0f bytes per pot, all connected in %.1f s\n", per, secs)
	if per > memTargetBytes {
		var secs []profSection
		for i, h := range heaps {
			secs = append(secs, profSection{title: fmt.Sprintf("node %d: heap in use after every pot connected", i+1), raw: h, args: []string{"-sample_index=inuse_space"}})
		}
		for i, c := range cpus {
			secs = append(secs, profSection{title: fmt.Sprintf("node %d: CPU, the first 10 s of connecting", i+1), raw: c.wait()})
		}
		r.Profile = prof.save("rss-50k", run, secs...)
	} else {
		for _, c := range cpus {
			c.wait()
		}
	}
	return r, nil
}

// bigIdleRSS measures the servers' summed RSS, starts `sprout sim --processes` against all of
// them, waits until connected() reaches n, lets them settle 3 s and measures again.
func bigIdleRSS(bin, credFile string, servers []*proc, n, sims int, connected func() int64, phase func(string)) (per, secs, before, after float64, err error) {
	sum := func() float64 {
		var s float64
		for _, p := range servers {
			s += rss(p.cmd.Process.Pid)
		}
		return s
	}
	time.Sleep(2 * time.Second)
	before = sum()
	base := connected()
	var edges []string
	for _, p := range servers {
		edges = append(edges, p.edge)
	}
	args := []string{"sim", "--processes", strconv.Itoa(sims), "--creds", credFile, "--devices", strconv.Itoa(n),
		"--server", strings.Join(edges, ","), "--duration", "0", "--quiet", "--connect-rate", fmt.Sprint(*bigConnectRate)}
	sim := exec.Command(bin, args...)
	sim.Stdout, sim.Stderr = os.Stderr, os.Stderr
	sim.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	start := time.Now()
	if err := sim.Start(); err != nil {
		return 0, 0, 0, 0, err
	}
	defer func() {
		_ = sim.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = sim.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = syscall.Kill(-sim.Process.Pid, syscall.SIGKILL)
			<-done
		}
	}()
	if phase != nil {
		phase("connecting")
	}
	deadline := start.Add(5 * time.Minute)
	lastNote := start
	for {
		c := connected() - base
		if c >= int64(n) {
			break
		}
		if time.Since(lastNote) >= 10*time.Second {
			lastNote = time.Now()
			fmt.Fprintf(os.Stderr, "  %d of %d pots connected after %v\n", c, n, time.Since(start).Round(time.Second))
		}
		if time.Now().After(deadline) {
			return 0, 0, 0, 0, fmt.Errorf("only %d of %d pots connected after %v", c, n, time.Since(start).Round(time.Second))
		}
		time.Sleep(100 * time.Millisecond)
	}
	secs = time.Since(start).Seconds()
	time.Sleep(3 * time.Second)
	after = sum()
	if phase != nil {
		phase("connected")
	}
	return (after - before) / float64(n), secs, before / (1 << 20), after / (1 << 20), nil
}

// connectedGauge reads sprout_devices_connected from a node's /metrics.
func connectedGauge(p *proc) int64 {
	resp, err := http.Get("http://" + p.http + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	var total int64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "sprout_devices_connected") {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			total += int64(v)
		}
	}
	return total
}

// countSockets counts a process's open sockets past the handshake's reach: the baseline has no
// metrics, so its connected pots are its TCP sockets (the listener and a few more are in the
// count taken before the fleet starts).
func countSockets(pid int) int {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name())); err == nil && strings.HasPrefix(l, "socket:") {
			n++
		}
	}
	return n
}

// memTargetBytes is issue 15's target for RSS per idle pot, at 10,000 and at 50,000 pots (6 KB,
// counted as 6,000 bytes).
const memTargetBytes = 6000
