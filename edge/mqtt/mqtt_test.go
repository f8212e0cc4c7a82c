package mqtt_test

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	pcluster "github.com/asynkron/protoactor-go/cluster"
	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/actors/actortest"
	"github.com/sprout-iot/sprout/cluster"
	"github.com/sprout-iot/sprout/edge/mqtt"
	"github.com/sprout-iot/sprout/edge/tlsconf"
	"github.com/sprout-iot/sprout/messages"
	"github.com/sprout-iot/sprout/messages/actorpb"
	"github.com/sprout-iot/sprout/messages/devicepb"
	"github.com/sprout-iot/sprout/store/memory"
)

// node is one Sprout member with an MQTT edge on a loopback port.
type node struct {
	store  *memory.Store
	member *cluster.Member
	edge   *mqtt.Server
	addr   string
}

func logger() *slog.Logger {
	lv := slog.LevelError
	if os.Getenv("SPROUT_TEST_LOG") != "" {
		lv = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lv}))
}

func startNode(t *testing.T, opts mqtt.Options, lns ...net.Listener) *node {
	t.Helper()
	return startNodeWith(t, opts, nil, lns...)
}

// startNodeWith is startNode with the grains' store wrapped by wrap (nil: the store itself).
func startNodeWith(t *testing.T, opts mqtt.Options, wrap func(actors.Store) actors.Store, lns ...net.Listener) *node {
	t.Helper()
	st := memory.New()
	var grains actors.Store = st
	if wrap != nil {
		grains = wrap(st)
	}
	log := logger()
	m, err := cluster.Start(cluster.Options{Kinds: []*pcluster.Kind{actors.NewDeviceKind(actors.DeviceOptions{Store: grains, Logger: log})}, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	opts.Logger = log
	e, err := mqtt.New(m.Cluster, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(lns) == 0 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
	}
	for _, ln := range lns {
		if err := e.Serve(ln); err != nil {
			t.Fatal(err)
		}
	}
	n := &node{store: st, member: m, edge: e, addr: lns[0].Addr().String()}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = e.Shutdown(ctx)
		m.Stop(true)
	})
	return n
}

