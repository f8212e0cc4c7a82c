package scenario_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sprout-iot/sprout/simulations/report"
	"github.com/sprout-iot/sprout/simulations/scenario"
)

var sproutBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sprout-scenario-test")
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	sproutBin, err = scenario.BuildSprout(ctx, dir)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// TestEveryScenarioPassesInShortForm runs each file of simulations/scenarios in its short form
// (a few seconds, tens of plants) against a real `sprout serve` process and checks its criteria.
func TestEveryScenarioPassesInShortForm(t *testing.T) {
	files, _ := filepath.Glob("../scenarios/*.yaml")
	if len(files) < 6 {
		t.Fatalf("want at least 6 scenario files, found %v", files)
	}
	for _, f := range files {
		sc, err := scenario.Load(f)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(sc.Name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			start := time.Now()
			rep, err := scenario.Run(ctx, sc, scenario.Options{Short: true, Binary: sproutBin})
			if errors.Is(err, scenario.ErrNeedsCluster) {
				if sc.Requires != "cluster" || rep == nil || rep.Verdict != report.Skipped {
					t.Fatalf("ErrNeedsCluster from a scenario that is not a cluster one, or without a SKIPPED report: %v", err)
				}
				// Consul or Postgres is missing here (consultest, pgtest say how to get them).
				t.Skipf("no local cluster: %v", err)
			}
			if rep != nil {
				t.Logf("%s in %.1fs:\n%s", sc.Name, time.Since(start).Seconds(), rep.Summary())
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Criteria) == 0 || rep.Verdict != report.Pass {
				t.Fatalf("verdict %s with %d criteria", rep.Verdict, len(rep.Criteria))
			}
			if len(rep.Series) < 3 || rep.Totals.FramesAcked == 0 {
				t.Fatalf("the run measured nothing: %d points, %d frames acked", len(rep.Series), rep.Totals.FramesAcked)
			}
			if sc.Parameters.NodeFailure != nil {
				killed := false
				for _, m := range rep.Marks {
					killed = killed || strings.HasPrefix(m.Label, "SIGKILL node")
				}
				if !killed {
					t.Fatalf("no kill mark on the charts: %+v", rep.Marks)
				}
			}
		})
	}
}

// TestAMissedCriterionFailsTheRunAndIsNamed: an impossible bound makes Run return an error that
// names the criterion, with a FAIL report.
func TestAMissedCriterionFailsTheRunAndIsNamed(t *testing.T) {
	sc, err := scenario.Parse([]byte(`{"name":"impossible","parameters":{"plants":5,"duration":"2s","report_interval":"100ms"},
		"criteria":{"ack_p99_max":"1ns","all_connected":true}}`))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rep, err := scenario.Run(ctx, sc, scenario.Options{Binary: sproutBin})
	if err == nil || !strings.Contains(err.Error(), "ack_p99") || strings.Contains(err.Error(), "all_connected") {
		t.Fatalf("want an error naming ack_p99 only, got %v", err)
	}
	if rep == nil || rep.Verdict != report.Fail || !strings.Contains(rep.Summary(), "FAIL  ack_p99") {
		t.Fatalf("report: %+v", rep)
	}
}

func TestShortFormOverridesOnlyWhatItNames(t *testing.T) {
	sc, err := scenario.Parse([]byte(`{"name":"x","parameters":{"plants":500,"users":50,"duration":"60s","speed":60},
		"short":{"plants":30,"duration":"5s"},"criteria":{"ack_p99_max":"100ms","all_connected":true},
		"short_criteria":{"ack_p99_max":"300ms"}}`))
	if err != nil {
		t.Fatal(err)
	}
	full, _ := sc.Params(false)
	short, _ := sc.Params(true)
	if full.Plants != 500 || short.Plants != 30 || short.Users != 50 || short.Speed != 60 || short.Duration.D() != 5*time.Second {
		t.Fatalf("full %+v short %+v", full, short)
	}
	c, _ := sc.CriteriaFor(true)
	if c.AckP99Max.D() != 300*time.Millisecond || !c.AllConnected {
		t.Fatalf("short criteria %+v", c)
	}
}

