package api

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"testing"
	"time"

	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/jonboulle/clockwork"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/actors/actortest"
	"github.com/sprout-iot/sprout/cluster"
	"github.com/sprout-iot/sprout/edge/device"
	"github.com/sprout-iot/sprout/edge/edgetest"
	"github.com/sprout-iot/sprout/messages/deviceclient"
	"github.com/sprout-iot/sprout/messages/devicepb"
	"github.com/sprout-iot/sprout/store/pgtest"
	"github.com/sprout-iot/sprout/store/postgres"
	"github.com/sprout-iot/sprout/store/sqlite"
)

// These tests drive queued commands and desired configuration through a real node: the SQLite
// store, a cluster member hosting device grains on a fake clock, the device edge on real TCP, the
// API over real HTTP, and pots that are test connections answering what the test tells them.

// fleetNode is one node on a store in dir; stop shuts it down (edge, member, store) so that a
// second node can open the same data directory, as a restarted `sprout serve` does.
type fleetNode struct {
	*world
	clock *clockwork.FakeClock
	stop  func()
}

func startFleetNode(t *testing.T, dir string, clock *clockwork.FakeClock, opts actors.DeviceOptions) *fleetNode {
	t.Helper()
	st, err := sqlite.Open(dir, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return startFleetNodeOn(t, st, clock, opts)
}

// startFleetNodeOn starts a node on st, which its stop closes.
func startFleetNodeOn(t *testing.T, st actors.Store, clock *clockwork.FakeClock, opts actors.DeviceOptions) *fleetNode {
	t.Helper()
	log := edgetest.Quiet()
	opts.Store, opts.Logger, opts.Clock = st, log, clock
	opts.Users, _ = st.(actors.UserStore)
	m, err := cluster.Start(cluster.Options{Logger: log, Kinds: []*pcluster.Kind{actors.NewDeviceKind(opts)}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	edge := device.NewServer(m.Cluster, device.Options{Logger: log})
	go func() { _ = edge.Serve(ln) }()
	w := &world{store: st, member: m, edgeAddr: ln.Addr().String()}
	h := New(m.Cluster, st, Options{AdminToken: testToken, Logger: log, Self: m.Address()})
	w.url = edgetest.Serve(t, h.Routes)
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		_ = edge.Shutdown(context.Background())
		m.Stop(true)
		_ = st.Close()
	}
	t.Cleanup(stop)
	return &fleetNode{world: w, clock: clock, stop: stop}
}

func newFleet(t *testing.T) *fleetNode {
	return startFleetNode(t, t.TempDir(), clockwork.NewFakeClockAt(time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC)), actors.DeviceOptions{})
}

// post sends a JSON body and decodes the answer into v (when not nil), failing unless want.
func (w *world) post(t *testing.T, method, path string, body any, want int, v any) {
	t.Helper()
	status, _, b := w.call(t, method, path, body)
	if status != want {
		t.Fatalf("%s %s: HTTP %d, want %d: %s", method, path, status, want, b)
	}
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
}

type commandList struct {
	Queued   []QueuedJSON `json:"queued"`
	Finished []QueuedJSON `json:"finished"`
}

func (w *world) commands(t *testing.T, id string) commandList {
	t.Helper()
	var l commandList
	w.getJSON(t, "/api/v1/devices/"+id+"/commands", http.StatusOK, &l)
	return l
}

// nextCommand reads the pot's frames until a Command (answering pings on the way).
func nextCommand(t *testing.T, c *deviceclient.Conn, within time.Duration) *devicepb.Command {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		f, err := c.Recv(time.Until(deadline))
		if err != nil {
			t.Fatalf("waiting for a command: %v", err)
		}
		switch b := f.Body.(type) {
		case *devicepb.Frame_Command:
			return b.Command
		case *devicepb.Frame_Ping:
			_ = c.Send(&devicepb.Frame{Body: &devicepb.Frame_Pong{Pong: &devicepb.Pong{Nonce: b.Ping.Nonce}}})
		}
	}
}

// noCommand asserts the pot gets no command within d.
func noCommand(t *testing.T, c *deviceclient.Conn, d time.Duration) {
	t.Helper()
	f, err := c.Recv(d)
	if err == nil && f.GetCommand() != nil {
		t.Fatalf("unexpected command %v", f.GetCommand())
	}
}

