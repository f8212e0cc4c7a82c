package fleet

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/sprout-iot/sprout/simulations/plant"
)

// Summary is the report on one screen.
func (r *Report) Summary() string {
	var b strings.Builder
	every := "server's interval"
	switch {
	case r.ReportInterval == plant.Flood:
		every = "flood"
	case r.ReportInterval > 0:
		every = "every " + r.ReportInterval.String()
	}
	fmt.Fprintf(&b, "fleet: %d devices -> %s, window %d, reports %s, %.1fs (ramp %.1fs)\n",
		r.Devices, strings.Join(r.Servers, ","), r.Window, every, r.Elapsed.Seconds(), r.RampTime.Seconds())
	fmt.Fprintf(&b, "connected:   max %d, at stop %d; reconnects %d\n", r.ConnectedMax, r.ConnectedFinal, r.Reconnects)
	fmt.Fprintf(&b, "frames:      sent %d, acked %d, resent %d, dropped %d\n", r.FramesSent, r.FramesAcked, r.FramesResent, r.FramesDropped)
	fmt.Fprintf(&b, "throughput:  %.0f acked/s overall, %.0f steady, %.0f peak second; %.0f per CPU second (%.1fs CPU)\n",
		r.FramesPerSecond, r.SteadyFramesPerSecond, r.PeakFramesPerSecond, r.FramesPerCPUSecond, r.CPU.Seconds())
	l := r.AckLatency
	fmt.Fprintf(&b, "ack latency: p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  (%d samples)\n",
		short(l.P50), short(l.P90), short(l.P99), short(l.P999), short(l.Max), l.Count)
	fmt.Fprintf(&b, "memory:      heap %.1f MiB, stacks %.1f MiB, %d goroutines, %.1f KiB per connected device (whole process)\n",
		mib(r.Memory.HeapInuse), mib(r.Memory.StackInuse), r.Memory.Goroutines, float64(r.Memory.BytesPerDevice)/1024)
	fmt.Fprintf(&b, "commands:    %s\n", counts(r.Commands))
	fmt.Fprintf(&b, "errors:      %s\n", counts(r.Errors))
	if len(r.Series) > 0 {
		b.WriteString("acked/s:    ")
		// At most 30 seconds on the line: the tail of a long run says most about the steady state.
		from := max(0, len(r.Series)-30)
		if from > 0 {
			b.WriteString(" ...")
		}
		for _, s := range r.Series[from:] {
			fmt.Fprintf(&b, " %s", si(s.AckedPerSecond))
		}
		b.WriteByte('\n')
	}
	return b.String()
}

func counts(m map[string]uint64) string {
	if len(m) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

func short(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.0fus", float64(d)/float64(time.Microsecond))
	}
}

func si(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.1fk", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }
