package device_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/edge/device"
	"github.com/sprout-iot/sprout/messages/deviceclient"
	"github.com/sprout-iot/sprout/messages/devicepb"
	"github.com/sprout-iot/sprout/store/memory"
)

// loadGatedStore is a real store whose loading of one device waits for the test: its handshake then
// holds a slot of MaxHandshakes for as long as the test likes.
type loadGatedStore struct {
	actors.Store
	slow    string
	loading chan struct{} // closed when the slow device's load has begun
	gate    chan struct{} // the slow device's load goes on once closed
}

func (s *loadGatedStore) LoadDevice(ctx context.Context, id string) (actors.Recovered, error) {
	if id == s.slow {
		close(s.loading)
		<-s.gate
	}
	return s.Store.LoadDevice(ctx, id)
}

func TestAPotIsRefusedAsBusyWhileEveryHandshakeSlotWaitsForItsGrain(t *testing.T) {
	t.Parallel()
	st := &loadGatedStore{Store: memory.New(), slow: "pot-1", loading: make(chan struct{}), gate: make(chan struct{})}
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
	case <-st.loading: // pot-1's handshake holds the only slot, waiting for its grain
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
	close(st.gate)
	if err := <-first; err != nil {
		t.Fatalf("pot-1's handshake: %v", err)
	}
	n.connect(t, "pot-2", s2)
	if !n.state(t, "pot-2").Online {
		t.Fatal("pot-2 is not online after its second try")
	}
}
