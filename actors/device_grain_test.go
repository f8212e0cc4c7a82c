package actors_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/cluster/clusterproviders/test"
	"github.com/jonboulle/clockwork"
	"google.golang.org/protobuf/proto"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/actors/actortest"
	"github.com/sprout-iot/sprout/cluster"
	"github.com/sprout-iot/sprout/edge/device"
	"github.com/sprout-iot/sprout/edge/edgetest"
	"github.com/sprout-iot/sprout/messages/actorpb"
	"github.com/sprout-iot/sprout/messages/devicepb"
	"github.com/sprout-iot/sprout/simulations/plant"
	"github.com/sprout-iot/sprout/store/sqlite"
)

// These tests drive device grains on a real cluster member (the in-process provider) with the
// real device edge in front and a real SQLite store in t.TempDir(), wrapped so that a test can
// make storage fail. The user grains are stand-ins that record what device grains tell them.

// faultyStore is a real store whose reads or writes a test can make fail.
type faultyStore struct {
	actors.Store
	actors.UserStore
	failReads, failWrites atomic.Bool
	failedWrites          atomic.Int64
}

func (s *faultyStore) readErr() error {
	if s.failReads.Load() {
		return fmt.Errorf("test: reads fail: %w", actors.ErrUnavailable)
	}
	return nil
}

func (s *faultyStore) writeErr() error {
	if s.failWrites.Load() {
		s.failedWrites.Add(1)
		return fmt.Errorf("test: writes fail: %w", actors.ErrUnavailable)
	}
	return nil
}

func (s *faultyStore) GetDevice(ctx context.Context, id string) (actors.Device, error) {
	if err := s.readErr(); err != nil {
		return actors.Device{}, err
	}
	return s.Store.GetDevice(ctx, id)
}

func (s *faultyStore) LoadDevice(ctx context.Context, id string) (actors.Recovered, error) {
	if err := s.readErr(); err != nil {
		return actors.Recovered{}, err
	}
	return s.Store.LoadDevice(ctx, id)
}

func (s *faultyStore) Append(ctx context.Context, id string, b actors.Batch) error {
	if err := s.writeErr(); err != nil {
		return err
	}
	return s.Store.Append(ctx, id, b)
}

func (s *faultyStore) RevokeDevice(ctx context.Context, id string, at time.Time) error {
	if err := s.writeErr(); err != nil {
		return err
	}
	return s.Store.RevokeDevice(ctx, id, at)
}

func (s *faultyStore) Bind(ctx context.Context, b actors.Binding) error {
	if err := s.writeErr(); err != nil {
		return err
	}
	return s.UserStore.Bind(ctx, b)
}

func (s *faultyStore) Unbind(ctx context.Context, deviceID, openID string) error {
	if err := s.writeErr(); err != nil {
		return err
	}
	return s.UserStore.Unbind(ctx, deviceID, openID)
}

func (s *faultyStore) Close() error { return s.Store.Close() }

// node is one member hosting device grains and recording user grains, with the device edge.
type node struct {
	dir    string
	sql    *sqlite.Store
	store  *faultyStore
	member *cluster.Member
	edge   *device.Server
	addr   string
	users  *userRecorder
	stop   func()
}

// userRecorder collects what device grains send to user grains.
type userRecorder struct {
	mu  sync.Mutex
	got []string // "openid: message"
}

func (r *userRecorder) add(s string) {
	r.mu.Lock()
	r.got = append(r.got, s)
	r.mu.Unlock()
}

// all is what users were told, without the join notices (joins).
func (r *userRecorder) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, g := range r.got {
		if !strings.Contains(g, ": join ") {
			out = append(out, g)
		}
	}
	return out
}

func (r *userRecorder) has(s string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, g := range r.got {
		if g == s {
			return true
		}
	}
	return false
}

