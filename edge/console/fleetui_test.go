package console

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/edge/edgetest"
	"github.com/sprout-iot/sprout/messages/actorpb"
	"github.com/sprout-iot/sprout/messages/devicepb"
	"github.com/sprout-iot/sprout/store/sqlite"
)

// otaNode is one node on the embedded store with OTA (signing with a fresh key, images up to
// 1000 bytes) and the console.
type otaNode struct {
	world
	st  *sqlite.Store
	ota *actors.OTA
	dc  *actors.DeviceClient
	pub ed25519.PublicKey
}

func newOTANode(t *testing.T) *otaNode {
	t.Helper()
	st, err := sqlite.Open(t.TempDir(), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	log := edgetest.Quiet()
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	n := &otaNode{st: st, pub: pub}
	n.ota = actors.NewOTA(actors.OTAOptions{Store: st, Devices: st, Logger: log, SigningKey: priv, MaxFirmwareBytes: 1000})
	n.member, n.edgeAddr = edgetest.StartNode(t, log, actors.NewDeviceKind(actors.DeviceOptions{Store: st, Users: st, Logger: log}))
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	n.console = New(Options{Cluster: n.member.Cluster, Store: st, AdminToken: testToken, CookieKey: key, Logger: log, OTA: n.ota})
	n.url = edgetest.Serve(t, n.console.Routes)
	n.dc = actors.NewDeviceClient(n.member.Cluster, actors.ClientOptions{})
	return n
}

// upload posts the console's upload form (multipart) and answers status and page.
func upload(t *testing.T, c *http.Client, u, csrf, product, version string, data []byte) (int, string) {
	t.Helper()
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	_ = mw.WriteField("csrf", csrf)
	_ = mw.WriteField("product", product)
	_ = mw.WriteField("version", version)
	fw, _ := mw.CreateFormFile("file", "pot.bin")
	_, _ = fw.Write(data)
	_ = mw.Close()
	req, _ := http.NewRequest(http.MethodPost, u, &b)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Accept-Language", "en")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out bytes.Buffer
	_, _ = out.ReadFrom(resp.Body)
	return resp.StatusCode, out.String()
}

// An operator uploads an image in the console, starts a rollout of the pots tagged beta, watches
// each pot's state, sees the rollout pause itself when a pot fails, and resumes, pauses and aborts it.
func TestConsoleFirmwareAndRollouts(t *testing.T) {
	n := newOTANode(t)
	for _, id := range []string{"pot-1", "pot-2", "pot-3", "pot-4"} {
		edgetest.AddDevice(t, n.st, id, "sprout-pot")
	}
	c, _ := n.signIn(t, testToken)

	// Tags, from each device page.
	for _, id := range []string{"pot-1", "pot-2", "pot-3"} {
		_, body := get(t, c, n.url+"/console/devices/"+id)
		status, body := post(t, c, n.url+"/console/devices/"+id+"/tags", url.Values{"csrf": {csrfOf(t, body)}, "tags": {"beta, shop:shanghai"}})
		if status != http.StatusOK || !strings.Contains(body, "Tags saved") || !strings.Contains(body, `value="beta shop:shanghai"`) {
			t.Fatalf("tagging %s: HTTP %d:\n%s", id, status, body)
		}
	}
	_, body := get(t, c, n.url+"/console/devices/pot-4")
	if status, body := post(t, c, n.url+"/console/devices/pot-4/tags", url.Values{"csrf": {csrfOf(t, body)}, "tags": {"Not A Tag"}}); status != http.StatusBadRequest || !strings.Contains(body, "may hold only") {
		t.Fatalf("a bad tag: HTTP %d:\n%s", status, body)
	}

	// Upload.
	status, body := get(t, c, n.url+"/console/firmware")
	if status != http.StatusOK || !strings.Contains(body, "No images yet") || !strings.Contains(body, `enctype="multipart/form-data"`) {
		t.Fatalf("firmware page: HTTP %d:\n%s", status, body)
	}
	csrf := csrfOf(t, body)
	img := bytes.Repeat([]byte{0xA5, 0x5A}, 300)
	if status, _ := upload(t, c, n.url+"/console/firmware", "forged", "sprout-pot", "2.0.0", img); status != http.StatusForbidden {
		t.Fatalf("upload without the CSRF token: HTTP %d, want 403", status)
	}
	status, body = upload(t, c, n.url+"/console/firmware", csrf, "sprout-pot", "2.0.0", img)
	sum := sha256.Sum256(img)
	if status != http.StatusCreated || !strings.Contains(body, "Stored and signed: sprout-pot 2.0.0") || !strings.Contains(body, hex.EncodeToString(sum[:])) ||
		!strings.Contains(body, "600 B") {
		t.Fatalf("upload: HTTP %d:\n%s", status, body)
	}
	got, err := n.st.GetFirmware(context.Background(), "sprout-pot", "2.0.0")
	if err != nil || !actors.VerifyFirmware(n.pub, got) {
		t.Fatalf("the uploaded image is not signed with the node's key: %v", err)
	}
	if status, body := upload(t, c, n.url+"/console/firmware", csrf, "sprout-pot", "2.0.1", make([]byte, 1001)); status != http.StatusRequestEntityTooLarge || !strings.Contains(body, "Too large") {
		t.Fatalf("an image over the limit: HTTP %d:\n%s", status, body)
	}
	if status, body := upload(t, c, n.url+"/console/firmware", csrf, "sprout-pot", "2.0.0", img); status != http.StatusConflict || !strings.Contains(body, "Already exists") {
		t.Fatalf("the same version again: HTTP %d:\n%s", status, body)
	}

	// Start a rollout from the form; a bad form says which field.
	_, body = get(t, c, n.url+"/console/rollouts")
	form := url.Values{"csrf": {csrfOf(t, body)}, "product": {"sprout-pot"}, "version": {"2.0.0"}, "stages": {"50, x"},
		"threshold_pct": {"50"}, "timeout_h": {"2"}, "tag": {"beta"}}
	if status, body := post(t, c, n.url+"/console/rollouts", form); status != http.StatusBadRequest || !strings.Contains(body, "stages: &#34; x&#34; is not a whole percent") ||
		!strings.Contains(body, `value="beta"`) {
		t.Fatalf("bad stages: HTTP %d:\n%s", status, body)
	}
	form.Set("stages", "50,100")
	status, body = post(t, c, n.url+"/console/rollouts", form)
	if status != http.StatusSeeOther {
		t.Fatalf("start: HTTP %d:\n%s", status, body)
	}
	list, _ := n.st.ListRollouts(context.Background())
	if len(list) != 1 || list[0].Tag != "beta" || list[0].StageTimeout != 2*time.Hour {
		t.Fatalf("rollouts %+v", list)
	}
	rid := list[0].ID
	page := n.url + "/console/rollouts/" + rid
	ts, _ := n.st.RolloutTargets(context.Background(), rid)
	if len(ts) != 3 || ts[0].Stage != 0 || ts[1].Stage != 0 || ts[2].Stage != 1 {
		t.Fatalf("targets %+v, want the three beta pots, two in the first stage", ts)
	}
	first, second := ts[0].DeviceID, ts[1].DeviceID

	// The pots of the first stage connect (what the device edge tells the OTA service) and report.
	ctx := context.Background()
	for _, id := range []string{first, second} {
		if offer, err := n.ota.OnConnect(ctx, id, "1.0.0"); err != nil || offer == nil {
			t.Fatalf("offer to %s: %v %v", id, offer, err)
		}
	}
	if err := n.ota.Progress(ctx, first, &devicepb.UpdateProgress{Sha256: sum[:], State: devicepb.UpdateState_UPDATE_STATE_DOWNLOADING, Percent: 40}); err != nil {
		t.Fatal(err)
	}
	status, body = get(t, c, page)
	if status != http.StatusOK || !strings.Contains(body, `data-device="`+first+`" data-state="downloading"`) || !strings.Contains(body, "downloading 40 %") ||
		!strings.Contains(body, `data-device="`+second+`" data-state="offered"`) || !strings.Contains(body, `data-stage="1" data-state="open"`) ||
		!strings.Contains(body, `data-stage="2" data-state="waiting"`) || !strings.Contains(body, `value="pause"`) {
		t.Fatalf("rollout page while downloading: HTTP %d:\n%s", status, body)
	}
	if err := n.ota.Progress(ctx, second, &devicepb.UpdateProgress{Sha256: sum[:], State: devicepb.UpdateState_UPDATE_STATE_FAILED, Reason: "bad signature"}); err != nil {
		t.Fatal(err)
	}
	_, body = get(t, c, page)
	if !strings.Contains(body, `data-state="paused"`) || !strings.Contains(body, "stage 50%: 1 of 2 pots failed, threshold 50%") ||
		!strings.Contains(body, "bad signature") || !strings.Contains(body, `value="resume"`) || strings.Contains(body, `value="pause"`) {
		t.Fatalf("rollout page after a failure over the threshold:\n%s", body)
	}
	for _, step := range []struct{ action, want, button string }{
		{"resume", "running", "pause"}, {"pause", "paused", "resume"}, {"abort", "aborted", ""},
	} {
		status, body = post(t, c, page+"/"+step.action, url.Values{"csrf": {csrfOf(t, body)}})
		if status != http.StatusOK || !strings.Contains(body, `class="pill rollout-state" data-state="`+step.want+`"`) ||
			(step.button != "" && !strings.Contains(body, `value="`+step.button+`"`)) {
			t.Fatalf("%s: HTTP %d:\n%s", step.action, status, body)
		}
	}
	if strings.Contains(body, `value="abort"`) {
		t.Fatalf("an aborted rollout still offers abort:\n%s", body)
	}
	if status, body = post(t, c, page+"/resume", url.Values{"csrf": {csrfOf(t, body)}}); status != http.StatusBadRequest {
		t.Fatalf("resume an aborted rollout: HTTP %d:\n%s", status, body)
	}
	if status, _ = get(t, c, n.url+"/console/rollouts/nope"); status != http.StatusNotFound {
		t.Fatalf("unknown rollout: HTTP %d", status)
	}
	_, body = get(t, c, n.url+"/console/rollouts")
	if !strings.Contains(body, `href="/console/rollouts/`+rid+`"`) || !strings.Contains(body, `data-state="aborted"`) {
		t.Fatalf("rollouts list:\n%s", body)
	}
}

// The device page shows the pot's queued commands with cancel buttons, and desired configurations
// are edited per pot and per product with the API's checks; the drift list shows the pot.
func TestConsoleQueueAndDesiredConfig(t *testing.T) {
	n := newOTANode(t)
	edgetest.AddDevice(t, n.st, "pot-q", "sprout-pot")
	ctx := context.Background()
	for _, id := range []string{"audit-1", "audit-2"} {
		if _, err := n.dc.Command(ctx, "pot-q", &actorpb.SendCommand{CommandId: id, Kind: devicepb.CommandKind_COMMAND_KIND_READ_NOW,
			Queue: true, TtlS: 3600, RequestedBy: "test"}); err != nil {
			t.Fatal(err)
		}
	}
	c, _ := n.signIn(t, testToken)
	dev := n.url + "/console/devices/pot-q"
	status, body := get(t, c, dev)
	if status != http.StatusOK || !strings.Contains(body, `data-command="audit-1" data-state="pending"`) ||
		!strings.Contains(body, `data-command="audit-2" data-state="pending"`) || !strings.Contains(body, `/console/devices/pot-q/queue/audit-1/cancel`) {
		t.Fatalf("device page with two queued commands: HTTP %d:\n%s", status, body)
	}
	status, body = post(t, c, dev+"/queue/audit-1/cancel", url.Values{"csrf": {csrfOf(t, body)}})
	if status != http.StatusOK || !strings.Contains(body, `data-command="audit-1" data-state="cancelled"`) ||
		!strings.Contains(body, `data-command="audit-2" data-state="pending"`) {
		t.Fatalf("after cancelling audit-1: HTTP %d:\n%s", status, body)
	}
	if status, body = post(t, c, dev+"/queue/audit-1/cancel", url.Values{"csrf": {csrfOf(t, body)}}); status != http.StatusConflict {
		t.Fatalf("cancel again: HTTP %d:\n%s", status, body)
	}
	if status, body = post(t, c, dev+"/queue/nope/cancel", url.Values{"csrf": {csrfOf(t, body)}}); status != http.StatusNotFound {
		t.Fatalf("cancel an unknown command: HTTP %d:\n%s", status, body)
	}

	// The pot's own desired configuration: a bad value is refused naming the field, keeping what was typed.
	cfg := url.Values{"csrf": {csrfOf(t, body)}, "action": {"set"}, "report_interval_s": {"2"}, "heartbeat_interval_s": {"30"},
		"max_water_ms": {"20000"}, "min_water_interval_s": {"60"}, "soil_moisture_min_pct": {"25"}, "temperature_max_c": {"35"},
		"tank_empty_pct": {"5"}, "hysteresis_pct": {"5"}, "hysteresis_c": {"2"}}
	status, body = post(t, c, dev+"/config", cfg)
	if status != http.StatusBadRequest || !strings.Contains(body, "report_interval_s must be 5..86400") || !strings.Contains(body, `name="report_interval_s" value="2"`) {
		t.Fatalf("a report interval of 2 s: HTTP %d:\n%s", status, body)
	}
	cfg.Set("heartbeat_interval_s", "thirty")
	if status, body = post(t, c, dev+"/config", cfg); status != http.StatusBadRequest || !strings.Contains(body, "heartbeat_interval_s: &#34;thirty&#34; is not a whole number") {
		t.Fatalf("a heartbeat of thirty: HTTP %d:\n%s", status, body)
	}
	if st, _ := n.dc.State(ctx, "pot-q"); st.GetDesired().GetDesired() != nil {
		t.Fatal("a refused configuration was stored")
	}
	cfg.Set("report_interval_s", "120")
	cfg.Set("heartbeat_interval_s", "30")
	status, body = post(t, c, dev+"/config", cfg)
	if status != http.StatusOK || !strings.Contains(body, "Configuration saved") || !strings.Contains(body, "this pot") || !strings.Contains(body, `class="drift-since"`) {
		t.Fatalf("a good configuration: HTTP %d:\n%s", status, body)
	}
	if st, _ := n.dc.State(ctx, "pot-q"); st.GetDesired().GetDesired().GetReportIntervalS() != 120 || st.GetDesired().GetSource() != actors.ScopeDevice {
		t.Fatalf("the grain's desired state: %v", st.GetDesired())
	}

	// A product's configuration from the operations page; the pot (offline) drifts.
	_, body = get(t, c, n.url+"/console/operations")
	pc := url.Values{"csrf": {csrfOf(t, body)}, "action": {"set"}, "product": {"sprout-pot"}}
	for k, v := range cfg {
		if k != "csrf" && k != "action" {
			pc[k] = v
		}
	}
	pc.Set("temperature_max_c", "hot")
	if status, body = post(t, c, n.url+"/console/operations/config", pc); status != http.StatusBadRequest || !strings.Contains(body, "temperature_max_c: &#34;hot&#34; is not a number") {
		t.Fatalf("a temperature of hot: HTTP %d:\n%s", status, body)
	}
	pc.Set("temperature_max_c", "33")
	status, body = post(t, c, n.url+"/console/operations/config", pc)
	if status != http.StatusOK || !strings.Contains(body, "Configuration saved sprout-pot: 1 pots told") || !strings.Contains(body, `data-product="sprout-pot"`) ||
		!strings.Contains(body, `href="/console/devices/pot-q"`) {
		t.Fatalf("the product's configuration: HTTP %d:\n%s", status, body)
	}
	if _, body = get(t, c, n.url+"/console/operations?product=sprout-pot"); !strings.Contains(body, `name="temperature_max_c" value="33"`) {
		t.Fatalf("editing the product's configuration does not show it:\n%s", body)
	}
	// Back to the product's: the pot's own is removed.
	_, body = get(t, c, dev)
	status, body = post(t, c, dev+"/config", url.Values{"csrf": {csrfOf(t, body)}, "action": {"clear"}})
	if status != http.StatusOK || !strings.Contains(body, "its product") {
		t.Fatalf("clearing the pot's configuration: HTTP %d:\n%s", status, body)
	}
}
