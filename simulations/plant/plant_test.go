package plant_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sprout-iot/sprout/actors/actortest"
	"github.com/sprout-iot/sprout/messages/devicepb"
	"github.com/sprout-iot/sprout/simulations/plant"
)

func commandConfig() *devicepb.Config {
	return &devicepb.Config{
		ReportIntervalS: 3600, HeartbeatIntervalS: 30, MaxWaterMs: 1000, MinWaterIntervalS: 60,
		Thresholds: &devicepb.Thresholds{SoilMoistureMinPct: 20, TemperatureMaxC: 35, TankEmptyPct: 5, HysteresisPct: 5},
	}
}

func TestReadingsHaveContiguousSeqsAndAreAllAckedByShutdown(t *testing.T) {
	srv := newServer(t, commandConfig(), true)
	cfg := testConfig(srv.addr())
	cfg.ReportInterval = 2 * time.Millisecond
	cfg.Window = 4
	p := plant.New(cfg)
	stop := run(t, p)
	sc := srv.next(t)
	for want := uint64(1); want <= 50; want++ {
		f := sc.expect(t, "telemetry", isTelemetry)
		if got := f.GetTelemetry().Seq; got != want {
			t.Fatalf("seq %d, want %d", got, want)
		}
	}
	stop()
	sc.expect(t, "Close from the device", func(f *devicepb.Frame) bool { return f.GetClose() != nil })
	st := p.Stats()
	if sent, acked := st.FramesSent.Load(), st.FramesAcked.Load(); sent != acked || acked < 50 {
		t.Fatalf("sent %d, acked %d: want equal and >= 50", sent, acked)
	}
	if st.AckLatency.Count() != st.FramesAcked.Load() || st.AckLatency.Quantile(0.5) <= 0 {
		t.Fatalf("latency samples %d for %d acks, p50 %v", st.AckLatency.Count(), st.FramesAcked.Load(), st.AckLatency.Quantile(0.5))
	}
}

func TestUnackedFramesAreResentInOrderAfterReconnect(t *testing.T) {
	for _, tc := range []struct {
		name          string
		lastSeq       uint64 // Welcome.last_seq on the second connection
		wantFirst     uint64
		wantByWelcome uint64
	}{
		{"server stored what it acked", 2, 3, 0},
		{"server stored more than it acked", 4, 5, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t, commandConfig(), false)
			cfg := testConfig(srv.addr())
			cfg.ReportInterval = 2 * time.Millisecond
			cfg.Window = 8
			var mu sync.Mutex
			resent := map[uint64]bool{}
			cfg.Observer = func(o plant.Observation) {
				if o.Kind == plant.Sent && o.Resend {
					mu.Lock()
					resent[o.Seq] = true
					mu.Unlock()
				}
			}
			p := plant.New(cfg)
			run(t, p)

			first := srv.next(t)
			first.expect(t, "seq 6", func(f *devicepb.Frame) bool { return f.GetTelemetry().GetSeq() == 6 })
			first.ack(t, 1)
			first.ack(t, 2)
			srv.lastSeq.Store(tc.lastSeq)
			srv.autoAck.Store(true)
			_ = first.Send(&devicepb.Frame{Body: &devicepb.Frame_Close{Close: &devicepb.Close{
				Reason: devicepb.CloseReason_CLOSE_REASON_SERVER_SHUTDOWN, ReconnectAfterMs: 10}}})
			first.Close()

			second := srv.next(t)
			for want := tc.wantFirst; want < tc.wantFirst+20; want++ {
				f := second.expect(t, "telemetry", isTelemetry)
				if got := f.GetTelemetry().Seq; got != want {
					t.Fatalf("after reconnect got seq %d, want %d", got, want)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if !resent[tc.wantFirst] || resent[tc.wantFirst-1] {
				t.Fatalf("resent seqs %v: want %d resent and nothing at or below last_seq", resent, tc.wantFirst)
			}
			st := p.Stats()
			if got := st.FramesAckedByWelcome.Load(); got != tc.wantByWelcome {
				t.Fatalf("acked by Welcome %d, want %d", got, tc.wantByWelcome)
			}
			if st.Reconnects.Load() != 1 {
				t.Fatalf("reconnects %d, want 1", st.Reconnects.Load())
			}
		})
	}
}

