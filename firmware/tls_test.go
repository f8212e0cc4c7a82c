package firmware_test

// The C firmware over TLS: vdev (the POSIX port with mbedTLS) against a real node serving the
// TCP edge over TLS only, with the certificates `sprout tls dev` writes. A pot trusting the node's
// CA reports and answers a command; a pot trusting another CA, or expecting another name, is
// refused before it says anything (no Hello reaches the node, which sees a failed TLS handshake)
// and backs off as for a refused socket; a listener that never speaks TLS times the handshake out.

import (
	"net"
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
	"github.com/sprout-iot/sprout/edge/tlsconf"
)

// runVdev starts vdev with args; its log is in the returned pot. It is stopped at cleanup.
func runVdev(t *testing.T, vdev, id string, args ...string) *pot {
	t.Helper()
	p := &pot{id: id, log: &lockedBuffer{}}
	p.cmd = exec.Command(vdev, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start vdev: %v", err)
	}
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			_ = p.cmd.Wait()
		}
		if t.Failed() {
			t.Logf("%s log:\n%s", id, p.log.String())
		}
	})
	return p
}

// waitExit waits for a vdev started with --run-for-ms to end by itself.
func waitExit(t *testing.T, p *pot, within time.Duration) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%s exited: %v\n%s", p.id, err, p.log.String())
		}
	case <-time.After(within):
		t.Fatalf("%s still running after %v", p.id, within)
	}
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