func answer(t *testing.T, c *deviceclient.Conn, cmd *devicepb.Command, st devicepb.CommandStatus, detail string) {
	t.Helper()
	if err := c.Send(&devicepb.Frame{Body: &devicepb.Frame_CommandResult{CommandResult: &devicepb.CommandResult{
		CommandId: cmd.CommandId, Status: st, Detail: detail, WateredMl: cmd.WaterMs / 50}}}); err != nil {
		t.Fatal(err)
	}
}

// A queued command to an offline pot is stored (202) and delivered after the pot's Welcome when it
// connects; its result ends it. A person's "water now" to the same offline pot still answers
// offline at once.
func TestQueuedCommandIsDeliveredWhenThePotConnects(t *testing.T) {
	n := newFleet(t)
	secret := n.addDevice(t, "pot-q")
	var q QueuedJSON
	n.post(t, http.MethodPost, "/api/v1/devices/pot-q/commands",
		map[string]any{"kind": "water", "water_ms": 2000, "queue": true, "ttl_s": 3600, "command_id": "night-water"}, http.StatusAccepted, &q)
	if q.State != "queued" || q.CommandID != "night-water" {
		t.Fatalf("answer %+v, want queued night-water", q)
	}
	var now OutcomeJSON
	n.post(t, http.MethodPost, "/api/v1/devices/pot-q/commands", map[string]any{"kind": "water", "water_ms": 1000}, http.StatusOK, &now)
	if now.Outcome != "offline" {
		t.Fatalf("an immediate command to an offline pot: %+v, want offline at once", now)
	}
	l := n.commands(t, "pot-q")
	if len(l.Queued) != 1 || l.Queued[0].State != "queued" || l.Queued[0].ExpiresAt == nil {
		t.Fatalf("commands %+v, want night-water queued with its expiry", l)
	}

	c := edgetest.Dial(t, n.edgeAddr, "pot-q", secret)
	cmd := nextCommand(t, c, 5*time.Second)
	if cmd.CommandId != "night-water" || cmd.Kind != devicepb.CommandKind_COMMAND_KIND_WATER || cmd.WaterMs != 2000 {
		t.Fatalf("delivered %v, want night-water (water 2000 ms)", cmd)
	}
	actortest.Eventually(t, 5*time.Second, "the command shows as sent", func() bool {
		l := n.commands(t, "pot-q")
		return len(l.Queued) == 1 && l.Queued[0].State == "sent"
	})
	answer(t, c, cmd, devicepb.CommandStatus_COMMAND_STATUS_DONE, "")
	actortest.Eventually(t, 5*time.Second, "the command is done", func() bool {
		l := n.commands(t, "pot-q")
		return len(l.Queued) == 0 && len(l.Finished) == 1 && l.Finished[0].State == "done" && l.Finished[0].WateredMl == 40
	})
	// Asking again with the same id answers its end, not a second watering.
	var again QueuedJSON
	n.post(t, http.MethodPost, "/api/v1/devices/pot-q/commands",
		map[string]any{"kind": "water", "water_ms": 2000, "queue": true, "command_id": "night-water"}, http.StatusOK, &again)
	if again.State != "done" {
		t.Errorf("repeat of a finished queued command: %+v, want done", again)
	}
	noCommand(t, c, 200*time.Millisecond)
}

// Three queued commands reach the pot one at a time, in the order they were asked.
func TestQueuedCommandsKeepTheirOrder(t *testing.T) {
	n := newFleet(t)
	secret := n.addDevice(t, "pot-o")
	ids := []string{"first", "second", "third"}
	for _, id := range ids {
		n.post(t, http.MethodPost, "/api/v1/devices/pot-o/commands",
			map[string]any{"kind": "read_now", "queue": true, "command_id": id}, http.StatusAccepted, nil)
	}
	c := edgetest.Dial(t, n.edgeAddr, "pot-o", secret)
	for _, id := range ids {
		cmd := nextCommand(t, c, 5*time.Second)
		if cmd.CommandId != id {
			t.Fatalf("got %s, want %s", cmd.CommandId, id)
		}
		noCommand(t, c, 150*time.Millisecond) // the next waits for this one's result
		answer(t, c, cmd, devicepb.CommandStatus_COMMAND_STATUS_DONE, "")
	}
	actortest.Eventually(t, 5*time.Second, "all three done, in order", func() bool {
		l := n.commands(t, "pot-o")
		return len(l.Finished) == 3 && l.Finished[0].CommandID == "first" && l.Finished[2].CommandID == "third"
	})
}