func (n *node) addDevice(t *testing.T, id string) []byte {
	t.Helper()
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	if err := n.store.CreateDevice(context.Background(), actors.Device{ID: id, Product: "pot", Secret: secret, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	return secret
}

func (n *node) state(t *testing.T, id string) *actorpb.DeviceState {
	t.Helper()
	res, err := n.member.Cluster.Request(id, actors.DeviceKind, &actorpb.GetState{})
	if err != nil {
		t.Fatalf("state: %v", err)
	}
	return res.(*actorpb.DeviceState)
}

func (n *node) readings(t *testing.T, id string) []actors.Reading {
	t.Helper()
	rs, err := n.store.Readings(context.Background(), id, time.Time{}, time.Now().Add(time.Hour), 1000)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// pot is a Go MQTT client library acting as a pot.
type pot struct {
	c        paho.Client
	lost     chan error
	commands chan []byte
	welcome  chan []byte
}

type potOpts struct {
	scheme  string
	tls     *tls.Config
	version uint // 4: MQTT 3.1.1 (paho.mqtt.golang speaks 3.1 and 3.1.1)
	at      time.Time
	pass    string
}

func dialPot(t *testing.T, addr, id string, secret []byte, o potOpts) (*pot, error) {
	t.Helper()
	if o.scheme == "" {
		o.scheme = "tcp"
	}
	if o.at.IsZero() {
		o.at = time.Now()
	}
	if o.version == 0 {
		o.version = 4
	}
	p := &pot{lost: make(chan error, 1), commands: make(chan []byte, 16), welcome: make(chan []byte, 4)}
	pass := o.pass
	if pass == "" {
		pass = messages.MQTTPassword(secret, id, o.at.Unix())
	}
	opts := paho.NewClientOptions().AddBroker(o.scheme + "://" + addr).SetClientID(id).
		SetUsername(messages.MQTTUsername(id, o.at.Unix())).SetPassword(pass).SetProtocolVersion(o.version).
		SetAutoReconnect(false).SetConnectRetry(false).SetCleanSession(true).SetKeepAlive(30 * time.Second).
		SetConnectTimeout(5 * time.Second).SetTLSConfig(o.tls).
		SetConnectionLostHandler(func(_ paho.Client, err error) { p.lost <- err })
	p.c = paho.NewClient(opts)
	tok := p.c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		return nil, errors.New("connect timed out")
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { p.c.Disconnect(0) })
	sub := func(topic string, ch chan []byte) {
		tk := p.c.Subscribe(topic, 1, func(_ paho.Client, m paho.Message) { ch <- m.Payload() })
		if !tk.WaitTimeout(5*time.Second) || tk.Error() != nil {
			t.Fatalf("subscribe %s: %v", topic, tk.Error())
		}
	}
	sub("sprout/"+id+"/welcome", p.welcome)
	sub("sprout/"+id+"/commands", p.commands)
	return p, nil
}

func (p *pot) publish(t *testing.T, topic string, qos byte, payload any) error {
	t.Helper()
	tok := p.c.Publish(topic, qos, false, payload)
	if !tok.WaitTimeout(10 * time.Second) {
		return errors.New("no PUBACK within 10 s")
	}
	return tok.Error()
}

func recv[T any](t *testing.T, ch chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("no %s within 10 s", what)
		panic("unreachable")
	}
}

func TestPotReportsReceivesWaterCommandAndAnswersIt(t *testing.T) {
	n := startNode(t, mqtt.Options{})
	secret := n.addDevice(t, "pot-1")
	p, err := dialPot(t, n.addr, "pot-1", secret, potOpts{})
	if err != nil {
		t.Fatal(err)
	}
	var w struct {
		SessionID string `json:"session_id"`
		LastSeq   uint64 `json:"last_seq"`
		Time      int64  `json:"server_time_ms"`
	}
	if err := json.Unmarshal(recv(t, p.welcome, "welcome"), &w); err != nil || w.SessionID == "" || w.Time == 0 {
		t.Fatalf("welcome: %+v %v", w, err)
	}
	if !n.state(t, "pot-1").Online {
		t.Fatal("pot not online after CONNACK")
	}
	// QoS 1: the PUBACK means stored.
	if err := p.publish(t, "sprout/pot-1/telemetry", 1, `{"seq":1,"soil_moisture_pct":41.5,"temperature_c":22,"tank_level_pct":80,"supply_mv":3300}`); err != nil {
		t.Fatal(err)
	}
	if rs := n.readings(t, "pot-1"); len(rs) != 1 || rs[0].Seq != 1 || rs[0].SoilMoisture != 41.5 {
		t.Fatalf("after PUBACK: %+v", rs)
	}
	// A repeated seq is acked and stored once; an event is stored too.
	if err := p.publish(t, "sprout/pot-1/telemetry", 1, `{"seq":1,"soil_moisture_pct":41.5}`); err != nil {
		t.Fatal(err)
	}
	if err := p.publish(t, "sprout/pot-1/event", 1, `{"seq":2,"kind":"TANK_EMPTY","detail":"float switch"}`); err != nil {
		t.Fatal(err)
	}
	if rs := n.readings(t, "pot-1"); len(rs) != 1 {
		t.Fatalf("repeated seq stored twice: %d readings", len(rs))
	}
	if st := n.state(t, "pot-1"); st.LastSeq != 2 {
		t.Fatalf("last_seq %d, want 2", st.LastSeq)
	}

	outcome := make(chan *actorpb.CommandOutcome, 1)
	go func() {
		res, err := n.member.Cluster.Request("pot-1", actors.DeviceKind, &actorpb.SendCommand{CommandId: "w1",
			Kind: devicepb.CommandKind_COMMAND_KIND_WATER, WaterMs: 2000, RequestedBy: "test"}, pcluster.WithTimeout(15*time.Second))
		if err != nil {
			t.Error(err)
		}
		o, _ := res.(*actorpb.CommandOutcome)
		outcome <- o
	}()
	var cmd struct {
		CommandID string `json:"command_id"`
		Kind      string `json:"kind"`
		WaterMs   uint32 `json:"water_ms"`
	}
	if err := json.Unmarshal(recv(t, p.commands, "command"), &cmd); err != nil || cmd.CommandID != "w1" || cmd.Kind != "WATER" || cmd.WaterMs != 2000 {
		t.Fatalf("command: %+v %v", cmd, err)
	}
	if err := p.publish(t, "sprout/pot-1/commands/result", 1, `{"command_id":"w1","status":"DONE","watered_ml":40}`); err != nil {
		t.Fatal(err)
	}
	if o := recv(t, outcome, "outcome"); o.Outcome != actorpb.Outcome_OUTCOME_DONE || o.WateredMl != 40 {
		t.Fatalf("outcome %+v", o)
	}

	// Disconnecting makes the pot offline, as on TCP.
	p.c.Disconnect(100)
	actortest.Eventually(t, 5*time.Second, "pot offline", func() bool { return !n.state(t, "pot-1").Online })
}

func TestProtobufPotGetsProtobufCommands(t *testing.T) {
	n := startNode(t, mqtt.Options{})
	secret := n.addDevice(t, "pot-pb")
	p, err := dialPot(t, n.addr, "pot-pb", secret, potOpts{})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := protoMarshal(&devicepb.Telemetry{Seq: 7, SoilMoisturePct: 30})
	if err := p.publish(t, "sprout/pot-pb/telemetry", 1, b); err != nil {
		t.Fatal(err)
	}
	go func() {
		_, _ = n.member.Cluster.Request("pot-pb", actors.DeviceKind, &actorpb.SendCommand{CommandId: "r1",
			Kind: devicepb.CommandKind_COMMAND_KIND_READ_NOW, RequestedBy: "test"}, pcluster.WithTimeout(15*time.Second))
	}()
	c := &devicepb.Command{}
	if err := protoUnmarshal(recv(t, p.commands, "command"), c); err != nil || c.CommandId != "r1" {
		t.Fatalf("protobuf command: %v %v", c, err)
	}
}

func TestConnectRefusals(t *testing.T) {
	n := startNode(t, mqtt.Options{})
	secret := n.addDevice(t, "pot-r")
	revoked := n.addDevice(t, "pot-revoked")
	if res, err := n.member.Cluster.Request("pot-revoked", actors.DeviceKind, &actorpb.RevokeDevice{By: "test"}); err != nil {
		t.Fatal(err, res)
	}
	other := make([]byte, 32)
	cases := []struct {
		name, id string
		secret   []byte
		o        potOpts
		want     string // paho's text for the CONNACK return code
	}{
		{"wrong password", "pot-r", other, potOpts{}, "bad user name or password"},
		{"stale timestamp", "pot-r", secret, potOpts{at: time.Now().Add(-6 * time.Minute)}, "bad user name or password"},
		{"future timestamp", "pot-r", secret, potOpts{at: time.Now().Add(6 * time.Minute)}, "bad user name or password"},
		{"uppercase hex", "pot-r", secret, potOpts{pass: strings.ToUpper(messages.MQTTPassword(secret, "pot-r", time.Now().Unix()))}, "bad user name or password"},
		{"unknown device", "pot-nobody", secret, potOpts{}, "not Authorized"},
		{"revoked device", "pot-revoked", revoked, potOpts{}, "not Authorized"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := dialPot(t, n.addr, c.id, c.secret, c.o)
			if err == nil || !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(c.want)) {
				t.Fatalf("want refusal %q, got %v", c.want, err)
			}
		})
	}
	if st := n.edge.Stats(); st.Refused[mqtt.RefusedAuth] != int64(len(cases)) {
		t.Fatalf("refusals counted %v", st.Refused)
	}
	if n.state(t, "pot-r").Online {
		t.Fatal("refused pot online")
	}
}