func (r *userRecorder) kind() *pcluster.Kind {
	return pcluster.NewKind(actors.UserKind, actor.PropsFromFunc(func(ctx actor.Context) {
		id := pcluster.GetClusterIdentity(ctx)
		if id == nil {
			return
		}
		switch m := ctx.Message().(type) {
		case *actorpb.BindingChanged:
			r.add(fmt.Sprintf("%s: bound=%v role=%s", id.Identity, m.Bound, m.Role))
		case *actorpb.CommandOutcome:
			r.add(fmt.Sprintf("%s: outcome %s %s", id.Identity, m.CommandId, m.Outcome))
		case *actorpb.UserNotice:
			switch b := m.Body.(type) {
			case *actorpb.UserNotice_JoinRequest:
				r.add(fmt.Sprintf("%s: join request %s", id.Identity, b.JoinRequest.OpenId))
			case *actorpb.UserNotice_JoinResult:
				r.add(fmt.Sprintf("%s: join %s", id.Identity, b.JoinResult.Outcome))
			}
		}
	}))
}

// startNode starts a node on the SQLite store in dir (a fresh one when dir is empty).
func startNode(t *testing.T, dir string, opts actors.DeviceOptions) *node {
	t.Helper()
	return startNodeWith(t, dir, opts, cluster.Options{}, true)
}

// startNodeWith is startNode with the member's options, and with or without the recording user
// grains.
func startNodeWith(t *testing.T, dir string, opts actors.DeviceOptions, co cluster.Options, users bool) *node {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	st, err := sqlite.Open(dir, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	n := &node{dir: dir, sql: st, store: &faultyStore{Store: st, UserStore: st}, users: &userRecorder{}}
	log := edgetest.Quiet()
	opts.Store, opts.Users, opts.Logger = n.store, n.store, log
	co.Logger, co.Kinds = log, []*pcluster.Kind{actors.NewDeviceKind(opts)}
	if users {
		co.Kinds = append(co.Kinds, n.users.kind())
	}
	m, err := cluster.Start(co)
	if err != nil {
		t.Fatal(err)
	}
	n.member = m
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n.edge = device.NewServer(m.Cluster, device.Options{Logger: log})
	go func() { _ = n.edge.Serve(ln) }()
	n.addr = ln.Addr().String()
	var once sync.Once
	n.stop = func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = n.edge.Shutdown(ctx)
			m.Stop(true)
			_ = st.Close()
		})
	}
	t.Cleanup(n.stop)
	return n
}

func (n *node) request(t *testing.T, id string, m proto.Message) any {
	t.Helper()
	res, err := n.member.Cluster.Request(id, actors.DeviceKind, m, pcluster.WithTimeout(5*time.Second))
	if err != nil {
		t.Fatalf("%T to %s: %v", m, id, err)
	}
	return res
}

func (n *node) state(t *testing.T, id string) *actorpb.DeviceState {
	t.Helper()
	return n.request(t, id, &actorpb.GetState{}).(*actorpb.DeviceState)
}

func (n *node) command(t *testing.T, id string, m *actorpb.SendCommand) *actorpb.CommandOutcome {
	t.Helper()
	return n.request(t, id, m).(*actorpb.CommandOutcome)
}

// bind binds openID as a scan does; after the owner, the scan is a request to join, which the
// owner approves (the answer is then the bound user's).
func (n *node) bind(t *testing.T, id, openID string) *actorpb.BindResult {
	t.Helper()
	r := n.request(t, id, &actorpb.BindDevice{OpenId: openID, Via: "sprout_qr"}).(*actorpb.BindResult)
	if r.Role != actors.RolePending {
		return r
	}
	owner := n.state(t, id).Users[0]
	if d := n.request(t, id, &actorpb.JoinDecide{OpenId: openID, Approve: true, By: owner}).(*actorpb.JoinDecided); d.Error != 0 {
		t.Fatalf("the owner approving %s: %v", openID, d)
	}
	return n.request(t, id, &actorpb.BindDevice{OpenId: openID, Via: "sprout_qr"}).(*actorpb.BindResult)
}

func (n *node) revoke(t *testing.T, id string) *actorpb.RevokeResult {
	t.Helper()
	return n.request(t, id, &actorpb.RevokeDevice{By: "test", Reason: "stolen"}).(*actorpb.RevokeResult)
}

func (n *node) events(t *testing.T, id string) []string {
	t.Helper()
	evs, err := n.sql.Events(context.Background(), id, time.Unix(0, 0), time.Now().Add(24*365*time.Hour), 1000)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, e := range evs {
		kinds = append(kinds, e.Kind)
	}
	return kinds
}

