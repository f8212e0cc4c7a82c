// Package scenario runs Sprout under a named load, as an operator would meet it, and says whether
// it held: a scenario file (simulations/scenarios/*.yaml) states the world (plants, users, how
// they behave, what goes wrong and when) and the pass criteria; Run starts `sprout serve` as a
// process against the simulated WeChat platform, drives the fleet and the users, samples every
// second, checks each criterion (through the HTTP API and the platform's recorded
// conversations) and returns a report.Report. It is a test harness, not a benchmark: numbers
// are judged against the scenario's bounds, not against a baseline.
package scenario

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// ErrNeedsCluster is returned (with a SKIPPED report) for a scenario that requires several nodes
// when no cluster target was given.
var ErrNeedsCluster = errors.New("scenario requires a cluster")

// Scenario is one scenario file.
type Scenario struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	// Requires is "" (one node, started by the runner) or "cluster": the runner starts a local
	// cluster of Parameters.Nodes nodes (a Consul agent, a Postgres database, `sprout serve` with
	// SPROUT_CLUSTER=consul), or skips the scenario when Consul or Postgres cannot be found.
	Requires   string     `json:"requires"`
	Parameters Parameters `json:"parameters"`
	Criteria   Criteria   `json:"criteria"`
	// Short and ShortCriteria override fields of Parameters and Criteria in the short form (tests,
	// quick checks): only the fields they name change.
	Short         json.RawMessage `json:"short,omitempty"`
	ShortCriteria json.RawMessage `json:"short_criteria,omitempty"`

	File string `json:"-"`
}

// Parameters describe the world of a run. Durations are Go durations ("30s", "1500ms").
type Parameters struct {
	Plants      int `json:"plants"`        // simulated pots (required)
	Users       int `json:"users"`         // simulated WeChat users
	PotsPerUser int `json:"pots_per_user"` // pots each user binds by scanning its QR code (default 1)
	// Duration is how long plants run and users tap, ramp included; the drain that waits for
	// outstanding outcomes comes after it.
	Duration       Duration `json:"duration"`
	ReportInterval Duration `json:"report_interval"` // real time between a plant's readings (default 1s)
	Speed          float64  `json:"speed"`           // simulated seconds per real second (soil, pump)
	ConnectRate    float64  `json:"connect_rate"`    // plants started per second (default 500)
	Window         int      `json:"window"`          // frames in flight per plant (default 1)
	// DryFraction of the plants start with soil at DryMoisture % (below the 20 % alert threshold):
	// the morning alert storm. Dry plants are spread so that every user has one.
	DryFraction float64 `json:"dry_fraction"`
	DryMoisture float64 `json:"dry_moisture"` // default 12
	// TapsPerSecond is the mean rate of "water N" taps over all users (random user, random pot).
	TapsPerSecond float64 `json:"taps_per_second"`
	// TapBurst makes every user tap at once: the command burst.
	TapBurst *TapBurst `json:"tap_burst,omitempty"`
	// Blip drops every device connection at once and keeps the network down for a while: the
	// reconnect storm.
	Blip *Blip `json:"blip,omitempty"`
	// Nodes is the size of the cluster (cluster scenarios only; default 3).
	Nodes int `json:"nodes"`
	// NodeFailure kills one node of a cluster (node 2: node 1 takes the WeChat callbacks and
	// serves the API the run reads) (cluster scenarios only).
	NodeFailure *NodeFailure `json:"node_failure,omitempty"`
	// StoreDelay slows every durable write of the node (SPROUT_DEBUG_STORE_DELAY): the slow database.
	StoreDelay     Duration `json:"store_delay"`
	CommandTimeout Duration `json:"command_timeout"` // SPROUT_COMMAND_TIMEOUT (default 10s)
	WaterMs        int      `json:"water_ms"`        // SPROUT_WATER_MS, simulated (default 3000)
	AlertBurst     int      `json:"alert_burst"`     // SPROUT_ALERT_BURST (node default when 0)
	AlertWindow    Duration `json:"alert_window"`    // SPROUT_ALERT_WINDOW (node default when 0)
	// Env is extra SPROUT_* settings for `sprout serve`.
	Env map[string]string `json:"env,omitempty"`
}