func TestForeignTopicClosesSession(t *testing.T) {
	n := startNode(t, mqtt.Options{})
	a := n.addDevice(t, "pot-a")
	n.addDevice(t, "pot-b")
	for _, c := range []struct {
		name string
		do   func(p *pot)
	}{
		{"publish", func(p *pot) { p.c.Publish("sprout/pot-b/telemetry", 1, false, `{"seq":1}`) }},
		{"publish qos0", func(p *pot) { p.c.Publish("sprout/pot-b/telemetry", 0, false, `{"seq":1}`) }},
		{"subscribe", func(p *pot) { p.c.Subscribe("sprout/pot-b/commands", 1, nil) }},
		{"subscribe wildcard", func(p *pot) { p.c.Subscribe("sprout/+/commands", 1, nil) }},
		{"publish own commands", func(p *pot) { p.c.Publish("sprout/pot-a/commands", 1, false, `{}`) }},
		{"publish own ota offer", func(p *pot) { p.c.Publish("sprout/pot-a/ota/offer", 1, false, `{}`) }},
		{"publish own ota chunk", func(p *pot) { p.c.Publish("sprout/pot-a/ota/chunk", 1, false, `{}`) }},
		{"another pot's chunk request", func(p *pot) { p.c.Publish("sprout/pot-b/ota/request", 1, false, `{}`) }},
		{"subscribe another pot's chunks", func(p *pot) { p.c.Subscribe("sprout/pot-b/ota/chunk", 1, nil) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, err := dialPot(t, n.addr, "pot-a", a, potOpts{})
			if err != nil {
				t.Fatal(err)
			}
			c.do(p)
			recv(t, p.lost, "connection lost")
		})
	}
	if rs := n.readings(t, "pot-b"); len(rs) != 0 {
		t.Fatalf("foreign reading stored: %+v", rs)
	}
	if got := n.edge.Stats().Refused[mqtt.RefusedForeignTopic]; got < 9 {
		t.Fatalf("foreign topics counted %d", got)
	}
}

