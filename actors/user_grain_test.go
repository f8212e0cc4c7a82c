package actors_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/jonboulle/clockwork"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/actors/actortest"
	"github.com/sprout-iot/sprout/cluster"
	"github.com/sprout-iot/sprout/edge/edgetest"
	"github.com/sprout-iot/sprout/messages/actorpb"
	"github.com/sprout-iot/sprout/store/sqlite"
)

// flakyUsers is a real SQLite store whose user loads fail while failLoads is set (the database
// unreachable for a moment).
type flakyUsers struct {
	*sqlite.Store
	failLoads atomic.Bool
}

func (f *flakyUsers) LoadUser(ctx context.Context, openID string) ([]byte, error) {
	if f.failLoads.Load() {
		return nil, actors.ErrUnavailable
	}
	return f.Store.LoadUser(ctx, openID)
}

func (f *flakyUsers) UserBindings(ctx context.Context, openID string) ([]actors.Binding, error) {
	if f.failLoads.Load() {
		return nil, actors.ErrUnavailable
	}
	return f.Store.UserBindings(ctx, openID)
}

// syncLog collects a member's log lines.
type syncLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// userWorld is a cluster member hosting user and device grains over one SQLite store in a
// temporary directory, with a fake clock.
type userWorld struct {
	store  *flakyUsers
	clock  *clockwork.FakeClock
	log    *syncLog
	opts   actors.UserOptions
	member *cluster.Member
	stop   func()
}