// A queued command whose ttl passes while the pot is offline ends as expired, and the pot never
// gets it.
func TestQueuedCommandExpiresWhileThePotIsOffline(t *testing.T) {
	n := newFleet(t)
	secret := n.addDevice(t, "pot-x")
	n.post(t, http.MethodPost, "/api/v1/devices/pot-x/commands",
		map[string]any{"kind": "reboot", "queue": true, "ttl_s": 60, "command_id": "late"}, http.StatusAccepted, nil)
	n.clock.Advance(59 * time.Second)
	if l := n.commands(t, "pot-x"); len(l.Queued) != 1 {
		t.Fatalf("before its ttl: %+v, want it queued", l)
	}
	n.clock.Advance(2 * time.Second)
	actortest.Eventually(t, 5*time.Second, "the command expired", func() bool {
		l := n.commands(t, "pot-x")
		return len(l.Queued) == 0 && len(l.Finished) == 1 && l.Finished[0].State == "expired"
	})
	c := edgetest.Dial(t, n.edgeAddr, "pot-x", secret)
	noCommand(t, c, 300*time.Millisecond)
}

// A queued command can be cancelled until it is sent; a sent one cannot, and an unknown one is 404.
func TestQueuedCommandCanBeCancelledUntilSent(t *testing.T) {
	n := newFleet(t)
	secret := n.addDevice(t, "pot-c")
	for _, id := range []string{"a", "b"} {
		n.post(t, http.MethodPost, "/api/v1/devices/pot-c/commands",
			map[string]any{"kind": "read_now", "queue": true, "command_id": id}, http.StatusAccepted, nil)
	}
	var out QueuedJSON
	n.post(t, http.MethodDelete, "/api/v1/devices/pot-c/commands/a", nil, http.StatusOK, &out)
	if out.State != "cancelled" {
		t.Fatalf("cancel: %+v", out)
	}
	n.post(t, http.MethodDelete, "/api/v1/devices/pot-c/commands/a", nil, http.StatusConflict, nil)
	n.post(t, http.MethodDelete, "/api/v1/devices/pot-c/commands/nope", nil, http.StatusNotFound, nil)
	c := edgetest.Dial(t, n.edgeAddr, "pot-c", secret)
	cmd := nextCommand(t, c, 5*time.Second)
	if cmd.CommandId != "b" {
		t.Fatalf("delivered %s, want b (a was cancelled)", cmd.CommandId)
	}
	n.post(t, http.MethodDelete, "/api/v1/devices/pot-c/commands/b", nil, http.StatusConflict, nil)
}

// Bad queue requests are refused with 400 (or 429 when the pot's queue is full) and store nothing.
func TestBadQueuedCommandsAreRefused(t *testing.T) {
	n := startFleetNode(t, t.TempDir(), clockwork.NewFakeClock(), actors.DeviceOptions{MaxQueued: 2, MaxQueueTTL: time.Hour})
	n.addDevice(t, "pot-b")
	for _, body := range []map[string]any{
		{"kind": "water", "water_ms": 1000, "queue": true, "ttl_s": 3601},
		{"kind": "water", "water_ms": 1000, "ttl_s": 60},
		{"kind": "water", "water_ms": 0, "queue": true},
		{"kind": "dance", "queue": true},
	} {
		n.post(t, http.MethodPost, "/api/v1/devices/pot-b/commands", body, http.StatusBadRequest, nil)
	}
	n.post(t, http.MethodPost, "/api/v1/devices/pot-b/commands", map[string]any{"kind": "read_now", "queue": true}, http.StatusAccepted, nil)
	n.post(t, http.MethodPost, "/api/v1/devices/pot-b/commands", map[string]any{"kind": "read_now", "queue": true}, http.StatusAccepted, nil)
	n.post(t, http.MethodPost, "/api/v1/devices/pot-b/commands", map[string]any{"kind": "read_now", "queue": true}, http.StatusTooManyRequests, nil)
	if l := n.commands(t, "pot-b"); len(l.Queued) != 2 || len(l.Finished) != 0 {
		t.Errorf("after refusals: %+v, want only the two accepted", l)
	}
	n.post(t, http.MethodPost, "/api/v1/devices/nobody/commands", map[string]any{"kind": "read_now", "queue": true}, http.StatusNotFound, nil)
}

