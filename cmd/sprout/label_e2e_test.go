package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sprout-iot/sprout/edge/wechat/qr"
	"github.com/sprout-iot/sprout/simulations/wechatsim"
)

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