// TapBurst is many users tapping "water now" at the same moment.
type TapBurst struct {
	At          Duration `json:"at"`            // after the start
	TapsPerUser int      `json:"taps_per_user"` // each on another of the user's pots (default 1)
}

// Blip is a network outage between the pots and the node.
type Blip struct {
	At   Duration `json:"at"`   // after the start
	Down Duration `json:"down"` // how long new connections are refused (0: they may return at once)
}

// NodeFailure is one node of a cluster dying without warning.
type NodeFailure struct {
	At     Duration `json:"at"`     // after the start
	Signal string   `json:"signal"` // KILL (default) or TERM
}

// Criteria are what a run must show to pass. Zero fields are not checked.
type Criteria struct {
	// NoLostAckedFrames: every frame a plant saw acked is stored (its seq is in the device's
	// readings or event log, read through the API).
	NoLostAckedFrames bool `json:"no_lost_acked_frames"`
	// EveryTapAnswered: every tap got a passive reply, and every accepted tap ("watering...") a
	// pushed outcome within TapAnsweredWithin of the tap.
	EveryTapAnswered  bool     `json:"every_tap_answered"`
	TapAnsweredWithin Duration `json:"tap_answered_within"` // default command_timeout + 5s
	// TapGraceAfterKill (node failure): with a node failure, EveryTapAnswered also wants every tap
	// answered by the pot or its grain (done, offline, timed out, rejected, busy, failed), not "cannot
	// do that right now" nor left without a passive reply; taps from 1 s before the kill to this
	// long after it are exempt (counted in the report). Sprout's grain requests to a dead member
	// fail only after the cluster's 5 s request timeout, the time WeChat waits for a reply.
	TapGraceAfterKill Duration `json:"tap_grace_after_kill"`
	// AckP99Max bounds the whole run's p99 ack latency (tap to pushed outcome is TapAnsweredWithin).
	AckP99Max Duration `json:"ack_p99_max"`
	// AllConnected: every plant connected, and all were connected when the run ended.
	AllConnected bool `json:"all_connected"`
	// ReconnectedWithin: after a Blip, as many devices as before it are connected again within
	// this long of the network coming back.
	ReconnectedWithin Duration `json:"reconnected_within"`
	// MinThroughputRatio: acked frames per second, over the seconds when every plant was
	// connected, at least this fraction of what the plants offered (plants / report_interval).
	MinThroughputRatio float64 `json:"min_throughput_ratio"`
	// EveryUserAlerted: every user bound to a pot that started dry received an alert or a summary.
	EveryUserAlerted bool `json:"every_user_alerted"`
	// MaxAlertPushesPerUser bounds alert pushes (single alerts plus summaries) to any one user:
	// the rate limit held during the storm.
	MaxAlertPushesPerUser int `json:"max_alert_pushes_per_user"`
	// DevicesBackWithin (cluster scenarios): after a node fails, every device is online again
	// (GET /api/v1/devices/{id} on a surviving node, and the plants' own count) within this long
	// of the kill.
	DevicesBackWithin Duration `json:"devices_back_within"`
	// NoDuplicateFrames: no acked frame is stored twice (same seq twice in a device's readings or
	// event log). Checked with NoLostAckedFrames' read of the store.
	NoDuplicateFrames bool `json:"no_duplicate_frames"`
	// NoDuplicateAlerts: no user received the same pot's alert push twice.
	NoDuplicateAlerts bool `json:"no_duplicate_alerts"`
}

// Duration is a time.Duration written as a Go duration string in scenario files (a bare number
// is seconds).
type Duration time.Duration

// D is d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

// MarshalJSON writes "1.5s".
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads "1.5s" or a number of seconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var f float64
		if err2 := json.Unmarshal(b, &f); err2 != nil {
			return fmt.Errorf("duration must be a string like \"30s\" or seconds: %s", b)
		}
		*d = Duration(f * float64(time.Second))
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: %w", s, err)
	}
	*d = Duration(v)
	return nil
}