// A queued command survives a node restart; one sent but not answered before the restart is sent
// again with the same id, and its result ends it.
func TestQueuedCommandSurvivesARestart(t *testing.T) {
	dir := t.TempDir()
	clock := clockwork.NewFakeClock()
	n := startFleetNode(t, dir, clock, actors.DeviceOptions{})
	secret := n.addDevice(t, "pot-r")
	for _, id := range []string{"one", "two"} {
		n.post(t, http.MethodPost, "/api/v1/devices/pot-r/commands",
			map[string]any{"kind": "water", "water_ms": 500, "queue": true, "command_id": id}, http.StatusAccepted, nil)
	}
	c := edgetest.Dial(t, n.edgeAddr, "pot-r", secret)
	if cmd := nextCommand(t, c, 5*time.Second); cmd.CommandId != "one" {
		t.Fatalf("got %s, want one", cmd.CommandId)
	}
	n.stop() // before the pot answers
	_ = c.Close()

	n2 := startFleetNode(t, dir, clock, actors.DeviceOptions{})
	if l := n2.commands(t, "pot-r"); len(l.Queued) != 2 || l.Queued[0].CommandID != "one" {
		t.Fatalf("after the restart: %+v, want one and two still queued", l)
	}
	c2 := edgetest.Dial(t, n2.edgeAddr, "pot-r", secret)
	cmd := nextCommand(t, c2, 5*time.Second)
	if cmd.CommandId != "one" {
		t.Fatalf("after the restart the pot got %s first, want one again (same id)", cmd.CommandId)
	}
	noCommand(t, c2, 150*time.Millisecond) // two waits for one's outcome, after a restart too
	answer(t, c2, cmd, devicepb.CommandStatus_COMMAND_STATUS_DONE, "")
	cmd = nextCommand(t, c2, 5*time.Second)
	if cmd.CommandId != "two" {
		t.Fatalf("then %s, want two", cmd.CommandId)
	}
	answer(t, c2, cmd, devicepb.CommandStatus_COMMAND_STATUS_DONE, "")
	actortest.Eventually(t, 5*time.Second, "both done", func() bool {
		l := n2.commands(t, "pot-r")
		return len(l.Queued) == 0 && len(l.Finished) == 2
	})
}

// A product command queues one command for every pot of the product (and none for others).
func TestProductCommandQueuesForEveryPot(t *testing.T) {
	n := newFleet(t)
	edgetest.AddDevice(t, n.store, "v2-a", "pot-v2")
	edgetest.AddDevice(t, n.store, "v2-b", "pot-v2")
	edgetest.AddDevice(t, n.store, "v1-a", "pot-v1")
	var res struct {
		Queued []QueuedJSON `json:"queued"`
		Failed []any        `json:"failed"`
	}
	n.post(t, http.MethodPost, "/api/v1/products/pot-v2/commands", map[string]any{"kind": "read_now", "ttl_s": 600}, http.StatusAccepted, &res)
	if len(res.Queued) != 2 || len(res.Failed) != 0 {
		t.Fatalf("batch: %+v", res)
	}
	if l := n.commands(t, "v1-a"); len(l.Queued) != 0 {
		t.Errorf("a pot of another product got %+v", l)
	}
	if l := n.commands(t, "v2-b"); len(l.Queued) != 1 {
		t.Errorf("v2-b: %+v, want one queued", l)
	}
}

type driftList struct {
	Pots []DesiredJSON `json:"pots"`
}