func TestSeqContinuesAfterWelcomeLastSeqWhenCounterIsBehind(t *testing.T) {
	for _, tc := range []struct {
		name         string
		counter      uint64
		lastSeq      uint64
		wantFirstSeq uint64
	}{
		{"wiped device continues after the server", 0, 1000, 1001},
		{"device ahead keeps its counter", 5000, 1000, 5001},
		{"new device starts at 1", 0, 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t, commandConfig(), true)
			srv.lastSeq.Store(tc.lastSeq)
			cfg := testConfig(srv.addr())
			cfg.ReportInterval = 5 * time.Millisecond
			p := plant.New(cfg)
			p.SetSeq(tc.counter)
			run(t, p)
			sc := srv.next(t)
			if got := sc.expect(t, "telemetry", isTelemetry).GetTelemetry().Seq; got != tc.wantFirstSeq {
				t.Fatalf("first seq %d, want %d", got, tc.wantFirstSeq)
			}
		})
	}
}

func TestFullRingDropsOldestAndResendsTheRest(t *testing.T) {
	srv := newServer(t, commandConfig(), false)
	cfg := testConfig(srv.addr())
	cfg.ReportInterval = 2 * time.Millisecond
	cfg.Window = 2
	cfg.RingSize = 4
	p := plant.New(cfg)
	run(t, p)
	first := srv.next(t)
	first.expect(t, "seq 2", func(f *devicepb.Frame) bool { return f.GetTelemetry().GetSeq() == 2 })
	actortest.Eventually(t, 5*time.Second, "10 frames dropped from the full ring", func() bool { return p.Stats().FramesDropped.Load() >= 10 })
	if p.Level().Unacked > 4 {
		t.Fatalf("ring holds %d frames, limit 4", p.Level().Unacked)
	}
	srv.autoAck.Store(true)
	first.Close()
	second := srv.next(t)
	a := second.expect(t, "telemetry", isTelemetry).GetTelemetry().Seq
	b := second.expect(t, "telemetry", isTelemetry).GetTelemetry().Seq
	if a <= 2 || b != a+1 {
		t.Fatalf("after drops got seqs %d, %d: want the oldest kept frame (> 2) and then the next", a, b)
	}
	if p.Stats().FramesDropped.Load() < 10 {
		t.Fatalf("dropped %d frames, want >= 10", p.Stats().FramesDropped.Load())
	}
}

func TestCommandIDRunsAtMostOnce(t *testing.T) {
	srv := newServer(t, commandConfig(), true)
	p := plant.New(testConfig(srv.addr()))
	run(t, p)
	sc := srv.next(t)
	before := p.Level().MoisturePct
	cmd := &devicepb.Command{CommandId: "c1", Kind: devicepb.CommandKind_COMMAND_KIND_WATER, WaterMs: 500}
	sc.command(t, cmd)
	r1 := sc.result(t, "c1")
	sc.command(t, cmd)
	r2 := sc.result(t, "c1")
	if r1.Status != devicepb.CommandStatus_COMMAND_STATUS_DONE || r1.WateredMl != 5 {
		t.Fatalf("first result %v: want DONE with 5 ml (10 ml/s for 0.5 s)", r1)
	}
	if r2.Status != r1.Status || r2.WateredMl != r1.WateredMl || r2.Detail != r1.Detail {
		t.Fatalf("repeated id got %v, want the earlier %v", r2, r1)
	}
	st := p.Stats()
	if st.CommandsDone(devicepb.CommandStatus_COMMAND_STATUS_DONE) != 1 || st.CommandsRepeated.Load() != 1 {
		t.Fatalf("done %d, repeated %d: want 1 and 1", st.CommandsDone(devicepb.CommandStatus_COMMAND_STATUS_DONE), st.CommandsRepeated.Load())
	}
	// 5 ml at 0.2 %/ml is +1 %; drying over a second of real time is negligible.
	if got := p.Level().MoisturePct - before; got < 0.9 || got > 1.01 {
		t.Fatalf("moisture rose by %.2f, want about 1 (watered once)", got)
	}
}

