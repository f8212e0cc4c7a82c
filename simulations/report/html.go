package report

import (
	"fmt"
	"html"
	"math"
	"sort"
	"strings"
)

// Chart colours, chosen to stay apart for common colour blindness.
const (
	blue   = "#1f77b4"
	orange = "#ff7f0e"
	green  = "#2ca02c"
	red    = "#d62728"
	purple = "#9467bd"
	grey   = "#7f7f7f"
)

type line struct {
	name, color string
	ys          []float64
}

// HTML is the report as one self-contained page: the verdict and criteria, the main figures, and
// charts drawn as inline SVG (no scripts, no external resources).
func (r *Report) HTML() []byte {
	var b strings.Builder
	esc := html.EscapeString
	verdictClass := "pass"
	switch r.Verdict {
	case Fail:
		verdictClass = "fail"
	case Skipped:
		verdictClass = "skip"
	}
	form := ""
	if r.Short {
		form = " (short form)"
	}
	fmt.Fprintf(&b, `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Sprout scenario %s: %s</title>
<style>
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#222;max-width:1100px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:16px;margin:24px 0 6px}
.verdict{display:inline-block;padding:2px 10px;border-radius:4px;color:#fff;font-weight:700}
.pass{background:#2e7d32} .fail{background:#c62828} .skip{background:#757575}
table{border-collapse:collapse;margin:6px 0} td,th{padding:3px 10px;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}
td.ok{color:#2e7d32;font-weight:700} td.bad{color:#c62828;font-weight:700}
.params{color:#555;font-family:ui-monospace,monospace;font-size:12px}
.charts{display:grid;grid-template-columns:1fr 1fr;gap:16px}
.chart{border:1px solid #ddd;border-radius:4px;padding:6px}
.chart h3{font-size:14px;margin:0 0 2px}
svg text{font:11px system-ui,sans-serif;fill:#444}
.legend span{display:inline-block;margin-right:12px;font-size:12px}
.legend i{display:inline-block;width:10px;height:10px;margin-right:4px;vertical-align:middle}
pre{background:#f6f6f6;padding:8px;overflow:auto;font-size:12px}
</style></head><body>
`, esc(r.Scenario), esc(r.Verdict))
	fmt.Fprintf(&b, `<h1>Scenario %s%s <span id="verdict" class="verdict %s">%s</span></h1>`+"\n",
		esc(r.Scenario), esc(form), verdictClass, esc(r.Verdict))
	if r.Description != "" {
		fmt.Fprintf(&b, "<p>%s</p>\n", esc(r.Description))
	}
	fmt.Fprintf(&b, `<p>Started %s, measured for %.1f s.</p>`+"\n", esc(r.Started.Format("2006-01-02 15:04:05 MST")), r.Seconds)
	fmt.Fprintf(&b, `<p class="params">%s</p>`+"\n", esc(params(r.Parameters)))

	if len(r.Criteria) > 0 {
		b.WriteString(`<h2>Pass criteria</h2><table id="criteria"><tr><th></th><th>criterion</th><th>want</th><th>got</th><th>detail</th></tr>` + "\n")
		for _, c := range r.Criteria {
			cls, v := "ok", "PASS"
			if !c.Pass {
				cls, v = "bad", "FAIL"
			}
			fmt.Fprintf(&b, `<tr><td class="%s">%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td></tr>`+"\n",
				cls, v, esc(c.Name), esc(c.Want), esc(c.Got), esc(c.Detail))
		}
		b.WriteString("</table>\n")
	}

	t := r.Totals
	b.WriteString(`<h2>Figures</h2><table id="totals">`)
	row := func(k, v string) { fmt.Fprintf(&b, "<tr><th>%s</th><td>%s</td></tr>\n", esc(k), esc(v)) }
	row("devices", fmt.Sprintf("%d plants, connected max %d, at end %d, reconnects %d", t.Plants, t.ConnectedMax, t.ConnectedFinal, t.Reconnects))
	row("frames", fmt.Sprintf("sent %d, acked %d (%.0f/s), resent %d, dropped %d; %d acked frames found in the store",
		t.FramesSent, t.FramesAcked, t.AckedPerSecond, t.FramesResent, t.FramesDropped, t.StoredChecked))
	row("ack latency", lat(t.AckLatency))
	if t.Taps > 0 {
		row("taps", fmt.Sprintf("%d sent, %d replied, %d accepted, %d unanswered; outcomes %s", t.Taps, t.TapReplies, t.TapsAccepted, t.Unanswered, counts(t.Outcomes)))
		row("tap to reply", lat(t.TapReply))
		row("tap to outcome", lat(t.TapOutcome))
	}
	row("pushes", fmt.Sprintf("%d to %d users (alerts %d, summaries %d)", t.Pushes, t.Users, t.Alerts, t.Summaries))
	if len(t.Errors) > 0 {
		row("device errors", counts(t.Errors))
	}
	b.WriteString("</table>\n")

	xs := make([]float64, len(r.Series))
	get := func(f func(Point) float64) []float64 {
		ys := make([]float64, len(r.Series))
		for i, p := range r.Series {
			ys[i] = f(p)
		}
		return ys
	}
	for i, p := range r.Series {
		xs[i] = p.T
	}
	b.WriteString(`<h2>Over time</h2><div class="charts">` + "\n")
	b.WriteString(lineChart("throughput", "Throughput (frames acked per second)", xs, r.Marks,
		line{"acked/s", blue, get(func(p Point) float64 { return p.AckedPerSecond })}))
	b.WriteString(lineChart("latency", "Ack latency percentiles (ms, frames acked in each second)", xs, r.Marks,
		line{"p50", green, get(func(p Point) float64 { return p.P50 })},
		line{"p90", orange, get(func(p Point) float64 { return p.P90 })},
		line{"p99", red, get(func(p Point) float64 { return p.P99 })}))
	b.WriteString(lineChart("connected", "Connected devices", xs, r.Marks,
		line{"connected", purple, get(func(p Point) float64 { return float64(p.Connected) })}))
	b.WriteString(lineChart("wechat", "WeChat per second: taps, final answers, pushes, alerts", xs, r.Marks,
		line{"taps", blue, get(func(p Point) float64 { return float64(p.Taps) })},
		line{"outcomes", green, get(func(p Point) float64 { return float64(p.Outcomes) })},
		line{"pushes", grey, get(func(p Point) float64 { return float64(p.Pushes) })},
		line{"alerts", red, get(func(p Point) float64 { return float64(p.Alerts) })}))
	b.WriteString("</div>\n")

	if len(r.Users) > 0 {
		b.WriteString("<h2>Per user</h2>\n")
		b.WriteString(userChart(r.Users))
	}
	fmt.Fprintf(&b, "<h2>Summary</h2><pre id=\"summary\">%s</pre>\n", esc(r.Summary()))
	b.WriteString("</body></html>\n")
	return []byte(b.String())
}

