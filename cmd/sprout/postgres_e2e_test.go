package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/actors/actortest"
	"github.com/sprout-iot/sprout/messages/devicepb"
	"github.com/sprout-iot/sprout/simulations/fleet"
	"github.com/sprout-iot/sprout/simulations/plant"
	"github.com/sprout-iot/sprout/store"
	"github.com/sprout-iot/sprout/store/pgtest"
	"github.com/sprout-iot/sprout/store/postgres"
)

// These tests run the real binary against a real Postgres (store/pgtest: a server of each test's
// own, since one of them stops it), as a cluster node would: SPROUT_DB=<dsn>.

// pgNode is a Postgres server, a database on it with n devices provisioned, and a node (not yet
// started) that stores in it.
func pgNode(t *testing.T, prefix string, n int, env ...string) (*pgtest.Server, string, *server, []fleet.Credential) {
	t.Helper()
	pg := pgtest.Start(t)
	dsn := pg.NewDatabase(t)
	out, err := exec.Command(sproutBin, "device", "add", "--db", dsn, "--count", fmt.Sprint(n), "--prefix", prefix, "--json").Output()
	if err != nil {
		t.Fatalf("device add --db: %v", err)
	}
	var cs []fleet.Credential
	if err := json.Unmarshal(out, &cs); err != nil {
		t.Fatalf("device add output: %v\n%s", err, out)
	}
	s := newServer(t, t.TempDir())
	s.extraEnv = append([]string{"SPROUT_DB=" + dsn}, env...)
	return pg, dsn, s, cs
}

// ackLog is what the devices saw: which seqs were acked and when, how connections ended.
type ackLog struct {
	mu       sync.Mutex
	acked    map[string]map[uint64]time.Time
	sent     map[string]uint64 // highest seq sent
	closes   map[devicepb.CloseReason]int
	timeouts int // no ack in time, or the connection dropped
	lost     []string
}

func newAckLog() *ackLog {
	return &ackLog{acked: map[string]map[uint64]time.Time{}, sent: map[string]uint64{}, closes: map[devicepb.CloseReason]int{}}
}

func (l *ackLog) failed(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var cl *plant.ErrClosed
	if errors.As(err, &cl) {
		l.closes[cl.Reason]++
	} else {
		l.timeouts++
	}
}

// ackedSince counts acks after t, and the devices that had none.
func (l *ackLog) ackedSince(t time.Time) (n int, without []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for id, seqs := range l.acked {
		had := false
		for _, at := range seqs {
			if at.After(t) {
				n++
				had = true
			}
		}
		if !had {
			without = append(without, id)
		}
	}
	return n, without
}

// device streams readings as firmware does: one frame in flight, each resent until acked, and on
// any failure (Close, no ack, the node gone) a new connection after a short pause. On every
// Welcome it checks that the node's last_seq covers every seq acked so far.
func (l *ackLog) device(ctx context.Context, edge string, c fleet.Credential) {
	l.mu.Lock()
	l.acked[c.ID] = map[uint64]time.Time{}
	l.mu.Unlock()
	next := uint64(1)
	pause := func() {
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	for ctx.Err() == nil {
		conn, err := plant.Dial(edge, "", time.Second)
		if err != nil {
			pause()
			continue
		}
		w, err := conn.Handshake(plant.Hello{DeviceID: c.ID, Secret: c.Secret}, 3*time.Second)
		if err != nil {
			l.failed(err)
			conn.Close()
			pause()
			continue
		}
		if w.LastSeq < next-1 {
			l.mu.Lock()
			l.lost = append(l.lost, fmt.Sprintf("%s: Welcome.last_seq %d but seq %d was acked", c.ID, w.LastSeq, next-1))
			l.mu.Unlock()
		}
		for ctx.Err() == nil {
			l.mu.Lock()
			l.sent[c.ID] = max(l.sent[c.ID], next)
			l.mu.Unlock()
			err := conn.Report(&devicepb.Telemetry{Seq: next, SoilMoisturePct: 40, TemperatureC: 20, TankLevelPct: 80}, 3*time.Second, nil)
			if err != nil {
				if ctx.Err() == nil {
					l.failed(err)
				}
				break
			}
			l.mu.Lock()
			l.acked[c.ID][next] = time.Now()
			l.mu.Unlock()
			next++
		}
		conn.Close()
		pause()
	}
}

// fleetRun starts the devices; stop ends them and waits.
func (l *ackLog) fleetRun(edge string, cs []fleet.Credential) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Go(func() { l.device(ctx, edge, c) })
	}
	return func() { cancel(); wg.Wait() }
}