func TestWaterWhilePumpRunsIsBusy(t *testing.T) {
	srv := newServer(t, commandConfig(), true)
	run(t, plant.New(testConfig(srv.addr())))
	sc := srv.next(t)
	sc.command(t, &devicepb.Command{CommandId: "long", Kind: devicepb.CommandKind_COMMAND_KIND_WATER, WaterMs: 800})
	sc.command(t, &devicepb.Command{CommandId: "second", Kind: devicepb.CommandKind_COMMAND_KIND_WATER, WaterMs: 100})
	sc.command(t, &devicepb.Command{CommandId: "reboot", Kind: devicepb.CommandKind_COMMAND_KIND_REBOOT})
	for _, id := range []string{"second", "reboot"} {
		if r := sc.result(t, id); r.Status != devicepb.CommandStatus_COMMAND_STATUS_BUSY {
			t.Fatalf("%s while pumping: %v, want BUSY", id, r)
		}
	}
	if r := sc.result(t, "long"); r.Status != devicepb.CommandStatus_COMMAND_STATUS_DONE {
		t.Fatalf("long: %v, want DONE", r)
	}
}

func TestUnsafeOrLateWaterIsRejected(t *testing.T) {
	water := func(id string, ms uint32) *devicepb.Command {
		return &devicepb.Command{CommandId: id, Kind: devicepb.CommandKind_COMMAND_KIND_WATER, WaterMs: ms}
	}
	for _, tc := range []struct {
		name       string
		tune       func(*plant.Config)
		before     *devicepb.Command // run to completion first
		cmd        *devicepb.Command
		wantDetail string
	}{
		{"longer than max_water_ms", nil, nil, water("c", 2000), "too long"},
		{"zero duration", nil, nil, water("c", 0), "water_ms is 0"},
		{"tank at the empty threshold", func(c *plant.Config) { c.StartTank = 5 }, nil, water("c", 100), "tank empty"},
		{"sooner than min_water_interval_s", nil, water("first", 100), water("c", 100), "too soon"},
		{"deadline passed before start", func(c *plant.Config) { c.CommandDelay = 100 * time.Millisecond },
			nil, &devicepb.Command{CommandId: "c", Kind: devicepb.CommandKind_COMMAND_KIND_WATER, WaterMs: 100, DeadlineMs: 20}, "deadline"},
		{"unknown kind", nil, nil, &devicepb.Command{CommandId: "c"}, "unknown command kind"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t, commandConfig(), true)
			cfg := testConfig(srv.addr())
			if tc.tune != nil {
				tc.tune(&cfg)
			}
			p := plant.New(cfg)
			run(t, p)
			sc := srv.next(t)
			if tc.before != nil {
				sc.command(t, tc.before)
				if r := sc.result(t, tc.before.CommandId); r.Status != devicepb.CommandStatus_COMMAND_STATUS_DONE {
					t.Fatalf("setup command: %v", r)
				}
			}
			sc.command(t, tc.cmd)
			r := sc.result(t, tc.cmd.CommandId)
			if r.Status != devicepb.CommandStatus_COMMAND_STATUS_REJECTED || !strings.Contains(r.Detail, tc.wantDetail) || r.WateredMl != 0 {
				t.Fatalf("got %v, want REJECTED with %q", r, tc.wantDetail)
			}
			if len(r.Detail) > 64 {
				t.Fatalf("detail is %d bytes, limit 64", len(r.Detail))
			}
		})
	}
}

func TestPumpFaultFailsTheCommandAndRaisesAnEvent(t *testing.T) {
	srv := newServer(t, commandConfig(), true)
	cfg := testConfig(srv.addr())
	cfg.PumpFaultProbability = 1
	run(t, plant.New(cfg))
	sc := srv.next(t)
	sc.command(t, &devicepb.Command{CommandId: "c", Kind: devicepb.CommandKind_COMMAND_KIND_WATER, WaterMs: 100})
	ev := sc.expect(t, "PUMP_FAULT event", func(f *devicepb.Frame) bool { return f.GetEvent() != nil })
	if ev.GetEvent().Kind != devicepb.EventKind_EVENT_KIND_PUMP_FAULT || ev.GetEvent().Seq != 1 {
		t.Fatalf("event %v: want PUMP_FAULT with seq 1", ev.GetEvent())
	}
	if r := sc.result(t, "c"); r.Status != devicepb.CommandStatus_COMMAND_STATUS_FAILED {
		t.Fatalf("got %v, want FAILED", r)
	}
}

