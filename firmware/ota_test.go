package firmware_test

// OTA: the C firmware's update path (core/ota.c, port/posix/ota_posix.c) against a real node.
// Three products, one rollout each, at once:
//   - ota-good: two pots update to vdev-2.0.0; one is SIGKILLed in the middle of its download and
//     restarted: it resumes at the offset its slot holds and both come back running 2.0.0.
//   - ota-evil: the image is signed with another key: the pot refuses it ("bad signature"), the
//     rollout records the failure and the pot keeps running its old version.
//   - ota-crash: the new image crashes before it connects (vdev --ota-fail-version): the next boot
//     returns to the old slot and the pot reports rolled_back.

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sprout-iot/sprout/actors/actortest"
)

type rolloutJSON struct {
	ID      string `json:"id"`
	State   string `json:"state"`
	Reason  string `json:"reason"`
	Targets []struct {
		DeviceID string `json:"device_id"`
		State    string `json:"state"`
		Percent  int    `json:"percent"`
		Reason   string `json:"reason"`
	} `json:"targets"`
}

func target(t *testing.T, s *server, rollout, dev string) (state string, percent int, reason string) {
	var r rolloutJSON
	api(t, s, "GET", "/api/v1/rollouts/"+rollout, nil, &r)
	for _, tg := range r.Targets {
		if tg.DeviceID == dev {
			return tg.State, tg.Percent, tg.Reason
		}
	}
	return "", 0, ""
}

