package mqtt_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	pcluster "github.com/asynkron/protoactor-go/cluster"
	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/mochi-mqtt/server/v2/packets"
	"google.golang.org/protobuf/proto"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/actors/actortest"
	"github.com/sprout-iot/sprout/cluster"
	"github.com/sprout-iot/sprout/edge/mqtt"
	"github.com/sprout-iot/sprout/messages/actorpb"
	"github.com/sprout-iot/sprout/messages/devicepb"
	"github.com/sprout-iot/sprout/store/sqlite"
)

// otaNode is a node with a SQLite store, the rollout service and an MQTT edge wired together as
// `sprout serve` wires them (a stage that opens pokes the edge).
type otaNode struct {
	st     *sqlite.Store
	ota    *actors.OTA
	member *cluster.Member
	edge   *mqtt.Server
	addr   string
}

func startOTANode(t *testing.T, opts mqtt.Options) *otaNode {
	t.Helper()
	st, err := sqlite.Open(t.TempDir(), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	log := logger()
	var edge atomic.Pointer[mqtt.Server]
	o := actors.NewOTA(actors.OTAOptions{Store: st, Devices: st, Logger: log, StageOpened: func() {
		if e := edge.Load(); e != nil {
			e.OfferNow()
		}
	}})
	m, err := cluster.Start(cluster.Options{Kinds: []*pcluster.Kind{actors.NewDeviceKind(actors.DeviceOptions{Store: st, Logger: log})}, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	opts.OTA, opts.Logger = o, log
	e, err := mqtt.New(m.Cluster, opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Serve(ln); err != nil {
		t.Fatal(err)
	}
	edge.Store(e)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = e.Shutdown(ctx)
		m.Stop(true)
		_ = st.Close()
	})
	return &otaNode{st: st, ota: o, member: m, edge: e, addr: ln.Addr().String()}
}

func (n *otaNode) addDevice(t *testing.T, id string) []byte {
	t.Helper()
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	if err := n.st.CreateDevice(context.Background(), actors.Device{ID: id, Product: "pot", Secret: secret, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	return secret
}

// image adds a signed image of size random bytes and returns the product's public key.
func (n *otaNode) image(t *testing.T, version string, size int) (ed25519.PublicKey, []byte) {
	t.Helper()
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	data := make([]byte, size)
	_, _ = rand.Read(data)
	if _, err := n.ota.AddFirmware(context.Background(), "pot", version, data, priv); err != nil {
		t.Fatal(err)
	}
	return pub, data
}

func (n *otaNode) target(t *testing.T, rollout, id string) actors.RolloutTarget {
	t.Helper()
	tg, err := n.st.GetTarget(context.Background(), rollout, id)
	if err != nil {
		t.Fatal(err)
	}
	return tg
}

// mqttPot is a pot updating its firmware over MQTT, written from docs/mqtt.md and docs/ota.md: it
// names its firmware version in its Username, takes the offer from sprout/<id>/ota/offer, checks
// the Ed25519 signature over the manifest with the product key built into it, asks for the image
// chunk by chunk on ota/request (one at a time, resuming at what its slot holds), checks the
// SHA-256, says how far it got on ota/progress and boots the new image.
type mqttPot struct {
	id       string
	secret   []byte
	pub      ed25519.PublicKey
	firmware string
	protobuf bool // speaks protobuf (JSON otherwise)
	slot     []byte
	slotSHA  []byte

	c      paho.Client
	offers chan []byte
	chunks chan []byte
	lost   chan error
}

// connect opens a session: Username "<id>|<unix seconds>|<firmware version>", Password the hex
// HMAC-SHA256 of it under the device secret. It subscribes to the topics subs names.
func (p *mqttPot) connect(t *testing.T, addr string, subs ...string) error {
	t.Helper()
	user := p.id + "|" + strconv.FormatInt(time.Now().Unix(), 10) + "|" + p.firmware
	mac := hmac.New(sha256.New, p.secret)
	mac.Write([]byte(user))
	p.offers, p.chunks, p.lost = make(chan []byte, 4), make(chan []byte, 4), make(chan error, 1)
	opts := paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(p.id).SetUsername(user).
		SetPassword(hex.EncodeToString(mac.Sum(nil))).SetProtocolVersion(4).SetAutoReconnect(false).
		SetConnectRetry(false).SetCleanSession(true).SetKeepAlive(30 * time.Second).SetConnectTimeout(5 * time.Second).
		SetConnectionLostHandler(func(_ paho.Client, err error) { p.lost <- err })
	p.c = paho.NewClient(opts)
	if tok := p.c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		return fmt.Errorf("connect: %v", tok.Error())
	}
	c := p.c
	t.Cleanup(func() { c.Disconnect(0) })
	if p.protobuf {
		// Payloads to the pot follow the encoding it last published: say it before the offer comes.
		b, _ := proto.Marshal(&devicepb.Telemetry{Seq: uint64(time.Now().UnixNano()), SoilMoisturePct: 40})
		if err := p.publish(t, "telemetry", b); err != nil {
			return err
		}
	}
	for _, s := range subs {
		ch := p.offers
		if s == "ota/chunk" {
			ch = p.chunks
		}
		if err := p.subscribe(s, ch); err != nil {
			return err
		}
	}
	return nil
}

// allOTA are the topics a pot subscribes to for updates.
var allOTA = []string{"ota/offer", "ota/chunk"}

func (p *mqttPot) subscribe(suffix string, ch chan []byte) error {
	tok := p.c.Subscribe("sprout/"+p.id+"/"+suffix, 1, func(_ paho.Client, m paho.Message) { ch <- m.Payload() })
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		return fmt.Errorf("subscribe %s: %v", suffix, tok.Error())
	}
	return nil
}

func (p *mqttPot) publish(t *testing.T, suffix string, payload []byte) error {
	t.Helper()
	tok := p.c.Publish("sprout/"+p.id+"/"+suffix, 1, false, payload)
	if !tok.WaitTimeout(10 * time.Second) {
		return errors.New("no PUBACK within 10 s")
	}
	return tok.Error()
}

type potOffer struct {
	Product, Version  string
	Size, ChunkSize   uint32
	SHA256, Signature []byte
}

// readOffer decodes an offer: a JSON object starts with '{', anything else is the protobuf message.
func readOffer(b []byte) (potOffer, error) {
	if len(b) > 0 && b[0] == '{' {
		var j struct {
			Product, Version  string
			Size              uint32
			ChunkSize         uint32 `json:"chunk_size"`
			SHA256, Signature string
		}
		if err := json.Unmarshal(b, &j); err != nil {
			return potOffer{}, err
		}
		sha, err1 := hex.DecodeString(j.SHA256)
		sig, err2 := hex.DecodeString(j.Signature)
		return potOffer{j.Product, j.Version, j.Size, j.ChunkSize, sha, sig}, errors.Join(err1, err2)
	}
	var o devicepb.UpdateOffer
	if err := proto.Unmarshal(b, &o); err != nil {
		return potOffer{}, err
	}
	return potOffer{o.Product, o.Version, o.Size, o.ChunkSize, o.Sha256, o.Signature}, nil
}

func readChunk(b []byte) (sha []byte, off uint32, data []byte, err error) {
	if len(b) > 0 && b[0] == '{' {
		var j struct {
			SHA256 string
			Offset uint32
			Data   string
		}
		if err := json.Unmarshal(b, &j); err != nil {
			return nil, 0, nil, err
		}
		sha, err1 := hex.DecodeString(j.SHA256)
		data, err2 := base64.StdEncoding.DecodeString(j.Data)
		return sha, j.Offset, data, errors.Join(err1, err2)
	}
	var c devicepb.Chunk
	err = proto.Unmarshal(b, &c)
	return c.Sha256, c.Offset, c.Data, err
}

func (p *mqttPot) request(t *testing.T, sha []byte, off, n uint32) error {
	if p.protobuf {
		b, _ := proto.Marshal(&devicepb.ChunkRequest{Sha256: sha, Offset: off, Length: n})
		return p.publish(t, "ota/request", b)
	}
	return p.publish(t, "ota/request", fmt.Appendf(nil, `{"sha256":"%x","offset":%d,"length":%d}`, sha, off, n))
}

func (p *mqttPot) progress(t *testing.T, state string, pct int, reason string) error {
	if p.protobuf {
		b, _ := proto.Marshal(&devicepb.UpdateProgress{Sha256: p.slotSHA, State: devicepb.UpdateState(devicepb.UpdateState_value["UPDATE_STATE_"+state]),
			Percent: uint32(pct), Reason: reason, Version: p.firmware})
		return p.publish(t, "ota/progress", b)
	}
	return p.publish(t, "ota/progress", fmt.Appendf(nil, `{"sha256":"%x","state":%q,"percent":%d,"reason":%q,"version":%q}`,
		p.slotSHA, state, pct, reason, p.firmware))
}

// manifest is docs/ota.md's: "sprout-fw-v1" 0 product 0 version 0 size (8 bytes, big-endian) sha256.
func manifest(o potOffer) []byte {
	var b bytes.Buffer
	b.WriteString("sprout-fw-v1\x00" + o.Product + "\x00" + o.Version + "\x00")
	_ = binary.Write(&b, binary.BigEndian, uint64(o.Size))
	b.Write(o.SHA256)
	return b.Bytes()
}

// update takes the offer and downloads; it returns "rebooted" once the image is verified (the
// pot then runs it), or "stopped" after stopAfter bytes (0: never) with the session dropped.
func (p *mqttPot) update(t *testing.T, stopAfter int) (string, error) {
	var o potOffer
	select {
	case b := <-p.offers:
		var err error
		if o, err = readOffer(b); err != nil {
			return "", fmt.Errorf("offer: %w", err)
		}
	case err := <-p.lost:
		return "", fmt.Errorf("session lost before the offer: %v", err)
	case <-time.After(10 * time.Second):
		return "", errors.New("no offer within 10 s")
	}
	if o.Product != "pot" || !ed25519.Verify(p.pub, manifest(o), o.Signature) {
		p.slotSHA = o.SHA256
		return "refused", p.progress(t, "FAILED", 0, "bad signature")
	}
	if !bytes.Equal(p.slotSHA, o.SHA256) {
		p.slot, p.slotSHA = nil, o.SHA256
	}
	if err := p.progress(t, "DOWNLOADING", len(p.slot)*100/int(o.Size), ""); err != nil {
		return "", err
	}
	lastPct := -1
	for uint32(len(p.slot)) < o.Size {
		if stopAfter > 0 && len(p.slot) >= stopAfter {
			p.c.Disconnect(0)
			return "stopped", nil
		}
		off := uint32(len(p.slot))
		if err := p.request(t, o.SHA256, off, min(o.ChunkSize, o.Size-off)); err != nil {
			return "", err
		}
		var b []byte
		select {
		case b = <-p.chunks:
		case err := <-p.lost:
			return "", fmt.Errorf("session lost waiting for a chunk: %v", err)
		case <-time.After(10 * time.Second):
			return "", fmt.Errorf("no chunk at %d within 10 s", off)
		}
		sha, coff, data, err := readChunk(b)
		if err != nil || !bytes.Equal(sha, o.SHA256) || coff != off || len(data) == 0 || len(data) > int(o.ChunkSize) {
			return "", fmt.Errorf("bad chunk at %d: offset %d, %d bytes, %v", off, coff, len(data), err)
		}
		p.slot = append(p.slot, data...)
		if pct := len(p.slot) * 100 / int(o.Size); pct/10 != lastPct/10 {
			lastPct = pct
			if err := p.progress(t, "DOWNLOADING", pct, ""); err != nil {
				return "", err
			}
		}
	}
	if err := p.progress(t, "VERIFYING", 100, ""); err != nil {
		return "", err
	}
	if sum := sha256.Sum256(p.slot); !bytes.Equal(sum[:], o.SHA256) {
		return "failed", p.progress(t, "FAILED", 100, "sha256 mismatch")
	}
	if err := p.progress(t, "REBOOTING", 100, ""); err != nil {
		return "", err
	}
	p.c.Disconnect(100)
	p.firmware, p.slot = o.Version, nil
	return "rebooted", nil
}

func TestMQTTPotUpdatesOverTheAirAndComesBackRunningTheNewVersion(t *testing.T) {
	for _, protobuf := range []bool{false, true} {
		t.Run(map[bool]string{false: "json", true: "protobuf"}[protobuf], func(t *testing.T) {
			n := startOTANode(t, mqtt.Options{})
			pub, img := n.image(t, "2.0.0", 3*mqtt.DefaultOTAChunkBytes+100)
			p := &mqttPot{id: "pot-1", secret: n.addDevice(t, "pot-1"), pub: pub, firmware: "1.0.0", protobuf: protobuf}
			if _, err := n.ota.StartRollout(context.Background(), actors.RolloutSpec{ID: "r1", Product: "pot", Version: "2.0.0", Stages: []int{100}}); err != nil {
				t.Fatal(err)
			}
			if err := p.connect(t, n.addr, allOTA...); err != nil {
				t.Fatal(err)
			}
			res, err := p.update(t, 0)
			if err != nil || res != "rebooted" {
				t.Fatalf("update: %s %v; target %+v", res, err, n.target(t, "r1", "pot-1"))
			}
			if tg := n.target(t, "r1", "pot-1"); tg.State != actors.TargetRebooting {
				t.Fatalf("after REBOOTING: target %+v", tg)
			}
			// 4 chunks of at most 4096 bytes: the MQTT edge's chunk_size, not the TCP edge's 512.
			if got := n.edge.ChunksSent(); got != 4 {
				t.Errorf("%d chunks sent for %d bytes, want 4", got, len(img))
			}
			// The new image connects naming its version: the rollout shows the pot running it.
			if err := p.connect(t, n.addr, allOTA...); err != nil {
				t.Fatal(err)
			}
			actortest.Eventually(t, 5*time.Second, "the pot running 2.0.0", func() bool {
				r, _ := n.st.GetRollout(context.Background(), "r1")
				return n.target(t, "r1", "pot-1").State == actors.TargetRunning && r.State == actors.RolloutCompleted
			})
			// and the console and the API show the version it named.
			res2, err := n.member.Cluster.Request("pot-1", actors.DeviceKind, &actorpb.GetState{})
			if st, _ := res2.(*actorpb.DeviceState); err != nil || st.GetFirmwareVersion() != "2.0.0" {
				t.Fatalf("device state %v, %v; want firmware 2.0.0", st, err)
			}
			select {
			case b := <-p.offers:
				t.Fatalf("offered again after running the new version: %s", b)
			default:
			}
		})
	}
}

// A pot connected before the rollout gets the offer as soon as its stage opens; one of a later
// stage only once the earlier stage is done.
func TestMQTTOfferWhenTheStageOpens(t *testing.T) {
	n := startOTANode(t, mqtt.Options{OTARecheck: time.Hour}) // only OfferNow can offer in time
	pub, _ := n.image(t, "2.0.0", 5000)
	pots := map[string]*mqttPot{}
	for _, id := range []string{"pot-a", "pot-b"} {
		pots[id] = &mqttPot{id: id, secret: n.addDevice(t, id), pub: pub, firmware: "1.0.0"}
		if err := pots[id].connect(t, n.addr, allOTA...); err != nil {
			t.Fatal(err)
		}
	}
	actortest.Eventually(t, 5*time.Second, "both sessions", func() bool { return n.edge.Stats().Sessions == 2 })
	r, err := n.ota.StartRollout(context.Background(), actors.RolloutSpec{ID: "r1", Product: "pot", Version: "2.0.0", Stages: []int{50, 100}})
	if err != nil {
		t.Fatal(err)
	}
	ts, _ := n.st.RolloutTargets(context.Background(), r.ID)
	var first, second *mqttPot
	for _, tg := range ts {
		if tg.Stage == 0 {
			first = pots[tg.DeviceID]
		} else {
			second = pots[tg.DeviceID]
		}
	}
	if res, err := first.update(t, 0); err != nil || res != "rebooted" {
		t.Fatalf("first stage: %s %v", res, err)
	}
	select {
	case <-second.offers:
		t.Fatal("the second stage's pot was offered the image before the first stage was done")
	default:
	}
	if err := first.connect(t, n.addr, allOTA...); err != nil { // back on 2.0.0: the first stage is done
		t.Fatal(err)
	}
	if res, err := second.update(t, 0); err != nil || res != "rebooted" {
		t.Fatalf("second stage: %s %v", res, err)
	}
}

func TestMQTTDownloadResumesFromItsOffsetAfterReconnect(t *testing.T) {
	n := startOTANode(t, mqtt.Options{OTAChunkBytes: 1000})
	pub, _ := n.image(t, "2.0.0", 5500)
	p := &mqttPot{id: "pot-1", secret: n.addDevice(t, "pot-1"), pub: pub, firmware: "1.0.0", protobuf: true}
	if _, err := n.ota.StartRollout(context.Background(), actors.RolloutSpec{ID: "r1", Product: "pot", Version: "2.0.0", Stages: []int{100}}); err != nil {
		t.Fatal(err)
	}
	if err := p.connect(t, n.addr, allOTA...); err != nil {
		t.Fatal(err)
	}
	if res, err := p.update(t, 3000); err != nil || res != "stopped" {
		t.Fatalf("first session: %s %v", res, err)
	}
	if tg := n.target(t, "r1", "pot-1"); tg.State != actors.TargetDownloading || tg.Percent == 0 {
		t.Fatalf("after the first session: %+v", tg)
	}
	actortest.Eventually(t, 5*time.Second, "the first session gone", func() bool { return n.edge.Stats().Sessions == 0 })
	if err := p.connect(t, n.addr, allOTA...); err != nil {
		t.Fatal(err)
	}
	if res, err := p.update(t, 0); err != nil || res != "rebooted" {
		t.Fatalf("second session: %s %v", res, err)
	}
	// No byte crossed twice: 6 chunks of at most 1000 bytes in all.
	if got := n.edge.ChunksSent(); got != 6 {
		t.Errorf("%d chunks sent, want 6 (the second session resumed at 3000)", got)
	}
}

func TestMQTTChunkRequestForAnImageNotOfferedGetsAnEmptyChunk(t *testing.T) {
	n := startOTANode(t, mqtt.Options{})
	p := &mqttPot{id: "pot-1", secret: n.addDevice(t, "pot-1"), firmware: "1.0.0"}
	if err := p.connect(t, n.addr, allOTA...); err != nil {
		t.Fatal(err)
	}
	other := sha256.Sum256([]byte("an image nobody offered"))
	if err := p.request(t, other[:], 512, 512); err != nil {
		t.Fatal(err)
	}
	b := recv(t, p.chunks, "empty chunk")
	sha, off, data, err := readChunk(b)
	if err != nil || !bytes.Equal(sha, other[:]) || off != 512 || len(data) != 0 {
		t.Fatalf("chunk %s: sha %x offset %d, %d bytes, %v; want an empty chunk for the image asked", b, sha, off, len(data), err)
	}
	if !strings.Contains(string(b), `"data":""`) {
		t.Errorf("JSON empty chunk %s: want \"data\":\"\"", b)
	}
}

func TestMQTTChunkRequestOutOfRangeEndsTheSessionAsAProtocolError(t *testing.T) {
	for _, c := range []struct {
		name        string
		off, length func(size uint32) uint32
	}{
		{"longer than chunk_size", func(uint32) uint32 { return 0 }, func(uint32) uint32 { return mqtt.DefaultOTAChunkBytes + 1 }},
		{"offset past the end", func(size uint32) uint32 { return size }, func(uint32) uint32 { return 1 }},
		{"zero length", func(uint32) uint32 { return 0 }, func(uint32) uint32 { return 0 }},
	} {
		t.Run(c.name, func(t *testing.T) {
			n := startOTANode(t, mqtt.Options{})
			pub, img := n.image(t, "2.0.0", 5000)
			p := &mqttPot{id: "pot-1", secret: n.addDevice(t, "pot-1"), pub: pub, firmware: "1.0.0"}
			if _, err := n.ota.StartRollout(context.Background(), actors.RolloutSpec{ID: "r1", Product: "pot", Version: "2.0.0", Stages: []int{100}}); err != nil {
				t.Fatal(err)
			}
			if err := p.connect(t, n.addr, allOTA...); err != nil {
				t.Fatal(err)
			}
			o, err := readOffer(recv(t, p.offers, "offer"))
			if err != nil {
				t.Fatal(err)
			}
			// No PUBACK: the session ends (MQTT 5: DISCONNECT 0x82 protocol error).
			_ = p.c.Publish("sprout/pot-1/ota/request", 1, false,
				fmt.Sprintf(`{"sha256":"%x","offset":%d,"length":%d}`, o.SHA256, c.off(uint32(len(img))), c.length(uint32(len(img)))))
			recv(t, p.lost, "session end")
			if got := n.edge.Stats().Refused[mqtt.RefusedOTARange]; got != 1 {
				t.Errorf("refused ota_range %d, want 1", got)
			}
			actortest.Eventually(t, 5*time.Second, "the pot offline", func() bool { return n.edge.Stats().Sessions == 0 })
		})
	}
}

// An MQTT 5 pot is told why: DISCONNECT with reason 0x82 (protocol error), and no PUBACK.
func TestMQTT5ChunkRequestOutOfRangeGetsDisconnectProtocolError(t *testing.T) {
	n := startOTANode(t, mqtt.Options{})
	_, img := n.image(t, "2.0.0", 5000)
	sum := sha256.Sum256(img)
	secret := n.addDevice(t, "pot-5")
	c := dialMQTT5(t, n.addr, "pot-5", secret, "1.0.0")
	if _, err := n.ota.StartRollout(context.Background(), actors.RolloutSpec{ID: "r1", Product: "pot", Version: "2.0.0", Stages: []int{100}}); err != nil {
		t.Fatal(err)
	}
	c.write(t, &packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: 1,
		Filters: packets.Subscriptions{{Filter: "sprout/pot-5/ota/offer", Qos: 1}}})
	for c.read(t).FixedHeader.Type != packets.Publish { // SUBACK, then the offer
	}
	c.write(t, &packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, PacketID: 2,
		TopicName: "sprout/pot-5/ota/request", Payload: fmt.Appendf(nil, `{"sha256":"%x","offset":0,"length":100000}`, sum)})
	for {
		pk := c.read(t)
		switch pk.FixedHeader.Type {
		case packets.Puback:
			t.Fatalf("PUBACK %x for an out-of-range request", pk.ReasonCode)
		case packets.Disconnect:
			if pk.ReasonCode != packets.ErrProtocolViolation.Code {
				t.Fatalf("DISCONNECT reason %#x, want 0x82 protocol error", pk.ReasonCode)
			}
			return
		}
	}
}