// Load reads a scenario from a .yaml, .yml or .json file. Unknown fields are errors, so that a
// misspelt criterion is not silently unchecked.
func Load(path string) (*Scenario, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading scenario: %w", err)
	}
	js := b
	if ext := strings.ToLower(filepath.Ext(path)); ext == ".yaml" || ext == ".yml" {
		var v any
		if err := yaml.Unmarshal(b, &v); err != nil {
			return nil, fmt.Errorf("scenario %s: %w", path, err)
		}
		if js, err = json.Marshal(v); err != nil {
			return nil, fmt.Errorf("scenario %s: %w", path, err)
		}
	}
	sc, err := Parse(js)
	if err != nil {
		return nil, fmt.Errorf("scenario %s: %w", path, err)
	}
	sc.File = path
	if sc.Name == "" {
		sc.Name = strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	}
	return sc, nil
}

// Parse reads a scenario from JSON.
func Parse(js []byte) (*Scenario, error) {
	var sc Scenario
	if err := strict(js, &sc); err != nil {
		return nil, err
	}
	// Check the overrides now, not at run time.
	if _, err := sc.Params(true); err != nil {
		return nil, err
	}
	if _, err := sc.CriteriaFor(true); err != nil {
		return nil, err
	}
	if err := sc.Parameters.validate(); err != nil {
		return nil, err
	}
	if sc.Parameters.NodeFailure != nil && sc.Requires != "cluster" {
		return nil, errors.New("parameters: node_failure needs requires: cluster")
	}
	if sc.Parameters.Nodes != 0 && sc.Requires != "cluster" {
		return nil, errors.New("parameters: nodes needs requires: cluster")
	}
	if sc.Requires != "" && sc.Requires != "cluster" {
		return nil, fmt.Errorf("requires: %q is not known (want \"cluster\" or nothing)", sc.Requires)
	}
	return &sc, nil
}

func strict(js []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(js))
	d.DisallowUnknownFields()
	return d.Decode(v)
}

// Params are the parameters of the full form, or of the short form with Short applied.
// The full form is never changed: Short is decoded into a deep copy (a plain copy would share
// node_failure, blip, tap_burst and env with the full form, and the short form's values would
// leak into it).
func (sc *Scenario) Params(short bool) (Parameters, error) {
	p, err := sc.Parameters.clone()
	if err != nil {
		return p, err
	}
	if short && len(sc.Short) > 0 && string(sc.Short) != "null" {
		if err := strict(sc.Short, &p); err != nil {
			return p, fmt.Errorf("short: %w", err)
		}
		if err := p.validate(); err != nil {
			return p, fmt.Errorf("short: %w", err)
		}
	}
	return p.withDefaults(), nil
}

// CriteriaFor are the criteria of the full form, or of the short form with ShortCriteria applied.
func (sc *Scenario) CriteriaFor(short bool) (Criteria, error) {
	c := sc.Criteria
	if short && len(sc.ShortCriteria) > 0 && string(sc.ShortCriteria) != "null" {
		if err := strict(sc.ShortCriteria, &c); err != nil {
			return c, fmt.Errorf("short_criteria: %w", err)
		}
	}
	return c, nil
}

// clone is a deep copy of p: nothing of it is shared with p.
func (p Parameters) clone() (Parameters, error) {
	var c Parameters
	js, err := json.Marshal(p)
	if err == nil {
		err = json.Unmarshal(js, &c)
	}
	if err != nil {
		return c, fmt.Errorf("copying the parameters: %w", err)
	}
	return c, nil
}