func TestBadPayloadsAreRefusedAndCounted(t *testing.T) {
	n := startNode(t, mqtt.Options{MaxPayloadBytes: 200})
	secret := n.addDevice(t, "pot-bad")
	for _, c := range []struct{ name, payload, counted string }{
		{"bad json", `{"seq":1,"soil_moisture_pct":`, mqtt.RefusedBadPayload},
		{"unknown field", `{"seq":1,"moisture":3}`, mqtt.RefusedBadPayload},
		{"no seq", `{"soil_moisture_pct":3}`, mqtt.RefusedBadPayload},
		{"too large", `{"seq":1,"soil_moisture_pct":3` + strings.Repeat(" ", 300) + `}`, mqtt.RefusedTooLarge},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := n.edge.Stats().Refused[c.counted]
			p, err := dialPot(t, n.addr, "pot-bad", secret, potOpts{})
			if err != nil {
				t.Fatal(err)
			}
			// MQTT 3.1.1 has no negative PUBACK: the session closes without one.
			p.c.Publish("sprout/pot-bad/telemetry", 1, false, c.payload)
			recv(t, p.lost, "connection lost")
			if got := n.edge.Stats().Refused[c.counted]; got != before+1 {
				t.Fatalf("%s counted %d, want %d", c.counted, got, before+1)
			}
		})
	}
	if rs := n.readings(t, "pot-bad"); len(rs) != 0 {
		t.Fatalf("bad payload stored: %+v", rs)
	}
}

func TestSecondSessionReplacesFirst(t *testing.T) {
	n := startNode(t, mqtt.Options{})
	secret := n.addDevice(t, "pot-2")
	p1, err := dialPot(t, n.addr, "pot-2", secret, potOpts{})
	if err != nil {
		t.Fatal(err)
	}
	s1 := n.state(t, "pot-2").Conn.GetSessionId()
	p2, err := dialPot(t, n.addr, "pot-2", secret, potOpts{})
	if err != nil {
		t.Fatal(err)
	}
	recv(t, p1.lost, "first session closed")
	st := n.state(t, "pot-2")
	if !st.Online || st.Conn.GetSessionId() == s1 {
		t.Fatalf("after replacement: online %v session %q (first %q)", st.Online, st.Conn.GetSessionId(), s1)
	}
	if err := p2.publish(t, "sprout/pot-2/telemetry", 1, `{"seq":5}`); err != nil {
		t.Fatal(err)
	}
	// The first session's end does not make the second offline.
	if !n.state(t, "pot-2").Online {
		t.Fatal("replaced session's close took the pot offline")
	}
}