func newUserWorld(t *testing.T, tune func(*actors.UserOptions)) *userWorld {
	t.Helper()
	st, err := sqlite.Open(t.TempDir(), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	w := &userWorld{store: &flakyUsers{Store: st}, clock: clockwork.NewFakeClock(), log: &syncLog{}}
	w.opts = actors.UserOptions{Store: w.store, Clock: w.clock,
		Logger: slog.New(slog.NewTextHandler(w.log, &slog.HandlerOptions{Level: slog.LevelInfo}))}
	if tune != nil {
		tune(&w.opts)
	}
	w.start(t)
	return w
}

// start starts a member (again: a node restarting over the same store).
func (w *userWorld) start(t *testing.T) {
	t.Helper()
	log := edgetest.Quiet()
	m, err := cluster.Start(cluster.Options{Logger: log, Kinds: []*pcluster.Kind{
		actors.NewUserKind(w.opts),
		actors.NewDeviceKind(actors.DeviceOptions{Store: w.store.Store, Users: w.store, Logger: log})}})
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	w.member, w.stop = m, func() { once.Do(func() { m.Stop(true) }) }
	t.Cleanup(w.stop)
}

// say sends a user's text and returns the grain's answer.
func (w *userWorld) say(t *testing.T, openID, text string) *actorpb.UserReply {
	t.Helper()
	res, err := w.member.Cluster.Request(openID, actors.UserKind, &actorpb.UserMessage{DedupKey: "id:" + text + w.clock.Now().String(),
		MsgType: "text", Content: text}, pcluster.WithTimeout(5*time.Second))
	if err != nil {
		t.Fatalf("%s said %q: %v", openID, text, err)
	}
	return res.(*actorpb.UserReply)
}

// tell sends a message the grain does not answer.
func (w *userWorld) tell(t *testing.T, openID string, m any) {
	t.Helper()
	pid := w.member.Cluster.Get(openID, actors.UserKind)
	if pid == nil {
		t.Fatalf("no user grain for %s", openID)
	}
	w.member.System.Root.Send(pid, m)
}

func (w *userWorld) snapshot(t *testing.T, openID string) []byte {
	t.Helper()
	b, err := w.store.Store.LoadUser(context.Background(), openID)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (w *userWorld) pushes(t *testing.T, openID string) []actors.Push {
	t.Helper()
	ps, err := w.store.UserPushes(context.Background(), openID, 100)
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

func alertNotice(device string, since int64) *actorpb.UserNotice {
	return &actorpb.UserNotice{NoticeId: device + "/alert/" + string(rune('0'+since)), DeviceId: device,
		Body: &actorpb.UserNotice_Alert{Alert: &actorpb.Alert{Kind: actorpb.AlertKind_ALERT_KIND_SOIL_DRY, Active: true,
			Value: 10, Threshold: 20, SinceMs: since}}}
}

func TestUserWhoseLoadFailedIsToldBusyAndItsSnapshotIsKept(t *testing.T) {
	t.Parallel()
	w := newUserWorld(t, nil)
	seed := []byte(`{"lang":"en","last_interaction":"2026-01-01T00:00:00Z","notices":["pot-9/alert/x"]}`)
	if err := w.store.SaveUser(context.Background(), "alice", seed); err != nil {
		t.Fatal(err)
	}
	w.store.failLoads.Store(true)
	if r := w.say(t, "alice", "状态"); !strings.Contains(r.Text, "系统繁忙") {
		t.Fatalf("a user whose state could not be read was told %q, want busy", r.Text)
	}
	// An alert for her, and the summary it might start, must not overwrite what she had.
	w.tell(t, "alice", alertNotice("pot-1", 1))
	if r := w.say(t, "alice", "我的设备"); !strings.Contains(r.Text, "系统繁忙") {
		t.Fatalf("second message: %q", r.Text)
	}
	if got := w.snapshot(t, "alice"); !bytes.Equal(got, seed) {
		t.Fatalf("a grain that never loaded overwrote the stored state:\n got %s\nwant %s", got, seed)
	}
	if ps := w.pushes(t, "alice"); len(ps) != 0 {
		t.Fatalf("a grain that never loaded pushed %d messages", len(ps))
	}
	// Once the store answers again, she is answered from what she had (English).
	w.store.failLoads.Store(false)
	if r := w.say(t, "alice", "my devices"); !strings.Contains(r.Text, "no pots") {
		t.Fatalf("after the store came back: %q", r.Text)
	}
}

func TestCorruptUserSnapshotIsLoggedCountedAndNotOverwritten(t *testing.T) {
	t.Parallel()
	w := newUserWorld(t, nil)
	corrupt := []byte(`{"lang":"en","replies":[{"key":`)
	if err := w.store.SaveUser(context.Background(), "bob", corrupt); err != nil {
		t.Fatal(err)
	}
	before := actors.CorruptUserSnapshots()
	if r := w.say(t, "bob", "status"); !strings.Contains(r.Text, "系统繁忙") {
		t.Fatalf("a user whose snapshot is corrupt was told %q, want busy", r.Text)
	}
	w.tell(t, "bob", alertNotice("pot-1", 1))
	w.say(t, "bob", "hello")
	if got := w.snapshot(t, "bob"); !bytes.Equal(got, corrupt) {
		t.Fatalf("the corrupt snapshot was replaced by %s", got)
	}
	if !strings.Contains(w.log.String(), "corrupt") {
		t.Fatalf("nothing logged about the corrupt snapshot; log:\n%s", w.log.String())
	}
	if n := actors.CorruptUserSnapshots() - before; n < 1 {
		t.Fatalf("corrupt snapshots counted: %d", n)
	}
}

func TestHeldAlertSummaryIsSentAfterTheGrainReactivates(t *testing.T) {
	t.Parallel()
	w := newUserWorld(t, func(o *actors.UserOptions) { o.AlertBurst, o.AlertWindow = 1, time.Minute })
	w.say(t, "carol", "你好")
	w.tell(t, "carol", alertNotice("pot-1", 1))
	w.tell(t, "carol", alertNotice("pot-2", 1)) // over the burst: held for the summary
	w.say(t, "carol", "你好")
	if n := len(w.pushes(t, "carol")); n != 1 {
		t.Fatalf("%d pushes before the window ends, want the first alert only", n)
	}
	// The node restarts before the window ends; the next activation must still send the summary.
	w.stop()
	w.start(t)
	w.say(t, "carol", "你好")
	w.clock.Advance(2 * time.Minute)
	actortest.Eventually(t, 3*time.Second, "the held summary is pushed", func() bool {
		for _, p := range w.pushes(t, "carol") {
			if strings.Contains(string(p.Payload), "需要关注") {
				return true
			}
		}
		return false
	})
}