func TestVdevOverTLSAgainstSproutServe(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs processes; skipped with -short")
	}
	root := repoRoot(t)
	if _, err := os.Stat(filepath.Join(root, "cmd", "sprout")); err != nil {
		t.Skip("cmd/sprout does not exist yet")
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

	// The node's certificate, as an operator makes it for development; and a CA of someone else.
	tlsDir := filepath.Join(tmp, "tls")
	if out, err := exec.Command(bin, "tls", "dev", "--hosts", "localhost,127.0.0.1", "--out", tlsDir).CombinedOutput(); err != nil {
		t.Fatalf("sprout tls dev: %v\n%s", err, out)
	}
	goodCA := filepath.Join(tlsDir, tlsconf.DevCAFile)
	other, err := tlsconf.GenerateDev(filepath.Join(tmp, "other"), []string{"localhost", "127.0.0.1"}, 0)
	if err != nil {
		t.Fatal(err)
	}

	edgeTLS := freePort(t)
	srv := &server{bin: bin, dataDir: filepath.Join(tmp, "data"), edge: "", http: freePort(t),
		extraEnv: []string{"SPROUT_EDGE_TLS_ADDR=" + edgeTLS,
			"SPROUT_TLS_CERT=" + filepath.Join(tlsDir, tlsconf.DevCertFile), "SPROUT_TLS_KEY=" + filepath.Join(tlsDir, tlsconf.DevKeyFile)}}
	secrets := map[string]string{}
	secretLine := regexp.MustCompile(`id=(\S+) secret=([0-9a-f]+)`)
	for _, id := range []string{"tls-pot", "tls-pot-builtin-ca", "tls-pot-wrong-ca", "tls-pot-wrong-name"} {
		out, err := exec.Command(bin, "device", "add", "--data-dir", srv.dataDir, "--id", id).CombinedOutput()
		m := secretLine.FindStringSubmatch(string(out))
		if err != nil || m == nil {
			t.Fatalf("sprout device add --id %s: %v\n%s", id, err, out)
		}
		secrets[id] = m[2]
	}
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
	base := func(id string) []string {
		return []string{"--server", edgeTLS, "--id", id, "--secret", secrets[id], "--state-dir", filepath.Join(tmp, id),
			"--report-interval-ms", "400", "--backoff-max-ms", "2000"}
	}

	t.Run("verified server: reports and a command answered", func(t *testing.T) {
		p := runVdev(t, vdev, "tls-pot", append(base("tls-pot"), "--ca", goodCA, "--server-name", "localhost")...)
		actortest.Eventually(t, 20*time.Second, "tls-pot online with readings", func() bool {
			d := device(t, srv, "tls-pot")
			return d.Online && d.LastSeq >= 3
		})
		if !regexp.MustCompile(`TLS to 127\.0\.0\.1:\d+: TLSv1\.2 TLS-ECDHE-ECDSA-\S+, server verified as localhost`).MatchString(p.log.String()) {
			t.Errorf("the pot does not say it verified the server over TLS 1.2:\n%s", p.log.String())
		}
		var res outcomeJSON
		api(t, srv, "POST", "/api/v1/devices/tls-pot/commands",
			map[string]any{"kind": "water", "water_ms": 1500, "timeout_ms": 10000}, &res)
		if res.Outcome != "done" || res.WateredMl != 30 {
			t.Fatalf("water command over TLS: %+v, want done with 30 ml", res)
		}
	})

	t.Run("a CA compiled in", func(t *testing.T) {
		bin := filepath.Join(tmp, "vdev-ca")
		if out, err := exec.Command("make", "-C", filepath.Join(root, "firmware"), "vdev", "VDEV_CA="+goodCA, "VDEV_BIN="+bin).CombinedOutput(); err != nil {
			t.Fatalf("make vdev VDEV_CA=...: %v\n%s", err, out)
		}
		if out, _ := exec.Command(bin, "--help").CombinedOutput(); !strings.Contains(string(out), "(one is)") {
			t.Errorf("vdev built with VDEV_CA does not say it has a CA:\n%s", out)
		}
		runVdev(t, bin, "tls-pot-builtin-ca", append(base("tls-pot-builtin-ca"), "--tls", "--server-name", "localhost")...)
		actortest.Eventually(t, 20*time.Second, "tls-pot-builtin-ca online with readings", func() bool {
			d := device(t, srv, "tls-pot-builtin-ca")
			return d.Online && d.LastSeq >= 2
		})
	})

	// refused runs a pot whose TLS check fails for 4 s and returns its log.
	refused := func(t *testing.T, id string, tlsArgs ...string) (log, nodeLine string) {
		before := strings.Count(srv.log.String(), "tls:")
		p := runVdev(t, vdev, id, append(append(base(id), tlsArgs...), "--run-for-ms", "4000")...)
		waitExit(t, p, 20*time.Second)
		log = p.log.String()
		if d := device(t, srv, id); d.Online || d.LastSeq != 0 {
			t.Errorf("%s reached the node: %+v", id, d)
		}
		// Nothing of the pot's protocol reached the node: its id is in no line of the node's log.
		if strings.Contains(srv.log.String(), id) {
			t.Errorf("the node's log names %s: its Hello got through", id)
		}
		// The node saw failed TLS handshakes (the pot's alert).
		actortest.Eventually(t, 5*time.Second, "the node logging the failed TLS handshakes", func() bool {
			return strings.Count(srv.log.String(), "tls:") > before
		})
		var nodeTLS []string
		for _, line := range strings.Split(srv.log.String(), "\n") {
			if strings.Contains(line, "tls:") {
				nodeTLS = append(nodeTLS, line)
			}
		}
		nodeLine = nodeTLS[len(nodeTLS)-1]
		t.Logf("node: %s", nodeLine)
		// It backed off: with a 1 s base and a 2 s cap, 4 s hold 2 to 5 attempts, not a busy loop.
		m := regexp.MustCompile(`stats: connects (\d+) \(failed (\d+)\) handshakes (\d+)`).FindStringSubmatch(log)
		if m == nil {
			t.Fatalf("%s: no stats line:\n%s", id, log)
		}
		connects, failed, handshakes := atoi(m[1]), atoi(m[2]), atoi(m[3])
		if handshakes != 0 || connects < 2 || connects > 5 || failed != connects {
			t.Errorf("%s: connects %d, failed %d, handshakes %d: want 2..5 attempts, all failed, no handshake", id, connects, failed, handshakes)
		}
		if strings.Count(log, "server certificate refused") != connects {
			t.Errorf("%s: not every attempt says the certificate was refused:\n%s", id, log)
		}
		return log, nodeLine
	}

	t.Run("another CA is refused", func(t *testing.T) {
		log, node := refused(t, "tls-pot-wrong-ca", "--ca", other.CA, "--server-name", "localhost")
		if !strings.Contains(log, "not correctly signed by the trusted CA") {
			t.Errorf("the refusal does not say why (an untrusted CA):\n%s", log)
		}
		if !strings.Contains(node, "remote error: tls: unknown certificate authority") {
			t.Errorf("the node's log does not show the pot's unknown-CA alert: %s", node)
		}
	})

	t.Run("another name is refused", func(t *testing.T) {
		log, node := refused(t, "tls-pot-wrong-name", "--ca", goodCA, "--server-name", "not-this-node.example")
		if !strings.Contains(node, "remote error: tls: bad certificate") {
			t.Errorf("the node's log does not show the pot's bad-certificate alert: %s", node)
		}
		if !strings.Contains(log, "(name not-this-node.example)") || !strings.Contains(log, "does not match") {
			t.Errorf("the refusal does not say why (the name):\n%s", log)
		}
	})

	t.Run("a listener that never answers times the handshake out", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		accepted := make(chan net.Conn, 8)
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				accepted <- c // held open, silent
			}
		}()
		defer func() {
			for len(accepted) > 0 {
				(<-accepted).Close()
			}
		}()
		p := runVdev(t, vdev, "tls-pot-silent-peer", "--server", ln.Addr().String(), "--id", "tls-pot-silent-peer",
			"--secret", "00112233", "--state-dir", filepath.Join(tmp, "silent-peer"), "--ca", goodCA,
			"--server-name", "localhost", "--tls-handshake-timeout-ms", "300", "--run-for-ms", "1500")
		waitExit(t, p, 20*time.Second)
		if !strings.Contains(p.log.String(), "TLS handshake timed out after 300 ms") {
			t.Errorf("no handshake timeout:\n%s", p.log.String())
		}
	})

	t.Run("bad TLS settings are refused at start", func(t *testing.T) {
		for _, c := range []struct {
			args []string
			want string
		}{
			{[]string{"--ca", filepath.Join(tmp, "missing.pem")}, "missing.pem"},
			{[]string{"--ca", filepath.Join(tlsDir, tlsconf.DevKeyFile)}, "CA file"},
			{[]string{"--server-name", "localhost"}, "need --tls or --ca"},
			{[]string{"--tls"}, "no CA"},
		} {
			args := append([]string{"--server", edgeTLS, "--id", "x", "--secret", "00", "--state-dir", filepath.Join(tmp, "bad")}, c.args...)
			out, err := exec.Command(vdev, args...).CombinedOutput()
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), c.want) {
				t.Errorf("vdev %v: %v, %q; want exit 2 saying %q", c.args, err, out, c.want)
			}
		}
	})
}

