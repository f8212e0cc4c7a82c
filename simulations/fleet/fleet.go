// Package fleet runs many simulated plants in one process against Sprout's edge (or the baseline
// server) and reports what they saw: connections, frames acked per second, ack latency,
// reconnects, command outcomes and errors. It is the engine behind load tests and `sprout sim`;
// it does not judge results, it measures them.
package fleet

import (
	"context"
	"errors"
	"net"
	"runtime"
	"sync"
	"time"

	"github.com/sprout-iot/sprout/simulations/plant"
)

// DefaultConnectRate is how many plants start connecting per second unless Options says otherwise:
// fast enough for 20k devices in 40 s, slow enough not to look like a SYN flood to one edge.
const DefaultConnectRate = 500

// DefaultLoopbackIPs are the source addresses used when every server is on loopback: eight
// addresses lift the ~28k ephemeral ports per source address to about 220k.
var DefaultLoopbackIPs = []string{"127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6", "127.0.0.7", "127.0.0.8"}

// Options describe one fleet run. Devices and Servers are required.
type Options struct {
	Devices []Credential
	// Servers are edge addresses; plant i tries them in order starting at i mod len, so that a
	// fleet spreads over several edges.
	Servers []string
	// LocalIPs are source addresses handed out round-robin (default DefaultLoopbackIPs when all
	// servers are on loopback, else the system's choice).
	LocalIPs []string
	// ConnectRate is plants started per second during the ramp (default DefaultConnectRate).
	ConnectRate float64
	// ReportInterval and Window are passed to every plant (see plant.Config; plant.Flood for
	// closed-loop load).
	ReportInterval time.Duration
	Window         int
	// Duration is how long the fleet runs, ramp included (0: until ctx ends).
	Duration time.Duration
	Seed     int64   // plant i gets Seed+i
	Speed    float64 // simulated seconds per real second, for every plant
	// Progress, if set, is called about every second from the fleet's goroutine.
	Progress func(Snapshot)
	// Plant, if set, adjusts each plant's config before it starts (behaviour knobs, backoff,
	// observers).
	Plant func(i int, cfg *plant.Config)
}

// Snapshot is the fleet's state at one moment.
type Snapshot struct {
	Elapsed        time.Duration `json:"elapsed_ns"`
	Started        int           `json:"started"`
	Connected      int64         `json:"connected"`
	FramesSent     uint64        `json:"frames_sent"`
	FramesAcked    uint64        `json:"frames_acked"`
	SentPerSecond  float64       `json:"sent_per_second"`  // over the last interval
	AckedPerSecond float64       `json:"acked_per_second"` // over the last interval
	P99            time.Duration `json:"p99_ns"`           // ack latency since the start
	Reconnects     uint64        `json:"reconnects"`
	Errors         uint64        `json:"errors"`
}

// Report is what a fleet run measured. It marshals to JSON as is.
type Report struct {
	Devices        int           `json:"devices"`
	Servers        []string      `json:"servers"`
	Window         int           `json:"window"`
	ReportInterval time.Duration `json:"report_interval_ns"` // -1: flood
	Elapsed        time.Duration `json:"elapsed_ns"`         // start to stop, ramp included, drain excluded
	RampTime       time.Duration `json:"ramp_ns"`            // until the last plant started

	ConnectedMax   int64 `json:"connected_max"`
	ConnectedFinal int64 `json:"connected_final"` // just before the fleet was stopped

	FramesSent    uint64 `json:"frames_sent"`
	FramesAcked   uint64 `json:"frames_acked"`
	FramesResent  uint64 `json:"frames_resent"`
	FramesDropped uint64 `json:"frames_dropped"`
	// FramesPerSecond is acked frames over Elapsed; SteadyFramesPerSecond is the mean of the
	// whole seconds after the ramp (0 if there were none); PeakFramesPerSecond the best second.
	FramesPerSecond       float64    `json:"frames_per_second"`
	SteadyFramesPerSecond float64    `json:"steady_frames_per_second"`
	PeakFramesPerSecond   float64    `json:"peak_frames_per_second"`
	Series                []Snapshot `json:"series"` // one per second
	// CPU is the whole process's CPU time (user + system) over Elapsed, server included when it
	// runs in the same process. FramesPerCPUSecond = acked / CPU: on a shared machine it moves
	// less with other load than frames per second do.
	CPU                time.Duration `json:"cpu_ns"`
	FramesPerCPUSecond float64       `json:"frames_per_cpu_second"`

	// Memory is the whole process's, sampled just before stopping: with the server in the same
	// process (tests, benchmarks) it includes the server's share.
	Memory Memory `json:"memory"`

	AckLatency plant.Latency     `json:"ack_latency"`
	Reconnects uint64            `json:"reconnects"`
	Commands   map[string]uint64 `json:"commands"` // by status: DONE, FAILED, REJECTED, BUSY
	Errors     map[string]uint64 `json:"errors"`   // by kind: "dial", "closed: AUTH_FAILED", ...
	Stats      plant.Snapshot    `json:"stats"`    // every counter
}

// Memory is a few Go runtime figures, for extrapolating to larger fleets.
type Memory struct {
	HeapInuse      uint64 `json:"heap_inuse"`
	StackInuse     uint64 `json:"stack_inuse"`
	Goroutines     int    `json:"goroutines"`
	BytesPerDevice uint64 `json:"bytes_per_device"` // (heap + stacks) / connected devices at stop
}

func memory(connected int64) Memory {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	m := Memory{HeapInuse: ms.HeapInuse, StackInuse: ms.StackInuse, Goroutines: runtime.NumGoroutine()}
	if connected > 0 {
		m.BytesPerDevice = (m.HeapInuse + m.StackInuse) / uint64(connected)
	}
	return m
}

