package main

import (
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/sprout-iot/sprout/actors/actortest"
	"github.com/sprout-iot/sprout/messages/deviceclient"
	"github.com/sprout-iot/sprout/messages/devicepb"
)

// The CLI's revoke, beside a running node, goes through the node: the pot is closed at once.
func TestDeviceRevokeThroughARunningNodeDisconnectsThePot(t *testing.T) {
	dir := t.TempDir()
	creds := provisionDevices(t, dir, "rv-", 1)
	s := newServer(t, dir)
	s.start(t)

	c, err := deviceclient.Dial(s.edge, "", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Handshake(deviceclient.Hello{DeviceID: creds[0].ID, Secret: creds[0].Secret}, 2*time.Second); err != nil {
		t.Fatal(err)
	}

	out, err := exec.Command(sproutBin, "device", "revoke", "--data-dir", filepath.Join(dir, "unused"),
		"--api", "http://"+s.http, "--admin-token", s.token, creds[0].ID).CombinedOutput()
	if err != nil {
		t.Fatalf("device revoke --api: %v\n%s", err, out)
	}
	f, err := c.Recv(5 * time.Second)
	if err != nil || f.GetClose().GetReason() != devicepb.CloseReason_CLOSE_REASON_DEVICE_REVOKED {
		t.Fatalf("the pot got %v, %v; want Close(DEVICE_REVOKED)", f, err)
	}
	var st struct{ Revoked bool }
	actortest.Eventually(t, 5*time.Second, "the API shows the pot revoked", func() bool {
		s.get(t, "/api/v1/devices/"+creds[0].ID, &st)
		return st.Revoked
	})

	bad, err := exec.Command(sproutBin, "device", "revoke", "--api", "http://"+s.http, "--admin-token", "wrong", creds[0].ID).CombinedOutput()
	if err == nil {
		t.Fatalf("a wrong token was accepted: %s", bad)
	}
}
