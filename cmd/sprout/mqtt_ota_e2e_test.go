package main

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/sprout-iot/sprout/actors/actortest"
	"github.com/sprout-iot/sprout/messages/deviceclient"
	"github.com/sprout-iot/sprout/messages/devicepb"
	"github.com/sprout-iot/sprout/simulations/fleet"
)

// mqttOTAPot is a JSON pot updating over MQTT as docs/mqtt.md#firmware-updates says.
type mqttOTAPot struct {
	c      paho.Client
	id     string
	offers chan []byte
	chunks chan []byte
}

func dialOTAPot(t *testing.T, broker string, c fleet.Credential, firmware string) *mqttOTAPot {
	t.Helper()
	user := c.ID + "|" + strconv.FormatInt(time.Now().Unix(), 10) + "|" + firmware
	mac := hmac.New(sha256.New, c.Secret)
	mac.Write([]byte(user))
	p := &mqttOTAPot{id: c.ID, offers: make(chan []byte, 4), chunks: make(chan []byte, 4)}
	p.c = paho.NewClient(paho.NewClientOptions().AddBroker(broker).SetClientID(c.ID).SetUsername(user).
		SetPassword(hex.EncodeToString(mac.Sum(nil))).SetAutoReconnect(false).SetConnectRetry(false).
		SetCleanSession(true).SetConnectTimeout(5 * time.Second))
	if tok := p.c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("mqtt connect: %v", tok.Error())
	}
	t.Cleanup(func() { p.c.Disconnect(0) })
	for topic, ch := range map[string]chan []byte{"ota/offer": p.offers, "ota/chunk": p.chunks} {
		if tok := p.c.Subscribe("sprout/"+c.ID+"/"+topic, 1, func(_ paho.Client, m paho.Message) { ch <- m.Payload() }); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("subscribe: %v", tok.Error())
		}
	}
	return p
}

func (p *mqttOTAPot) publish(suffix, body string) error {
	tok := p.c.Publish("sprout/"+p.id+"/"+suffix, 1, false, body)
	if !tok.WaitTimeout(10 * time.Second) {
		return fmt.Errorf("no PUBACK for %s", suffix)
	}
	return tok.Error()
}

// download takes the offer and the image; it returns the image once its SHA-256 checks.
func (p *mqttOTAPot) download() ([]byte, error) {
	var o struct {
		Version   string
		Size      uint32
		SHA256    string
		ChunkSize uint32 `json:"chunk_size"`
	}
	select {
	case b := <-p.offers:
		if err := json.Unmarshal(b, &o); err != nil {
			return nil, err
		}
	case <-time.After(10 * time.Second): // less than --ota-recheck: the stage's opening offers it
		return nil, fmt.Errorf("%s: no offer within 10 s", p.id)
	}
	var img []byte
	for uint32(len(img)) < o.Size {
		if err := p.publish("ota/request", fmt.Sprintf(`{"sha256":%q,"offset":%d,"length":%d}`, o.SHA256, len(img), o.ChunkSize)); err != nil {
			return nil, err
		}
		var ch struct {
			Offset int
			Data   string
		}
		select {
		case b := <-p.chunks:
			if err := json.Unmarshal(b, &ch); err != nil {
				return nil, err
			}
		case <-time.After(10 * time.Second):
			return nil, fmt.Errorf("%s: no chunk at %d", p.id, len(img))
		}
		data, err := base64.StdEncoding.DecodeString(ch.Data)
		if err != nil || ch.Offset != len(img) || len(data) == 0 {
			return nil, fmt.Errorf("%s: bad chunk at %d: offset %d, %d bytes, %v", p.id, len(img), ch.Offset, len(data), err)
		}
		img = append(img, data...)
	}
	if sum := sha256.Sum256(img); hex.EncodeToString(sum[:]) != o.SHA256 {
		return nil, fmt.Errorf("%s: sha256 mismatch", p.id)
	}
	for _, st := range []string{"VERIFYING", "REBOOTING"} {
		if err := p.publish("ota/progress", fmt.Sprintf(`{"sha256":%q,"state":%q,"percent":100}`, o.SHA256, st)); err != nil {
			return nil, err
		}
	}
	return img, nil
}

// tcpDownload is the same over the TCP edge (docs/ota.md): offer, chunk requests, progress.
func tcpDownload(c *deviceclient.Conn) ([]byte, error) {
	var offer *devicepb.UpdateOffer
	for offer == nil {
		f, err := c.Recv(10 * time.Second)
		if err != nil {
			return nil, fmt.Errorf("tcp pot: no offer: %w", err)
		}
		offer = f.GetUpdateOffer()
	}
	var img []byte
	for uint32(len(img)) < offer.Size {
		if err := c.Send(&devicepb.Frame{Body: &devicepb.Frame_ChunkRequest{ChunkRequest: &devicepb.ChunkRequest{
			Sha256: offer.Sha256, Offset: uint32(len(img)), Length: offer.ChunkSize}}}); err != nil {
			return nil, err
		}
		for {
			f, err := c.Recv(10 * time.Second)
			if err != nil {
				return nil, err
			}
			if ch := f.GetChunk(); ch != nil {
				img = append(img, ch.Data...)
				break
			}
		}
	}
	for _, st := range []devicepb.UpdateState{devicepb.UpdateState_UPDATE_STATE_VERIFYING, devicepb.UpdateState_UPDATE_STATE_REBOOTING} {
		if err := c.Send(&devicepb.Frame{Body: &devicepb.Frame_UpdateProgress{UpdateProgress: &devicepb.UpdateProgress{Sha256: offer.Sha256, State: st, Percent: 100}}}); err != nil {
			return nil, err
		}
	}
	return img, nil
}

