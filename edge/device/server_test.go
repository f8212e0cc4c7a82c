package device_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/actors/actortest"
	"github.com/sprout-iot/sprout/cluster"
	"github.com/sprout-iot/sprout/edge/device"
	"github.com/sprout-iot/sprout/messages"
	"github.com/sprout-iot/sprout/messages/actorpb"
	"github.com/sprout-iot/sprout/messages/deviceclient"
	"github.com/sprout-iot/sprout/messages/devicepb"
	"github.com/sprout-iot/sprout/store/memory"
)

// node is one Sprout member with a device edge on a loopback port.
type node struct {
	store   actors.Store
	member  *cluster.Member
	edge    *device.Server
	addr    string
	notices chan *actorpb.DeviceNotice
}

func quietLogger() *slog.Logger {
	if os.Getenv("SPROUT_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
}

func startNode(t *testing.T, st actors.Store, opts device.Options) *node {
	t.Helper()
	return startNodeWith(t, st, actors.DeviceOptions{}, opts)
}

// startNodeWith is startNode with the device grains' options too.
func startNodeWith(t *testing.T, st actors.Store, grains actors.DeviceOptions, opts device.Options) *node {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return startNodeOn(t, ln, st, grains, opts)
}

// startNodeOn is startNodeWith with the edge serving ln.
func startNodeOn(t *testing.T, ln net.Listener, st actors.Store, grains actors.DeviceOptions, opts device.Options) *node {
	t.Helper()
	n := &node{store: st, notices: make(chan *actorpb.DeviceNotice, 1024)}
	log := quietLogger()
	grains.Store, grains.Logger = st, log
	grains.Notify = func(dn *actorpb.DeviceNotice) {
		select {
		case n.notices <- dn:
		default:
		}
	}
	kind := actors.NewDeviceKind(grains)
	m, err := cluster.Start(cluster.Options{Kinds: []*pcluster.Kind{kind}, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	n.member = m
	opts.Logger = log
	n.edge = device.NewServer(m.Cluster, opts)
	go func() { _ = n.edge.Serve(ln) }()
	n.addr = ln.Addr().String()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = n.edge.Shutdown(ctx)
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

func (n *node) connect(t *testing.T, id string, secret []byte) *deviceclient.Conn {
	t.Helper()
	c, err := deviceclient.Dial(n.addr, "", 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if _, err := c.Handshake(deviceclient.Hello{DeviceID: id, Secret: secret}, 5*time.Second); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	return c
}

func (n *node) command(t *testing.T, id string, m *actorpb.SendCommand) *actorpb.CommandOutcome {
	t.Helper()
	res, err := n.member.Cluster.Request(id, actors.DeviceKind, m, pcluster.WithTimeout(15*time.Second))
	if err != nil {
		t.Fatalf("command: %v", err)
	}
	return res.(*actorpb.CommandOutcome)
}

func (n *node) state(t *testing.T, id string) *actorpb.DeviceState {
	t.Helper()
	res, err := n.member.Cluster.Request(id, actors.DeviceKind, &actorpb.GetState{})
	if err != nil {
		t.Fatalf("state: %v", err)
	}
	return res.(*actorpb.DeviceState)
}

func expectClose(t *testing.T, err error, want devicepb.CloseReason) {
	t.Helper()
	var ec *deviceclient.ErrClosed
	if !errors.As(err, &ec) {
		t.Fatalf("want Close(%s), got %v", want, err)
	}
	if ec.Reason != want {
		t.Fatalf("want Close(%s), got Close(%s: %s)", want, ec.Reason, ec.Detail)
	}
}

func TestHandshakeAcceptsTheRightSecret(t *testing.T) {
	t.Parallel()
	n := startNode(t, memory.New(), device.Options{})
	secret := n.addDevice(t, "pot-1")
	c := n.connect(t, "pot-1", secret)
	if c.Welcome.SessionId == "" || c.Welcome.Config.GetReportIntervalS() == 0 {
		t.Fatalf("welcome lacks session or config: %v", c.Welcome)
	}
	actortest.Eventually(t, 5*time.Second, "online", func() bool { return n.state(t, "pot-1").Online })
}

func TestHandshakeRejections(t *testing.T) {
	t.Parallel()
	n := startNode(t, memory.New(), device.Options{})
	secret := n.addDevice(t, "pot-1")
	wrong := append([]byte(nil), secret...)
	wrong[0] ^= 1
	cases := []struct {
		name   string
		id     string
		secret []byte
		want   devicepb.CloseReason
	}{
		{"wrong secret", "pot-1", wrong, devicepb.CloseReason_CLOSE_REASON_AUTH_FAILED},
		{"unknown device", "pot-404", secret, devicepb.CloseReason_CLOSE_REASON_UNKNOWN_DEVICE},
		{"id too long", string(make([]byte, 65)), secret, devicepb.CloseReason_CLOSE_REASON_PROTOCOL_ERROR},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := deviceclient.Dial(n.addr, "", time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_, err = c.Handshake(deviceclient.Hello{DeviceID: tc.id, Secret: tc.secret}, 5*time.Second)
			expectClose(t, err, tc.want)
		})
	}
	if n.state(t, "pot-1").Online {
		t.Fatal("a rejected handshake must not bring the device online")
	}
	st := n.edge.Stats()
	if st.Closed["CLOSE_REASON_AUTH_FAILED"] != 1 || st.Closed["CLOSE_REASON_UNKNOWN_DEVICE"] != 1 {
		t.Fatalf("close reasons not counted: %v", st.Closed)
	}
}

func TestReplayedAuthIsRejected(t *testing.T) {
	t.Parallel()
	n := startNode(t, memory.New(), device.Options{})
	secret := n.addDevice(t, "pot-1")
	// Record a genuine Hello and Auth.
	c1, _ := deviceclient.Dial(n.addr, "", time.Second)
	defer c1.Close()
	nonce := make([]byte, 16)
	_, _ = rand.Read(nonce)
	hello := &devicepb.Frame{Body: &devicepb.Frame_Hello{Hello: &devicepb.Hello{DeviceId: "pot-1", ProtocolVersion: 1, DeviceNonce: nonce}}}
	_ = c1.Send(hello)
	f, err := c1.Recv(time.Second)
	if err != nil {
		t.Fatal(err)
	}
	auth := &devicepb.Frame{Body: &devicepb.Frame_Auth{Auth: &devicepb.Auth{Mac: macOf(secret, nonce, f.GetChallenge().ServerNonce, "pot-1")}}}
	_ = c1.Send(auth)
	if f, _ = c1.Recv(time.Second); f.GetWelcome() == nil {
		t.Fatalf("genuine auth refused: %v", f)
	}
	// An eavesdropper replays both on a new connection: the server's nonce differs, so it fails.
	c2, _ := deviceclient.Dial(n.addr, "", time.Second)
	defer c2.Close()
	_ = c2.Send(hello)
	if _, err := c2.Recv(time.Second); err != nil {
		t.Fatal(err)
	}
	_ = c2.Send(auth)
	f, err = c2.Recv(time.Second)
	if err != nil || f.GetClose().GetReason() != devicepb.CloseReason_CLOSE_REASON_AUTH_FAILED {
		t.Fatalf("replayed auth: want Close(AUTH_FAILED), got %v %v", f, err)
	}
}

func TestGarbageBeforeHelloIsRejected(t *testing.T) {
	t.Parallel()
	n := startNode(t, memory.New(), device.Options{})
	cases := map[string][]byte{
		"garbage":        {0x05, 0xff, 0xff, 0xff, 0xff, 0xff},
		"oversize frame": {0xff, 0xff, 0x03},
		"not hello":      {0x02, 0x32, 0x00}, // Frame{ack{}}: wellformed but out of order
	}
	want := map[string]devicepb.CloseReason{
		"garbage":        devicepb.CloseReason_CLOSE_REASON_PROTOCOL_ERROR,
		"oversize frame": devicepb.CloseReason_CLOSE_REASON_FRAME_TOO_LARGE,
		"not hello":      devicepb.CloseReason_CLOSE_REASON_PROTOCOL_ERROR,
	}
	for name, raw := range cases {
		t.Run(name, func(t *testing.T) {
			c, _ := deviceclient.Dial(n.addr, "", time.Second)
			defer c.Close()
			_ = c.SendRaw(raw)
			f, err := c.Recv(2 * time.Second)
			if err != nil || f.GetClose().GetReason() != want[name] {
				t.Fatalf("want Close(%s), got %v %v", want[name], f, err)
			}
		})
	}
	// Nothing else is affected: a good device still connects.
	secret := n.addDevice(t, "pot-ok")
	n.connect(t, "pot-ok", secret)
}

func TestHandshakeTimeout(t *testing.T) {
	t.Parallel()
	n := startNode(t, memory.New(), device.Options{HandshakeTimeout: 200 * time.Millisecond})
	c, _ := deviceclient.Dial(n.addr, "", time.Second)
	defer c.Close()
	f, err := c.Recv(2 * time.Second)
	if err != nil || f.GetClose().GetReason() != devicepb.CloseReason_CLOSE_REASON_HANDSHAKE_TIMEOUT {
		t.Fatalf("want Close(HANDSHAKE_TIMEOUT), got %v %v", f, err)
	}
}

func TestIdleDeviceGoesOffline(t *testing.T) {
	t.Parallel()
	n := startNode(t, memory.New(), device.Options{IdleTimeout: 300 * time.Millisecond})
	secret := n.addDevice(t, "pot-1")
	c := n.connect(t, "pot-1", secret)
	f, err := c.Recv(2 * time.Second)
	if err != nil || f.GetClose().GetReason() != devicepb.CloseReason_CLOSE_REASON_IDLE_TIMEOUT {
		t.Fatalf("want Close(IDLE_TIMEOUT), got %v %v", f, err)
	}
	actortest.Eventually(t, 5*time.Second, "offline", func() bool { return !n.state(t, "pot-1").Online })
}

func TestSecondConnectionReplacesTheFirst(t *testing.T) {
	t.Parallel()
	n := startNode(t, memory.New(), device.Options{})
	secret := n.addDevice(t, "pot-1")
	c1 := n.connect(t, "pot-1", secret)
	c2 := n.connect(t, "pot-1", secret)
	f, err := c1.Recv(2 * time.Second)
	if err != nil || f.GetClose().GetReason() != devicepb.CloseReason_CLOSE_REASON_REPLACED {
		t.Fatalf("first connection: want Close(REPLACED), got %v %v", f, err)
	}
	// The replaced connection's end must not take the device offline.
	if err := c2.Report(&devicepb.Telemetry{Seq: 1, SoilMoisturePct: 50, TemperatureC: 20, TankLevelPct: 80}, 2*time.Second, nil); err != nil {
		t.Fatal(err)
	}
	// Once the edge has let the first connection go (its Detach sent), the grain has seen it.
	actortest.Eventually(t, 5*time.Second, "the first connection released", func() bool { return n.edge.Stats().Open == 1 })
	if st := n.state(t, "pot-1"); !st.Online || st.Conn.SessionId != c2.Welcome.SessionId {
		t.Fatalf("device should be online on the second connection: %v", st)
	}
}

func reading(seq uint64, moisture float32) *devicepb.Telemetry {
	return &devicepb.Telemetry{Seq: seq, SoilMoisturePct: moisture, TemperatureC: 22, TankLevelPct: 80, SupplyMv: 3300}
}

func TestResentFrameIsAckedNotStoredTwice(t *testing.T) {
	t.Parallel()
	st := memory.New()
	n := startNode(t, st, device.Options{})
	secret := n.addDevice(t, "pot-1")
	c := n.connect(t, "pot-1", secret)
	for _, seq := range []uint64{1, 2, 2, 3, 1} {
		if err := c.Report(reading(seq, 50), 2*time.Second, nil); err != nil {
			t.Fatalf("seq %d: %v", seq, err)
		}
	}
	rs, _ := st.Readings(context.Background(), "pot-1", time.Time{}, time.Now().Add(time.Hour), 100)
	if len(rs) != 3 {
		t.Fatalf("want 3 stored readings, got %d", len(rs))
	}
	c2 := n.connect(t, "pot-1", secret)
	if c2.Welcome.LastSeq != 3 {
		t.Fatalf("Welcome.last_seq = %d, want 3", c2.Welcome.LastSeq)
	}
}

// noticesSoFar returns the notices the grain of id has sent for everything it received before:
// the grain notifies on its own goroutine, so once it has answered a later GetState they are all
// in the channel.
func noticesSoFar(t *testing.T, n *node, id string) []*actorpb.DeviceNotice {
	t.Helper()
	n.state(t, id)
	var out []*actorpb.DeviceNotice
	for {
		select {
		case dn := <-n.notices:
			out = append(out, dn)
		default:
			return out
		}
	}
}

// alertNotices is noticesSoFar's alerts.
func alertNotices(t *testing.T, n *node, id string) []*actorpb.Alert {
	t.Helper()
	var out []*actorpb.Alert
	for _, dn := range noticesSoFar(t, n, id) {
		if a := dn.GetAlert(); a != nil {
			out = append(out, a)
		}
	}
	return out
}

func TestDryingRaisesOneAlertAndWateringClearsIt(t *testing.T) {
	t.Parallel()
	n := startNode(t, memory.New(), device.Options{})
	secret := n.addDevice(t, "pot-1")
	c := n.connect(t, "pot-1", secret)
	// Drying past 20 %, flapping inside the 20..25 band, then watered to 60 %, then dry again.
	seq := uint64(0)
	for _, m := range []float32{40, 30, 21, 19, 18, 21, 19, 24, 19, 60, 19} {
		seq++
		if err := c.Report(reading(seq, m), 2*time.Second, nil); err != nil {
			t.Fatal(err)
		}
	}
	got := alertNotices(t, n, "pot-1")
	var kinds []string
	for _, a := range got {
		kinds = append(kinds, fmt.Sprintf("%s:%v", a.Kind, a.Active))
	}
	want := []string{"ALERT_KIND_SOIL_DRY:true", "ALERT_KIND_SOIL_DRY:false", "ALERT_KIND_SOIL_DRY:true"}
	if fmt.Sprint(kinds) != fmt.Sprint(want) {
		t.Fatalf("alerts: got %v, want %v", kinds, want)
	}
}

func TestFramesArrivingTogetherRaiseOneAlert(t *testing.T) {
	t.Parallel()
	n := startNode(t, memory.New(), device.Options{})
	secret := n.addDevice(t, "pot-1")
	// Two connections race (the second replaces the first, but both frames may be in flight),
	// plus a burst of dry readings sent without waiting for acks.
	c := n.connect(t, "pot-1", secret)
	for seq := uint64(1); seq <= 20; seq++ {
		_ = c.Send(&devicepb.Frame{Body: &devicepb.Frame_Telemetry{Telemetry: reading(seq, 5)}})
	}
	if err := c.AwaitAck(20, 5*time.Second, nil); err != nil {
		t.Fatal(err)
	}
	raised := 0
	for _, a := range alertNotices(t, n, "pot-1") {
		if a.Active {
			raised++
		}
	}
	if raised != 1 {
		t.Fatalf("want exactly one alert from a burst of dry frames, got %d", raised)
	}
}

// runDevice answers commands on c like a pot would, until the connection ends.
func runDevice(c *deviceclient.Conn, status devicepb.CommandStatus, seen *sync.Map) {
	for {
		f, err := c.Recv(0)
		if err != nil {
			return
		}
		if cmd := f.GetCommand(); cmd != nil {
			if seen != nil {
				if _, dup := seen.LoadOrStore(cmd.CommandId, true); dup {
					continue
				}
			}
			_ = c.Send(&devicepb.Frame{Body: &devicepb.Frame_CommandResult{CommandResult: &devicepb.CommandResult{
				CommandId: cmd.CommandId, Status: status, Detail: "watering done", WateredMl: cmd.WaterMs / 100}}})
		}
	}
}

func water(id string, timeout time.Duration) *actorpb.SendCommand {
	return &actorpb.SendCommand{CommandId: id, Kind: devicepb.CommandKind_COMMAND_KIND_WATER, WaterMs: 3000,
		TimeoutMs: uint32(timeout / time.Millisecond), RequestedBy: "test"}
}

func TestCommandToOnlineDeviceDeliversOneResult(t *testing.T) {
	t.Parallel()
	n := startNode(t, memory.New(), device.Options{})
	secret := n.addDevice(t, "pot-1")
	c := n.connect(t, "pot-1", secret)
	go runDevice(c, devicepb.CommandStatus_COMMAND_STATUS_DONE, nil)
	out := n.command(t, "pot-1", water("cmd-1", 5*time.Second))
	if out.Outcome != actorpb.Outcome_OUTCOME_DONE || out.WateredMl != 30 {
		t.Fatalf("want done with 30 ml, got %v", out)
	}
	// Asking again with the same id returns the same outcome; the pot is not watered twice.
	again := n.command(t, "pot-1", water("cmd-1", 5*time.Second))
	if again.Outcome != actorpb.Outcome_OUTCOME_DONE || again.AtMs != out.AtMs {
		t.Fatalf("repeat: want the first outcome, got %v", again)
	}
}

func TestCommandToOfflineDeviceFailsAtOnce(t *testing.T) {
	t.Parallel()
	n := startNode(t, memory.New(), device.Options{})
	n.addDevice(t, "pot-1")
	start := time.Now()
	out := n.command(t, "pot-1", water("cmd-1", 10*time.Second))
	if out.Outcome != actorpb.Outcome_OUTCOME_OFFLINE {
		t.Fatalf("want offline, got %v", out)
	}
	if time.Since(start) > time.Second {
		t.Fatalf("offline answer took %v", time.Since(start))
	}
}

func TestCommandToUnknownDevice(t *testing.T) {
	t.Parallel()
	n := startNode(t, memory.New(), device.Options{})
	if out := n.command(t, "nope", water("cmd-1", time.Second)); out.Outcome != actorpb.Outcome_OUTCOME_UNKNOWN_DEVICE {
		t.Fatalf("want unknown device, got %v", out)
	}
}

func TestInvalidCommandsAreRefused(t *testing.T) {
	t.Parallel()
	n := startNode(t, memory.New(), device.Options{})
	n.addDevice(t, "pot-1")
	for name, m := range map[string]*actorpb.SendCommand{
		"no id":         {Kind: devicepb.CommandKind_COMMAND_KIND_WATER, WaterMs: 10},
		"timeout short": water("a", 500*time.Millisecond),
		"timeout long":  water("b", 301*time.Second),
		"no kind":       {CommandId: "c"},
		"no water_ms":   {CommandId: "d", Kind: devicepb.CommandKind_COMMAND_KIND_WATER},
	} {
		if out := n.command(t, "pot-1", m); out.Outcome != actorpb.Outcome_OUTCOME_INVALID {
			t.Errorf("%s: want invalid, got %v", name, out)
		}
	}
}

func TestSilentDeviceTimesOutAtTheDeadline(t *testing.T) {
	t.Parallel()
	n := startNode(t, memory.New(), device.Options{})
	secret := n.addDevice(t, "pot-1")
	c := n.connect(t, "pot-1", secret)
	start := time.Now()
	out := n.command(t, "pot-1", water("cmd-1", time.Second))
	took := time.Since(start)
	if out.Outcome != actorpb.Outcome_OUTCOME_TIMED_OUT {
		t.Fatalf("want timed out, got %v", out)
	}
	if took < time.Second || took > 2*time.Second {
		t.Fatalf("timed out after %v, want about 1 s", took)
	}
	// The timeout is pushed to whoever asked exactly once. The notice travels apart from the
	// command's reply, so wait for it before sending the late result.
	waitOutcomeNotice(t, n, actorpb.Outcome_OUTCOME_TIMED_OUT)
	// The late result is recorded but not delivered again.
	_ = c.Send(&devicepb.Frame{Body: &devicepb.Frame_CommandResult{CommandResult: &devicepb.CommandResult{
		CommandId: "cmd-1", Status: devicepb.CommandStatus_COMMAND_STATUS_DONE}}})
	actortest.Eventually(t, 5*time.Second, "the late result in the event log", func() bool {
		evs, _ := n.store.Events(context.Background(), "pot-1", time.Time{}, time.Now().Add(time.Hour), 100)
		for _, e := range evs {
			if e.Kind == actors.EventKindCommandOutcome && contains(string(e.Body), "late") {
				return true
			}
		}
		return false
	})
	for _, dn := range noticesSoFar(t, n, "pot-1") {
		if o := dn.GetOutcome(); o != nil {
			t.Fatalf("late result delivered again: %v", o)
		}
	}
	if again := n.command(t, "pot-1", water("cmd-1", time.Second)); again.Outcome != actorpb.Outcome_OUTCOME_TIMED_OUT {
		t.Fatalf("the recorded outcome changed: %v", again)
	}
}

// waitOutcomeNotice waits for the notice that carries a command's outcome, skipping others.
func waitOutcomeNotice(t *testing.T, n *node, want actorpb.Outcome) {
	t.Helper()
	deadline := time.After(3 * time.Second)
	for {
		select {
		case dn := <-n.notices:
			if o := dn.GetOutcome(); o != nil {
				if o.Outcome != want {
					t.Fatalf("want a %v notice, got %v", want, o)
				}
				return
			}
		case <-deadline:
			t.Fatalf("no %v notice within 3 s", want)
		}
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

func TestCommandsGoToTheNewConnectionAfterAReconnect(t *testing.T) {
	t.Parallel()
	n := startNode(t, memory.New(), device.Options{})
	secret := n.addDevice(t, "pot-1")
	c1 := n.connect(t, "pot-1", secret)
	seen := &sync.Map{}
	// The command reaches c1, which drops without answering; the device reconnects on c2, gets the
	// command again, and (remembering the id) answers it once.
	done := make(chan *actorpb.CommandOutcome, 1)
	go func() { done <- n.command(t, "pot-1", water("cmd-1", 5*time.Second)) }()
	f, err := c1.Recv(2 * time.Second)
	if err != nil || f.GetCommand().GetCommandId() != "cmd-1" {
		t.Fatalf("first connection: want the command, got %v %v", f, err)
	}
	seen.Store("cmd-1-first", true)
	_ = c1.Close()
	c2 := n.connect(t, "pot-1", secret)
	go runDevice(c2, devicepb.CommandStatus_COMMAND_STATUS_DONE, seen)
	select {
	case out := <-done:
		if out.Outcome != actorpb.Outcome_OUTCOME_DONE {
			t.Fatalf("want done via the new connection, got %v", out)
		}
	case <-time.After(6 * time.Second):
		t.Fatal("no outcome")
	}
	// A command sent now goes to c2 as well.
	if out := n.command(t, "pot-1", water("cmd-2", 5*time.Second)); out.Outcome != actorpb.Outcome_OUTCOME_DONE {
		t.Fatalf("want done, got %v", out)
	}
}

func TestMaxConnections(t *testing.T) {
	t.Parallel()
	n := startNode(t, memory.New(), device.Options{MaxConnections: 1})
	secret := n.addDevice(t, "pot-1")
	n.connect(t, "pot-1", secret)
	c, _ := deviceclient.Dial(n.addr, "", time.Second)
	defer c.Close()
	f, err := c.Recv(2 * time.Second)
	if err != nil || f.GetClose().GetReason() != devicepb.CloseReason_CLOSE_REASON_TOO_MANY_CONNECTIONS {
		t.Fatalf("want Close(TOO_MANY_CONNECTIONS), got %v %v", f, err)
	}
}

func TestGracefulShutdownTellsDevicesToReconnect(t *testing.T) {
	t.Parallel()
	n := startNode(t, memory.New(), device.Options{})
	secret := n.addDevice(t, "pot-1")
	c := n.connect(t, "pot-1", secret)
	go func() { _ = n.edge.Shutdown(context.Background()) }()
	f, err := c.Recv(2 * time.Second)
	if err != nil || f.GetClose().GetReason() != devicepb.CloseReason_CLOSE_REASON_SERVER_SHUTDOWN {
		t.Fatalf("want Close(SERVER_SHUTDOWN), got %v %v", f, err)
	}
}

func macOf(secret, dn, sn []byte, id string) []byte { return messages.MAC(secret, dn, sn, id) }

// loadCounter counts each device grain's activations: each one loads its device from the store.
type loadCounter struct {
	actors.Store
	mu    sync.Mutex
	loads map[string]int
}

func (l *loadCounter) GetDevice(ctx context.Context, id string) (actors.Device, error) {
	l.mu.Lock()
	l.loads[id]++
	l.mu.Unlock()
	return l.Store.GetDevice(ctx, id)
}

func (l *loadCounter) activations(id string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.loads[id]
}

// activation is the local PID of id's grain, activating it if need be.
func (n *node) activation(t *testing.T, id string) *actor.PID {
	t.Helper()
	pid := n.member.Cluster.Get(id, actors.DeviceKind)
	if pid == nil {
		t.Fatalf("no grain for %s", id)
	}
	return pid
}

// alive reports whether a local actor still runs.
func (n *node) alive(pid *actor.PID) bool {
	_, ok := n.member.Cluster.ActorSystem.ProcessRegistry.GetLocal(pid.Id)
	return ok
}

func TestIdleGrainsPassivateAndOnlineOnesStay(t *testing.T) {
	t.Parallel()
	st := &loadCounter{Store: memory.New(), loads: map[string]int{}}
	const idle = 200 * time.Millisecond
	n := startNodeWith(t, st, actors.DeviceOptions{IdleTimeout: idle}, device.Options{})
	secret := n.addDevice(t, "pot-1")
	n.addDevice(t, "pot-2")
	c := n.connect(t, "pot-1", secret)
	go runDevice(c, devicepb.CommandStatus_COMMAND_STATUS_DONE, nil)
	n.state(t, "pot-2") // loaded, known, offline
	online, offline := n.activation(t, "pot-1"), n.activation(t, "pot-2")
	// pot-2, offline, passivates after its idle timeout; pot-1, online all that time, stays.
	actortest.Eventually(t, 5*time.Second, "the offline grain passivated", func() bool { return !n.alive(offline) })
	if !n.alive(online) || !n.state(t, "pot-1").Online || st.activations("pot-1") != 1 {
		t.Fatalf("an online grain passivated: online=%v, activations=%d", n.state(t, "pot-1").Online, st.activations("pot-1"))
	}
	// Offline and idle: pot-1's grain passivates too; asking again activates it anew from storage.
	_ = c.Close()
	actortest.Eventually(t, 5*time.Second, "the pot offline", func() bool { return !n.state(t, "pot-1").Online })
	actortest.Eventually(t, 5*time.Second, "the grain passivated once offline", func() bool { return !n.alive(online) })
	if s := n.state(t, "pot-1"); !s.Known || s.Online {
		t.Fatalf("after passivation: %v", s)
	}
	if got := st.activations("pot-1"); got != 2 {
		t.Fatalf("%d activations, want 2: the offline grain did not passivate", got)
	}
}

func TestAPotThatReconnectsInALoopIsHeldOff(t *testing.T) {
	t.Parallel()
	const ban = 1500 * time.Millisecond
	n := startNodeWith(t, memory.New(), actors.DeviceOptions{FlapConnects: 3, FlapWindow: time.Minute, FlapBan: ban}, device.Options{})
	secret := n.addDevice(t, "pot-1")
	dial := func(s []byte) error {
		c, err := deviceclient.Dial(n.addr, "", 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, err = c.Handshake(deviceclient.Hello{DeviceID: "pot-1", Secret: s}, 5*time.Second)
		return err
	}
	// Wrong secrets do not count: no one without the secret can lock the pot out.
	wrong := bytes.Repeat([]byte{7}, 32)
	for range 5 {
		if err := dial(wrong); err == nil {
			t.Fatal("a wrong secret was accepted")
		}
	}
	for i := range 3 {
		if err := dial(secret); err != nil {
			t.Fatalf("connect %d of 3 within the limit: %v", i+1, err)
		}
	}
	// The fourth within the minute is refused, with a hint to come back when the ban ends.
	var ce *deviceclient.ErrClosed
	if err := dial(secret); !errors.As(err, &ce) || ce.Reason != devicepb.CloseReason_CLOSE_REASON_UNAVAILABLE ||
		ce.ReconnectAfterMs == 0 || ce.ReconnectAfterMs > uint32(ban/time.Millisecond)+1 || !strings.Contains(ce.Detail, "too often") {
		t.Fatalf("a fourth connect within a minute: want Close(UNAVAILABLE) with a reconnect hint <= %v, got %v (%+v)", ban, err, ce)
	}
	if err := dial(secret); !errors.As(err, &ce) || ce.Reason != devicepb.CloseReason_CLOSE_REASON_UNAVAILABLE {
		t.Fatalf("during the ban: want Close(UNAVAILABLE), got %v", err)
	}
	// The ban is in the event log, once.
	evs, _ := n.store.Events(context.Background(), "pot-1", time.Time{}, time.Now().Add(time.Hour), 100)
	bans := 0
	for _, e := range evs {
		if e.Kind == actors.EventKindFlapping {
			bans++
		}
	}
	if bans != 1 {
		t.Fatalf("%d flapping events in the log, want 1", bans)
	}
	// The grains' clock is real time here: the pot is let in again once the ban has passed.
	start := time.Now()
	actortest.Eventually(t, 3*ban, "the pot let in after the ban", func() bool { return dial(secret) == nil })
	if waited := time.Since(start); waited < ban/2 {
		t.Fatalf("let in again after %v, before the ban of %v ended", waited, ban)
	}
}