// checkStored reads every stored reading of the devices from Postgres: every acked seq must be
// there, once, and nothing the devices never sent.
func (l *ackLog) checkStored(t *testing.T, dsn string) (stored int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT device_id, seq, count(*) OVER (PARTITION BY device_id, seq) FROM readings`)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]map[uint64]bool{}
	for rows.Next() {
		var (
			id     string
			seq, n int64
		)
		if err := rows.Scan(&id, &seq, &n); err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Fatalf("%s: seq %d stored %d times", id, seq, n)
		}
		if seen[id] == nil {
			seen[id] = map[uint64]bool{}
		}
		seen[id][uint64(seq)] = true
		stored++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, msg := range l.lost {
		t.Error(msg)
	}
	for id, seqs := range l.acked {
		for seq := range seqs {
			if !seen[id][seq] {
				t.Errorf("%s: acked seq %d is not in Postgres", id, seq)
			}
		}
		for seq := range seen[id] {
			if seq == 0 || seq > l.sent[id] {
				t.Errorf("%s: seq %d stored but never sent (highest sent %d)", id, seq, l.sent[id])
			}
		}
	}
	return stored
}

// TestPostgresAckedFramesSurviveSIGKILL: 20 devices stream readings into a node on Postgres; the
// node is SIGKILLed mid-burst and started again; the devices reconnect by themselves and resend
// what was not acked. Every acked frame is in Postgres, none twice.
func TestPostgresAckedFramesSurviveSIGKILL(t *testing.T) {
	const devices = 20
	_, dsn, s, cs := pgNode(t, "pgkill-", devices)
	s.start(t)
	l := newAckLog()
	stop := l.fleetRun(s.edge, cs)
	defer stop()
	began := time.Now()
	actortest.Eventually(t, 10*time.Second, "200 acks before the kill", func() bool { n, _ := l.ackedSince(began); return n >= 200 })
	// Mid-burst: every device is streaming when the node dies.
	burst := time.Now()
	actortest.Eventually(t, 10*time.Second, "every device acked in the burst", func() bool {
		_, without := l.ackedSince(burst)
		return len(without) == 0
	})
	s.kill(t)
	killed := time.Now()
	before, _ := l.ackedSince(began)

	s.start(t)
	restarted := time.Now()
	took := actortest.Eventually(t, 15*time.Second, "every device acked again after the restart", func() bool {
		_, without := l.ackedSince(restarted)
		return len(without) == 0
	})
	// One more round from every device, so the check below covers frames resent and new ones.
	again := time.Now()
	actortest.Eventually(t, 15*time.Second, "every device acked once more", func() bool {
		_, without := l.ackedSince(again)
		return len(without) == 0
	})
	stop()
	stored := l.checkStored(t, dsn)
	after, _ := l.ackedSince(killed)
	t.Logf("%d frames acked before SIGKILL, %d after the restart (every device back within %s of ready), %d readings stored; closes %v, timeouts %d",
		before, after, took.Round(time.Millisecond), stored, l.closes, l.timeouts)
}

// TestPostgresRestartMidBurst: Postgres is stopped for 3 s under a burst from 20 devices, the node
// is not. While it is down nothing is acked (devices get Close UNAVAILABLE or no ack, and
// reconnect); once it is back every device is acked again within seconds, by the same node
// process; every acked frame is in Postgres.
func TestPostgresRestartMidBurst(t *testing.T) {
	const devices = 20
	pg, dsn, s, cs := pgNode(t, "pgdown-", devices, "SPROUT_STORE_WRITE_TIMEOUT=2s")
	s.start(t)
	pid := s.cmd.Process.Pid
	l := newAckLog()
	stop := l.fleetRun(s.edge, cs)
	defer stop()
	began := time.Now()
	actortest.Eventually(t, 10*time.Second, "200 acks before Postgres stops", func() bool { n, _ := l.ackedSince(began); return n >= 200 })

	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	down := time.Now()
	failures := func() int {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.timeouts + l.closes[devicepb.CloseReason_CLOSE_REASON_UNAVAILABLE]
	}
	// Postgres stays down until every device has seen a Close or a missing ack.
	actortest.Eventually(t, 15*time.Second, "a Close or a missing ack for every device while Postgres is down", func() bool {
		return failures() >= devices
	})
	// An ack for a commit made just before the shutdown may still be on its way; after that, none.
	if n, _ := l.ackedSince(down.Add(300 * time.Millisecond)); n != 0 {
		t.Fatalf("%d frames acked while Postgres was down", n)
	}

	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	took := actortest.Eventually(t, 10*time.Second, "every device acked again after Postgres came back", func() bool {
		_, without := l.ackedSince(back)
		return len(without) == 0
	})
	again := time.Now()
	actortest.Eventually(t, 10*time.Second, "every device acked once more", func() bool {
		_, without := l.ackedSince(again)
		return len(without) == 0
	})
	stop()
	if s.cmd.ProcessState != nil || s.cmd.Process.Pid != pid {
		t.Fatalf("the node exited while Postgres was down: %v", s.cmd.ProcessState)
	}
	resp, err := http.Get("http://" + s.http + "/readyz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/readyz after Postgres came back: %v %v", resp, err)
	}
	resp.Body.Close()
	stored := l.checkStored(t, dsn)
	after, _ := l.ackedSince(back)
	t.Logf("every device acked again %s after Postgres started; %d acked since, %d readings stored; closes %v, timeouts %d",
		took.Round(time.Millisecond), after, stored, l.closes, l.timeouts)
}

// TestMaintenanceRunsOnTheStore: startMaintenance runs Maintain soon after start and then every
// interval: readings past retention are rolled up and deleted, and each run is logged.
func TestMaintenanceRunsOnTheStore(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dsn := pgtest.New(t)
	st, err := postgres.Open(ctx, dsn, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Now()
	if err := st.Append(ctx, "pot-1", actors.Batch{Readings: []actors.Reading{
		{Seq: 1, ReceivedAt: now.Add(-72 * time.Hour), SoilMoisture: 30},
		{Seq: 2, ReceivedAt: now.Add(-71 * time.Hour), SoilMoisture: 50},
		{Seq: 3, ReceivedAt: now, SoilMoisture: 40},
	}}); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	startMaintenance(ctx, st, 100*time.Millisecond, retentionConfig{raw: 24 * time.Hour, aggregates: 48 * time.Hour}.options(), log)
	actortest.Eventually(t, 10*time.Second, "old readings expired", func() bool {
		rs, err := st.Readings(ctx, "pot-1", now.Add(-100*time.Hour), now.Add(time.Hour), 0)
		return err == nil && len(rs) == 1
	})
	actortest.Eventually(t, 5*time.Second, "a second, idle run logged", func() bool {
		return strings.Count(logs.String(), "store maintenance done") >= 2
	})
	if !strings.Contains(logs.String(), "raw_deleted=2") {
		t.Fatalf("no run logged deleting the 2 expired readings:\n%s", logs.String())
	}
	if b, err := st.Buckets(ctx, "pot-1", now.Add(-100*time.Hour).Truncate(time.Hour), now.Add(time.Hour), time.Hour); err != nil || len(b) != 1 {
		// Aggregates are kept 48 h here: the hours 71-72 h ago are gone from them too.
		t.Fatalf("buckets after expiry: %+v, %v; want only the current hour", b, err)
	}
	var none store.RetentionOptions
	startMaintenance(ctx, st, 0, none, log) // off: returns at once, logs why
	if !strings.Contains(logs.String(), "store maintenance off") {
		t.Fatalf("interval 0 did not log that maintenance is off:\n%s", logs.String())
	}
}

// syncBuffer is a bytes.Buffer safe for a logger goroutine and a test reading it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
