// Package report is the result of one scenario run, in the three forms people read it in: JSON
// for tools and diffs, a self-contained HTML page with charts (inline SVG, no scripts, works
// offline), and a one-screen text summary. It only presents what a run measured; judging the
// numbers is the scenario runner's job, which records its verdicts here as Criteria.
package report

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Verdicts of a run.
const (
	Pass    = "PASS"
	Fail    = "FAIL"
	Skipped = "SKIPPED"
)

// Report is one scenario run.
type Report struct {
	Scenario    string    `json:"scenario"`
	Description string    `json:"description,omitempty"`
	File        string    `json:"file,omitempty"`
	Short       bool      `json:"short"` // the short form (tests, quick checks)
	Started     time.Time `json:"started"`
	Seconds     float64   `json:"seconds"` // wall time of the measured phase
	Verdict     string    `json:"verdict"` // PASS, FAIL or SKIPPED
	// Parameters are the scenario's parameters as run (short form applied), by name.
	Parameters map[string]string `json:"parameters"`
	Criteria   []Criterion       `json:"criteria"`
	Totals     Totals            `json:"totals"`
	Series     []Point           `json:"series"` // one per second
	Users      []User            `json:"users"`  // per simulated WeChat user
	Marks      []Mark            `json:"marks,omitempty"`
	// Server is where the node's log was written, if kept.
	ServerLog string `json:"server_log,omitempty"`
}

// Criterion is one pass criterion and what the run measured against it.
type Criterion struct {
	Name   string `json:"name"`
	Want   string `json:"want"`
	Got    string `json:"got"`
	Pass   bool   `json:"pass"`
	Detail string `json:"detail,omitempty"` // the first few offenders when it failed
}

// Totals are whole-run figures.
type Totals struct {
	Plants         int            `json:"plants"`
	Users          int            `json:"users"`
	ConnectedMax   int64          `json:"connected_max"`
	ConnectedFinal int64          `json:"connected_final"`
	FramesSent     uint64         `json:"frames_sent"`
	FramesAcked    uint64         `json:"frames_acked"`
	FramesResent   uint64         `json:"frames_resent"`
	FramesDropped  uint64         `json:"frames_dropped"`
	AckedPerSecond float64        `json:"acked_per_second"` // mean over the measured phase
	AckLatency     Latency        `json:"ack_latency"`
	Reconnects     uint64         `json:"reconnects"`
	Errors         map[string]int `json:"errors,omitempty"`

	Taps          int            `json:"taps"`           // water taps sent by users
	TapReplies    int            `json:"tap_replies"`    // taps that got a passive reply
	TapsAccepted  int            `json:"taps_accepted"`  // replies saying "watering..." (a push must follow)
	Outcomes      map[string]int `json:"outcomes"`       // final answers by kind: done, rejected, busy, offline (passive), ...
	Unanswered    int            `json:"unanswered"`     // accepted taps with no pushed outcome in time
	TapReply      Latency        `json:"tap_reply"`      // tap to passive reply
	TapOutcome    Latency        `json:"tap_outcome"`    // tap to pushed outcome (accepted taps)
	Alerts        int            `json:"alerts"`         // alert pushes received (raised)
	Summaries     int            `json:"summaries"`      // alert summaries received
	Pushes        int            `json:"pushes"`         // everything pushed to users (not passive replies)
	StoredChecked int            `json:"stored_checked"` // acked frames checked against the API
}

// Latency is a distribution summary in milliseconds.
type Latency struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
}

// LatencyOf summarises samples (any order); it sorts them.
func LatencyOf(samples []time.Duration) Latency {
	if len(samples) == 0 {
		return Latency{}
	}
	sort.Slice(samples, func(i, j int) bool { return samples[i] < samples[j] })
	q := func(f float64) float64 {
		i := int(f*float64(len(samples))+0.5) - 1
		i = min(max(i, 0), len(samples)-1)
		return ms(samples[i])
	}
	return Latency{Count: len(samples), P50: q(0.50), P90: q(0.90), P99: q(0.99), Max: ms(samples[len(samples)-1])}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Point is one second of the run.
type Point struct {
	T              float64 `json:"t"` // seconds since the start of the measured phase
	Connected      int64   `json:"connected"`
	AckedPerSecond float64 `json:"acked_per_second"`
	P50            float64 `json:"p50_ms"` // ack latency of the frames acked in this second
	P90            float64 `json:"p90_ms"`
	P99            float64 `json:"p99_ms"`
	Max            float64 `json:"max_ms"`
	Taps           int     `json:"taps"`     // taps sent in this second
	Outcomes       int     `json:"outcomes"` // final answers received in this second
	Alerts         int     `json:"alerts"`
	Pushes         int     `json:"pushes"`
}

// User is what one simulated WeChat user did and received.
type User struct {
	OpenID     string `json:"openid"`
	Pots       int    `json:"pots"`
	Taps       int    `json:"taps"`
	Outcomes   int    `json:"outcomes"` // final answers (passive or pushed)
	Unanswered int    `json:"unanswered"`
	Alerts     int    `json:"alerts"`
	Summaries  int    `json:"summaries"`
	Pushes     int    `json:"pushes"`
}

// Mark is a moment worth a vertical line on the charts (a blip, a burst).
type Mark struct {
	T     float64 `json:"t"`
	Label string  `json:"label"`
}

// Failed lists the criteria that were missed.
func (r *Report) Failed() []Criterion {
	var out []Criterion
	for _, c := range r.Criteria {
		if !c.Pass {
			out = append(out, c)
		}
	}
	return out
}

// Err is nil when the run passed (or was skipped), else an error naming every missed criterion.
func (r *Report) Err() error {
	f := r.Failed()
	if len(f) == 0 {
		return nil
	}
	names := make([]string, len(f))
	for i, c := range f {
		names[i] = fmt.Sprintf("%s (want %s, got %s)", c.Name, c.Want, c.Got)
	}
	return fmt.Errorf("scenario %s failed %d of %d criteria: %s", r.Scenario, len(f), len(r.Criteria), strings.Join(names, "; "))
}

// Load reads a report written by Write.
func Load(path string) (*Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("parsing report %s: %w", path, err)
	}
	return &r, nil
}

// Write puts report.json, report.html and summary.txt in dir (created if needed) and returns
// their paths.
func (r *Report) Write(dir string) (jsonPath, htmlPath, textPath string, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", "", err
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", "", "", err
	}
	jsonPath = filepath.Join(dir, "report.json")
	htmlPath = filepath.Join(dir, "report.html")
	textPath = filepath.Join(dir, "summary.txt")
	if err := os.WriteFile(jsonPath, append(b, '\n'), 0o644); err != nil {
		return "", "", "", err
	}
	if err := os.WriteFile(htmlPath, r.HTML(), 0o644); err != nil {
		return "", "", "", err
	}
	if err := os.WriteFile(textPath, []byte(r.Summary()), 0o644); err != nil {
		return "", "", "", err
	}
	return jsonPath, htmlPath, textPath, nil
}
