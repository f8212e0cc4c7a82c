package main

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/sprout-iot/sprout/actors/actortest"
	"github.com/sprout-iot/sprout/edge/tlsconf"
	"github.com/sprout-iot/sprout/messages"
	"github.com/sprout-iot/sprout/simulations/fleet"
)

// mqttPot connects a Go MQTT client library as the pot c.
func mqttPot(t *testing.T, broker string, c fleet.Credential, tc *tls.Config) (paho.Client, error) {
	t.Helper()
	now := time.Now().Unix()
	o := paho.NewClientOptions().AddBroker(broker).SetClientID(c.ID).SetUsername(messages.MQTTUsername(c.ID, now)).
		SetPassword(messages.MQTTPassword(c.Secret, c.ID, now)).SetAutoReconnect(false).SetConnectRetry(false).
		SetCleanSession(true).SetConnectTimeout(5 * time.Second).SetTLSConfig(tc).SetMaxResumePubInFlight(16)
	cl := paho.NewClient(o)
	tok := cl.Connect()
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		return nil, fmt.Errorf("mqtt connect %s: %v", broker, tok.Error())
	}
	t.Cleanup(func() { cl.Disconnect(0) })
	return cl, nil
}

// TestMQTTAckedReadingsSurviveSIGKILL: a PUBACK means stored. A pot publishes QoS 1 readings
// without waiting for each PUBACK; the node is SIGKILLed mid-stream; after a restart every
// reading that got its PUBACK is there, and the pot's resends are stored once.
func TestMQTTAckedReadingsSurviveSIGKILL(t *testing.T) {
	dir := t.TempDir()
	creds := provisionDevices(t, dir, "mq", 3)
	s := newServer(t, dir)
	mqttAddr := freeAddr(t)
	s.extraEnv = []string{"SPROUT_MQTT_ADDR=" + mqttAddr}
	s.start(t)

	var mu sync.Mutex
	acked := map[string]map[uint64]bool{}
	sent := map[string]uint64{}
	var wg sync.WaitGroup
	for _, c := range creds {
		cl, err := mqttPot(t, "tcp://"+mqttAddr, c, nil)
		if err != nil {
			t.Fatal(err)
		}
		acked[c.ID] = map[uint64]bool{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := uint64(1); seq <= 100000; seq++ {
				mu.Lock()
				sent[c.ID] = seq
				mu.Unlock()
				tok := cl.Publish("sprout/"+c.ID+"/telemetry", 1, false, fmt.Sprintf(`{"seq":%d,"soil_moisture_pct":40}`, seq))
				go func(seq uint64) {
					if tok.WaitTimeout(10*time.Second) && tok.Error() == nil {
						mu.Lock()
						acked[c.ID][seq] = true
						mu.Unlock()
					}
				}(seq)
				if !cl.IsConnectionOpen() {
					return
				}
				if seq%8 == 0 { // a window of about eight in flight
					tok.WaitTimeout(10 * time.Second)
				}
			}
		}()
	}
	actortest.Eventually(t, 30*time.Second, "some readings acked", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, a := range acked {
			if len(a) < 50 {
				return false
			}
		}
		return true
	})
	s.kill(t)
	wg.Wait()
	mu.Lock()
	total := 0
	for _, a := range acked {
		total += len(a)
	}
	mu.Unlock()
	t.Logf("%d readings acked before SIGKILL", total)
	if total == 0 {
		t.Fatal("nothing acked before SIGKILL")
	}

	s.start(t)
	for _, c := range creds {
		cl, err := mqttPot(t, "tcp://"+mqttAddr, c, nil)
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		last := sent[c.ID]
		mu.Unlock()
		// The pot resends everything it has no PUBACK for: repeats are acked and stored once.
		for seq := uint64(1); seq <= last; seq++ {
			tok := cl.Publish("sprout/"+c.ID+"/telemetry", 1, false, fmt.Sprintf(`{"seq":%d,"soil_moisture_pct":40}`, seq))
			if seq == last || seq%32 == 0 {
				if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
					t.Fatalf("%s resend %d: %v", c.ID, seq, tok.Error())
				}
			}
		}
		var rs struct {
			Readings []struct {
				Seq uint64 `json:"seq"`
			} `json:"readings"`
		}
		s.get(t, "/api/v1/devices/"+c.ID+"/readings?limit=10000&from=2000-01-01T00:00:00Z", &rs)
		seen := map[uint64]int{}
		for _, r := range rs.Readings {
			seen[r.Seq]++
		}
		for seq := range acked[c.ID] {
			if seen[seq] == 0 {
				t.Fatalf("%s: acked seq %d missing after SIGKILL", c.ID, seq)
			}
		}
		for seq, n := range seen {
			if n > 1 {
				t.Fatalf("%s: seq %d stored %d times", c.ID, seq, n)
			}
		}
		if uint64(len(seen)) != last {
			t.Fatalf("%s: %d distinct readings stored, want %d", c.ID, len(seen), last)
		}
	}
}

