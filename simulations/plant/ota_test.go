package plant_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pcluster "github.com/asynkron/protoactor-go/cluster"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/actors/actortest"
	"github.com/sprout-iot/sprout/cluster"
	"github.com/sprout-iot/sprout/edge/device"
	"github.com/sprout-iot/sprout/edge/edgetest"
	"github.com/sprout-iot/sprout/messages/devicepb"
	"github.com/sprout-iot/sprout/simulations/plant"
	"github.com/sprout-iot/sprout/store/sqlite"
)

// otaNode is a real Sprout node: the embedded store, the device grains, the rollout service and
// the device edge with its chunk pacing, as `sprout serve` wires them.
type otaNode struct {
	st   *sqlite.Store
	ota  *actors.OTA
	edge *device.Server
	addr string
	priv ed25519.PrivateKey
	pub  ed25519.PublicKey
}

func startOTANode(t *testing.T, chunksPerSecond int) *otaNode {
	t.Helper()
	log := edgetest.Quiet()
	st, err := sqlite.Open(t.TempDir(), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	var edge atomic.Pointer[device.Server]
	o := actors.NewOTA(actors.OTAOptions{Store: st, Devices: st, Logger: log, StageOpened: func() {
		if e := edge.Load(); e != nil {
			e.OfferNow()
		}
	}})
	m := edgetest.StartMember(t, cluster.Options{Logger: log, Kinds: []*pcluster.Kind{actors.NewDeviceKind(actors.DeviceOptions{Store: st, Logger: log})}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := device.NewServer(m.Cluster, device.Options{Logger: log, OTA: o, OTAChunksPerSecond: chunksPerSecond})
	go func() { _ = e.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = e.Shutdown(ctx)
	})
	edge.Store(e)
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	return &otaNode{st: st, ota: o, edge: e, addr: ln.Addr().String(), priv: priv, pub: pub}
}

// image stores a random image of size bytes as product's version, signed with the node's key.
func (n *otaNode) image(t *testing.T, product, version string, size int) actors.FirmwareImage {
	t.Helper()
	data := make([]byte, size)
	_, _ = rand.Read(data)
	img, err := n.ota.AddFirmware(context.Background(), product, version, data, n.priv)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func (n *otaNode) targets(t *testing.T, rollout string) map[string]actors.RolloutTarget {
	t.Helper()
	ts, err := n.st.RolloutTargets(context.Background(), rollout)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]actors.RolloutTarget{}
	for _, x := range ts {
		out[x.DeviceID] = x
	}
	return out
}

// otaPlant provisions id as a pot of product and configures a plant for it that updates with key.
func (n *otaNode) otaPlant(t *testing.T, id, product string, key ed25519.PublicKey) plant.Config {
	t.Helper()
	secret := edgetest.AddDevice(t, n.st, id, product)
	return plant.Config{
		ID: id, Secret: secret, Servers: []string{n.addr}, Firmware: "1.0.0", Product: product, OTAKey: key,
		ReportInterval: 20 * time.Millisecond, Window: 2, RebootTime: 50 * time.Millisecond,
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, Model: plant.ModelParams{NoisePct: -1},
	}
}

func TestOTAStagedRolloutUpdatesEveryPlantWhileItReports(t *testing.T) {
	n := startOTANode(t, 2000)
	img := n.image(t, "pot", "2.0.0", 20_000)
	var mu sync.Mutex
	states := map[string][]devicepb.UpdateState{}
	plants := make([]*plant.Plant, 6)
	for i := range plants {
		cfg := n.otaPlant(t, fmt.Sprintf("pot-%d", i), "pot", n.pub)
		cfg.OTAChunkBytes = 448 // as the Sprout firmware asks
		id := cfg.ID
		cfg.Observer = func(o plant.Observation) {
			if o.Kind == plant.UpdateReported {
				mu.Lock()
				states[id] = append(states[id], o.UpdateState)
				mu.Unlock()
			}
		}
		plants[i] = plant.New(cfg)
		run(t, plants[i])
	}
	for _, p := range plants {
		actortest.Eventually(t, 5*time.Second, p.ID()+" reporting", func() bool { return p.Stats().FramesAcked.Load() > 2 })
	}
	if _, err := n.ota.StartRollout(context.Background(), actors.RolloutSpec{ID: "r1", Product: "pot", Version: img.Version, Stages: []int{20, 100}}); err != nil {
		t.Fatal(err)
	}
	actortest.Eventually(t, 30*time.Second, "the rollout completed", func() bool {
		r, err := n.st.GetRollout(context.Background(), "r1")
		return err == nil && r.State == actors.RolloutCompleted
	})
	for id, tg := range n.targets(t, "r1") {
		if tg.State != actors.TargetRunning {
			t.Errorf("%s: %s (%s)", id, tg.State, tg.Reason)
		}
	}
	acked := map[string]uint64{}
	for _, p := range plants {
		if p.Firmware() != "2.0.0" {
			t.Errorf("%s runs %s", p.ID(), p.Firmware())
		}
		acked[p.ID()] = p.Stats().FramesAcked.Load()
	}
	for _, p := range plants {
		st := p.Stats()
		actortest.Eventually(t, 5*time.Second, p.ID()+" confirmed and reporting after the reboot", func() bool {
			return st.OTAConfirmed.Load() == 1 && st.FramesAcked.Load() > acked[p.ID()]
		})
		if st.OTAFailed.Load() != 0 || st.OTABytes.Load() != uint64(img.Size) || st.OTAChunks.Load() != uint64((img.Size+447)/448) {
			t.Errorf("%s: failed %d, %d bytes in %d chunks; want 0, %d in %d", p.ID(), st.OTAFailed.Load(), st.OTABytes.Load(), st.OTAChunks.Load(), img.Size, (img.Size+447)/448)
		}
		if errs := st.Snapshot().Errors; len(errs) > 0 {
			t.Errorf("%s: errors %v", p.ID(), errs)
		}
		mu.Lock()
		got := states[p.ID()]
		mu.Unlock()
		want := []devicepb.UpdateState{devicepb.UpdateState_UPDATE_STATE_VERIFYING, devicepb.UpdateState_UPDATE_STATE_REBOOTING, devicepb.UpdateState_UPDATE_STATE_RUNNING}
		if len(got) < 3+2 || got[0] != devicepb.UpdateState_UPDATE_STATE_DOWNLOADING || !equalStates(got[len(got)-3:], want) {
			t.Errorf("%s said %v; want DOWNLOADING..., VERIFYING, REBOOTING, RUNNING", p.ID(), got)
		}
	}
}

func equalStates(a, b []devicepb.UpdateState) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestOTARefusedImagesAreReportedAndNothingIsBooted(t *testing.T) {
	n := startOTANode(t, 2000)
	img := n.image(t, "pot", "2.0.0", 8_000)
	otherKey, _, _ := ed25519.GenerateKey(rand.Reader)

	wrongKey := n.otaPlant(t, "wrong-key", "pot", otherKey)
	corrupt := n.otaPlant(t, "corrupt", "pot", n.pub)
	corrupt.OTACorruptFlash = true
	wrongProduct := n.otaPlant(t, "wrong-product", "pot", n.pub)
	wrongProduct.Product = "other-pot"
	noUpdates := n.otaPlant(t, "no-updates", "pot", nil)
	cases := []struct {
		cfg        plant.Config
		reason     string
		wantChunks bool
	}{
		{wrongKey, "bad signature", false},
		{corrupt, "sha256 mismatch", true},
		{wrongProduct, "wrong product", false},
		{noUpdates, "updates not supported", false},
	}
	plants := map[string]*plant.Plant{}
	for _, c := range cases {
		p := plant.New(c.cfg)
		plants[c.cfg.ID] = p
		run(t, p)
	}
	if _, err := n.ota.StartRollout(context.Background(), actors.RolloutSpec{ID: "r1", Product: "pot", Version: img.Version, Stages: []int{100}, FailureThreshold: 1}); err != nil {
		t.Fatal(err)
	}
	var targets map[string]actors.RolloutTarget
	actortest.Eventually(t, 20*time.Second, "every pot's update failed", func() bool {
		targets = n.targets(t, "r1")
		for _, tg := range targets {
			if tg.State != actors.TargetFailed {
				return false
			}
		}
		return true
	})
	for _, c := range cases {
		p, tg := plants[c.cfg.ID], targets[c.cfg.ID]
		if tg.Reason != c.reason {
			t.Errorf("%s: failed with %q, want %q", c.cfg.ID, tg.Reason, c.reason)
		}
		if p.Firmware() != "1.0.0" || p.Stats().OTAReboots.Load() != 0 {
			t.Errorf("%s: runs %s after %d reboots; want 1.0.0, none", c.cfg.ID, p.Firmware(), p.Stats().OTAReboots.Load())
		}
		if got := p.Stats().OTAChunks.Load() > 0; got != c.wantChunks {
			t.Errorf("%s: downloaded %d chunks; want any: %v", c.cfg.ID, p.Stats().OTAChunks.Load(), c.wantChunks)
		}
	}
}

func TestOTADownloadResumesAtItsOffsetAfterTheConnectionDrops(t *testing.T) {
	n := startOTANode(t, 200) // about 100 KiB/s: the drop comes mid-download
	img := n.image(t, "pot", "2.0.0", 40_000)
	cfg := n.otaPlant(t, "pot-r", "pot", n.pub)
	dropped := make(chan struct{})
	var once sync.Once
	var p *plant.Plant
	cfg.Observer = func(o plant.Observation) {
		if o.Kind == plant.UpdateReported && o.UpdateState == devicepb.UpdateState_UPDATE_STATE_DOWNLOADING && o.Percent >= 30 {
			once.Do(func() { close(dropped) })
		}
	}
	p = plant.New(cfg)
	run(t, p)
	if _, err := n.ota.StartRollout(context.Background(), actors.RolloutSpec{ID: "r1", Product: "pot", Version: img.Version}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-dropped:
	case <-time.After(10 * time.Second):
		t.Fatal("no 30 % progress within 10 s")
	}
	p.Drop() // WiFi lost mid-download
	actortest.Eventually(t, 20*time.Second, "the pot running 2.0.0", func() bool { return p.Firmware() == "2.0.0" && p.Stats().OTAConfirmed.Load() == 1 })
	st := p.Stats()
	// Two offers taken (before and after the drop), each byte once.
	if st.OTAAccepted.Load() != 2 || st.OTABytes.Load() != uint64(img.Size) {
		t.Fatalf("took %d offers, %d bytes; want 2 offers, exactly %d bytes (nothing twice)", st.OTAAccepted.Load(), st.OTABytes.Load(), img.Size)
	}
}
