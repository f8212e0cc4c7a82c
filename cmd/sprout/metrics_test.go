package main

import (
	"bufio"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sprout-iot/sprout/actors/actortest"
)

// scrape reads /metrics and sums each metric's samples by name (labels dropped), and remembers
// whether every sample carries the node label.
func scrape(t *testing.T, s *server) (map[string]float64, bool) {
	t.Helper()
	resp, err := http.Get("http://" + s.http + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	out, labelled := map[string]float64{}, true
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' || !strings.HasPrefix(line, "sprout_") {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		name, labels, _ := strings.Cut(line[:sp], "{")
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		out[name] += v
		if !strings.Contains(labels, `node="`) {
			labelled = false
		}
	}
	return out, labelled
}

func TestMetricsMoveAsTheFleetRuns(t *testing.T) {
	dir := t.TempDir()
	creds := provisionDevices(t, dir, "m-", 20)
	credFile := filepath.Join(dir, "creds.json")
	b, _ := json.Marshal(creds)
	_ = os.WriteFile(credFile, b, 0o600)
	s := newServer(t, dir)
	// Tracing on, to the console, every frame: the spans reach stdout, and the node still serves.
	s.extraEnv = []string{"OTEL_TRACES_EXPORTER=console", "OTEL_TRACES_SAMPLER=parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG=1"}
	s.start(t)
	before, _ := scrape(t, s)

	sim := exec.Command(sproutBin, "sim", "--server", s.edge, "--creds", credFile, "--devices", "20",
		"--duration", "4s", "--report-interval", "100ms", "--quiet")
	if err := sim.Start(); err != nil {
		t.Fatal(err)
	}
	actortest.Eventually(t, 4*time.Second, "sprout_devices_connected to reach 20 during the run", func() bool {
		m, _ := scrape(t, s)
		return m["sprout_devices_connected"] == 20
	})
	if err := sim.Wait(); err != nil {
		t.Fatalf("sim: %v", err)
	}
	after, labelled := scrape(t, s)
	for _, name := range []string{"sprout_device_frames_in_total", "sprout_device_frames_out_total", "sprout_device_connections_total",
		"sprout_grain_activations_total", "sprout_store_batch_rows_count", "sprout_store_batch_rows_sum",
		"sprout_store_commit_duration_seconds_count"} {
		if after[name] <= before[name] {
			t.Errorf("%s did not move: %v -> %v", name, before[name], after[name])
		}
	}
	if after["sprout_cluster_members"] != 1 {
		t.Errorf("sprout_cluster_members = %v", after["sprout_cluster_members"])
	}
	if _, ok := after["sprout_outbox_pending"]; !ok {
		t.Error("no sprout_outbox_pending")
	}
	if !labelled {
		t.Error("some sprout_ samples have no node label")
	}
	if !strings.Contains(s.logs.String(), `"Name":"edge.frame"`) || !strings.Contains(s.logs.String(), `"Name":"store.append"`) {
		t.Errorf("no edge.frame and store.append spans on the console exporter's output")
	}
}
