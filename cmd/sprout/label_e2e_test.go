package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sprout-iot/sprout/edge/wechat/qr"
	"github.com/sprout-iot/sprout/simulations/wechatsim"
)

// scanParamQR is u scanning, with WeChat's scanner, the account's parametric QR for scene (what
// `device add --qr-wechat` prints): Sprout's reply to the subscribe or SCAN event it posts.
func scanParamQR(ctx context.Context, p *wechatsim.Platform, u *wechatsim.User, scene string) (*wechatsim.Reply, error) {
	res, err := u.Scan(ctx, p.CreateQR(scene))
	if err != nil {
		return nil, err
	}
	if res.Reply == nil {
		return nil, fmt.Errorf("scanning the QR of %q: %s, not an event", scene, res.Kind)
	}
	return res.Reply, nil
}

const labelKeyHex = "00112233445566778899aabbccddeeff"

// deviceAdd runs `sprout device add` with env added and returns stdout's credentials and stderr.
func deviceAdd(t *testing.T, env []string, args ...string) ([]credential, string) {
	t.Helper()
	cmd := exec.Command(sproutBin, append([]string{"device", "add", "--json"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("device add %v: %v\n%s", args, err, stderr.String())
	}
	var cs []credential
	if err := json.Unmarshal(stdout.Bytes(), &cs); err != nil {
		t.Fatalf("device add printed %s: %v", stdout.String(), err)
	}
	return cs, stderr.String()
}

// samePNG fails unless dir/name is the QR code of content.
func samePNG(t *testing.T, dir, name, content string) {
	t.Helper()
	got, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := qr.PNG(content, 256)
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is not the QR code of %q", name, content)
	}
}

// TestDeviceAddLabels: what `sprout device add` prints on a label. With --qr-url (or
// SPROUT_PUBLIC_URL) the label URL; with --qr-wechat WeChat's parametric QR for the code; without
// either the bare code, and a warning that WeChat's scanner cannot bind it.
func TestDeviceAddLabels(t *testing.T) {
	dir, png := t.TempDir(), t.TempDir()
	keys := "--qr-keys=sprout-pot=" + labelKeyHex

	cs, stderr := deviceAdd(t, nil, "--data-dir", dir, keys, "--id", "pot-bare", "--qr-png", png)
	if !strings.Contains(stderr, "cannot") && !strings.Contains(stderr, "only shows as text") || !strings.Contains(stderr, "--qr-url") {
		t.Fatalf("no warning that a bare code does not bind from WeChat's scanner:\n%s", stderr)
	}
	if cs[0].QRURL != "" || !strings.HasPrefix(cs[0].QR, "s1.sprout-pot.pot-bare.") {
		t.Fatalf("bare: %+v", cs[0])
	}
	samePNG(t, png, "pot-bare.png", cs[0].QR)

	cs, stderr = deviceAdd(t, nil, "--data-dir", dir, keys, "--id", "pot-url", "--qr-png", png, "--qr-url", "https://sprout.example.com/")
	if cs[0].QRURL != "https://sprout.example.com/b/"+cs[0].QR || strings.Contains(stderr, "only shows as text") {
		t.Fatalf("--qr-url: %+v\n%s", cs[0], stderr)
	}
	samePNG(t, png, "pot-url.png", cs[0].QRURL)

	cs, _ = deviceAdd(t, []string{"SPROUT_PUBLIC_URL=https://pots.example.org"}, "--data-dir", dir, keys, "--count", "2", "--prefix", "pot-env-", "--qr-png", png)
	for _, c := range cs {
		if c.QRURL != "https://pots.example.org/b/"+c.QR {
			t.Fatalf("SPROUT_PUBLIC_URL: %+v", c)
		}
		samePNG(t, png, c.ID+".png", c.QRURL)
	}

	for _, bad := range [][]string{{"--qr-url", "sprout.example.com"}, {"--qr-url", "https://x.example/?c="}, {"--qr-wechat"}} {
		out, err := exec.Command(sproutBin, append([]string{"device", "add", "--data-dir", dir, keys, "--id", "pot-bad"}, bad...)...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), bad[0]) {
			t.Fatalf("device add %v: want a refusal naming %s, got %v:\n%s", bad, bad[0], err, out)
		}
	}

	p, err := wechatsim.NewServer(wechatsim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	wx := []string{"--wechat-appid", p.AppID(), "--wechat-secret", p.Secret(), "--wechat-api-base", p.URL()}
	cs, stderr = deviceAdd(t, nil, append([]string{"--data-dir", dir, keys, "--id", "pot-param", "--qr-png", png, "--qr-wechat"}, wx...)...)
	if !strings.HasPrefix(cs[0].WeChatParamQR, "http://weixin.qq.com/q/") || !strings.Contains(stderr, "100,000") {
		t.Fatalf("--qr-wechat: %+v\n%s", cs[0], stderr)
	}
	samePNG(t, png, "pot-param.png", cs[0].WeChatParamQR)
	if n := p.Calls("/cgi-bin/qrcode/create"); n != 1 {
		t.Fatalf("qrcode/create called %d times, want 1", n)
	}
}

// TestLabelsBindThroughWeChatsScanner: the two labels `sprout device add` prints, scanned with
// WeChat's own scanner against a running node. The label URL binds a user who does not follow the
// account and shows them how to follow; the parametric QR follows and binds in one step; a bare
// code and random text do nothing.
func TestLabelsBindThroughWeChatsScanner(t *testing.T) {
	p, err := wechatsim.NewServer(wechatsim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	dir := t.TempDir()
	s := newServer(t, dir)
	public := "http://" + s.http
	keys := "--qr-keys=sprout-pot=" + labelKeyHex
	wx := []string{"--wechat-appid", p.AppID(), "--wechat-secret", p.Secret(), "--wechat-api-base", p.URL()}
	url1, _ := deviceAdd(t, nil, "--data-dir", dir, keys, "--id", "pot-label", "--qr-url", public)
	param, _ := deviceAdd(t, nil, append([]string{"--data-dir", dir, keys, "--id", "pot-param", "--qr-wechat"}, wx...)...)
	s.extraEnv = []string{"SPROUT_WECHAT_APPID=" + p.AppID(), "SPROUT_WECHAT_SECRET=" + p.Secret(),
		"SPROUT_WECHAT_TOKEN=" + p.Token(), "SPROUT_WECHAT_ACCOUNT=" + p.AccountID(), "SPROUT_WECHAT_API_BASE=" + p.URL(),
		"SPROUT_QR_KEYS=sprout-pot=" + labelKeyHex, "SPROUT_PUBLIC_URL=" + public,
		"SPROUT_WECHAT_FOLLOW_QR=http://weixin.qq.com/r/sprout-demo-account"}
	s.start(t)
	p.SetCallbackURL(public + "/wechat")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// Ann does not follow the account; she scans the label URL.
	ann := p.NewUser("oAnn-label")
	res, err := ann.Scan(ctx, url1[0].QRURL)
	if err != nil || res.Kind != wechatsim.ScanOpenedPage {
		t.Fatalf("scanning the label URL: %+v %v", res, err)
	}
	if res.Page.Status != 200 || !strings.Contains(res.Page.Body, "绑定成功") || !strings.Contains(res.Page.Body, `id="follow"`) {
		t.Fatalf("label page %d at %s:\n%s", res.Page.Status, res.Page.URL, res.Page.Body)
	}
	if !strings.Contains(res.Page.Body, "data:image/png;base64,") {
		t.Fatal("the follow hint has no QR code of the account")
	}
	if ann.Follows() {
		t.Fatal("opening a page made Ann follow the account")
	}
	pg, err := ann.OpenLink(ctx, public+"/app/")
	if err != nil || !strings.Contains(pg.Body, "pot-label") {
		t.Fatalf("Ann's plants after the label: %v\n%v", err, pg)
	}
	// Opening it again changes nothing.
	if res, err := ann.Scan(ctx, url1[0].QRURL); err != nil || !strings.Contains(res.Page.Body, "已经绑定") {
		t.Fatalf("re-opening the label: %+v %v", res, err)
	}

	// Ben scans the parametric QR: WeChat makes him follow and posts subscribe with the code.
	ben := p.NewUser("oBen-label")
	res, err = ben.Scan(ctx, param[0].WeChatParamQR)
	if err != nil || res.Kind != wechatsim.ScanEvent || res.Reply == nil || !strings.Contains(res.Reply.Content, "绑定成功") {
		t.Fatalf("scanning the parametric QR: %+v %v", res, err)
	}
	if !ben.Follows() {
		t.Fatal("Ben does not follow the account after scanning the parametric QR")
	}
	pg, err = ben.OpenLink(ctx, public+"/app/")
	if err != nil || !strings.Contains(pg.Body, "pot-param") {
		t.Fatalf("Ben's plants after the parametric QR: %v\n%v", err, pg)
	}

	// The account's other parametric QR (a campaign poster) is not Sprout's: a welcome, never
	// "invalid code", and nothing bound.
	dee := p.NewUser("oDee-label")
	for _, who := range []*wechatsim.User{dee, ben} { // subscribe (non-follower), SCAN (follower)
		res, err := who.Scan(ctx, p.CreateQR("spring-campaign-2026"))
		if err != nil || res.Reply == nil || strings.Contains(res.Reply.Content, "无效") || strings.Contains(res.Reply.Content, "绑定成功") {
			t.Fatalf("%s scanning a campaign QR: %+v %v", who.OpenID, res, err)
		}
	}

	// A bare code and random text, scanned with WeChat's scanner, are only shown as text.
	cid := p.NewUser("oCid-label")
	for _, content := range []string{url1[0].QR, "water my plants", "SN: 0042-AB"} {
		before := len(p.Conversation(cid.OpenID))
		res, err := cid.Scan(ctx, content)
		if err != nil || res.Kind != wechatsim.ScanShownAsText {
			t.Fatalf("scanning %q: %+v %v", content, res, err)
		}
		for _, e := range p.Conversation(cid.OpenID)[before:] {
			if e.Direction != wechatsim.In || e.Kind != wechatsim.KindScanText {
				t.Fatalf("scanning %q led to %+v", content, e)
			}
		}
	}
	if cid.Follows() {
		t.Fatal("scanning text made Cid follow")
	}
	pg, err = cid.OpenLink(ctx, public+"/app/")
	if err != nil || strings.Contains(pg.Body, "pot-label") {
		t.Fatalf("Cid has a plant after scanning text: %v", err)
	}
}
