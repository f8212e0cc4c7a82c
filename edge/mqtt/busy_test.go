package mqtt_test

import (
	"strings"
	"testing"
	"time"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/edge/edgetest"
	"github.com/sprout-iot/sprout/edge/mqtt"
)

func TestAConnectIsRefusedAsBusyWhileEverySlotWaitsForItsGrain(t *testing.T) {
	t.Parallel()
	var gs *edgetest.LoadGate
	n := startNodeWith(t, mqtt.Options{MaxHandshakes: 1, GrainTimeout: 10 * time.Second},
		func(st actors.Store) actors.Store { gs = edgetest.NewLoadGate(st, "pot-1"); return gs })
	s1, s2 := n.addDevice(t, "pot-1"), n.addDevice(t, "pot-2")

	first := make(chan error, 1)
	go func() {
		_, err := dialPot(t, n.addr, "pot-1", s1, potOpts{})
		first <- err
	}()
	select {
	case <-gs.Loading():
	case err := <-first:
		t.Fatalf("pot-1's CONNECT ended before its grain loaded: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("pot-1's grain never began to load")
	}
	began := time.Now()
	if _, err := dialPot(t, n.addr, "pot-2", s2, potOpts{}); err == nil || !strings.Contains(strings.ToLower(err.Error()), "server unavailable") {
		t.Fatalf("pot-2 while every slot is taken: %v, want CONNACK server unavailable", err)
	}
	if took := time.Since(began); took > 2*time.Second {
		t.Fatalf("the refusal took %v: a busy node refuses at once", took)
	}
	if got := n.edge.Stats().Refused[mqtt.RefusedBusy]; got != 1 {
		t.Fatalf("busy refusals counted: %d, want 1", got)
	}

	gs.Open()
	if err := <-first; err != nil {
		t.Fatalf("pot-1's CONNECT: %v", err)
	}
	if _, err := dialPot(t, n.addr, "pot-2", s2, potOpts{}); err != nil {
		t.Fatalf("pot-2's second CONNECT: %v", err)
	}
	if !n.state(t, "pot-2").Online {
		t.Fatal("pot-2 is not online after its second try")
	}
}
