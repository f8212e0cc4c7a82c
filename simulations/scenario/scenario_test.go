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