// An MQTT 5 pot that limits the packets it takes is offered a chunk_size whose chunk fits, and
// gets its chunks (the broker would drop a larger packet without a word).
func TestMQTT5MaximumPacketSizeBoundsTheChunkSize(t *testing.T) {
	n := startOTANode(t, mqtt.Options{})
	_, img := n.image(t, "2.0.0", 5000)
	secret := n.addDevice(t, "pot-5")
	if _, err := n.ota.StartRollout(context.Background(), actors.RolloutSpec{ID: "r1", Product: "pot", Version: "2.0.0", Stages: []int{100}}); err != nil {
		t.Fatal(err)
	}
	const maxPacket = 2048
	c := dialMQTT5(t, n.addr, "pot-5", secret, "1.0.0", packets.Properties{MaximumPacketSize: maxPacket})
	c.write(t, &packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: 1,
		Filters: packets.Subscriptions{{Filter: "sprout/pot-5/ota/#", Qos: 1}}})
	next := func() packets.Packet {
		for {
			if pk := c.read(t); pk.FixedHeader.Type == packets.Publish {
				c.write(t, &packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: pk.PacketID})
				return pk
			}
		}
	}
	o, err := readOffer(next().Payload)
	if err != nil {
		t.Fatal(err)
	}
	if o.ChunkSize >= maxPacket || o.ChunkSize < 1024 {
		t.Fatalf("chunk_size %d for a Maximum Packet Size of %d", o.ChunkSize, maxPacket)
	}
	c.write(t, &packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, PacketID: 2,
		TopicName: "sprout/pot-5/ota/request", Payload: fmt.Appendf(nil, `{"sha256":"%x","offset":0,"length":%d}`, o.SHA256, o.ChunkSize)})
	pk := next()
	_, off, data, err := readChunk(pk.Payload)
	if err != nil || off != 0 || !bytes.Equal(data, img[:o.ChunkSize]) {
		t.Fatalf("chunk: offset %d, %d bytes, %v", off, len(data), err)
	}
}

