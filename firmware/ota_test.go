package firmware_test

// OTA: the C firmware's update path (core/ota.c, port/posix/ota_posix.c) against a real node.
// Three products, one rollout each, at once:
//   - ota-good: two pots update to vdev-2.0.0; one is SIGKILLed in the middle of its download and
//     restarted: it resumes at the offset it last persisted (at most 16 KiB behind, with a
//     handful of record writes instead of one per chunk) and both come back running 2.0.0 from
//     a slot that holds the image byte for byte. A third pot runs on a low battery: it defers
//     (DEFERRED "low supply"), which holds the stage open without counting as a failure, and
//     downloads once its supply recovers.
//   - ota-evil: the image is signed with another key: the pot refuses it ("bad signature"), the
//     rollout records the failure and the pot keeps running its old version.
//   - ota-crash: the new image crashes before it connects (vdev --ota-fail-version): the next boot
//     returns to the old slot and the pot reports rolled_back.

import (
	"bytes"
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
		{pot: pot{id: "ota-pot-resume", flags: []string{"--verbose"}}, product: "ota-good"},
		{pot: pot{id: "ota-pot-lowbat", flags: []string{"--conditions-file", filepath.Join(tmp, "lowbat-conditions"),
			"--ota-retry-ms", "200", "--ota-retry-max-ms", "1000"}}, product: "ota-good"},
		{pot: pot{id: "ota-pot-evil"}, product: "ota-evil"},
		{pot: pot{id: "ota-pot-crash", flags: []string{"--ota-fail-version", "vdev-3.0.0"}}, product: "ota-crash"},
	}
	// The low-battery pot's supply: 3300 mV, under the 3600 mV a download needs.
	lowbatConditions := filepath.Join(tmp, "lowbat-conditions")
	if err := os.WriteFile(lowbatConditions, []byte("supply_mv 3300\n"), 0o600); err != nil {
		t.Fatal(err)
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

	// The low-battery pot declines: deferred with its reason, nothing written, not a failure.
	lowbat := pots[2]
	actortest.Eventually(t, 30*time.Second, "ota-pot-lowbat deferred for its low supply", func() bool {
		st, _, reason := target(t, srv, rollouts["ota-good"], lowbat.id)
		return st == "deferred" && strings.Contains(reason, "low supply: 3300 mV < 3600 mV")
	})

	// Kill the resuming pot in the middle of its download, then boot it again. It persists its
	// offset every 16 KiB, so past 40 % (26 KiB) it has saved at least once.
	resume := pots[1]
	const imageBytes, saveEvery, chunk = 65536, 16384, 448
	var killedPct int
	actortest.Eventually(t, 30*time.Second, "ota-pot-resume downloading past 40%", func() bool {
		st, pct, _ := target(t, srv, rollouts["ota-good"], resume.id)
		killedPct = pct
		return st == "downloading" && pct >= 40
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
	// The server saw killedPct % when the pot was killed, so the slot held at least that much; the
	// pot re-fetches at most what it had not persisted: under saveEvery plus the chunk in flight.
	off, _ := strconv.Atoi(m[1])
	if held := imageBytes * killedPct / 100; off < saveEvery || off > imageBytes || held-off > saveEvery+chunk {
		t.Fatalf("resumed at offset %d; killed holding at least %d bytes: want at least %d and at most %d bytes fetched again",
			off, held, saveEvery, saveEvery+chunk)
	}
	t.Logf("resumed at offset %d of %d (killed past %d%%), %s after the kill", off, imageBytes, killedPct,
		time.Since(killedAt).Round(time.Millisecond))
	// Record writes across both runs: the start, one per 16 KiB, the booting phase, the clear after
	// the Welcome (and a pause or a lost connection now and then); one per chunk would be 147.
	if writes := strings.Count(resume.log.String(), "ota: record saved:"); writes == 0 || writes > 2*imageBytes/saveEvery+6 {
		t.Fatalf("the download record was written %d times, want 1..%d", writes, 2*imageBytes/saveEvery+6)
	} else {
		t.Logf("the download record was written %d times for %d chunks", writes, (imageBytes+chunk-1)/chunk)
	}
	// The slot the pot now boots holds the image byte for byte.
	want, _ := os.ReadFile(filepath.Join(tmp, "v2.bin"))
	for _, p := range pots[:2] {
		if got, err := os.ReadFile(filepath.Join(tmp, p.id, "slot-b")); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s: slot-b is not the image (%d bytes, %v)", p.id, len(got), err)
		}
	}

	// The others are done; the low-battery pot still waits, holding the stage open, and the
	// rollout runs on: a deferral is not a failure.
	var r rolloutJSON
	api(t, srv, "GET", "/api/v1/rollouts/"+rollouts["ota-good"], nil, &r)
	if st, _, _ := target(t, srv, rollouts["ota-good"], lowbat.id); r.State != "running" || st != "deferred" {
		t.Fatalf("with the low-battery pot waiting: rollout %s (%s), the pot %s; want running, deferred", r.State, r.Reason, st)
	}
	if _, err := os.Stat(filepath.Join(tmp, lowbat.id, "slot-b")); err == nil {
		t.Fatalf("the low-battery pot wrote to its update slot")
	}
	// The supply recovers: the pot measures it again within its backoff and downloads.
	if err := os.WriteFile(lowbatConditions, []byte("supply_mv 4100\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	actortest.Eventually(t, 60*time.Second, "ota-pot-lowbat running vdev-2.0.0 once charged", func() bool {
		st, _, _ := target(t, srv, rollouts["ota-good"], lowbat.id)
		return st == "running"
	})
	actortest.Eventually(t, 10*time.Second, "the ota-good rollout completed with no failure", func() bool {
		api(t, srv, "GET", "/api/v1/rollouts/"+rollouts["ota-good"], nil, &r)
		return r.State == "completed" && strings.HasPrefix(r.Reason, "3 of 3 ")
	})
	if l := lowbat.log.String(); !strings.Contains(l, "ota: deferring vdev-2.0.0: low supply") ||
		!strings.Contains(l, "ota: downloading vdev-2.0.0 (65536 bytes) at offset 0") {
		t.Fatalf("the low-battery pot's log does not show it deferring, then downloading")
	}

	// A bad signature: refused, reported, nothing written; the pot keeps its version.
	evilPot := pots[3]
	actortest.Eventually(t, 30*time.Second, "ota-pot-evil failed with bad signature", func() bool {
		st, _, reason := target(t, srv, rollouts["ota-evil"], evilPot.id)
		return st == "failed" && strings.Contains(reason, "bad signature")
	})
	if _, err := os.Stat(filepath.Join(tmp, evilPot.id, "slot-b")); err == nil {
		t.Errorf("the pot wrote an image whose signature it refused")
	}

	// A new image that never comes back: rolled back on the next boot.
	crash := pots[4]
	actortest.Eventually(t, 60*time.Second, "ota-pot-crash rolled back", func() bool {
		st, _, _ := target(t, srv, rollouts["ota-crash"], crash.id)
		return st == "rolled_back"
	})
	actortest.Eventually(t, 10*time.Second, "ota-pot-crash back on its old version", func() bool {
		l := crash.log.String()
		return strings.Contains(l, "rolled back to vdev-0.1.0") && strings.Contains(l, "ota: state 6")
	})
}
