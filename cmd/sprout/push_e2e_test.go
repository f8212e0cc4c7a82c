package main

import (
	"context"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/sprout-iot/sprout/actors/actortest"
	"github.com/sprout-iot/sprout/edge/wechat/qr"
	"github.com/sprout-iot/sprout/messages/devicepb"
	"github.com/sprout-iot/sprout/simulations/plant"
	"github.com/sprout-iot/sprout/simulations/wechatsim"
)

// TestPushDecidedBeforeACrashIsDeliveredAfterTheRestart: an alert push is decided (in the
// outbox) while WeChat is failing; the node is SIGKILLed; after the restart, with WeChat healthy
// again, the user receives the alert, once.
func TestPushDecidedBeforeACrashIsDeliveredAfterTheRestart(t *testing.T) {
	dir := t.TempDir()
	creds := provisionDevices(t, dir, "push-", 1)
	p, err := wechatsim.NewServer(wechatsim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	key := []byte("push-test-qr-key-0123456789abcdef")
	s := newServer(t, dir)
	s.extraEnv = []string{"SPROUT_WECHAT_APPID=" + p.AppID(), "SPROUT_WECHAT_SECRET=" + p.Secret(),
		"SPROUT_WECHAT_TOKEN=" + p.Token(), "SPROUT_WECHAT_ACCOUNT=" + p.AccountID(), "SPROUT_WECHAT_API_BASE=" + p.URL(),
		"SPROUT_QR_KEYS=sprout-pot=" + hex.EncodeToString(key)}
	s.start(t)
	p.SetCallbackURL("http://" + s.http + "/wechat")
	ctx := context.Background()
	alice := p.NewUser("alice")
	scene, _ := qr.Scene(key, qr.Code{Product: "sprout-pot", Device: creds[0].ID})
	if r, err := scanParamQR(ctx, p, alice, scene); err != nil || !strings.Contains(r.Content, "绑定成功") {
		t.Fatalf("bind: %v %v", r, err)
	}
	// WeChat is down (system busy) from now on.
	const send = "/cgi-bin/message/custom/send"
	p.FailNext(send, 1_000_000, -1)
	conn, err := plant.Dial(s.edge, "", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Handshake(plant.Hello{DeviceID: creds[0].ID, Secret: creds[0].Secret}, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := conn.Report(&devicepb.Telemetry{Seq: 1, SoilMoisturePct: 5, TemperatureC: 20, TankLevelPct: 80}, 2*time.Second, nil); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	actortest.Eventually(t, 10*time.Second, "the alert push attempted", func() bool { return p.Calls(send) > 0 })
	s.kill(t)
	if n := countTexts(p, "alice", "土壤太干"); n != 0 {
		t.Fatalf("alice got the alert before the crash (%d); the test needs it undelivered", n)
	}
	p.ClearFailures()
	s.start(t)
	if _, err := p.WaitFor("alice", 15*time.Second, func(e wechatsim.Entry) bool {
		return e.Kind != wechatsim.KindReply && strings.Contains(e.Text, "土壤太干")
	}); err != nil {
		t.Fatalf("the alert decided before the crash never arrived: %v", err)
	}
	// Once the outbox has nothing pending, no push can be sent again.
	actortest.Eventually(t, 15*time.Second, "the outbox drained", func() bool {
		m, _ := scrape(t, s)
		v, ok := m["sprout_outbox_pending"]
		return ok && v == 0
	})
	if n := countTexts(p, "alice", "土壤太干"); n != 1 {
		t.Fatalf("alice got the alert %d times", n)
	}
}
