package main

import (
	"context"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"

	"github.com/sprout-iot/sprout/simulations/wechatsim"
)

// TestDeviceAddRegistersWithWeChatAndItsQRBinds: `sprout device add --wechat-product` takes each
// pot's id and device QR from WeChat's device platform and authorises it there; a user who scans
// that QR in WeChat is then bound to the pot by a running node.
func TestDeviceAddRegistersWithWeChatAndItsQRBinds(t *testing.T) {
	dir := t.TempDir()
	p, err := wechatsim.NewServer(wechatsim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	add := func(extra ...string) *exec.Cmd {
		args := append([]string{"device", "add", "--data-dir", dir, "--wechat-product", "1",
			"--wechat-appid", p.AppID(), "--wechat-secret", p.Secret(), "--wechat-api-base", p.URL()}, extra...)
		return exec.Command(sproutBin, args...)
	}

	// Bad input is refused before anything is registered anywhere.
	for _, bad := range [][]string{
		{"--count", "2", "--wechat-macs", "a0b1c2d3e4f5"},                     // one MAC for two pots
		{"--count", "1", "--wechat-macs", "not-a-mac"},                        // not a MAC
		{"--count", "1", "--wechat-macs", "a0b1c2d3e4f5", "--prefix", "pot-"}, // WeChat allocates the ids
	} {
		if out, err := add(bad...).CombinedOutput(); err == nil || !strings.Contains(string(out), "wechat") && !strings.Contains(string(out), "WeChat") {
			t.Fatalf("device add %v: want a clear refusal, got %v:\n%s", bad, err, out)
		}
	}
	if n := p.Calls("/device/getqrcode"); n != 0 {
		t.Fatalf("refused commands still called getqrcode %d times", n)
	}

	// WeChat refusing the authorisation: the command fails and the pot is not created here either.
	p.FailNext("/device/authorize_device", 1, 47001)
	if out, err := add("--count", "1", "--wechat-macs", "a0b1c2d3e4f5").CombinedOutput(); err == nil || !strings.Contains(string(out), "authorize_device") {
		t.Fatalf("device add while WeChat refuses: want an error naming authorize_device, got %v:\n%s", err, out)
	}
	if list, err := exec.Command(sproutBin, "device", "list", "--data-dir", dir).Output(); err != nil || len(strings.TrimSpace(string(list))) != 0 {
		t.Fatalf("after WeChat refused, the store lists %q (%v); want nothing", list, err)
	}

	out, err := add("--count", "2", "--wechat-macs", "a0:b1:c2:d3:e4:f5, a0b1c2d3e4f6", "--json").Output()
	if err != nil {
		t.Fatalf("device add: %v", err)
	}
	var cs []credential
	if err := json.Unmarshal(out, &cs); err != nil || len(cs) != 2 {
		t.Fatalf("device add printed %s (%v)", out, err)
	}
	for _, c := range cs {
		if !strings.HasPrefix(c.ID, p.AccountID()+"_") || !strings.HasPrefix(c.WeChatQR, "http://we.qq.com/d/") || len(c.Secret) != 64 {
			t.Fatalf("credential %+v: want WeChat's device id and QR ticket and a 32-byte secret", c)
		}
	}
	if n := p.Calls("/device/authorize_device"); n != 3 {
		t.Fatalf("authorize_device called %d times, want 3 (one refused, two accepted)", n)
	}
	// The CLI takes a stable token of its own: it must not revoke the token the running nodes use.
	if p.TokenFetches() != 0 || p.StableTokenFetches() == 0 {
		t.Fatalf("token fetches: /cgi-bin/token %d, stable_token %d; want only stable_token", p.TokenFetches(), p.StableTokenFetches())
	}

	s := newServer(t, dir)
	s.extraEnv = []string{"SPROUT_WECHAT_APPID=" + p.AppID(), "SPROUT_WECHAT_SECRET=" + p.Secret(),
		"SPROUT_WECHAT_TOKEN=" + p.Token(), "SPROUT_WECHAT_ACCOUNT=" + p.AccountID(), "SPROUT_WECHAT_API_BASE=" + p.URL()}
	s.start(t)
	p.SetCallbackURL("http://" + s.http + "/wechat")
	r, err := p.NewUser("alice").ScanDeviceQR(context.Background(), cs[0].WeChatQR)
	if err != nil || !strings.Contains(r.Content, "绑定成功") {
		t.Fatalf("scanning the WeChat device QR: %v %v", r, err)
	}
}