// Chart geometry (SVG user units).
const (
	cw, ch                 = 520, 230
	padL, padR, padT, padB = 52, 12, 10, 28
)

// niceMax rounds v up to 1, 2 or 5 times a power of ten, for axis ticks.
func niceMax(v float64) float64 {
	if v <= 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func num(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%gM", v/1e6)
	case v >= 1e4:
		return fmt.Sprintf("%gk", v/1e3)
	}
	return fmt.Sprintf("%g", math.Round(v*100)/100)
}

func legend(ls []line) string {
	var b strings.Builder
	b.WriteString(`<div class="legend">`)
	for _, l := range ls {
		fmt.Fprintf(&b, `<span><i style="background:%s"></i>%s</span>`, l.color, html.EscapeString(l.name))
	}
	b.WriteString("</div>")
	return b.String()
}

// lineChart draws one chart; each line is a <path class="series" data-series=NAME> whose points
// are also its data-points count, so tests can check the chart has data.
func lineChart(id, title string, xs []float64, marks []Mark, ls ...line) string {
	var b strings.Builder
	fmt.Fprintf(&b, `<div class="chart"><h3>%s</h3>%s`, html.EscapeString(title), legend(ls))
	fmt.Fprintf(&b, `<svg id="chart-%s" viewBox="0 0 %d %d" width="100%%" role="img" aria-label="%s">`, id, cw, ch, html.EscapeString(title))
	xmax := 1.0
	if len(xs) > 0 {
		xmax = max(xs[len(xs)-1], 1)
	}
	ymax := 0.0
	for _, l := range ls {
		for _, y := range l.ys {
			ymax = max(ymax, y)
		}
	}
	ymax = niceMax(ymax)
	pw, ph := float64(cw-padL-padR), float64(ch-padT-padB)
	px := func(x float64) float64 { return float64(padL) + x/xmax*pw }
	py := func(y float64) float64 { return float64(padT) + ph - y/ymax*ph }
	// Grid and axes.
	for i := 0; i <= 4; i++ {
		y := ymax * float64(i) / 4
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#eee"/>`, padL, cw-padR, py(y), py(y))
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`, padL-4, py(y)+4, num(y))
	}
	step := niceMax(xmax / 6)
	for x := 0.0; x <= xmax+1e-9; x += step {
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%gs</text>`, px(x), ch-padB+16, x)
	}
	fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#999"/>`, padL, cw-padR, py(0), py(0))
	fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%d" y2="%.1f" stroke="#999"/>`, padL, padL, padT, py(0))
	for i, m := range marks {
		if m.T > xmax {
			continue
		}
		ly := padT + 10 + (i%2)*12 // alternate rows, so that close marks stay readable
		fmt.Fprintf(&b, `<line class="mark" x1="%.1f" x2="%.1f" y1="%d" y2="%.1f" stroke="#999" stroke-dasharray="4 3"/>`, px(m.T), px(m.T), padT, py(0))
		fmt.Fprintf(&b, `<text x="%.1f" y="%d">%s</text>`, px(m.T)+3, ly, html.EscapeString(m.Label))
	}
	for _, l := range ls {
		var d strings.Builder
		for i, y := range l.ys {
			if i >= len(xs) {
				break
			}
			cmd := "L"
			if i == 0 {
				cmd = "M"
			}
			fmt.Fprintf(&d, "%s%.1f %.1f ", cmd, px(xs[i]), py(y))
		}
		fmt.Fprintf(&b, `<path class="series" data-series="%s" data-points="%d" d="%s" fill="none" stroke="%s" stroke-width="1.8"/>`,
			html.EscapeString(l.name), min(len(l.ys), len(xs)), strings.TrimSpace(d.String()), l.color)
	}
	if len(xs) == 0 {
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">no data</text>`, cw/2, ch/2)
	}
	b.WriteString("</svg></div>\n")
	return b.String()
}

