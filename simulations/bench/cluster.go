package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sprout-iot/sprout/cluster/consultest"
	"github.com/sprout-iot/sprout/simulations/fleet"
	"github.com/sprout-iot/sprout/simulations/plant"
)

// ClusterResult compares one node and three over Consul and Postgres in the same run.
type ClusterResult struct {
	Devices        int      `json:"devices"`
	OneNodeFPS     float64  `json:"one_node_frames_per_second"`
	ThreeNodeFPS   float64  `json:"three_node_frames_per_second"`
	OneNodeP50Ms   float64  `json:"one_node_command_p50_ms"`
	OneNodeP99Ms   float64  `json:"one_node_command_p99_ms"`
	ThreeNodeP50Ms float64  `json:"three_node_command_p50_ms"`
	ThreeNodeP99Ms float64  `json:"three_node_command_p99_ms"`
	FailoverMs     float64  `json:"failover_ms"`
	FailoverDevs   int      `json:"failover_devices"`
	cpuRaw         []string // the three nodes' CPU profiles during the three-node command run
}

// clusterBench runs a fleet against one node, then three (Consul, shared Postgres), measuring
// telemetry throughput and command round trips through node 1's API (two thirds of them to
// grains on other members); then it SIGKILLs a node and measures until every device is online again.
func clusterBench(bin, tmp, dsn string, devices int, dur time.Duration, prof *profiler) (*ClusterResult, error) {
	agent, err := consultest.NewAgent(consultest.Config{})
	if err != nil {
		return nil, fmt.Errorf("consul: %w", err)
	}
	defer agent.Close()
	res := &ClusterResult{Devices: devices}
	cs := fleet.NewCredentials("cl-", devices)
	for _, n := range []int{1, 3} {
		fmt.Fprintf(os.Stderr, "cluster: %d node(s) ...\n", n)
		var nodes []*proc
		for i := 0; i < n; i++ {
			p, err := startSprout(bin, filepath.Join(tmp, fmt.Sprintf("cl%d-%d", n, i)), dsn, nil,
				"SPROUT_CLUSTER=consul", "SPROUT_CONSUL_ADDR="+agent.Addr(), "SPROUT_GRAIN_IDLE_TIMEOUT=1m")
			if err != nil {
				return nil, err
			}
			nodes = append(nodes, p)
		}
		stopAll := func() {
			for _, p := range nodes {
				if p != nil {
					p.stop()
				}
			}
		}
		if err := provisionAll(nodes[0], cs); err != nil {
			stopAll()
			return nil, err
		}
		var edges []string
		for _, p := range nodes {
			edges = append(edges, p.edge)
		}
		waitMembers(nodes[0], n)
		ctx, cancel := context.WithCancel(context.Background())
		var connected atomic.Int64
		repc := make(chan *fleet.Report, 1)
		go func() {
			rep, _ := fleet.Run(ctx, fleet.Options{Devices: cs, Servers: edges, ReportInterval: 50 * time.Millisecond,
				Window: 2, Duration: dur, ConnectRate: 2000,
				Progress: func(s fleet.Snapshot) { connected.Store(s.Connected) },
				Plant:    func(_ int, c *plant.Config) { c.MinBackoff, c.MaxBackoff = 50*time.Millisecond, time.Second }})
			repc <- rep
		}()
		time.Sleep(dur / 3)
		var cpus []*capture
		if n == 3 {
			for _, p := range nodes {
				cpus = append(cpus, prof.cpu(p, 3*time.Second))
			}
		}
		p50, p99 := commandRTT(nodes[0], cs, 300, 3*time.Second)
		for _, c := range cpus {
			res.cpuRaw = append(res.cpuRaw, c.wait())
		}
		rep := <-repc
		fps := 0.0
		if rep != nil {
			fps = rep.SteadyFramesPerSecond
		}
		if n == 1 {
			res.OneNodeFPS, res.OneNodeP50Ms, res.OneNodeP99Ms = fps, p50, p99
		} else {
			res.ThreeNodeFPS, res.ThreeNodeP50Ms, res.ThreeNodeP99Ms = fps, p50, p99
			// Failover: plants keep reporting; kill node 2; time until all are online again.
			fctx, fcancel := context.WithCancel(context.Background())
			go func() {
				_, _ = fleet.Run(fctx, fleet.Options{Devices: cs, Servers: edges, ReportInterval: 200 * time.Millisecond,
					ConnectRate: 2000, Plant: func(_ int, c *plant.Config) { c.MinBackoff, c.MaxBackoff = 50*time.Millisecond, time.Second }})
			}()
			if err := waitAllOnlineBench(nodes[0], cs, 60*time.Second); err == nil {
				_ = nodes[1].cmd.Process.Kill()
				_ = nodes[1].cmd.Wait()
				killed := time.Now()
				nodes[1] = nil
				time.Sleep(200 * time.Millisecond)
				if err := waitAllOnlineBench(nodes[0], cs, 60*time.Second); err == nil {
					res.FailoverMs = ms(time.Since(killed))
					res.FailoverDevs = devices
				}
			}
			fcancel()
		}
		cancel()
		stopAll()
		fmt.Fprintf(os.Stderr, "  %.0f frames/s; command p50 %.2f ms p99 %.2f ms\n", fps, p50, p99)
	}
	fmt.Fprintf(os.Stderr, "  failover: every device online again %.0f ms after the kill\n", res.FailoverMs)
	return res, nil
}

func waitMembers(p *proc, n int) {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		var m struct{ Members []string }
		if getJSON(p, "/api/v1/cluster", &m) == nil && len(m.Members) == n {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// commandRTT sends n read_now commands, 20 at a time, to random devices through p's API.
func commandRTT(p *proc, cs []fleet.Credential, n int, timeout time.Duration) (p50, p99 float64) {
	client := &http.Client{Timeout: timeout + 5*time.Second}
	var mu sync.Mutex
	var lat []time.Duration
	sem := make(chan struct{}, 20)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			id := cs[rand.IntN(len(cs))].ID
			req, _ := http.NewRequest(http.MethodPost, "http://"+p.http+"/api/v1/devices/"+id+"/commands",
				strings.NewReader(`{"kind":"read_now","timeout_ms":3000}`))
			req.Header.Set("Authorization", "Bearer "+p.token)
			t := time.Now()
			resp, err := client.Do(req)
			if err != nil {
				return
			}
			resp.Body.Close()
			if resp.StatusCode == 200 {
				mu.Lock()
				lat = append(lat, time.Since(t))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return pcts(lat)
}

func waitAllOnlineBench(p *proc, cs []fleet.Credential, within time.Duration) error {
	deadline := time.Now().Add(within)
	pending := map[string]bool{}
	for _, c := range cs {
		pending[c.ID] = true
	}
	for len(pending) > 0 {
		if time.Now().After(deadline) {
			return fmt.Errorf("%d devices not online", len(pending))
		}
		var mu sync.Mutex
		var wg sync.WaitGroup
		sem := make(chan struct{}, 32)
		ids := make([]string, 0, len(pending))
		for id := range pending {
			ids = append(ids, id)
		}
		for _, id := range ids {
			wg.Add(1)
			sem <- struct{}{}
			go func(id string) {
				defer func() { <-sem; wg.Done() }()
				var st struct{ Online bool }
				if getJSON(p, "/api/v1/devices/"+id, &st) == nil && st.Online {
					mu.Lock()
					delete(pending, id)
					mu.Unlock()
				}
			}(id)
		}
		wg.Wait()
		if len(pending) > 0 {
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}