// The product's desired config reaches an online pot as SET_CONFIG and an offline one in its
// Welcome (and as SET_CONFIG after it); the pot drifts until it answers DONE. A pot override wins
// over the product's; a config outside the limits is refused.
func TestDesiredConfigIsPushedAndDriftShown(t *testing.T) {
	n := newFleet(t)
	sOn := edgetest.AddDevice(t, n.store, "pot-on", "pot-v2")
	sOff := edgetest.AddDevice(t, n.store, "pot-off", "pot-v2")
	on := edgetest.Dial(t, n.edgeAddr, "pot-on", sOn)
	if on.Welcome.Config.GetReportIntervalS() != 60 {
		t.Fatalf("before any desired config the Welcome carries %v", on.Welcome.Config)
	}

	cfg := map[string]any{"report_interval_s": 120, "heartbeat_interval_s": 30, "max_water_ms": 20000,
		"min_water_interval_s": 60, "thresholds": map[string]any{"soil_moisture_min_pct": 25, "temperature_max_c": 35,
			"tank_empty_pct": 5, "hysteresis_pct": 5, "hysteresis_c": 2}}
	bad := map[string]any{"report_interval_s": 1, "heartbeat_interval_s": 30, "max_water_ms": 20000, "thresholds": map[string]any{}}
	n.post(t, http.MethodPut, "/api/v1/products/pot-v2/config", bad, http.StatusBadRequest, nil)
	n.post(t, http.MethodPut, "/api/v1/products/pot-v2/config", cfg, http.StatusOK, nil)

	cmd := nextCommand(t, on, 5*time.Second)
	if cmd.Kind != devicepb.CommandKind_COMMAND_KIND_SET_CONFIG || cmd.Config.GetReportIntervalS() != 120 {
		t.Fatalf("the online pot got %v, want SET_CONFIG with report_interval_s 120", cmd)
	}
	var dl driftList
	actortest.Eventually(t, 5*time.Second, "both pots drift", func() bool {
		n.getJSON(t, "/api/v1/config/drift?product=pot-v2", http.StatusOK, &dl)
		return len(dl.Pots) == 2 && dl.Pots[0].DriftSince != nil
	})
	answer(t, on, cmd, devicepb.CommandStatus_COMMAND_STATUS_DONE, "")
	actortest.Eventually(t, 5*time.Second, "only the offline pot drifts", func() bool {
		n.getJSON(t, "/api/v1/config/drift", http.StatusOK, &dl)
		return len(dl.Pots) == 1 && dl.Pots[0].DeviceID == "pot-off"
	})
	var d DesiredJSON
	n.getJSON(t, "/api/v1/devices/pot-on/config", http.StatusOK, &d)
	if !d.InSync || d.Source != "product" {
		t.Errorf("pot-on config state %+v, want in sync with the product's", d)
	}

	off := edgetest.Dial(t, n.edgeAddr, "pot-off", sOff)
	if off.Welcome.Config.GetReportIntervalS() != 120 {
		t.Errorf("the Welcome carries %v, want the desired report_interval_s 120", off.Welcome.Config)
	}
	cmd = nextCommand(t, off, 5*time.Second)
	if cmd.Kind != devicepb.CommandKind_COMMAND_KIND_SET_CONFIG {
		t.Fatalf("after the Welcome: %v, want SET_CONFIG", cmd)
	}
	answer(t, off, cmd, devicepb.CommandStatus_COMMAND_STATUS_DONE, "")
	actortest.Eventually(t, 5*time.Second, "no pot drifts", func() bool {
		n.getJSON(t, "/api/v1/config/drift", http.StatusOK, &dl)
		return len(dl.Pots) == 0
	})

	// The pot's override wins; the pot refuses it: it drifts, with the pot's reason.
	over := map[string]any{"report_interval_s": 30, "heartbeat_interval_s": 30, "max_water_ms": 20000,
		"min_water_interval_s": 60, "thresholds": map[string]any{"soil_moisture_min_pct": 25, "temperature_max_c": 35}}
	n.post(t, http.MethodPut, "/api/v1/devices/pot-on/config", over, http.StatusOK, &d)
	if d.Source != "device" || d.InSync {
		t.Errorf("after the override: %+v, want source device, drifting", d)
	}
	cmd = nextCommand(t, on, 5*time.Second)
	if cmd.Config.GetReportIntervalS() != 30 {
		t.Fatalf("override pushed as %v, want report_interval_s 30", cmd.Config)
	}
	answer(t, on, cmd, devicepb.CommandStatus_COMMAND_STATUS_REJECTED, "interval too short")
	actortest.Eventually(t, 5*time.Second, "pot-on drifts with its reason", func() bool {
		n.getJSON(t, "/api/v1/config/drift", http.StatusOK, &dl)
		return len(dl.Pots) == 1 && dl.Pots[0].DeviceID == "pot-on" && dl.Pots[0].LastError == "interval too short"
	})
	// Removing the override brings back the product's, which the pot already runs: in sync.
	n.post(t, http.MethodDelete, "/api/v1/devices/pot-on/config", nil, http.StatusOK, &d)
	if !d.InSync || d.Source != "product" {
		t.Errorf("after removing the override: %+v, want the product's, in sync", d)
	}
}