func (p Parameters) validate() error {
	switch {
	case p.Plants <= 0:
		return errors.New("parameters: plants must be at least 1")
	case p.Users < 0 || p.PotsPerUser < 0:
		return errors.New("parameters: users and pots_per_user must not be negative")
	case p.Duration <= 0:
		return errors.New("parameters: duration must be set (e.g. \"30s\")")
	case p.DryFraction < 0 || p.DryFraction > 1:
		return errors.New("parameters: dry_fraction must be between 0 and 1")
	case p.Blip != nil && (p.Blip.At <= 0 || p.Blip.At >= p.Duration):
		return errors.New("parameters: blip.at must fall inside the duration")
	case p.TapBurst != nil && (p.TapBurst.At <= 0 || p.TapBurst.At >= p.Duration):
		return errors.New("parameters: tap_burst.at must fall inside the duration")
	case p.NodeFailure != nil && (p.NodeFailure.At <= 0 || p.NodeFailure.At >= p.Duration):
		return errors.New("parameters: node_failure.at must fall inside the duration")
	case p.NodeFailure != nil && p.NodeFailure.Signal != "" && p.NodeFailure.Signal != "KILL" && p.NodeFailure.Signal != "TERM":
		return fmt.Errorf("parameters: node_failure.signal %q: want KILL or TERM", p.NodeFailure.Signal)
	case p.Nodes < 0 || p.Nodes == 1:
		return errors.New("parameters: nodes must be at least 2")
	}
	for k := range p.Env {
		if !strings.HasPrefix(k, "SPROUT_") {
			return fmt.Errorf("parameters: env %q is not a SPROUT_* setting", k)
		}
	}
	return nil
}

func (p Parameters) withDefaults() Parameters {
	if p.PotsPerUser <= 0 {
		p.PotsPerUser = 1
	}
	if p.ReportInterval <= 0 {
		p.ReportInterval = Duration(time.Second)
	}
	if p.Speed <= 0 {
		p.Speed = 1
	}
	if p.ConnectRate <= 0 {
		p.ConnectRate = 500
	}
	if p.Window <= 0 {
		p.Window = 1
	}
	if p.DryMoisture <= 0 {
		p.DryMoisture = 12
	}
	if p.CommandTimeout <= 0 {
		p.CommandTimeout = Duration(10 * time.Second)
	}
	if p.WaterMs <= 0 {
		p.WaterMs = 3000
	}
	if p.TapBurst != nil && p.TapBurst.TapsPerUser <= 0 {
		b := *p.TapBurst
		b.TapsPerUser = 1
		p.TapBurst = &b
	}
	return p
}

// Describe lists the parameters by name, for reports.
func (p Parameters) Describe() map[string]string {
	m := map[string]string{
		"plants": strconv.Itoa(p.Plants), "users": strconv.Itoa(p.Users), "pots_per_user": strconv.Itoa(p.PotsPerUser),
		"duration": p.Duration.String(), "report_interval": p.ReportInterval.String(),
		"speed": strconv.FormatFloat(p.Speed, 'g', -1, 64), "window": strconv.Itoa(p.Window),
		"command_timeout": p.CommandTimeout.String(), "water_ms": strconv.Itoa(p.WaterMs),
	}
	if p.DryFraction > 0 {
		m["dry_fraction"] = strconv.FormatFloat(p.DryFraction, 'g', -1, 64)
	}
	if p.TapsPerSecond > 0 {
		m["taps_per_second"] = strconv.FormatFloat(p.TapsPerSecond, 'g', -1, 64)
	}
	if b := p.TapBurst; b != nil {
		m["tap_burst"] = fmt.Sprintf("%d per user at %s", b.TapsPerUser, b.At)
	}
	if f := p.NodeFailure; f != nil {
		sig := f.Signal
		if sig == "" {
			sig = "KILL"
		}
		m["node_failure"] = "SIG" + sig + " node 2 at " + f.At.String()
	}
	if p.Nodes > 0 {
		m["nodes"] = strconv.Itoa(p.Nodes)
	}
	if b := p.Blip; b != nil {
		m["blip"] = fmt.Sprintf("at %s, down %s", b.At, b.Down)
	}
	if p.StoreDelay > 0 {
		m["store_delay"] = p.StoreDelay.String()
	}
	if p.AlertBurst > 0 {
		m["alert_burst"] = strconv.Itoa(p.AlertBurst)
	}
	if p.AlertWindow > 0 {
		m["alert_window"] = p.AlertWindow.String()
	}
	keys := make([]string, 0, len(p.Env))
	for k := range p.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		m[k] = p.Env[k]
	}
	return m
}
