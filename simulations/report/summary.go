package report

import (
	"fmt"
	"sort"
	"strings"
)

// Summary is the run on one screen: the verdict, each criterion, and the main figures.
func (r *Report) Summary() string {
	var b strings.Builder
	form := ""
	if r.Short {
		form = " (short form)"
	}
	fmt.Fprintf(&b, "scenario %s%s: %s in %.1fs\n", r.Scenario, form, r.Verdict, r.Seconds)
	if len(r.Parameters) > 0 {
		b.WriteString("  " + wrap(params(r.Parameters), 96, "  ") + "\n")
	}
	if len(r.Criteria) > 0 {
		b.WriteString("criteria:\n")
		for _, c := range r.Criteria {
			v := "PASS"
			if !c.Pass {
				v = "FAIL"
			}
			fmt.Fprintf(&b, "  %s  %-26s want %-20s got %s\n", v, c.Name, c.Want, c.Got)
			if !c.Pass && c.Detail != "" {
				fmt.Fprintf(&b, "        %s\n", c.Detail)
			}
		}
	}
	t := r.Totals
	fmt.Fprintf(&b, "devices:  %d plants, connected max %d, at end %d, reconnects %d\n", t.Plants, t.ConnectedMax, t.ConnectedFinal, t.Reconnects)
	fmt.Fprintf(&b, "frames:   sent %d, acked %d (%.0f/s), resent %d, dropped %d; %d acked frames checked in the store\n",
		t.FramesSent, t.FramesAcked, t.AckedPerSecond, t.FramesResent, t.FramesDropped, t.StoredChecked)
	fmt.Fprintf(&b, "ack:      %s\n", lat(t.AckLatency))
	if t.Taps > 0 {
		fmt.Fprintf(&b, "taps:     %d sent by %d users, %d replied, %d accepted, %d unanswered; outcomes: %s\n",
			t.Taps, t.Users, t.TapReplies, t.TapsAccepted, t.Unanswered, counts(t.Outcomes))
		fmt.Fprintf(&b, "          reply %s\n          outcome %s\n", lat(t.TapReply), lat(t.TapOutcome))
	}
	if len(r.Users) > 0 {
		var pushes []int
		for _, u := range r.Users {
			pushes = append(pushes, u.Pushes)
		}
		sort.Ints(pushes)
		fmt.Fprintf(&b, "pushes:   %d (alerts %d, summaries %d); per user min %d, median %d, max %d\n",
			t.Pushes, t.Alerts, t.Summaries, pushes[0], pushes[len(pushes)/2], pushes[len(pushes)-1])
	}
	if len(t.Errors) > 0 {
		fmt.Fprintf(&b, "errors:   %s\n", counts(t.Errors))
	}
	if len(r.Series) > 0 {
		b.WriteString("acked/s:  ")
		from := max(0, len(r.Series)-40)
		if from > 0 {
			b.WriteString("... ")
		}
		b.WriteString(spark(r.Series[from:], func(p Point) float64 { return p.AckedPerSecond }))
		b.WriteByte('\n')
		b.WriteString("online:   ")
		if from > 0 {
			b.WriteString("... ")
		}
		b.WriteString(spark(r.Series[from:], func(p Point) float64 { return float64(p.Connected) }))
		b.WriteByte('\n')
	}
	for _, m := range r.Marks {
		fmt.Fprintf(&b, "mark:     %5.1fs %s\n", m.T, m.Label)
	}
	return b.String()
}

func lat(l Latency) string {
	if l.Count == 0 {
		return "no samples"
	}
	return fmt.Sprintf("p50 %s  p90 %s  p99 %s  max %s  (%d samples)", msText(l.P50), msText(l.P90), msText(l.P99), msText(l.Max), l.Count)
}

func msText(v float64) string {
	switch {
	case v >= 1000:
		return fmt.Sprintf("%.2fs", v/1000)
	case v >= 10:
		return fmt.Sprintf("%.0fms", v)
	default:
		return fmt.Sprintf("%.2fms", v)
	}
}

func counts(m map[string]int) string {
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

func params(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, " ")
}

// wrap breaks s at spaces into lines of at most width, indenting continuation lines.
func wrap(s string, width int, indent string) string {
	var b strings.Builder
	n := 0
	for i, w := range strings.Fields(s) {
		if i > 0 {
			if n+1+len(w) > width {
				b.WriteString("\n" + indent)
				n = 0
			} else {
				b.WriteByte(' ')
				n++
			}
		}
		b.WriteString(w)
		n += len(w)
	}
	return b.String()
}

// spark draws values as a line of block characters scaled to their maximum.
func spark(ps []Point, f func(Point) float64) string {
	const bars = "▁▂▃▄▅▆▇█"
	blocks := []rune(bars)
	hi := 0.0
	for _, p := range ps {
		hi = max(hi, f(p))
	}
	var b strings.Builder
	for _, p := range ps {
		i := 0
		if hi > 0 {
			i = int(f(p) / hi * float64(len(blocks)-1))
		}
		b.WriteRune(blocks[i])
	}
	fmt.Fprintf(&b, "  (max %.0f)", hi)
	return b.String()
}