// The ESP-IDF port (which CI cannot build; tools/esp-idf-check.sh compiles it against ESP-IDF's
// headers) verifies the node by default, and nothing in either port turns the check off.
func TestESPLinkIsVerifiedTLSByDefault(t *testing.T) {
	kconfig := espSource(t, filepath.Join("main", "Kconfig.projbuild"))
	if !regexp.MustCompile(`choice SPROUT_TLS\s+prompt "[^"]*"\s+default SPROUT_TLS_PINNED_CA`).MatchString(kconfig) {
		t.Error("Kconfig's TLS choice does not default to the pinned CA")
	}
	if !strings.Contains(espSource(t, filepath.Join("check", "sdkconfig_sprout.h")), "#define CONFIG_SPROUT_TLS_PINNED_CA 1") {
		t.Error("the compile check's sdkconfig does not follow Kconfig's default (pinned CA)")
	}
	cmake := espSource(t, filepath.Join("main", "CMakeLists.txt"))
	if !strings.Contains(cmake, "list(APPEND embed server_ca.pem)") || !strings.Contains(cmake, "EMBED_TXTFILES ${embed}") ||
		!strings.Contains(cmake, "FATAL_ERROR") {
		t.Error("main/CMakeLists.txt does not embed server_ca.pem (or builds without it)")
	}
	port := espSource(t, filepath.Join("main", "esp_port.c"))
	for _, want := range []string{"esp_tls_conn_new_sync(", ".cacert_buf = server_ca_pem_start", ".crt_bundle_attach = esp_crt_bundle_attach"} {
		if !strings.Contains(port, want) {
			t.Errorf("esp_port.c lacks %s", want)
		}
	}
	posix, err := os.ReadFile(filepath.Join("port", "posix", "posix_tls.c"))
	if err != nil {
		t.Fatal(err)
	}
	for name, src := range map[string]string{"esp_port.c": port, "posix_tls.c": string(posix)} {
		for _, bad := range []string{"skip_common_name", "MBEDTLS_SSL_VERIFY_NONE", "MBEDTLS_SSL_VERIFY_OPTIONAL"} {
			if strings.Contains(src, bad) {
				t.Errorf("%s uses %s: the server's certificate or name goes unchecked", name, bad)
			}
		}
	}
	if !strings.Contains(string(posix), "mbedtls_ssl_conf_authmode(&t->conf, MBEDTLS_SSL_VERIFY_REQUIRED)") {
		t.Error("posix_tls.c does not require the server's certificate")
	}
}
