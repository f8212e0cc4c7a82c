package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/sprout-iot/sprout/edge/tlsconf"
	"github.com/sprout-iot/sprout/messages"
	"github.com/sprout-iot/sprout/simulations/fleet"
	"github.com/sprout-iot/sprout/simulations/plant"
)

var (
	mqttDevices = flag.Int("mqtt-devices", 1000, "MQTT clients in the QoS 1 throughput runs (Sprout durable, Mosquitto, Sprout TCP); 0 skips the MQTT part")
	mqttWindow  = flag.Int("mqtt-window", 4, "QoS 1 publishes in flight per client")
	mqttTime    = flag.Duration("mqtt-duration", 12*time.Second, "length of each MQTT throughput run")
	mqttIdle    = flag.Int("mqtt-idle-devices", 10000, "idle MQTT sessions and idle TLS connections in the memory runs")
	onlyMQTT    = flag.Bool("only-mqtt", false, "run only the MQTT and TLS part (make bench-mqtt)")
)

// MQTTResult is the MQTT and TLS part of the report.
type MQTTResult struct {
	Clients, Window int
	Runs            []Throughput
	IdleSessions    int
	BytesPerMQTT    float64 // server RSS per idle MQTT session (Sprout, embedded store)
	BytesPerTLS     float64 // server RSS per idle TLS connection to the TCP edge
	BytesPerTCP     float64 // the same fleet over plaintext TCP, for comparison
	MosquittoNote   string
}

// mqttBench measures QoS 1 readings/s through Sprout's MQTT edge with durable storage (embedded
// SQLite, fsync), through Debian's Mosquitto broker (QoS 1, in memory: not durable) with the same
// load generator, and through Sprout's own TCP edge (the plant simulator, same clients and window);
// then server memory per idle MQTT session and per idle TLS connection.
func mqttBench(bin, tmp string, cs []fleet.Credential, res *Results) error {
	r := &MQTTResult{Clients: *mqttDevices, Window: *mqttWindow}
	res.MQTT = r
	flood := cs[:*mqttDevices]
	if *mqttDevices > 0 {
		// 1. Sprout's MQTT edge, durable.
		fmt.Fprintln(os.Stderr, "mqtt: sprout MQTT, embedded SQLite ...")
		p, err := startSproutMQTT(bin, filepath.Join(tmp, "mqtt-sqlite"), flood)
		if err != nil {
			return err
		}
		t, err := mqttFlood(p.mqtt, flood)
		p.stop()
		if err != nil {
			return fmt.Errorf("sprout mqtt: %w", err)
		}
		t.Server = "sprout MQTT, QoS 1, PUBACK after a durable write (embedded SQLite)"
		r.Runs = append(r.Runs, t)

		// 2. Mosquitto, same generator.
		if mp, err := startMosquitto(tmp); err != nil {
			r.MosquittoNote = "Mosquitto run skipped: " + err.Error()
			fmt.Fprintln(os.Stderr, "mqtt:", r.MosquittoNote)
		} else {
			fmt.Fprintln(os.Stderr, "mqtt: mosquitto ...")
			t, err := mqttFlood(mp.edge, flood)
			mp.stop()
			if err != nil {
				return fmt.Errorf("mosquitto: %w", err)
			}
			t.Server = "Mosquitto 2 (Debian), QoS 1, in memory (not durable)"
			r.Runs = append(r.Runs, t)
		}

		// 3. Sprout's TCP edge, same clients and window, the plant simulator as the generator.
		fmt.Fprintln(os.Stderr, "mqtt: sprout TCP edge, embedded SQLite ...")
		p, err = startSprout(bin, filepath.Join(tmp, "tcp-sqlite"), "", flood)
		if err != nil {
			return err
		}
		rep, err := fleet.Run(context.Background(), fleet.Options{Devices: flood, Servers: []string{p.edge},
			ReportInterval: plant.Flood, Window: *mqttWindow, Duration: *mqttTime, ConnectRate: 2000})
		p.stop()
		if err != nil {
			return fmt.Errorf("sprout tcp: %w", err)
		}
		fps := rep.SteadyFramesPerSecond
		if fps == 0 {
			fps = rep.FramesPerSecond
		}
		r.Runs = append(r.Runs, Throughput{Server: "sprout TCP edge, Ack after a durable write (embedded SQLite)", FramesPerSec: fps,
			Acked: rep.FramesAcked, P50Ms: ms(rep.AckLatency.P50), P99Ms: ms(rep.AckLatency.P99), Devices: len(flood), Window: *mqttWindow})
		for _, t := range r.Runs {
			fmt.Fprintf(os.Stderr, "  %s: %.0f/s, p50 %.2f ms, p99 %.2f ms\n", t.Server, t.FramesPerSec, t.P50Ms, t.P99Ms)
		}
	}
	if *mqttIdle > 0 {
		return idleLinks(bin, tmp, cs[:*mqttIdle], r)
	}
	return nil
}

