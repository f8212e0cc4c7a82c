package actors

import (
	"testing"
	"time"

	"github.com/sprout-iot/sprout/messages"
	"github.com/sprout-iot/sprout/messages/actorpb"
	"github.com/sprout-iot/sprout/messages/devicepb"
)

// TestMQTTProofIsTheSignedTimeWithinFiveMinutes: the MQTT edge's proof (HMAC of "<id>|<unix
// seconds>") is accepted only with the right secret and a time within 5 minutes of the grain's clock.
func TestMQTTProofIsTheSignedTimeWithinFiveMinutes(t *testing.T) {
	secret := []byte("0123456789abcdef")
	for _, c := range []struct {
		name   string
		signed time.Time
		key    []byte
		id     string
		ok     bool
	}{
		{"now", t0, secret, "pot-1", true},
		{"4 min 59 s behind", t0.Add(-299 * time.Second), secret, "pot-1", true},
		{"4 min 59 s ahead", t0.Add(299 * time.Second), secret, "pot-1", true},
		{"5 min 1 s behind", t0.Add(-301 * time.Second), secret, "pot-1", false},
		{"5 min 1 s ahead", t0.Add(301 * time.Second), secret, "pot-1", false},
		{"wrong secret", t0, []byte("another secret.."), "pot-1", false},
		{"signed for another id", t0, secret, "pot-2", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			core := newDeviceCore("pot-1")
			if _, err := core.recover(Device{ID: "pot-1", Secret: secret}, Recovered{}, t0); err != nil {
				t.Fatal(err)
			}
			ts := c.signed.Unix()
			res, _ := core.authenticate(&actorpb.Authenticate{DeviceId: "pot-1", ProtocolVersion: messages.ProtocolVersion,
				Mqtt: &actorpb.MqttAuth{UnixSeconds: ts}, Mac: messages.MQTTMAC(c.key, c.id, ts),
				Conn: &actorpb.ConnRef{SessionId: "m1"}}, secret, "m1", t0)
			if res.Ok != c.ok {
				t.Fatalf("ok %v, want %v (%s %s)", res.Ok, c.ok, res.Reason, res.Detail)
			}
			if !c.ok && res.Reason != devicepb.CloseReason_CLOSE_REASON_AUTH_FAILED {
				t.Fatalf("refused with %s, want AUTH_FAILED", res.Reason)
			}
			if c.ok != core.online {
				t.Fatalf("online %v after ok %v", core.online, c.ok)
			}
		})
	}
}

// The firmware version in an MQTT Username is signed with it: a session cannot claim a version
// (and so an update it did not run) that its password does not cover.
func TestMQTTAuthSignsTheFirmwareVersion(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	t0 := time.Unix(1764770000, 0)
	for _, c := range []struct {
		name, signed, claimed string
		ok                    bool
	}{
		{"version signed", "2.0.0", "2.0.0", true},
		{"no version", "", "", true},
		{"version claimed but not signed", "", "2.0.0", false},
		{"another version claimed", "1.0.0", "2.0.0", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			core := newDeviceCore("pot-1")
			if _, err := core.recover(Device{ID: "pot-1", Secret: secret}, Recovered{}, t0); err != nil {
				t.Fatal(err)
			}
			res, _ := core.authenticate(&actorpb.Authenticate{DeviceId: "pot-1", ProtocolVersion: messages.ProtocolVersion,
				Mqtt: &actorpb.MqttAuth{UnixSeconds: t0.Unix(), FirmwareVersion: c.claimed}, FirmwareVersion: c.claimed,
				Mac:  messages.MQTTMACFirmware(secret, "pot-1", t0.Unix(), c.signed),
				Conn: &actorpb.ConnRef{SessionId: "m1"}}, secret, "m1", t0)
			if res.Ok != c.ok {
				t.Fatalf("ok %v, want %v (%s %s)", res.Ok, c.ok, res.Reason, res.Detail)
			}
		})
	}
}