func contains(xs []string, x string) bool {
	for _, s := range xs {
		if s == x {
			return true
		}
	}
	return false
}

// awaitClose reads frames until a Close arrives and returns its reason.
func awaitClose(t *testing.T, c *plant.Conn) devicepb.CloseReason {
	t.Helper()
	for {
		f, err := c.Recv(5 * time.Second)
		if err != nil {
			t.Fatalf("waiting for Close: %v", err)
		}
		if cl := f.GetClose(); cl != nil {
			return cl.Reason
		}
	}
}

// awaitCommand reads frames until a Command arrives.
func awaitCommand(t *testing.T, c *plant.Conn) *devicepb.Command {
	t.Helper()
	for {
		f, err := c.Recv(5 * time.Second)
		if err != nil {
			t.Fatalf("waiting for a Command: %v", err)
		}
		if cmd := f.GetCommand(); cmd != nil {
			return cmd
		}
	}
}

func handshake(addr, id string, secret []byte) (*plant.Conn, error) {
	c, err := plant.Dial(addr, "", time.Second)
	if err != nil {
		return nil, err
	}
	if _, err := c.Handshake(plant.Hello{DeviceID: id, Secret: secret}, 5*time.Second); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func closeReason(err error) devicepb.CloseReason {
	var ec *plant.ErrClosed
	if errors.As(err, &ec) {
		return ec.Reason
	}
	return devicepb.CloseReason_CLOSE_REASON_UNSPECIFIED
}

func TestRevokedDeviceIsDisconnectedAtOnce(t *testing.T) {
	t.Parallel()
	n := startNode(t, "", actors.DeviceOptions{})
	secret := edgetest.AddDevice(t, n.sql, "pot-1", "pot")
	if r := n.bind(t, "pot-1", "alice"); !r.Ok || r.Role != actors.RoleOwner {
		t.Fatalf("bind alice: %v", r)
	}
	if r := n.bind(t, "pot-1", "bob"); !r.Ok {
		t.Fatalf("bind bob: %v", r)
	}
	c := edgetest.Dial(t, n.addr, "pot-1", secret)

	res := n.revoke(t, "pot-1")
	if res.Error != actorpb.ErrorCode_ERROR_CODE_UNSPECIFIED || res.RevokedAtMs == 0 {
		t.Fatalf("revoke: %v", res)
	}
	if got := awaitClose(t, c); got != devicepb.CloseReason_CLOSE_REASON_DEVICE_REVOKED {
		t.Fatalf("the open connection was closed with %s, want DEVICE_REVOKED", got)
	}
	st := n.state(t, "pot-1")
	if !st.Revoked || st.Online || len(st.Users) != 0 {
		t.Fatalf("state after revocation: revoked=%v online=%v users=%v", st.Revoked, st.Online, st.Users)
	}
	out := n.command(t, "pot-1", &actorpb.SendCommand{CommandId: "w1", Kind: devicepb.CommandKind_COMMAND_KIND_WATER, WaterMs: 1000})
	if out.Outcome != actorpb.Outcome_OUTCOME_REVOKED {
		t.Fatalf("a command to a revoked device: %s (%s), want REVOKED", out.Outcome, out.Detail)
	}
	if _, err := handshake(n.addr, "pot-1", secret); closeReason(err) != devicepb.CloseReason_CLOSE_REASON_DEVICE_REVOKED {
		t.Fatalf("a handshake after revocation: %v, want Close(DEVICE_REVOKED)", err)
	}
	if r := n.bind(t, "pot-1", "carol"); r.Ok || r.Code != actorpb.ErrorCode_ERROR_CODE_REVOKED {
		t.Fatalf("binding a revoked device: %v, want code REVOKED", r)
	}
	// Revocation ends the bindings: each user is unbound and told.
	for _, u := range []string{"alice", "bob"} {
		bs, err := n.sql.UserBindings(context.Background(), u)
		if err != nil || len(bs) != 0 {
			t.Fatalf("%s still bound after revocation: %v %v", u, bs, err)
		}
		actortest.Eventually(t, 5*time.Second, u+" told of the unbinding", func() bool {
			return n.users.has(u + ": bound=false role=")
		})
	}
	// Idempotent: a second revocation answers the first time.
	if again := n.revoke(t, "pot-1"); again.Error != 0 || again.RevokedAtMs != res.RevokedAtMs {
		t.Fatalf("revoking again: %v, want %v", again, res)
	}
	d, err := n.sql.GetDevice(context.Background(), "pot-1")
	if err != nil || !d.Revoked() {
		t.Fatalf("the registry does not say revoked: %+v %v", d, err)
	}
	if evs := n.events(t, "pot-1"); !contains(evs, actors.EventKindRevoked) {
		t.Fatalf("no revocation in the event log: %v", evs)
	}
}

func TestGrainThatCannotLoadAnswersUnavailable(t *testing.T) {
	t.Parallel()
	n := startNode(t, "", actors.DeviceOptions{})
	edgetest.AddDevice(t, n.sql, "pot-1", "pot")
	n.store.failReads.Store(true)

	if st := n.state(t, "pot-1"); st.Error != actorpb.ErrorCode_ERROR_CODE_UNAVAILABLE {
		t.Fatalf("state while storage fails: known=%v error=%s, want UNAVAILABLE", st.Known, st.Error)
	}
	out := n.command(t, "pot-1", &actorpb.SendCommand{CommandId: "c1", Kind: devicepb.CommandKind_COMMAND_KIND_READ_NOW})
	if out.Outcome != actorpb.Outcome_OUTCOME_UNAVAILABLE {
		t.Fatalf("command while storage fails: %s, want UNAVAILABLE", out.Outcome)
	}
	if r := n.bind(t, "pot-1", "alice"); r.Ok || r.Code != actorpb.ErrorCode_ERROR_CODE_UNAVAILABLE {
		t.Fatalf("bind while storage fails: %v, want code UNAVAILABLE", r)
	}
	if r := n.request(t, "pot-1", &actorpb.UnbindDevice{OpenId: "alice"}).(*actorpb.BindResult); r.Ok || r.Code != actorpb.ErrorCode_ERROR_CODE_UNAVAILABLE {
		t.Fatalf("unbind while storage fails: %v, want code UNAVAILABLE", r)
	}
	if r := n.revoke(t, "pot-1"); r.Error != actorpb.ErrorCode_ERROR_CODE_UNAVAILABLE {
		t.Fatalf("revoke while storage fails: %v, want UNAVAILABLE", r)
	}

	// Once storage answers, the same grain answers for the device.
	n.store.failReads.Store(false)
	if st := n.state(t, "pot-1"); !st.Known || st.Error != 0 {
		t.Fatalf("state once storage is back: known=%v error=%s", st.Known, st.Error)
	}
	// An unknown device is a definite answer, not an outage.
	if st := n.state(t, "pot-404"); st.Known || st.Error != actorpb.ErrorCode_ERROR_CODE_UNKNOWN_DEVICE {
		t.Fatalf("unknown device: known=%v error=%s", st.Known, st.Error)
	}
	if r := n.revoke(t, "pot-404"); r.Error != actorpb.ErrorCode_ERROR_CODE_UNKNOWN_DEVICE {
		t.Fatalf("revoking an unknown device: %v", r)
	}
	if r := n.bind(t, "pot-404", "alice"); r.Code != actorpb.ErrorCode_ERROR_CODE_UNKNOWN_DEVICE {
		t.Fatalf("binding an unknown device: %v", r)
	}
}

func TestCommandResentAfterRestartIsTheCommandAsked(t *testing.T) {
	t.Parallel()
	n := startNode(t, "", actors.DeviceOptions{})
	secret := edgetest.AddDevice(t, n.sql, "pot-1", "pot")
	c := edgetest.Dial(t, n.addr, "pot-1", secret)
	cfg := actors.DefaultConfig()
	cfg.ReportIntervalS = 120
	cfg.Thresholds.SoilMoistureMinPct = 33
	asked := []*actorpb.SendCommand{
		{CommandId: "water-1", Kind: devicepb.CommandKind_COMMAND_KIND_WATER, WaterMs: 2500, TimeoutMs: 300000, RequestedBy: "api"},
		{CommandId: "config-1", Kind: devicepb.CommandKind_COMMAND_KIND_SET_CONFIG, Config: cfg, TimeoutMs: 300000, RequestedBy: "api"},
	}
	for _, m := range asked {
		n.member.Cluster.ActorSystem.Root.Send(mustPID(t, n, "pot-1"), m)
		if got := awaitCommand(t, c); got.CommandId != m.CommandId {
			t.Fatalf("the pot got %s, want %s", got.CommandId, m.CommandId)
		}
	}
	// The node stops before the pot answers; another starts on the same storage.
	c.Close()
	n.stop()
	n2 := startNode(t, n.dir, actors.DeviceOptions{})
	c2 := edgetest.Dial(t, n2.addr, "pot-1", secret)
	for _, m := range asked {
		got := awaitCommand(t, c2)
		if got.CommandId != m.CommandId || got.Kind != m.Kind || got.WaterMs != m.WaterMs || !proto.Equal(got.Config, m.Config) {
			t.Fatalf("resent after the restart: %v, want the command asked: %v", got, m)
		}
	}
}

func mustPID(t *testing.T, n *node, id string) *actor.PID {
	t.Helper()
	pid := n.member.Cluster.Get(id, actors.DeviceKind)
	if pid == nil {
		t.Fatalf("no grain for %s", id)
	}
	return pid
}

func TestDisconnectWhoseWriteFailsIsKeptOnlyOnceStored(t *testing.T) {
	t.Parallel()
	clock := clockwork.NewFakeClock()
	n := startNode(t, "", actors.DeviceOptions{Clock: clock})
	s := edgetest.AddDevice(t, n.sql, "pot-1", "pot")
	c := edgetest.Dial(t, n.addr, "pot-1", s)
	actortest.Eventually(t, 5*time.Second, "online", func() bool { return n.state(t, "pot-1").Online })

	n.store.failWrites.Store(true)
	c.Close()
	actortest.Eventually(t, 5*time.Second, "the offline step tried", func() bool { return n.store.failedWrites.Load() > 0 })
	if st := n.state(t, "pot-1"); !st.Online {
		t.Fatal("the grain says offline although storing that failed: memory ran ahead of storage")
	}
	// Storage comes back; the step is tried again after its backoff and holds once stored.
	n.store.failWrites.Store(false)
	waitTimers(t, clock, 1)
	clock.Advance(actors.DefaultStepRetry)
	actortest.Eventually(t, 5*time.Second, "offline once stored", func() bool { return !n.state(t, "pot-1").Online })
	if evs := n.events(t, "pot-1"); !contains(evs, actors.EventKindOffline) {
		t.Fatalf("offline but not in the event log: %v", evs)
	}
}

func TestDeadlineWhoseWriteFailsEndsTheCommandOnceStored(t *testing.T) {
	t.Parallel()
	clock := clockwork.NewFakeClock()
	n := startNode(t, "", actors.DeviceOptions{Clock: clock})
	s := edgetest.AddDevice(t, n.sql, "pot-1", "pot")
	c := edgetest.Dial(t, n.addr, "pot-1", s)
	f := n.member.Cluster.ActorSystem.Root.RequestFuture(mustPID(t, n, "pot-1"),
		&actorpb.SendCommand{CommandId: "r1", Kind: devicepb.CommandKind_COMMAND_KIND_READ_NOW, TimeoutMs: 5000}, 10*time.Second)
	awaitCommand(t, c)
	waitTimers(t, clock, 1) // the deadline

	n.store.failWrites.Store(true)
	clock.Advance(5 * time.Second)
	actortest.Eventually(t, 5*time.Second, "the deadline step tried", func() bool { return n.store.failedWrites.Load() > 0 })
	if st := n.state(t, "pot-1"); len(st.OpenCommands) != 1 {
		t.Fatalf("the command ended although storing that failed: %v", st.OpenCommands)
	}
	n.store.failWrites.Store(false)
	waitTimers(t, clock, 1) // the retry
	clock.Advance(actors.DefaultStepRetry)
	res, err := f.Result()
	if err != nil {
		t.Fatal(err)
	}
	if out := res.(*actorpb.CommandOutcome); out.Outcome != actorpb.Outcome_OUTCOME_TIMED_OUT {
		t.Fatalf("outcome %s, want TIMED_OUT", out.Outcome)
	}
	if st := n.state(t, "pot-1"); len(st.OpenCommands) != 0 {
		t.Fatalf("still open: %v", st.OpenCommands)
	}
}

func TestCommandWithoutResultTimesOutAtItsDeadline(t *testing.T) {
	t.Parallel()
	clock := clockwork.NewFakeClock()
	n := startNode(t, "", actors.DeviceOptions{Clock: clock})
	s := edgetest.AddDevice(t, n.sql, "pot-1", "pot")
	c := edgetest.Dial(t, n.addr, "pot-1", s)
	f := n.member.Cluster.ActorSystem.Root.RequestFuture(mustPID(t, n, "pot-1"),
		&actorpb.SendCommand{CommandId: "w1", Kind: devicepb.CommandKind_COMMAND_KIND_WATER, WaterMs: 500, TimeoutMs: 30000}, 10*time.Second)
	if cmd := awaitCommand(t, c); cmd.DeadlineMs != 30000 {
		t.Fatalf("the pot was given %d ms", cmd.DeadlineMs)
	}
	waitTimers(t, clock, 1)
	clock.Advance(29 * time.Second)
	if st := n.state(t, "pot-1"); len(st.OpenCommands) != 1 {
		t.Fatal("ended before its deadline")
	}
	clock.Advance(time.Second)
	res, err := f.Result()
	if err != nil {
		t.Fatal(err)
	}
	if out := res.(*actorpb.CommandOutcome); out.Outcome != actorpb.Outcome_OUTCOME_TIMED_OUT {
		t.Fatalf("outcome %s, want TIMED_OUT", out.Outcome)
	}
}

func TestIdleGrainPassivates(t *testing.T) {
	t.Parallel()
	clock := clockwork.NewFakeClock()
	n := startNode(t, "", actors.DeviceOptions{Clock: clock, IdleTimeout: time.Minute})
	edgetest.AddDevice(t, n.sql, "pot-1", "pot")
	n.state(t, "pot-1")
	pid := mustPID(t, n, "pot-1")
	active := func() bool { _, ok := n.member.System.ProcessRegistry.GetLocal(pid.Id); return ok }
	if !active() {
		t.Fatal("no activation")
	}
	waitTimers(t, clock, 1)
	clock.Advance(59 * time.Second)
	if !active() {
		t.Fatal("passivated before its idle timeout")
	}
	clock.Advance(time.Second)
	actortest.Eventually(t, 5*time.Second, "passivation", func() bool { return !active() })
}

func TestFlappingBanEndsOnTheClock(t *testing.T) {
	t.Parallel()
	clock := clockwork.NewFakeClock()
	n := startNode(t, "", actors.DeviceOptions{Clock: clock, FlapConnects: 2, FlapWindow: time.Minute, FlapBan: 3 * time.Minute})
	s := edgetest.AddDevice(t, n.sql, "pot-1", "pot")
	for i := 0; i < 2; i++ {
		c, err := handshake(n.addr, "pot-1", s)
		if err != nil {
			t.Fatalf("connect %d: %v", i+1, err)
		}
		c.Close()
	}
	_, err := handshake(n.addr, "pot-1", s)
	var ec *plant.ErrClosed
	if !errors.As(err, &ec) || ec.Reason != devicepb.CloseReason_CLOSE_REASON_UNAVAILABLE || ec.ReconnectAfterMs == 0 {
		t.Fatalf("a third connect within the window: %v, want refused with a time to come back", err)
	}
	clock.Advance(3*time.Minute - time.Second)
	if _, err := handshake(n.addr, "pot-1", s); closeReason(err) != devicepb.CloseReason_CLOSE_REASON_UNAVAILABLE {
		t.Fatalf("connect during the ban: %v", err)
	}
	clock.Advance(time.Second)
	c, err := handshake(n.addr, "pot-1", s)
	if err != nil {
		t.Fatalf("connect after the ban: %v", err)
	}
	c.Close()
}

// waitTimers waits until the grains hold n timers on the clock.
func waitTimers(t *testing.T, clock *clockwork.FakeClock, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := clock.BlockUntilContext(ctx, n); err != nil {
		t.Fatalf("waiting for %d timers: %v", n, err)
	}
}

func TestDeviceGrainDoesNotWaitForALostMember(t *testing.T) {
	t.Parallel()
	// A member that hosted the user grains is lost: still in the member list, its port dead. Every
	// look-up of a user grain now waits for the cluster's request timeout.
	agent := test.NewInMemAgent()
	n := startNodeWith(t, "", actors.DeviceOptions{}, cluster.Options{LocalAgent: agent, RequestTimeout: 3 * time.Second}, false)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	agent.RegisterService(test.NewAgentServiceStatus("lost-member", "127.0.0.1", dead, []string{actors.UserKind}))
	actortest.Eventually(t, 5*time.Second, "the lost member in the member list", func() bool {
		return n.member.Cluster.MemberList.Members().Len() == 2
	})
	secret := edgetest.AddDevice(t, n.sql, "pot-1", "pot")
	for _, u := range []string{"alice", "bob"} {
		if err := n.sql.Bind(context.Background(), actors.Binding{DeviceID: "pot-1", OpenID: u, Role: actors.RoleMember, BoundAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	c := edgetest.Dial(t, n.addr, "pot-1", secret)
	// A dry reading raises an alert for both users, the next reading only needs its ack: the
	// device edge fails a grain that does not answer within its grain timeout (5 s by default).
	start := time.Now()
	for seq, moisture := range []float32{5, 6} {
		if err := c.Report(&devicepb.Telemetry{Seq: uint64(seq + 1), SoilMoisturePct: moisture, TemperatureC: 20, TankLevelPct: 80}, 10*time.Second, nil); err != nil {
			t.Fatalf("reading %d: %v", seq+1, err)
		}
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("two readings took %v to be acked: the grain waited on the lost member", took)
	}
}

func TestEveryBindingChangeReachesTheUser(t *testing.T) {
	t.Parallel()
	n := startNode(t, "", actors.DeviceOptions{})
	edgetest.AddDevice(t, n.sql, "pot-1", "pot")
	n.bind(t, "pot-1", "alice")
	n.bind(t, "pot-1", "bob")
	n.bind(t, "pot-1", "bob") // again: no change, nothing to tell
	// The owner leaves (the pages' "remove", a WeChat unbind): bob becomes the owner.
	if r := n.request(t, "pot-1", &actorpb.UnbindDevice{OpenId: "alice"}).(*actorpb.BindResult); !r.Ok {
		t.Fatalf("unbind: %v", r)
	}
	want := []string{"alice: bound=true role=owner", "bob: bound=true role=member", "alice: bound=false role=", "bob: bound=true role=owner"}
	actortest.Eventually(t, 5*time.Second, "every change told", func() bool { return len(n.users.all()) >= len(want) })
	got := n.users.all()
	for _, w := range want {
		if !contains(got, w) {
			t.Fatalf("users were told %q, missing %q", got, w)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("users were told %q, want exactly %q", got, want)
	}
}

func TestAPromotedOwnerIsStillTheOwnerAfterARestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	n := startNode(t, dir, actors.DeviceOptions{})
	edgetest.AddDevice(t, n.sql, "pot-1", "pot")
	n.bind(t, "pot-1", "alice")
	n.bind(t, "pot-1", "bob")
	if r := n.request(t, "pot-1", &actorpb.UnbindDevice{OpenId: "alice"}).(*actorpb.BindResult); !r.Ok {
		t.Fatalf("unbind: %v", r)
	}
	if r := n.bind(t, "pot-1", "bob"); r.Role != actors.RoleOwner {
		t.Fatalf("bob is %q after the owner left, want owner", r.Role)
	}
	n.stop()
	again := startNode(t, dir, actors.DeviceOptions{})
	if r := again.bind(t, "pot-1", "bob"); r.Role != actors.RoleOwner {
		t.Fatalf("after a restart bob is %q, want owner", r.Role)
	}
	if r := again.bind(t, "pot-1", "carol"); r.Role != actors.RoleMember {
		t.Fatalf("a new scanner is %q, want member", r.Role)
	}
}