func TestMosquittoClients(t *testing.T) {
	pub, err1 := exec.LookPath("mosquitto_pub")
	sub, err2 := exec.LookPath("mosquitto_sub")
	if err1 != nil || err2 != nil {
		t.Skip("mosquitto_pub/mosquitto_sub not installed (Debian: apt install mosquitto-clients; .ci/deps.sh installs it)")
	}
	n := startNode(t, mqtt.Options{})
	secret := n.addDevice(t, "pot-m")
	host, port, _ := net.SplitHostPort(n.addr)
	creds := func() []string {
		now := time.Now().Unix()
		return []string{"-h", host, "-p", port, "-i", "pot-m", "-u", messages.MQTTUsername("pot-m", now), "-P", messages.MQTTPassword(secret, "pot-m", now)}
	}
	for i, v := range []string{"mqttv311", "mqttv5"} {
		out, err := exec.Command(pub, append(creds(), "-V", v, "-q", "1", "-t", "sprout/pot-m/telemetry",
			"-m", fmt.Sprintf(`{"seq":%d,"soil_moisture_pct":33}`, i+1))...).CombinedOutput()
		if err != nil {
			t.Fatalf("mosquitto_pub %s: %v: %s", v, err, out)
		}
	}
	if rs := n.readings(t, "pot-m"); len(rs) != 2 {
		t.Fatalf("readings after mosquitto_pub: %+v", rs)
	}
	// A wrong password: mosquitto_pub reports the CONNACK and fails.
	bad := creds()
	bad[len(bad)-1] = strings.Repeat("0", 64)
	if out, err := exec.Command(pub, append(bad, "-V", "mqttv5", "-q", "1", "-t", "sprout/pot-m/telemetry", "-m", `{"seq":9}`)...).CombinedOutput(); err == nil ||
		!strings.Contains(strings.ToLower(string(out)), "bad user name or password") {
		t.Fatalf("wrong password: %v: %s", err, out)
	}
	// mosquitto_sub as the pot's command side: it gets a water command within its session.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, sub, append(creds(), "-V", "mqttv5", "-q", "1", "-t", "sprout/pot-m/commands", "-C", "1")...)
	outc := make(chan []byte, 1)
	go func() { out, _ := cmd.CombinedOutput(); outc <- out }()
	actortest.Eventually(t, 10*time.Second, "mosquitto_sub online", func() bool { return n.state(t, "pot-m").Online && n.edge.Stats().Sessions == 1 })
	var out []byte
	actortest.Eventually(t, 15*time.Second, "command reached mosquitto_sub", func() bool {
		// Until its SUBSCRIBE is in, the command is held; it is sent once subscribed.
		go func() {
			_, _ = n.member.Cluster.Request("pot-m", actors.DeviceKind, &actorpb.SendCommand{CommandId: "m1",
				Kind: devicepb.CommandKind_COMMAND_KIND_WATER, WaterMs: 1000, TimeoutMs: 2000, RequestedBy: "test"})
		}()
		select {
		case out = <-outc:
			return true
		case <-time.After(time.Second):
			return false
		}
	})
	if !strings.Contains(string(out), `"command_id":"m1"`) || !strings.Contains(string(out), `"kind":"WATER"`) {
		t.Fatalf("mosquitto_sub got %s", out)
	}
}

func TestTLSWithDevCA(t *testing.T) {
	dir := t.TempDir()
	files, err := tlsconf.GenerateDev(dir, []string{"localhost", "127.0.0.1"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	r, err := tlsconf.Load(files.Cert, files.Key, logger())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n := startNode(t, mqtt.Options{}, tls.NewListener(ln, r.Config()))
	secret := n.addDevice(t, "pot-tls")
	good, err := tlsconf.ClientConfig(files.CA, "")
	if err != nil {
		t.Fatal(err)
	}
	p, err := dialPot(t, n.addr, "pot-tls", secret, potOpts{scheme: "ssl", tls: good})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.publish(t, "sprout/pot-tls/telemetry", 1, `{"seq":1}`); err != nil {
		t.Fatal(err)
	}
	// A CA the node's certificate does not chain to is refused by the client.
	otherDir := t.TempDir()
	other, err := tlsconf.GenerateDev(otherDir, []string{"localhost"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	wrong, _ := tlsconf.ClientConfig(other.CA, "")
	if _, err := dialPot(t, n.addr, "pot-tls", secret, potOpts{scheme: "ssl", tls: wrong}); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("wrong CA: %v", err)
	}
	// A new certificate (same CA) is served to new connections after Reload; the open session stays.
	old := r.Certificate().Leaf.SerialNumber
	if _, err := tlsconf.GenerateDev(dir, []string{"localhost", "127.0.0.1"}, 0); err != nil {
		t.Fatal(err)
	}
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	conn, err := tls.Dial("tcp", n.addr, good)
	if err != nil {
		t.Fatal(err)
	}
	served := conn.ConnectionState().PeerCertificates[0].SerialNumber
	_ = conn.Close()
	if served.Cmp(old) == 0 {
		t.Fatal("old certificate still served after reload")
	}
	if err := p.publish(t, "sprout/pot-tls/telemetry", 1, `{"seq":2}`); err != nil {
		t.Fatalf("session dropped by reload: %v", err)
	}
}