func TestTankRunningDryRaisesTankEmptyAndRefillClearsIt(t *testing.T) {
	srv := newServer(t, commandConfig(), true)
	cfg := testConfig(srv.addr())
	cfg.StartTank = 5.5 // 1000 ml tank: 100 ms at 10 ml/s takes 0.1 %
	p := plant.New(cfg)
	run(t, p)
	sc := srv.next(t)
	sc.command(t, &devicepb.Command{CommandId: "c", Kind: devicepb.CommandKind_COMMAND_KIND_WATER, WaterMs: 1000})
	if r := sc.result(t, "c"); r.Status != devicepb.CommandStatus_COMMAND_STATUS_DONE || r.WateredMl != 10 {
		t.Fatalf("got %v, want DONE with 10 ml", r)
	}
	ev := sc.expect(t, "event", func(f *devicepb.Frame) bool { return f.GetEvent() != nil }).GetEvent()
	if ev.Kind != devicepb.EventKind_EVENT_KIND_TANK_EMPTY {
		t.Fatalf("event %v, want TANK_EMPTY", ev)
	}
	p.Refill(90)
	ev = sc.expect(t, "event", func(f *devicepb.Frame) bool { return f.GetEvent() != nil }).GetEvent()
	if ev.Kind != devicepb.EventKind_EVENT_KIND_TANK_REFILLED {
		t.Fatalf("event %v, want TANK_REFILLED", ev)
	}
}

func TestSilentPlantNeverAnswersCommands(t *testing.T) {
	srv := newServer(t, commandConfig(), true)
	cfg := testConfig(srv.addr())
	cfg.IgnoreCommands = true
	p := plant.New(cfg)
	run(t, p)
	sc := srv.next(t)
	sc.command(t, &devicepb.Command{CommandId: "c", Kind: devicepb.CommandKind_COMMAND_KIND_READ_NOW})
	sc.quiet(t, 300*time.Millisecond, "result", func(f *devicepb.Frame) bool { return f.GetCommandResult() != nil })
	if p.Stats().CommandsReceived.Load() != 1 {
		t.Fatalf("commands received %d, want 1", p.Stats().CommandsReceived.Load())
	}
}

func TestReadNowSendsTelemetryAtOnce(t *testing.T) {
	srv := newServer(t, commandConfig(), true)
	run(t, plant.New(testConfig(srv.addr())))
	sc := srv.next(t)
	sc.command(t, &devicepb.Command{CommandId: "r", Kind: devicepb.CommandKind_COMMAND_KIND_READ_NOW})
	tm := sc.expect(t, "telemetry", isTelemetry).GetTelemetry()
	if tm.SoilMoisturePct < 50 || tm.SoilMoisturePct > 61 || tm.TankLevelPct != 100 {
		t.Fatalf("reading %v: want moisture near the start value 60 and a full tank", tm)
	}
	if r := sc.result(t, "r"); r.Status != devicepb.CommandStatus_COMMAND_STATUS_DONE {
		t.Fatalf("got %v, want DONE", r)
	}
}

func TestSetConfigChangesTheReportInterval(t *testing.T) {
	srv := newServer(t, commandConfig(), true)
	cfg := testConfig(srv.addr())
	cfg.ReportInterval = 0 // follow the server: 3600 s
	cfg.Speed = 20         // so 1 simulated second is 50 ms
	run(t, plant.New(cfg))
	sc := srv.next(t)
	nc := commandConfig()
	nc.ReportIntervalS = 1
	sc.command(t, &devicepb.Command{CommandId: "s", Kind: devicepb.CommandKind_COMMAND_KIND_SET_CONFIG, Config: nc})
	if r := sc.result(t, "s"); r.Status != devicepb.CommandStatus_COMMAND_STATUS_DONE {
		t.Fatalf("got %v, want DONE", r)
	}
	start := time.Now()
	for i := 0; i < 3; i++ {
		sc.expect(t, "telemetry", isTelemetry)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("3 readings took %v, want about 150 ms", d)
	}
}

