package device_test

import (
	"errors"
	"testing"
	"time"

	"github.com/sprout-iot/sprout/edge/device"
	"github.com/sprout-iot/sprout/edge/edgetest"
	"github.com/sprout-iot/sprout/messages/deviceclient"
	"github.com/sprout-iot/sprout/messages/devicepb"
	"github.com/sprout-iot/sprout/store/memory"
)

func TestAPotIsRefusedAsBusyWhileEveryHandshakeSlotWaitsForItsGrain(t *testing.T) {
	t.Parallel()
	st := edgetest.NewLoadGate(memory.New(), "pot-1")
	n := startNode(t, st, device.Options{MaxHandshakes: 1, BusyRetry: 4 * time.Second, GrainTimeout: 10 * time.Second})
	s1, s2 := n.addDevice(t, "pot-1"), n.addDevice(t, "pot-2")

	first := make(chan error, 1)
	go func() {
		c, err := deviceclient.Dial(n.addr, "", 2*time.Second)
		if err == nil {
			defer c.Close()
			_, err = c.Handshake(deviceclient.Hello{DeviceID: "pot-1", Secret: s1}, 15*time.Second)
		}
		first <- err
	}()
	select {
	case <-st.Loading(): // pot-1's handshake holds the only slot, waiting for its grain
	case err := <-first:
		t.Fatalf("pot-1's handshake ended before its grain loaded: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("pot-1's grain never began to load")
	}

	// pot-2 is told at once to come back later, with a spread hint.
	c, err := deviceclient.Dial(n.addr, "", 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	_, err = c.Handshake(deviceclient.Hello{DeviceID: "pot-2", Secret: s2}, 5*time.Second)
	_ = c.Close()
	var ce *deviceclient.ErrClosed
	if !errors.As(err, &ce) || ce.Reason != devicepb.CloseReason_CLOSE_REASON_UNAVAILABLE {
		t.Fatalf("pot-2 while every slot is taken: %v, want Close(UNAVAILABLE)", err)
	}
	if took := time.Since(began); took > 2*time.Second {
		t.Fatalf("the refusal took %v: a busy node refuses at once", took)
	}
	if ms := ce.ReconnectAfterMs; ms < 2000 || ms > 6000 {
		t.Fatalf("reconnect_after_ms %d, want within 2000..6000 (BusyRetry 4 s, spread)", ms)
	}

	// Once pot-1's grain answers, its handshake completes and the slot is free again.
	st.Open()
	if err := <-first; err != nil {
		t.Fatalf("pot-1's handshake: %v", err)
	}
	n.connect(t, "pot-2", s2)
	if !n.state(t, "pot-2").Online {
		t.Fatal("pot-2 is not online after its second try")
	}
}