func startSproutMQTT(bin, dataDir string, cs []fleet.Credential, env ...string) (*proc, error) {
	addr := freeAddr()
	p, err := startSprout(bin, dataDir, "", cs, append([]string{"SPROUT_MQTT_ADDR=" + addr, "SPROUT_MQTT_MAX_SESSIONS=19000"}, env...)...)
	if p != nil {
		p.mqtt = addr
	}
	return p, err
}

// startMosquitto runs Debian's broker on a free port, anonymous, QoS 1 kept in memory.
func startMosquitto(tmp string) (*proc, error) {
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		if _, e := os.Stat("/usr/sbin/mosquitto"); e != nil {
			return nil, fmt.Errorf("mosquitto not installed (apt install mosquitto)")
		}
		bin = "/usr/sbin/mosquitto"
	}
	addr := freeAddr()
	_, port, _ := splitHostPort(addr)
	conf := filepath.Join(tmp, "mosquitto.conf")
	body := fmt.Sprintf("listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nmax_inflight_messages %d\nmax_queued_messages 1000\nlog_type error\n", port, *mqttWindow*4)
	if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
		return nil, err
	}
	p := &proc{edge: addr}
	p.cmd = exec.Command(bin, "-c", conf)
	p.cmd.Stdout, p.cmd.Stderr = os.Stderr, os.Stderr
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	return p, waitTCP(addr)
}

func splitHostPort(a string) (string, string, error) {
	for i := len(a) - 1; i >= 0; i-- {
		if a[i] == ':' {
			return a[:i], a[i+1:], nil
		}
	}
	return "", "", fmt.Errorf("no port in %q", a)
}

// mqttFlood connects every client (with Sprout's credentials: Mosquitto ignores them), then each
// keeps window QoS 1 publishes of a JSON reading in flight for the run's length, and counts the
// PUBACKs in the steady part (after the first second).
func mqttFlood(addr string, cs []fleet.Credential) (Throughput, error) {
	t := Throughput{Devices: len(cs), Window: *mqttWindow}
	var acked atomic.Int64
	var latMu sync.Mutex
	var lat []time.Duration
	clients := make([]paho.Client, len(cs))
	var wg sync.WaitGroup
	errs := make(chan error, len(cs))
	sem := make(chan struct{}, 64)
	for i, c := range cs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			now := time.Now().Unix()
			o := paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(c.ID).
				SetUsername(messages.MQTTUsername(c.ID, now)).SetPassword(messages.MQTTPassword(c.Secret, c.ID, now)).
				SetAutoReconnect(false).SetCleanSession(true).SetKeepAlive(60 * time.Second).SetOrderMatters(false).
				SetMaxResumePubInFlight(*mqttWindow)
			cl := paho.NewClient(o)
			if tok := cl.Connect(); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
				errs <- fmt.Errorf("connect %s: %v", c.ID, tok.Error())
				return
			}
			clients[i] = cl
		}()
	}
	wg.Wait()
	select {
	case err := <-errs:
		return t, err
	default:
	}
	start := time.Now()
	steady := start.Add(time.Second)
	end := start.Add(*mqttTime)
	var counted atomic.Int64
	for i, cl := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			topic := "sprout/" + cs[i].ID + "/telemetry"
			slots := make(chan struct{}, *mqttWindow)
			for seq := 1; time.Now().Before(end); seq++ {
				slots <- struct{}{}
				sent := time.Now()
				tok := cl.Publish(topic, 1, false, fmt.Sprintf(`{"seq":%d,"soil_moisture_pct":41.5,"temperature_c":22,"tank_level_pct":80}`, seq))
				go func() {
					defer func() { <-slots }()
					if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
						return
					}
					now := time.Now()
					acked.Add(1)
					if now.After(steady) && now.Before(end) {
						counted.Add(1)
						if seq%16 == 0 {
							latMu.Lock()
							lat = append(lat, now.Sub(sent))
							latMu.Unlock()
						}
					}
				}()
			}
			for j := 0; j < *mqttWindow; j++ {
				slots <- struct{}{}
			}
			cl.Disconnect(0)
		}()
	}
	wg.Wait()
	t.Acked = uint64(acked.Load())
	t.FramesPerSec = float64(counted.Load()) / end.Sub(steady).Seconds()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	if len(lat) > 0 {
		t.P50Ms, t.P99Ms = ms(lat[len(lat)/2]), ms(lat[len(lat)*99/100])
	}
	return t, nil
}