// mqtt5Conn is a bare MQTT 5 client over the broker library's packet codec (paho.mqtt.golang
// speaks 3.1.1 only): enough to see reason codes.
type mqtt5Conn struct {
	nc net.Conn
	r  *bufio.Reader
}

func dialMQTT5(t *testing.T, addr, id string, secret []byte, firmware string, props ...packets.Properties) *mqtt5Conn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	c := &mqtt5Conn{nc: nc, r: bufio.NewReader(nc)}
	user := id + "|" + strconv.FormatInt(time.Now().Unix(), 10) + "|" + firmware
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(user))
	connect := &packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, Connect: packets.ConnectParams{
		ProtocolName: []byte("MQTT"), Clean: true, Keepalive: 30, ClientIdentifier: id,
		UsernameFlag: true, Username: []byte(user), PasswordFlag: true, Password: []byte(hex.EncodeToString(mac.Sum(nil)))}}
	if len(props) > 0 {
		connect.Properties = props[0]
	}
	c.write(t, connect)
	if pk := c.read(t); pk.FixedHeader.Type != packets.Connack || pk.ReasonCode != 0 {
		t.Fatalf("CONNACK: type %d reason %#x", pk.FixedHeader.Type, pk.ReasonCode)
	}
	return c
}

func (c *mqtt5Conn) write(t *testing.T, pk *packets.Packet) {
	t.Helper()
	pk.ProtocolVersion = 5
	var b bytes.Buffer
	var err error
	switch pk.FixedHeader.Type {
	case packets.Connect:
		err = pk.ConnectEncode(&b)
	case packets.Subscribe:
		err = pk.SubscribeEncode(&b)
	case packets.Publish:
		err = pk.PublishEncode(&b)
	case packets.Puback:
		err = pk.PubackEncode(&b)
	}
	if err == nil {
		_, err = c.nc.Write(b.Bytes())
	}
	if err != nil {
		t.Fatalf("writing packet %d: %v", pk.FixedHeader.Type, err)
	}
}