// writeImage writes a test image: its first line is the version, then filler to size bytes.
func writeImage(t *testing.T, path, version string, size int) {
	t.Helper()
	b := []byte(version + "\n")
	for i := 0; len(b) < size; i++ {
		b = append(b, byte('a'+i%26))
	}
	if err := os.WriteFile(path, b[:size], 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestOTAVirtualDevicesUpdateThroughARollout(t *testing.T) {
	if testing.Short() {
		t.Skip("OTA test builds and runs processes; skipped with -short")
	}
	root := repoRoot(t)
	if _, err := os.Stat(filepath.Join(root, "cmd", "sprout")); err != nil {
		t.Skip("cmd/sprout does not exist")
	}
	tmp := t.TempDir()
	if out, err := exec.Command("make", "-C", filepath.Join(root, "firmware"), "vdev").CombinedOutput(); err != nil {
		t.Fatalf("make -C firmware vdev: %v\n%s", err, out)
	}
	vdev := filepath.Join(root, "firmware", "build", "vdev")
	bin := filepath.Join(tmp, "sprout")
	build := exec.Command("go", "build", "-o", bin, "./cmd/sprout")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/sprout: %v\n%s", err, out)
	}
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("sprout %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	data := filepath.Join(tmp, "data")
	good, evil := filepath.Join(tmp, "good"), filepath.Join(tmp, "evil")
	run("firmware", "keygen", "--out", good)
	run("firmware", "keygen", "--out", evil)

	// 64 KiB at 40 chunks/s: long enough to kill a pot in the middle of its download.
	writeImage(t, filepath.Join(tmp, "v2.bin"), "vdev-2.0.0", 64<<10)
	writeImage(t, filepath.Join(tmp, "evil.bin"), "vdev-evil", 4096)
	writeImage(t, filepath.Join(tmp, "v3.bin"), "vdev-3.0.0", 4096)
	run("firmware", "add", "--data-dir", data, "--product", "ota-good", "--version", "vdev-2.0.0",
		"--file", filepath.Join(tmp, "v2.bin"), "--key", good+".key")
	run("firmware", "add", "--data-dir", data, "--product", "ota-evil", "--version", "vdev-evil",
		"--file", filepath.Join(tmp, "evil.bin"), "--key", evil+".key")
	run("firmware", "add", "--data-dir", data, "--product", "ota-crash", "--version", "vdev-3.0.0",
		"--file", filepath.Join(tmp, "v3.bin"), "--key", good+".key")

	type otaPot struct {
		pot
		product string
	}
	pots := []*otaPot{
		{pot: pot{id: "ota-pot-1"}, product: "ota-good"},
		{pot: pot{id: "ota-pot-resume"}, product: "ota-good"},
		{pot: pot{id: "ota-pot-evil"}, product: "ota-evil"},
		{pot: pot{id: "ota-pot-crash", flags: []string{"--ota-fail-version", "vdev-3.0.0"}}, product: "ota-crash"},
	}
	secretLine := regexp.MustCompile(`id=(\S+) secret=([0-9a-f]+)`)
	for _, p := range pots {
		out := run("device", "add", "--data-dir", data, "--id", p.id, "--product", p.product)
		m := secretLine.FindStringSubmatch(out)
		if m == nil || m[1] != p.id {
			t.Fatalf("sprout device add --id %s:\n%s", p.id, out)
		}
		p.secret = m[2]
	}

	srv := &server{bin: bin, dataDir: data, edge: freePort(t), http: freePort(t),
		extraEnv: []string{"SPROUT_OTA_CHUNKS_PER_SECOND=40"}}
	srv.start(t)
	t.Cleanup(func() {
		if srv.cmd != nil {
			_ = srv.cmd.Process.Signal(syscall.SIGTERM)
			_ = srv.cmd.Wait()
		}
		if t.Failed() {
			t.Logf("server log:\n%s", srv.log.String())
		}
	})
	start := func(p *otaPot) {
		args := append([]string{"--server", srv.edge, "--id", p.id, "--secret", p.secret,
			"--state-dir", filepath.Join(tmp, p.id), "--report-interval-ms", "1000", "--backoff-max-ms", "1000",
			"--ota-pubkey", good + ".pub", "--product", p.product}, p.flags...)
		if p.log == nil {
			p.log = &lockedBuffer{}
		}
		p.cmd = exec.Command(vdev, args...)
		p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
		if err := p.cmd.Start(); err != nil {
			t.Fatalf("start vdev: %v", err)
		}
	}
	for _, p := range pots {
		start(p)
		t.Cleanup(func() {
			if p.cmd != nil && p.cmd.Process != nil {
				_ = p.cmd.Process.Signal(syscall.SIGTERM)
				_ = p.cmd.Wait()
			}
			if t.Failed() {
				t.Logf("%s log:\n%s", p.id, p.log.String())
			}
		})
	}
	for _, p := range pots {
		actortest.Eventually(t, 20*time.Second, p.id+" online", func() bool { return device(t, srv, p.id).Online })
	}

	rollouts := map[string]string{}
	for product, version := range map[string]string{"ota-good": "vdev-2.0.0", "ota-evil": "vdev-evil", "ota-crash": "vdev-3.0.0"} {
		var r rolloutJSON
		if code := api(t, srv, "POST", "/api/v1/rollouts",
			map[string]any{"product": product, "version": version, "stages": []int{100}}, &r); code/100 != 2 {
			t.Fatalf("POST /api/v1/rollouts %s: %d %+v", product, code, r)
		}
		rollouts[product] = r.ID
	}

	// Kill the resuming pot in the middle of its download, then boot it again.
	resume := pots[1]
	actortest.Eventually(t, 30*time.Second, "ota-pot-resume downloading past 20%", func() bool {
		st, pct, _ := target(t, srv, rollouts["ota-good"], resume.id)
		return st == "downloading" && pct >= 20
	})
	_ = resume.cmd.Process.Signal(syscall.SIGKILL)
	_ = resume.cmd.Wait()
	killedAt := time.Now()
	start(resume)

	for _, p := range pots[:2] {
		actortest.Eventually(t, 60*time.Second, p.id+" running vdev-2.0.0", func() bool {
			st, _, _ := target(t, srv, rollouts["ota-good"], p.id)
			return st == "running"
		})
		actortest.Eventually(t, 10*time.Second, p.id+" says it runs vdev-2.0.0", func() bool {
			return strings.Contains(p.log.String(), "boot: running vdev-2.0.0 (on trial)") &&
				strings.Contains(p.log.String(), "marked valid")
		})
	}
	m := regexp.MustCompile(`ota: resuming vdev-2.0.0 \(65536 bytes\) at offset (\d+)`).FindStringSubmatch(resume.log.String())
	if m == nil {
		t.Fatalf("the restarted pot did not resume its download")
	}
	if off, _ := strconv.Atoi(m[1]); off < 65536/5 {
		t.Fatalf("resumed at offset %d, want at least 20%% of 65536 (it was killed past 20%%)", off)
	} else {
		t.Logf("resumed at offset %d of 65536, %s after the kill", off, time.Since(killedAt).Round(time.Millisecond))
	}

	// A bad signature: refused, reported, nothing written; the pot keeps its version.
	evilPot := pots[2]
	actortest.Eventually(t, 30*time.Second, "ota-pot-evil failed with bad signature", func() bool {
		st, _, reason := target(t, srv, rollouts["ota-evil"], evilPot.id)
		return st == "failed" && strings.Contains(reason, "bad signature")
	})
	if _, err := os.Stat(filepath.Join(tmp, evilPot.id, "slot-b")); err == nil {
		t.Errorf("the pot wrote an image whose signature it refused")
	}

	// A new image that never comes back: rolled back on the next boot.
	crash := pots[3]
	actortest.Eventually(t, 60*time.Second, "ota-pot-crash rolled back", func() bool {
		st, _, _ := target(t, srv, rollouts["ota-crash"], crash.id)
		return st == "rolled_back"
	})
	actortest.Eventually(t, 10*time.Second, "ota-pot-crash back on its old version", func() bool {
		l := crash.log.String()
		return strings.Contains(l, "rolled back to vdev-0.1.0") && strings.Contains(l, "ota: state 6")
	})
}