// TestTLSListenersWithDevCertsAndReloadOnSIGHUP: `sprout tls dev` certificates serve MQTTS and
// the TCP edge's TLS listener; a client trusting another CA is refused; a new certificate is
// served after SIGHUP while an open session stays up; the plaintext listeners can be off.
func TestTLSListenersWithDevCertsAndReloadOnSIGHUP(t *testing.T) {
	dir := t.TempDir()
	tlsDir := filepath.Join(dir, "tls")
	if out, err := exec.Command(sproutBin, "tls", "dev", "--hosts", "localhost,127.0.0.1", "--out", tlsDir).CombinedOutput(); err != nil {
		t.Fatalf("sprout tls dev: %v\n%s", err, out)
	}
	creds := provisionDevices(t, dir, "tl", 1)
	s := newServer(t, dir)
	mqtts, edgeTLS := freeAddr(t), freeAddr(t)
	s.extraEnv = []string{"SPROUT_EDGE_ADDR=", "SPROUT_MQTT_ADDR=", "SPROUT_MQTTS_ADDR=" + mqtts, "SPROUT_EDGE_TLS_ADDR=" + edgeTLS,
		"SPROUT_TLS_CERT=" + filepath.Join(tlsDir, tlsconf.DevCertFile), "SPROUT_TLS_KEY=" + filepath.Join(tlsDir, tlsconf.DevKeyFile)}
	s.start(t)

	good, err := tlsconf.ClientConfig(filepath.Join(tlsDir, tlsconf.DevCAFile), "")
	if err != nil {
		t.Fatal(err)
	}
	cl, err := mqttPot(t, "ssl://"+mqtts, creds[0], good)
	if err != nil {
		t.Fatal(err)
	}
	if tok := cl.Publish("sprout/"+creds[0].ID+"/telemetry", 1, false, `{"seq":1}`); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish over MQTTS: %v", tok.Error())
	}
	// The TCP edge over TLS.
	conn, err := tls.Dial("tcp", edgeTLS, good)
	if err != nil {
		t.Fatalf("TCP edge over TLS: %v", err)
	}
	first := conn.ConnectionState().PeerCertificates[0].SerialNumber
	conn.Close()

	otherDir := filepath.Join(dir, "other")
	if _, err := tlsconf.GenerateDev(otherDir, []string{"localhost"}, 0); err != nil {
		t.Fatal(err)
	}
	wrong, _ := tlsconf.ClientConfig(filepath.Join(otherDir, tlsconf.DevCAFile), "")
	if _, err := tls.Dial("tcp", edgeTLS, wrong); err == nil {
		t.Fatal("a client trusting another CA connected")
	}
	if _, err := mqttPot(t, "ssl://"+mqtts, creds[0], wrong); err == nil {
		t.Fatal("an MQTT client trusting another CA connected")
	}
	old := tls.Config{MaxVersion: tls.VersionTLS11, RootCAs: good.RootCAs}
	if _, err := tls.Dial("tcp", edgeTLS, &old); err == nil {
		t.Fatal("TLS 1.1 accepted")
	}

	// A new certificate, then SIGHUP: new connections get it, the open session stays.
	if out, err := exec.Command(sproutBin, "tls", "dev", "--hosts", "localhost,127.0.0.1", "--out", tlsDir).CombinedOutput(); err != nil {
		t.Fatalf("sprout tls dev again: %v\n%s", err, out)
	}
	if err := s.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	actortest.Eventually(t, 10*time.Second, "new certificate served after SIGHUP", func() bool {
		c, err := tls.Dial("tcp", edgeTLS, good)
		if err != nil {
			return false
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.Cmp(first) != 0
	})
	if tok := cl.Publish("sprout/"+creds[0].ID+"/telemetry", 1, false, `{"seq":2}`); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("session dropped by the reload: %v", tok.Error())
	}
	var st struct {
		Online bool `json:"online"`
	}
	s.get(t, "/api/v1/devices/"+creds[0].ID, &st)
	b, _ := json.Marshal(st)
	if !st.Online {
		t.Fatalf("pot not online over MQTTS: %s", b)
	}
}