// A pot that answers BUSY keeps the queued command at the head of its queue: it is sent again
// (same id) after QueueBusyRetry on the fake clock. A command sent whose pot then went away is
// under its ttl again, and expires when the ttl passes before the pot is back.
func TestQueuedCommandBusyRetryAndExpiryAfterSend(t *testing.T) {
	n := newFleet(t)
	secret := n.addDevice(t, "pot-busy")
	n.post(t, http.MethodPost, "/api/v1/devices/pot-busy/commands",
		map[string]any{"kind": "water", "water_ms": 1000, "queue": true, "ttl_s": 600, "command_id": "w1"}, http.StatusAccepted, nil)
	c := edgetest.Dial(t, n.edgeAddr, "pot-busy", secret)
	cmd := nextCommand(t, c, 5*time.Second)
	answer(t, c, cmd, devicepb.CommandStatus_COMMAND_STATUS_BUSY, "pump running")
	actortest.Eventually(t, 5*time.Second, "w1 back to queued", func() bool {
		l := n.commands(t, "pot-busy")
		return len(l.Queued) == 1 && l.Queued[0].State == "queued" && l.Queued[0].Sends == 1
	})
	noCommand(t, c, 150*time.Millisecond)
	n.clock.Advance(actors.DefaultQueueBusyRetry)
	again := nextCommand(t, c, 5*time.Second)
	if again.CommandId != "w1" {
		t.Fatalf("after the busy pause: %s, want w1 again", again.CommandId)
	}
	// The pot goes away without answering; the ttl (600 s from queueing) ends while it is away.
	_ = c.Close()
	actortest.Eventually(t, 5*time.Second, "the pot is offline", func() bool {
		var st StateJSON
		n.getJSON(t, "/api/v1/devices/pot-busy", http.StatusOK, &st)
		return !st.Online
	})
	n.clock.Advance(600 * time.Second)
	actortest.Eventually(t, 5*time.Second, "w1 expired", func() bool {
		l := n.commands(t, "pot-busy")
		return len(l.Queued) == 0 && len(l.Finished) == 1 && l.Finished[0].State == "expired"
	})
}

// On Postgres, a second node takes over a pot whose first node stopped (as after a failover): the
// queued command sent but not answered is sent again with the same id, and the queue goes on.
func TestQueuedCommandMovesToAnotherNodeOnPostgres(t *testing.T) {
	dsn := pgtest.New(t)
	clock := clockwork.NewFakeClock()
	open := func() actors.Store {
		st, err := postgres.Open(context.Background(), dsn, postgres.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	n1 := startFleetNodeOn(t, open(), clock, actors.DeviceOptions{})
	secret := n1.addDevice(t, "pot-pg")
	for _, id := range []string{"p1", "p2"} {
		n1.post(t, http.MethodPost, "/api/v1/devices/pot-pg/commands",
			map[string]any{"kind": "read_now", "queue": true, "command_id": id}, http.StatusAccepted, nil)
	}
	c := edgetest.Dial(t, n1.edgeAddr, "pot-pg", secret)
	if cmd := nextCommand(t, c, 5*time.Second); cmd.CommandId != "p1" {
		t.Fatalf("got %s, want p1", cmd.CommandId)
	}
	n1.stop()
	_ = c.Close()

	n2 := startFleetNodeOn(t, open(), clock, actors.DeviceOptions{})
	c2 := edgetest.Dial(t, n2.edgeAddr, "pot-pg", secret)
	for _, id := range []string{"p1", "p2"} {
		cmd := nextCommand(t, c2, 5*time.Second)
		if cmd.CommandId != id {
			t.Fatalf("on the second node: %s, want %s", cmd.CommandId, id)
		}
		answer(t, c2, cmd, devicepb.CommandStatus_COMMAND_STATUS_DONE, "")
	}
	actortest.Eventually(t, 5*time.Second, "both done on the second node", func() bool {
		l := n2.commands(t, "pot-pg")
		return len(l.Queued) == 0 && len(l.Finished) == 2 && l.Finished[0].CommandID == "p1"
	})
}