func TestRebootAnswersThenReconnects(t *testing.T) {
	srv := newServer(t, commandConfig(), true)
	cfg := testConfig(srv.addr())
	cfg.RebootTime = 50 * time.Millisecond
	p := plant.New(cfg)
	run(t, p)
	sc := srv.next(t)
	sc.command(t, &devicepb.Command{CommandId: "b", Kind: devicepb.CommandKind_COMMAND_KIND_REBOOT})
	if r := sc.result(t, "b"); r.Status != devicepb.CommandStatus_COMMAND_STATUS_DONE {
		t.Fatalf("got %v, want DONE", r)
	}
	second := srv.next(t)
	second.command(t, &devicepb.Command{CommandId: "b", Kind: devicepb.CommandKind_COMMAND_KIND_REBOOT})
	if r := second.result(t, "b"); r.Status != devicepb.CommandStatus_COMMAND_STATUS_DONE {
		t.Fatalf("repeated reboot id: %v, want the earlier DONE", r)
	}
	second.quiet(t, 200*time.Millisecond, "close", func(f *devicepb.Frame) bool { return f.GetClose() != nil })
	if p.Stats().Reconnects.Load() != 1 {
		t.Fatalf("reconnects %d, want 1 (a repeated REBOOT id must not reboot again)", p.Stats().Reconnects.Load())
	}
}

func TestPingsWhenIdleAndAnswersPings(t *testing.T) {
	c := commandConfig()
	c.HeartbeatIntervalS = 1
	srv := newServer(t, c, true)
	p := plant.New(testConfig(srv.addr()))
	run(t, p)
	sc := srv.next(t)
	_ = sc.Send(&devicepb.Frame{Body: &devicepb.Frame_Ping{Ping: &devicepb.Ping{Nonce: 42}}})
	if pong := sc.expect(t, "pong", func(f *devicepb.Frame) bool { return f.GetPong() != nil }); pong.GetPong().Nonce != 42 {
		t.Fatalf("pong nonce %d, want 42", pong.GetPong().Nonce)
	}
	sc.expect(t, "ping", func(f *devicepb.Frame) bool { return f.GetPing() != nil })
}

func TestRefusedPlantBacksOffMuchLonger(t *testing.T) {
	for _, tc := range []struct {
		reason       devicepb.CloseReason
		wantAttempts func(int32) bool
	}{
		{devicepb.CloseReason_CLOSE_REASON_AUTH_FAILED, func(n int32) bool { return n == 1 }},
		{devicepb.CloseReason_CLOSE_REASON_UNKNOWN_DEVICE, func(n int32) bool { return n == 1 }},
		{devicepb.CloseReason_CLOSE_REASON_DEVICE_REVOKED, func(n int32) bool { return n == 1 }},
		{devicepb.CloseReason_CLOSE_REASON_TOO_MANY_CONNECTIONS, func(n int32) bool { return n >= 3 }},
	} {
		t.Run(tc.reason.String(), func(t *testing.T) {
			srv := newServer(t, commandConfig(), true)
			srv.refuse.Store(int32(tc.reason))
			cfg := testConfig(srv.addr())
			cfg.RefusedBackoff = time.Hour
			p := plant.New(cfg)
			run(t, p)
			// A final refusal waits RefusedBackoff (an hour here) before the next attempt; one
			// the plant may retry soon (TOO_MANY_CONNECTIONS) is retried on its short backoff.
			actortest.Eventually(t, 5*time.Second, "the close reason counted", func() bool {
				return p.Stats().Snapshot().Errors["closed: "+plant.ReasonName(tc.reason)] > 0
			})
			actortest.Eventually(t, 5*time.Second, "the expected attempts", func() bool { return tc.wantAttempts(srv.hellos.Load()) })
			if n := srv.hellos.Load(); !tc.wantAttempts(n) {
				t.Fatalf("%d attempts", n)
			}
		})
	}
}