// TestSimOverMQTTAndTLS: `sprout sim --transport mqtt` (plaintext and MQTTS) and `sprout sim
// --tls-ca` (the TCP edge over TLS) report through one node with the plaintext TCP edge off.
func TestSimOverMQTTAndTLS(t *testing.T) {
	dir := t.TempDir()
	tlsDir := filepath.Join(dir, "tls")
	if out, err := exec.Command(sproutBin, "tls", "dev", "--out", tlsDir).CombinedOutput(); err != nil {
		t.Fatalf("sprout tls dev: %v\n%s", err, out)
	}
	creds := provisionDevices(t, dir, "sm", 30)
	s := newServer(t, dir)
	mqttAddr, mqtts, edgeTLS := freeAddr(t), freeAddr(t), freeAddr(t)
	s.extraEnv = []string{"SPROUT_EDGE_ADDR=", "SPROUT_MQTT_ADDR=" + mqttAddr, "SPROUT_MQTTS_ADDR=" + mqtts, "SPROUT_EDGE_TLS_ADDR=" + edgeTLS,
		"SPROUT_TLS_CERT=" + filepath.Join(tlsDir, tlsconf.DevCertFile), "SPROUT_TLS_KEY=" + filepath.Join(tlsDir, tlsconf.DevKeyFile)}
	s.start(t)
	ca := filepath.Join(tlsDir, tlsconf.DevCAFile)
	for i, run := range []struct {
		name string
		args []string
	}{
		{"mqtt", []string{"--transport", "mqtt", "--server", mqttAddr}},
		{"mqtts", []string{"--transport", "mqtt", "--server", mqtts, "--tls-ca", ca}},
		{"tcp over tls", []string{"--server", edgeTLS, "--tls-ca", ca}},
	} {
		t.Run(run.name, func(t *testing.T) {
			part := creds[i*10 : (i+1)*10]
			credFile := filepath.Join(dir, fmt.Sprintf("creds-%d.json", i))
			b, _ := json.Marshal(part)
			_ = os.WriteFile(credFile, b, 0o600)
			repFile := filepath.Join(dir, fmt.Sprintf("report-%d.json", i))
			out, err := exec.Command(sproutBin, append([]string{"sim", "--creds", credFile, "--devices", "10",
				"--duration", "3s", "--report-interval", "100ms", "--json", repFile, "--quiet"}, run.args...)...).CombinedOutput()
			if err != nil {
				t.Fatalf("sim: %v\n%s", err, out)
			}
			var rep fleet.Report
			rb, _ := os.ReadFile(repFile)
			if err := json.Unmarshal(rb, &rep); err != nil {
				t.Fatal(err)
			}
			if rep.ConnectedMax != 10 || rep.FramesAcked == 0 || rep.FramesAcked+10 < rep.FramesSent {
				t.Fatalf("sim report: connected %d, sent %d, acked %d\n%s", rep.ConnectedMax, rep.FramesSent, rep.FramesAcked, out)
			}
			var state struct {
				LastSeq uint64 `json:"last_seq"`
			}
			s.get(t, "/api/v1/devices/"+part[0].ID, &state)
			if state.LastSeq == 0 {
				t.Fatalf("no telemetry stored for %s", part[0].ID)
			}
		})
	}
	m, _ := scrape(t, s)
	if m["sprout_mqtt_reports_total"] == 0 || m["sprout_mqtt_connections_total"] < 20 {
		t.Fatalf("MQTT metrics: reports %v, connections %v", m["sprout_mqtt_reports_total"], m["sprout_mqtt_connections_total"])
	}
}

// TestDemoRunsPlantsOverMQTTAndTLS: the demo's plants over MQTT, MQTTS and the TCP edge over TLS
// (dev certificates in its data dir) all come online, beside the plain TCP ones.
func TestDemoRunsPlantsOverMQTTAndTLS(t *testing.T) {
	args := []string{"--plants", "8", "--users", "1", "--demo-dir", filepath.Join(t.TempDir(), "demo"),
		"--demo-edge-addr", "127.0.0.1:0", "--demo-http-addr", "127.0.0.1:0", "--demo-wechat-addr", "127.0.0.1:0"}
	cmd := exec.Command(sproutBin, append([]string{"demo"}, args...)...)
	out, exited := startUntil(t, cmd, "plants online    8 |")
	if !strings.Contains(out.String(), "MQTT, MQTTS") {
		t.Fatalf("the demo does not say where MQTT is:\n%s", out.String())
	}
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := waitExit(t, exited, out); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
}