func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Run starts the plants at ConnectRate, runs them until Duration passes or ctx ends, stops them
// (each waits briefly for its in-flight acks) and reports. It fails only on invalid options.
func Run(ctx context.Context, o Options) (*Report, error) {
	if len(o.Devices) == 0 {
		return nil, errors.New("fleet: no devices")
	}
	if len(o.Servers) == 0 {
		return nil, errors.New("fleet: no servers")
	}
	if o.ConnectRate <= 0 {
		o.ConnectRate = DefaultConnectRate
	}
	if o.LocalIPs == nil {
		loop := true
		for _, s := range o.Servers {
			loop = loop && isLoopback(s)
		}
		if loop {
			o.LocalIPs = DefaultLoopbackIPs
		}
	}
	if o.Seed == 0 {
		o.Seed = 1
	}

	// Plants stop on plantCtx, a moment after runCtx ends, so that the connections counted at the
	// end are those the run kept, not those already closing.
	plantCtx, stopPlants := context.WithCancel(ctx)
	defer stopPlants()
	runCtx := plantCtx
	if o.Duration > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeout(runCtx, o.Duration)
		defer cancel()
	}

	stats := &plant.Stats{}
	cpu0 := cpuTime()
	start := time.Now()
	var (
		plants  sync.WaitGroup
		started int
		startMu sync.Mutex
		rampEnd time.Duration
		ramp    = make(chan struct{})
	)
	go func() {
		defer close(ramp)
		for i, cred := range o.Devices {
			at := time.Duration(float64(i) / o.ConnectRate * float64(time.Second))
			if d := time.Until(start.Add(at)); d > 0 {
				t := time.NewTimer(d)
				select {
				case <-runCtx.Done():
					t.Stop()
					return
				case <-t.C:
				}
			} else if runCtx.Err() != nil {
				return
			}
			servers := make([]string, len(o.Servers))
			for j := range servers {
				servers[j] = o.Servers[(i+j)%len(o.Servers)]
			}
			cfg := plant.Config{
				ID: cred.ID, Secret: cred.Secret, Servers: servers,
				ReportInterval: o.ReportInterval, Window: o.Window,
				Seed: o.Seed + int64(i), Speed: o.Speed, Stats: stats,
			}
			if len(o.LocalIPs) > 0 {
				cfg.LocalIP = o.LocalIPs[i%len(o.LocalIPs)]
			}
			if o.Plant != nil {
				o.Plant(i, &cfg)
			}
			p := plant.New(cfg)
			plants.Add(1)
			go func() {
				defer plants.Done()
				if err := p.Run(plantCtx); err != nil {
					stats.Error("config")
				}
			}()
			startMu.Lock()
			started = i + 1
			rampEnd = time.Since(start)
			startMu.Unlock()
		}
	}()

	var series []Snapshot
	prev, prevAt := Snapshot{}, start
	sample := func(now time.Time) Snapshot {
		startMu.Lock()
		n := started
		startMu.Unlock()
		sn := Snapshot{
			Elapsed: now.Sub(start), Started: n, Connected: stats.Connected.Load(),
			FramesSent: stats.FramesSent.Load(), FramesAcked: stats.FramesAcked.Load(),
			P99: stats.AckLatency.Quantile(0.99), Reconnects: stats.Reconnects.Load(),
		}
		for _, v := range stats.Snapshot().Errors {
			sn.Errors += v
		}
		if dt := now.Sub(prevAt).Seconds(); dt > 0 {
			sn.SentPerSecond = float64(sn.FramesSent-prev.FramesSent) / dt
			sn.AckedPerSecond = float64(sn.FramesAcked-prev.FramesAcked) / dt
		}
		prev, prevAt = sn, now
		return sn
	}
	tick := time.NewTicker(time.Second)
	for done := false; !done; {
		select {
		case <-runCtx.Done():
			done = true
		case now := <-tick.C:
			sn := sample(now)
			series = append(series, sn)
			if o.Progress != nil {
				o.Progress(sn)
			}
		}
	}
	tick.Stop()
	elapsed := time.Since(start)
	cpu := cpuTime() - cpu0
	final := stats.Connected.Load()
	mem := memory(final)
	stopPlants()
	<-ramp
	plants.Wait()

	st := stats.Snapshot()
	startMu.Lock()
	r := &Report{
		Devices: len(o.Devices), Servers: o.Servers, Window: max(o.Window, 1), ReportInterval: o.ReportInterval,
		Elapsed: elapsed, RampTime: rampEnd,
		ConnectedMax: st.ConnectedMax, ConnectedFinal: final,
		FramesSent: st.FramesSent, FramesAcked: st.FramesAcked, FramesResent: st.FramesResent, FramesDropped: st.FramesDropped,
		Series: series, Memory: mem, CPU: cpu,
		AckLatency: st.AckLatency, Reconnects: st.Reconnects, Commands: st.Commands, Errors: st.Errors, Stats: st,
	}
	startMu.Unlock()
	if s := elapsed.Seconds(); s > 0 {
		r.FramesPerSecond = float64(r.FramesAcked) / s
	}
	if cpu > 0 {
		r.FramesPerCPUSecond = float64(r.FramesAcked) / cpu.Seconds()
	}
	var steady float64
	var n int
	for _, sn := range series {
		r.PeakFramesPerSecond = max(r.PeakFramesPerSecond, sn.AckedPerSecond)
		// A second counts as steady once every plant had started before it began.
		if sn.Started == r.Devices && sn.Elapsed-time.Second >= r.RampTime {
			steady += sn.AckedPerSecond
			n++
		}
	}
	if n > 0 {
		r.SteadyFramesPerSecond = steady / float64(n)
	}
	return r, nil
}

// String is Summary.
func (r *Report) String() string { return r.Summary() }