// TestRolloutOverMQTTAndTCPSharesTheNodesPace: `sprout serve` offers a rollout's image to a pot
// on MQTT and one on the TCP edge as soon as the stage opens, both download it at once under one
// node-wide pace (--ota-chunks-per-second counts 512-byte chunks, the MQTT edge's 4096-byte ones
// as 8), and both come back running the new version.
func TestRolloutOverMQTTAndTCPSharesTheNodesPace(t *testing.T) {
	dir := t.TempDir()
	creds := provisionDevices(t, dir, "ota-", 2)
	image := make([]byte, 16384)
	_, _ = rand.Read(image)
	imgFile := filepath.Join(dir, "pot.bin")
	if err := os.WriteFile(imgFile, image, 0o600); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, "acme")
	for _, args := range [][]string{{"firmware", "keygen", "--out", key},
		{"firmware", "add", "--data-dir", dir, "--product", "sprout-pot", "--version", "2.0.0", "--file", imgFile, "--key", key + ".key"}} {
		if out, err := exec.Command(sproutBin, args...).CombinedOutput(); err != nil {
			t.Fatalf("sprout %v: %v\n%s", args, err, out)
		}
	}
	s := newServer(t, dir)
	mqttAddr := freeAddr(t)
	s.extraEnv = []string{"SPROUT_MQTT_ADDR=" + mqttAddr, "SPROUT_OTA_CHUNKS_PER_SECOND=40"}
	s.start(t)

	mq := dialOTAPot(t, "tcp://"+mqttAddr, creds[0], "1.0.0")
	tc, err := deviceclient.Dial(s.edge, "", 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	if _, err := tc.Handshake(deviceclient.Hello{DeviceID: creds[1].ID, Secret: creds[1].Secret, Firmware: "1.0.0"}, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	actortest.Eventually(t, 5*time.Second, "both pots online", func() bool {
		var d struct{ Online bool }
		s.get(t, "/api/v1/devices/"+creds[0].ID, &d)
		online := d.Online
		s.get(t, "/api/v1/devices/"+creds[1].ID, &d)
		return online && d.Online
	})

	req, _ := http.NewRequest(http.MethodPost, "http://"+s.http+"/api/v1/rollouts",
		strings.NewReader(`{"id":"r1","product":"sprout-pot","version":"2.0.0","stages":[100]}`))
	req.Header.Set("Authorization", "Bearer "+s.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /api/v1/rollouts: %s %s", resp.Status, b)
	}

	start := time.Now()
	got := make(chan error, 2)
	go func() {
		img, err := mq.download()
		if err == nil && !bytes.Equal(img, image) {
			err = fmt.Errorf("mqtt pot: the image differs")
		}
		got <- err
	}()
	go func() {
		img, err := tcpDownload(tc)
		if err == nil && !bytes.Equal(img, image) {
			err = fmt.Errorf("tcp pot: the image differs")
		}
		got <- err
	}()
	for range 2 {
		if err := <-got; err != nil {
			t.Fatal(err)
		}
	}
	elapsed := time.Since(start)
	// 16 KiB each: 4 MQTT chunks of 8 tokens and 32 TCP chunks of 1, 64 tokens at 40/s with a burst
	// of 4 (and the last chunk may leave the bucket 4 in debt): at least 1.4 s together. Each edge
	// with a pace of its own would be done in 0.7 s.
	if elapsed < 1300*time.Millisecond {
		t.Errorf("both downloads in %s: faster than one node-wide pace of 40 chunks/s allows", elapsed)
	}
	t.Logf("2 x 16 KiB (MQTT and TCP) in %s at 40 chunks/s", elapsed)

	// Both come back on 2.0.0: the MQTT pot names it in its Username, the TCP pot in its Hello.
	mq.c.Disconnect(0)
	tc.Close()
	dialOTAPot(t, "tcp://"+mqttAddr, creds[0], "2.0.0")
	tc2, err := deviceclient.Dial(s.edge, "", 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer tc2.Close()
	if _, err := tc2.Handshake(deviceclient.Hello{DeviceID: creds[1].ID, Secret: creds[1].Secret, Firmware: "2.0.0"}, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	actortest.Eventually(t, 10*time.Second, "the rollout completed with both pots running", func() bool {
		var r struct {
			State   string
			Targets []struct {
				DeviceID string `json:"device_id"`
				State    string
			}
		}
		s.get(t, "/api/v1/rollouts/r1", &r)
		running := 0
		for _, tg := range r.Targets {
			if tg.State == "running" {
				running++
			}
		}
		return r.State == "completed" && running == 2
	})
}