func TestScenarioFilesRejectUnknownFields(t *testing.T) {
	for _, js := range []string{
		`{"name":"x","parameters":{"plants":5,"duration":"5s"},"criteria":{"ack_p99":"1s"}}`, // misspelt criterion
		`{"name":"x","parameters":{"plants":5,"duration":"5s","plant":3}}`,                   // misspelt parameter
		`{"name":"x","parameters":{"plants":5,"duration":"5s"},"short":{"duraton":"1s"}}`,    // misspelt override
		`{"name":"x","parameters":{"plants":5,"duration":"5s","blip":{"at":"9s"}}}`,          // blip after the end
		`{"name":"x","parameters":{"plants":5,"duration":"5s","node_failure":{"at":"1s"}}}`,  // needs a cluster
		`{"name":"x","parameters":{"plants":5,"duration":"5s","env":{"PATH":"/tmp"}}}`,       // not a SPROUT_ setting
	} {
		if _, err := scenario.Parse([]byte(js)); err == nil {
			t.Errorf("accepted %s", js)
		}
	}
}

// TestFullFormKeepsItsOwnValuesAfterTheShortForm: reading the short form (which names a nested
// node_failure.at, a blip, a tap burst and env) does not change the full form's values; the
// node-failure scenario's full run kills its node at 20 s, not at the short form's 4 s.
func TestFullFormKeepsItsOwnValuesAfterTheShortForm(t *testing.T) {
	sc, err := scenario.Load("../scenarios/node-failure.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sc.Params(true); err != nil { // Parse already read it once; read it again
		t.Fatal(err)
	}
	full, err := sc.Params(false)
	if err != nil {
		t.Fatal(err)
	}
	if full.NodeFailure == nil || full.NodeFailure.At.D() != 20*time.Second || full.NodeFailure.Signal != "KILL" {
		t.Fatalf("full form's node_failure = %+v, want KILL at 20s", full.NodeFailure)
	}

	sc, err = scenario.Parse([]byte(`{"name":"x","requires":"cluster","parameters":{"plants":500,"duration":"60s",
		"node_failure":{"at":"20s","signal":"TERM"},"blip":{"at":"30s","down":"5s"},"tap_burst":{"at":"40s","taps_per_user":2},
		"env":{"SPROUT_A":"full"}},
		"short":{"plants":30,"duration":"10s","node_failure":{"at":"4s"},"blip":{"at":"5s"},"tap_burst":{"at":"6s"},
		"env":{"SPROUT_B":"short"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	short, _ := sc.Params(true)
	full, _ = sc.Params(false)
	if f := full.NodeFailure; f.At.D() != 20*time.Second || f.Signal != "TERM" {
		t.Errorf("full node_failure = %+v, want TERM at 20s", f)
	}
	if b := full.Blip; b.At.D() != 30*time.Second || b.Down.D() != 5*time.Second {
		t.Errorf("full blip = %+v, want at 30s down 5s", b)
	}
	if b := full.TapBurst; b.At.D() != 40*time.Second || b.TapsPerUser != 2 {
		t.Errorf("full tap_burst = %+v, want 2 per user at 40s", b)
	}
	if len(full.Env) != 1 || full.Env["SPROUT_A"] != "full" {
		t.Errorf("full env = %v, want only SPROUT_A", full.Env)
	}
	// The short form overrides what it names and keeps the rest of each nested value.
	if f := short.NodeFailure; f.At.D() != 4*time.Second || f.Signal != "TERM" {
		t.Errorf("short node_failure = %+v, want TERM at 4s", f)
	}
	if b := short.Blip; b.At.D() != 5*time.Second || b.Down.D() != 5*time.Second {
		t.Errorf("short blip = %+v, want at 5s down 5s", b)
	}
	if b := short.TapBurst; b.At.D() != 6*time.Second || b.TapsPerUser != 2 {
		t.Errorf("short tap_burst = %+v, want 2 per user at 6s", b)
	}
	if short.Env["SPROUT_A"] != "full" || short.Env["SPROUT_B"] != "short" {
		t.Errorf("short env = %v, want SPROUT_A from the full form and SPROUT_B", short.Env)
	}
}
