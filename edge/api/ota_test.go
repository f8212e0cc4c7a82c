package api

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"testing"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/edge/edgetest"
	"github.com/sprout-iot/sprout/store/sqlite"
)

// TestRolloutsThroughTheAPI starts, shows, pauses, resumes and aborts a rollout over HTTP, and
// checks the answers a mistyped request gets.
func TestRolloutsThroughTheAPI(t *testing.T) {
	st, err := sqlite.Open(t.TempDir(), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	log := edgetest.Quiet()
	ota := actors.NewOTA(actors.OTAOptions{Store: st, Devices: st, Logger: log})
	w := &world{store: st}
	w.member, w.edgeAddr = edgetest.StartNode(t, log, actors.NewDeviceKind(actors.DeviceOptions{Store: st, Logger: log}))
	w.url = edgetest.Serve(t, New(w.member.Cluster, st, Options{AdminToken: testToken, Logger: log, OTA: ota}).Routes)
	for _, id := range []string{"pot-1", "pot-2", "pot-3", "pot-4"} {
		w.addDevice(t, id)
	}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	img, err := ota.AddFirmware(bg, "sprout-pot", "2.0.0", []byte("the new firmware"), priv)
	if err != nil {
		t.Fatal(err)
	}

	var fw struct{ Firmware []FirmwareJSON }
	w.getJSON(t, "/api/v1/firmware?product=sprout-pot", http.StatusOK, &fw)
	if len(fw.Firmware) != 1 || fw.Firmware[0].SHA256 != hex.EncodeToString(img.SHA256) || fw.Firmware[0].Size != 16 {
		t.Fatalf("firmware list %+v", fw)
	}

	for _, bad := range []struct {
		body any
		want int
	}{
		{RolloutRequest{Product: "sprout-pot", Version: "9.9.9"}, http.StatusNotFound},
		{RolloutRequest{Product: "sprout-pot", Version: "2.0.0", Stages: []int{50, 10}}, http.StatusBadRequest},
		{RolloutRequest{Product: "sprout-pot", Version: "2.0.0", Devices: []string{"pot-404"}}, http.StatusNotFound},
	} {
		if status, _, body := w.call(t, http.MethodPost, "/api/v1/rollouts", bad.body); status != bad.want {
			t.Errorf("POST %+v: HTTP %d, want %d: %s", bad.body, status, bad.want, body)
		}
	}
	status, _, body := w.call(t, http.MethodPost, "/api/v1/rollouts", RolloutRequest{ID: "r1", Product: "sprout-pot", Version: "2.0.0", Stages: []int{25, 100}})
	if status != http.StatusCreated {
		t.Fatalf("start: HTTP %d: %s", status, body)
	}
	if status, _, _ := w.call(t, http.MethodPost, "/api/v1/rollouts", RolloutRequest{ID: "r1", Product: "sprout-pot", Version: "2.0.0"}); status != http.StatusConflict {
		t.Errorf("same id again: HTTP %d, want 409", status)
	}
	var r RolloutJSON
	w.getJSON(t, "/api/v1/rollouts/r1", http.StatusOK, &r)
	if r.State != "running" || len(r.Targets) != 4 || r.Counts["pending"] != 4 || r.Targets[0].Stage != 0 || r.Targets[1].Stage != 1 {
		t.Fatalf("rollout %+v", r)
	}
	for _, step := range []struct{ action, want string }{{"pause", "paused"}, {"resume", "running"}, {"abort", "aborted"}} {
		status, _, body := w.call(t, http.MethodPost, "/api/v1/rollouts/r1/"+step.action, nil)
		if status != http.StatusOK {
			t.Fatalf("%s: HTTP %d: %s", step.action, status, body)
		}
		w.getJSON(t, "/api/v1/rollouts/r1", http.StatusOK, &r)
		if r.State != step.want {
			t.Fatalf("after %s: %s, want %s", step.action, r.State, step.want)
		}
	}
	if status, _, _ := w.call(t, http.MethodPost, "/api/v1/rollouts/r1/resume", nil); status != http.StatusBadRequest {
		t.Errorf("resume an aborted rollout: HTTP %d, want 400", status)
	}
	if status, _, _ := w.call(t, http.MethodGet, "/api/v1/rollouts/nope", nil); status != http.StatusNotFound {
		t.Errorf("unknown rollout: HTTP %d, want 404", status)
	}
	var list struct{ Rollouts []RolloutJSON }
	w.getJSON(t, "/api/v1/rollouts", http.StatusOK, &list)
	if len(list.Rollouts) != 1 || list.Rollouts[0].ID != "r1" {
		t.Fatalf("list %+v", list)
	}
}