func TestServersAreTriedInOrder(t *testing.T) {
	srv := newServer(t, commandConfig(), true)
	dead := newServer(t, commandConfig(), true)
	deadAddr := dead.addr()
	dead.ln.Close()
	cfg := testConfig(srv.addr())
	cfg.Servers = []string{deadAddr, srv.addr()}
	p := plant.New(cfg)
	run(t, p)
	srv.next(t)
	if e := p.Stats().Snapshot().Errors["dial"]; e < 1 {
		t.Fatalf("dial errors %d, want the dead server tried first", e)
	}
}

func TestWindowBoundsFramesInFlight(t *testing.T) {
	srv := newServer(t, commandConfig(), false)
	cfg := testConfig(srv.addr())
	cfg.ReportInterval = 2 * time.Millisecond
	cfg.Window = 3
	run(t, plant.New(cfg))
	sc := srv.next(t)
	for i := 0; i < 3; i++ {
		sc.expect(t, "telemetry", isTelemetry)
	}
	sc.quiet(t, 100*time.Millisecond, "a fourth frame in flight", isTelemetry)
	sc.ack(t, 1)
	if got := sc.expect(t, "telemetry", isTelemetry).GetTelemetry().Seq; got != 4 {
		t.Fatalf("after one ack got seq %d, want 4", got)
	}
}

func TestAckTimeoutReconnectsAndResends(t *testing.T) {
	srv := newServer(t, commandConfig(), false)
	cfg := testConfig(srv.addr())
	cfg.ReportInterval = 5 * time.Millisecond
	cfg.AckTimeout = 200 * time.Millisecond
	p := plant.New(cfg)
	run(t, p)
	first := srv.next(t)
	first.expect(t, "seq 1", func(f *devicepb.Frame) bool { return f.GetTelemetry().GetSeq() == 1 })
	srv.autoAck.Store(true)
	second := srv.next(t) // the plant gave up on the first connection
	if got := second.expect(t, "telemetry", isTelemetry).GetTelemetry().Seq; got != 1 {
		t.Fatalf("first frame on the new connection is seq %d, want 1 again", got)
	}
	if n := p.Stats().Snapshot().Errors["ack timeout"]; n != 1 {
		t.Fatalf("ack timeouts %d, want 1", n)
	}
}

func TestResultFinishedWhileOfflineIsSentAfterReconnect(t *testing.T) {
	srv := newServer(t, commandConfig(), true)
	p := plant.New(testConfig(srv.addr()))
	run(t, p)
	first := srv.next(t)
	first.command(t, &devicepb.Command{CommandId: "w", Kind: devicepb.CommandKind_COMMAND_KIND_WATER, WaterMs: 300})
	actortest.Eventually(t, 5*time.Second, "the pump started", func() bool { return p.Level().Pumping })
	srv.refuse.Store(int32(devicepb.CloseReason_CLOSE_REASON_TOO_MANY_CONNECTIONS))
	first.Close()
	// The pump (300 ms) finishes while the plant cannot connect.
	actortest.Eventually(t, 5*time.Second, "the pump finished while offline", func() bool { return !p.Level().Pumping })
	srv.refuse.Store(0)
	second := srv.next(t)
	if r := second.result(t, "w"); r.Status != devicepb.CommandStatus_COMMAND_STATUS_DONE || r.WateredMl != 3 {
		t.Fatalf("got %v, want DONE with 3 ml", r)
	}
}

// A server that does not know the plant's secret sends a Welcome without the server proof: the
// plant refuses it (Close AUTH_FAILED), never applies its config, and backs off between tries
// like the firmware (docs/protocol.md).
func TestPlantRefusesAServerWithoutTheSecret(t *testing.T) {
	evil := commandConfig()
	evil.MaxWaterMs = 3600000
	srv := newServer(t, evil, true)
	srv.noProof.Store(true)
	p := plant.New(testConfig(srv.addr()))
	run(t, p)
	actortest.Eventually(t, 5*time.Second, "two refused handshakes", func() bool {
		return p.Stats().Snapshot().Errors["server proof"] >= 2
	})
	if got := p.Stats().Snapshot().Connects; got != 0 {
		t.Fatalf("%d sessions with a server without the secret", got)
	}
}