// userChart draws alerts and pushes per user as grouped bars, the busiest users first (at most 50).
func userChart(us []User) string {
	us = append([]User(nil), us...)
	sort.SliceStable(us, func(i, j int) bool { return us[i].Pushes > us[j].Pushes })
	shown := us
	if len(shown) > 50 {
		shown = shown[:50]
	}
	ls := []line{{"alerts", red, nil}, {"summaries", orange, nil}, {"all pushes", grey, nil}}
	var b strings.Builder
	title := "Alerts and pushes per user"
	if len(shown) < len(us) {
		title += fmt.Sprintf(" (the %d busiest of %d)", len(shown), len(us))
	}
	fmt.Fprintf(&b, `<div class="chart"><h3>%s</h3>%s`, title, legend(ls))
	const w, h = 1060, 240
	fmt.Fprintf(&b, `<svg id="chart-users" viewBox="0 0 %d %d" width="100%%" role="img" aria-label="%s">`, w, h, title)
	ymax := 0.0
	for _, u := range shown {
		ymax = max(ymax, float64(u.Pushes), float64(u.Alerts))
	}
	ymax = niceMax(ymax)
	pw, ph := float64(w-padL-padR), float64(h-padT-padB-20)
	py := func(y float64) float64 { return float64(padT) + ph - y/ymax*ph }
	for i := 0; i <= 4; i++ {
		y := ymax * float64(i) / 4
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#eee"/>`, padL, w-padR, py(y), py(y))
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`, padL-4, py(y)+4, num(y))
	}
	slot := pw / float64(max(len(shown), 1))
	bw := slot / 4
	for i, u := range shown {
		x0 := float64(padL) + float64(i)*slot + bw/2
		for j, v := range []int{u.Alerts, u.Summaries, u.Pushes} {
			fmt.Fprintf(&b, `<rect class="bar" data-user="%s" x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s: %s %d</title></rect>`,
				html.EscapeString(u.OpenID), x0+float64(j)*bw, py(float64(v)), bw, float64(v)/ymax*ph, ls[j].color,
				html.EscapeString(u.OpenID), ls[j].name, v)
		}
		if len(shown) <= 25 {
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`, x0+1.5*bw, py(0)+14, html.EscapeString(shortID(u.OpenID)))
		}
	}
	fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#999"/>`, padL, w-padR, py(0), py(0))
	b.WriteString("</svg></div>\n")
	return b.String()
}

func shortID(s string) string {
	if len(s) > 10 {
		return "…" + s[len(s)-8:]
	}
	return s
}