// idleLinks measures server RSS per idle connection: MQTT sessions, TLS connections to the TCP
// edge, and plaintext TCP connections, each on a fresh node with the embedded store.
func idleLinks(bin, tmp string, cs []fleet.Credential, r *MQTTResult) error {
	r.IdleSessions = len(cs)
	files, err := tlsconf.GenerateDev(filepath.Join(tmp, "tls"), []string{"127.0.0.1", "localhost"}, 0)
	if err != nil {
		return err
	}
	ca, err := tlsconf.ClientConfig(files.CA, "")
	if err != nil {
		return err
	}
	for _, v := range []struct {
		name      string
		transport string
		tls       *tls.Config
		into      *float64
	}{
		{"idle MQTT sessions", plant.TransportMQTT, nil, &r.BytesPerMQTT},
		{"idle TLS connections (TCP edge)", plant.TransportTCP, ca, &r.BytesPerTLS},
		{"idle plaintext TCP connections", plant.TransportTCP, nil, &r.BytesPerTCP},
	} {
		fmt.Fprintf(os.Stderr, "memory: %d %s ...\n", len(cs), v.name)
		tlsAddr := freeAddr()
		p, err := startSproutMQTT(bin, filepath.Join(tmp, "idle-"+v.name), cs, "SPROUT_TLS_CERT="+files.Cert,
			"SPROUT_TLS_KEY="+files.Key, "SPROUT_EDGE_TLS_ADDR="+tlsAddr, "SPROUT_MQTTS_ADDR=")
		if err != nil {
			return err
		}
		server := p.edge
		switch {
		case v.transport == plant.TransportMQTT:
			server = p.mqtt
		case v.tls != nil:
			server = tlsAddr
		}
		per, err := idleFleet(p, server, cs, v.transport, v.tls)
		p.stop()
		if err != nil {
			return fmt.Errorf("%s: %w", v.name, err)
		}
		*v.into = per
		fmt.Fprintf(os.Stderr, "  %.0f bytes each\n", per)
	}
	return nil
}

func idleFleet(p *proc, server string, cs []fleet.Credential, transport string, tc *tls.Config) (float64, error) {
	time.Sleep(500 * time.Millisecond)
	before := rss(p.cmd.Process.Pid)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var connected atomic.Int64
	done := make(chan error, 1)
	go func() {
		_, err := fleet.Run(ctx, fleet.Options{Devices: cs, Servers: []string{server}, ConnectRate: 1500,
			Progress: func(s fleet.Snapshot) { connected.Store(s.Connected) },
			Plant:    func(_ int, c *plant.Config) { c.Transport, c.TLS = transport, tc }})
		done <- err
	}()
	deadline := time.Now().Add(3 * time.Minute)
	for connected.Load() < int64(len(cs)) {
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("only %d of %d connected", connected.Load(), len(cs))
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(3 * time.Second)
	after := rss(p.cmd.Process.Pid)
	cancel()
	<-done
	return (after - before) / float64(len(cs)), nil
}