// read reads one packet: fixed header, remaining length, then the type's decoder.
func (c *mqtt5Conn) read(t *testing.T) packets.Packet {
	t.Helper()
	_ = c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	first, err := c.r.ReadByte()
	if err != nil {
		t.Fatalf("reading a packet: %v", err)
	}
	pk := packets.Packet{ProtocolVersion: 5}
	if err := pk.FixedHeader.Decode(first); err != nil {
		t.Fatal(err)
	}
	n, _, err := packets.DecodeLength(c.r)
	if err != nil {
		t.Fatal(err)
	}
	pk.FixedHeader.Remaining = n
	body := make([]byte, n)
	if _, err := io.ReadFull(c.r, body); err != nil {
		t.Fatal(err)
	}
	switch pk.FixedHeader.Type {
	case packets.Connack:
		err = pk.ConnackDecode(body)
	case packets.Disconnect:
		err = pk.DisconnectDecode(body)
	case packets.Puback:
		err = pk.PubackDecode(body)
	case packets.Publish:
		err = pk.PublishDecode(body)
	}
	if err != nil {
		t.Fatalf("decoding packet %d: %v", pk.FixedHeader.Type, err)
	}
	return pk
}

// The offer and a chunk wait for the pot's subscription to their topic.
func TestMQTTOfferAndChunkWaitForTheSubscription(t *testing.T) {
	n := startOTANode(t, mqtt.Options{})
	pub, _ := n.image(t, "2.0.0", 3000)
	p := &mqttPot{id: "pot-1", secret: n.addDevice(t, "pot-1"), pub: pub, firmware: "1.0.0"}
	if _, err := n.ota.StartRollout(context.Background(), actors.RolloutSpec{ID: "r1", Product: "pot", Version: "2.0.0", Stages: []int{100}}); err != nil {
		t.Fatal(err)
	}
	if err := p.connect(t, n.addr); err != nil { // subscribed to nothing yet
		t.Fatal(err)
	}
	actortest.Eventually(t, 5*time.Second, "the offer held", func() bool { return n.edge.Stats().Held == 1 })
	if err := p.subscribe("ota/offer", p.offers); err != nil {
		t.Fatal(err)
	}
	o, err := readOffer(recv(t, p.offers, "held offer"))
	if err != nil || o.Version != "2.0.0" {
		t.Fatalf("held offer %+v, %v", o, err)
	}
	// Ask before subscribing to ota/chunk: the chunk is held, not lost.
	if err := p.request(t, o.SHA256, 0, o.ChunkSize); err != nil {
		t.Fatal(err)
	}
	actortest.Eventually(t, 5*time.Second, "the chunk held", func() bool { return n.edge.Stats().Held == 2 })
	if err := p.subscribe("ota/chunk", p.chunks); err != nil {
		t.Fatal(err)
	}
	sha, off, data, err := readChunk(recv(t, p.chunks, "held chunk"))
	if err != nil || !bytes.Equal(sha, o.SHA256) || off != 0 || len(data) != 3000 {
		t.Fatalf("held chunk: offset %d, %d bytes, %v", off, len(data), err)
	}
}
