package api

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/edge/edgetest"
	"github.com/sprout-iot/sprout/store/sqlite"
)

// otaWorld is a node on the embedded store with OTA, signing with key, images up to maxBytes.
func otaWorld(t *testing.T, key ed25519.PrivateKey, maxBytes int, clock actors.Clock) (*world, *actors.OTA) {
	t.Helper()
	st, err := sqlite.Open(t.TempDir(), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	log := edgetest.Quiet()
	ota := actors.NewOTA(actors.OTAOptions{Store: st, Devices: st, Logger: log, SigningKey: key, MaxFirmwareBytes: maxBytes, Clock: clock})
	w := &world{store: st}
	w.member, w.edgeAddr = edgetest.StartNode(t, log, actors.NewDeviceKind(actors.DeviceOptions{Store: st, Logger: log}))
	w.url = edgetest.Serve(t, New(w.member.Cluster, st, Options{AdminToken: testToken, Logger: log, OTA: ota}).Routes)
	return w, ota
}

// send posts body with a content type and answers status and body.
func (w *world) send(t *testing.T, path, contentType string, body io.Reader) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, w.url+path, body)
	req.Header.Set("Authorization", "Bearer "+testToken)
	req.Header.Set("Content-Type", contentType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestFirmwareUploadIsSignedWithTheNodesKey uploads an image as a raw body and as a multipart
// form, checks the manifest verifies with the public half of the node's key, and that an image
// over the limit, a version already there and a node without a key are refused with nothing stored.
func TestFirmwareUploadIsSignedWithTheNodesKey(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	w, _ := otaWorld(t, priv, 1000, nil)
	img := bytes.Repeat([]byte("fw"), 300)

	status, body := w.send(t, "/api/v1/firmware?product=sprout-pot&version=2.0.0", "application/octet-stream", bytes.NewReader(img))
	if status != http.StatusCreated {
		t.Fatalf("raw upload: HTTP %d: %s", status, body)
	}
	var fw struct{ Firmware []FirmwareJSON }
	w.getJSON(t, "/api/v1/firmware?product=sprout-pot", http.StatusOK, &fw)
	sum := sha256.Sum256(img)
	if len(fw.Firmware) != 1 || fw.Firmware[0].SHA256 != hex.EncodeToString(sum[:]) || fw.Firmware[0].Size != len(img) {
		t.Fatalf("firmware list %+v", fw)
	}
	sig, _ := hex.DecodeString(fw.Firmware[0].Signature)
	if !actors.VerifyFirmware(pub, actors.FirmwareImage{Product: "sprout-pot", Version: "2.0.0", Size: len(img), SHA256: sum[:], Signature: sig}) {
		t.Fatal("the uploaded image's signature does not verify with the node's public key")
	}

	// The console's way: a multipart form.
	var mp bytes.Buffer
	mw := multipart.NewWriter(&mp)
	_ = mw.WriteField("product", "sprout-pot")
	_ = mw.WriteField("version", "2.0.1")
	fwr, _ := mw.CreateFormFile("file", "pot.bin")
	_, _ = fwr.Write(img[:500])
	_ = mw.Close()
	if status, body := w.send(t, "/api/v1/firmware", mw.FormDataContentType(), &mp); status != http.StatusCreated || !strings.Contains(body, `"version":"2.0.1"`) {
		t.Fatalf("multipart upload: HTTP %d: %s", status, body)
	}

	for _, c := range []struct {
		name, path string
		body       []byte
		want       int
		code       string
	}{
		{"same version again", "?product=sprout-pot&version=2.0.0", img, http.StatusConflict, "exists"},
		{"over the limit", "?product=sprout-pot&version=3.0.0", make([]byte, 1001), http.StatusRequestEntityTooLarge, "too_large"},
		{"far over the body limit", "?product=sprout-pot&version=3.0.1", make([]byte, 200<<10), http.StatusRequestEntityTooLarge, "too_large"},
		{"no version", "?product=sprout-pot", img, http.StatusBadRequest, "invalid"},
		{"empty image", "?product=sprout-pot&version=3.0.2", nil, http.StatusBadRequest, "invalid"},
	} {
		status, body := w.send(t, "/api/v1/firmware"+c.path, "application/octet-stream", bytes.NewReader(c.body))
		if status != c.want || !strings.Contains(body, `"code":"`+c.code+`"`) {
			t.Errorf("%s: HTTP %d %s, want %d %s", c.name, status, body, c.want, c.code)
		}
	}
	w.getJSON(t, "/api/v1/firmware", http.StatusOK, &fw)
	if len(fw.Firmware) != 2 {
		t.Fatalf("refused uploads were stored: %+v", fw.Firmware)
	}

	// A node without a signing key refuses uploads and says why.
	w2, _ := otaWorld(t, nil, 0, nil)
	if status, body := w2.send(t, "/api/v1/firmware?product=p&version=1", "application/octet-stream", bytes.NewReader(img)); status != http.StatusNotImplemented || !strings.Contains(body, "no_signing_key") {
		t.Fatalf("upload without a key: HTTP %d: %s", status, body)
	}
}

// TestRolloutByTagWithAStageTimeout tags pots through the API, starts a rollout of the tagged
// ones, and lets its first stage time out: the rollout pauses with the reason, and a resume
// gives the stage its whole timeout again.
func TestRolloutByTagWithAStageTimeout(t *testing.T) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	clock := clockwork.NewFakeClockAt(time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC))
	w, ota := otaWorld(t, priv, 0, clock)
	for _, id := range []string{"pot-1", "pot-2", "pot-3"} {
		w.addDevice(t, id)
	}
	if _, err := ota.AddFirmware(bg, "sprout-pot", "2.0.0", []byte("new firmware"), nil); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"pot-1", "pot-3"} {
		var tags TagsJSON
		status, _, body := w.call(t, http.MethodPut, "/api/v1/devices/"+id+"/tags", map[string]any{"tags": []string{"beta", "shop:shanghai"}})
		if status != http.StatusOK {
			t.Fatalf("tag %s: HTTP %d: %s", id, status, body)
		}
		w.getJSON(t, "/api/v1/devices/"+id+"/tags", http.StatusOK, &tags)
		if strings.Join(tags.Tags, ",") != "beta,shop:shanghai" {
			t.Fatalf("tags of %s: %v", id, tags.Tags)
		}
	}
	var tagged struct{ Devices []string }
	w.getJSON(t, "/api/v1/tags/beta", http.StatusOK, &tagged)
	if strings.Join(tagged.Devices, ",") != "pot-1,pot-3" {
		t.Fatalf("tagged beta: %v", tagged.Devices)
	}
	for _, bad := range []struct {
		path string
		body any
		want int
	}{
		{"/api/v1/devices/pot-2/tags", map[string]any{"tags": []string{"Has Space"}}, http.StatusBadRequest},
		{"/api/v1/devices/pot-404/tags", map[string]any{"tags": []string{"beta"}}, http.StatusNotFound},
	} {
		if status, _, body := w.call(t, http.MethodPut, bad.path, bad.body); status != bad.want {
			t.Errorf("PUT %s %v: HTTP %d, want %d: %s", bad.path, bad.body, status, bad.want, body)
		}
	}
	if status, _, body := w.call(t, http.MethodPost, "/api/v1/rollouts", RolloutRequest{Product: "sprout-pot", Version: "2.0.0", Tag: "beta", Devices: []string{"pot-1"}}); status != http.StatusBadRequest {
		t.Errorf("tag and devices: HTTP %d: %s", status, body)
	}
	if status, _, body := w.call(t, http.MethodPost, "/api/v1/rollouts", RolloutRequest{Product: "sprout-pot", Version: "2.0.0", Tag: "nobody"}); status != http.StatusBadRequest {
		t.Errorf("a tag with no pots: HTTP %d: %s", status, body)
	}
	status, _, body := w.call(t, http.MethodPost, "/api/v1/rollouts", RolloutRequest{ID: "beta-2", Product: "sprout-pot", Version: "2.0.0",
		Tag: "beta", Stages: []int{50, 100}, StageTimeoutS: 3600})
	if status != http.StatusCreated {
		t.Fatalf("start: HTTP %d: %s", status, body)
	}
	var r RolloutJSON
	w.getJSON(t, "/api/v1/rollouts/beta-2", http.StatusOK, &r)
	if r.Tag != "beta" || r.StageTimeoutS != 3600 || len(r.Targets) != 2 || r.Targets[0].DeviceID == "pot-2" || r.Targets[1].DeviceID == "pot-2" {
		t.Fatalf("rollout %+v", r)
	}

	clock.Advance(59 * time.Minute)
	if paused, err := ota.CheckStageTimeouts(bg); err != nil || len(paused) != 0 {
		t.Fatalf("before the timeout: paused %v, %v", paused, err)
	}
	clock.Advance(time.Minute)
	if paused, err := ota.CheckStageTimeouts(bg); err != nil || len(paused) != 1 {
		t.Fatalf("at the timeout: paused %v, %v", paused, err)
	}
	w.getJSON(t, "/api/v1/rollouts/beta-2", http.StatusOK, &r)
	if r.State != "paused" || !strings.Contains(r.Reason, "timed out after 1h0m0s with 1 of 1 pots not done") {
		t.Fatalf("after the timeout: %s %q", r.State, r.Reason)
	}
	if status, _, body := w.call(t, http.MethodPost, "/api/v1/rollouts/beta-2/resume", nil); status != http.StatusOK {
		t.Fatalf("resume: HTTP %d: %s", status, body)
	}
	clock.Advance(30 * time.Minute)
	if paused, _ := ota.CheckStageTimeouts(bg); len(paused) != 0 {
		t.Fatal("a resumed stage timed out before its whole timeout passed again")
	}
	clock.Advance(30 * time.Minute)
	if paused, _ := ota.CheckStageTimeouts(bg); len(paused) != 1 {
		t.Fatal("a resumed stage did not time out again")
	}
}
