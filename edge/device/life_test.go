package device_test

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/jonboulle/clockwork"

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

// Tests of a connection's life: every way it ends, its outbound queue, its one writer.

func TestAPotThatResetsRightAfterAuthIsOfflineAtOnce(t *testing.T) {
	t.Parallel()
	n := startNode(t, memory.New(), device.Options{})
	secret := n.addDevice(t, "pot-1")
	c, err := deviceclient.Dial(n.addr, "", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// Auth, then the pot loses power: a reset, while the grain accepts it and before the edge
	// writes the Welcome.
	h := deviceclient.Hello{DeviceID: "pot-1", Secret: secret}
	nonce, _ := c.SendHello(h)
	ch, err := c.AwaitChallenge(2 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SendAuth(h, nonce, ch); err != nil {
		t.Fatal(err)
	}
	_ = c.Reset()
	actortest.Eventually(t, 5*time.Second, "the reset connection released", func() bool { return n.edge.Stats().Open == 0 })
	if st := n.state(t, "pot-1"); st.Online {
		t.Fatalf("a pot whose socket was reset is shown online: %v", st)
	}
	start := time.Now()
	if out := n.command(t, "pot-1", water("cmd-1", 10*time.Second)); out.Outcome != actorpb.Outcome_OUTCOME_OFFLINE {
		t.Fatalf("a command to the reset pot: want offline, got %v", out)
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("the offline answer took %v", took)
	}
}

func TestAnEdgeThatCannotFindTheGrainRefusesThePotAndFreesItsSlot(t *testing.T) {
	t.Parallel()
	// A member hosting no device grains, alone: the cluster cannot place pot-1's grain.
	log := quietLogger()
	m, err := cluster.Start(cluster.Options{Kinds: []*pcluster.Kind{}, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Stop(true) })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	edge := device.NewServer(m.Cluster, device.Options{MaxConnections: 1, Logger: log})
	go func() { _ = edge.Serve(ln) }()
	t.Cleanup(func() { _ = edge.Shutdown(context.Background()) })
	// With one slot, each attempt finds it free again: the refused connection gave it back.
	for i := range 3 {
		actortest.Eventually(t, 5*time.Second, "the slot free", func() bool { return edge.Stats().Open == 0 })
		c, err := deviceclient.Dial(ln.Addr().String(), "", time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Handshake(deviceclient.Hello{DeviceID: "pot-1", Secret: make([]byte, 32)}, 5*time.Second)
		expectClose(t, err, devicepb.CloseReason_CLOSE_REASON_UNAVAILABLE)
		if _, err := c.Recv(2 * time.Second); err == nil {
			t.Fatalf("attempt %d: the refused connection stays open", i+1)
		}
		_ = c.Close()
	}
	actortest.Eventually(t, 5*time.Second, "the slot free", func() bool { return edge.Stats().Open == 0 })
	if st := edge.Stats(); st.Connected != 0 || st.Closed["CLOSE_REASON_UNAVAILABLE"] != 3 {
		t.Fatalf("after three refusals: %+v", st)
	}
}

// smallBuffers makes a few kilobytes of unread frames fill the path from the edge to a pot: the
// listener's accepted sockets get a small send buffer, the pot's socket a small receive buffer.
func smallBuffers(t *testing.T) (net.Listener, func(addr string) *deviceclient.Conn) {
	t.Helper()
	sockopt := func(opt int) func(string, string, syscall.RawConn) error {
		return func(_, _ string, rc syscall.RawConn) error {
			var serr error
			if err := rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, opt, 2048) }); err != nil {
				return err
			}
			return serr
		}
	}
	ln, err := (&net.ListenConfig{Control: sockopt(syscall.SO_SNDBUF)}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dial := func(addr string) *deviceclient.Conn {
		nc, err := (&net.Dialer{Timeout: time.Second, Control: sockopt(syscall.SO_RCVBUF)}).Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c := deviceclient.NewConn(nc)
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	return ln, dial
}

func telemetryFrame(seq uint64) *devicepb.Frame {
	return &devicepb.Frame{Body: &devicepb.Frame_Telemetry{Telemetry: reading(seq, 50)}}
}

func TestAPotThatStopsReadingIsClosedAsASlowConsumer(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		limit device.Options
	}{
		{"frame limit", device.Options{MaxPendingFrames: 16, MaxPendingBytes: 1 << 20}},
		{"byte limit", device.Options{MaxPendingFrames: 1 << 20, MaxPendingBytes: 256}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ln, dial := smallBuffers(t)
			opts := tc.limit
			opts.WriteTimeout = time.Minute // the queue's limits end it, not a write timeout
			n := startNodeOn(t, ln, memory.New(), actors.DeviceOptions{}, opts)
			secret := n.addDevice(t, "pot-1")
			c := dial(n.addr)
			if _, err := c.Handshake(deviceclient.Hello{DeviceID: "pot-1", Secret: secret}, 5*time.Second); err != nil {
				t.Fatal(err)
			}
			// The pot reports and never reads: its acks fill the socket, then the edge's queue.
			go func() {
				for seq := uint64(1); ; seq++ {
					_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
					if c.Send(telemetryFrame(seq)) != nil {
						return
					}
				}
			}()
			var most device.Stats
			actortest.Eventually(t, 30*time.Second, "the pot closed as a slow consumer", func() bool {
				st := n.edge.Stats()
				most.Pending, most.PendingBytes = max(most.Pending, st.Pending), max(most.PendingBytes, st.PendingBytes)
				return st.Closed["CLOSE_REASON_SLOW_CONSUMER"] == 1
			})
			actortest.Eventually(t, 5*time.Second, "the connection released", func() bool { return n.edge.Stats().Open == 0 })
			if most.Pending > int64(opts.MaxPendingFrames) || most.PendingBytes > int64(opts.MaxPendingBytes) {
				t.Fatalf("the queue grew past its limits: %d frames, %d bytes", most.Pending, most.PendingBytes)
			}
			if st := n.edge.Stats(); st.Pending != 0 || st.PendingBytes != 0 {
				t.Fatalf("frames still queued for a closed connection: %+v", st)
			}
			if st := n.state(t, "pot-1"); st.Online {
				t.Fatalf("the slow pot is still online: %v", st)
			}
		})
	}
}

func TestCloseFollowsTheFramesQueuedBeforeIt(t *testing.T) {
	t.Parallel()
	ln, dial := smallBuffers(t)
	n := startNodeOn(t, ln, memory.New(), actors.DeviceOptions{},
		device.Options{MaxPendingFrames: 1 << 20, MaxPendingBytes: 1 << 30, WriteTimeout: time.Minute})
	secret := n.addDevice(t, "pot-1")
	c := dial(n.addr)
	if _, err := c.Handshake(deviceclient.Hello{DeviceID: "pot-1", Secret: secret}, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	// Many readings and a Ping, sent without reading: their acks and the Pong are more than the
	// socket holds, so most wait in the edge's queue.
	const reports = 10000
	var burst []byte
	for seq := uint64(1); seq <= reports; seq++ {
		burst, _ = messages.AppendFrame(burst, telemetryFrame(seq))
	}
	burst, _ = messages.AppendFrame(burst, &devicepb.Frame{Body: &devicepb.Frame_Ping{Ping: &devicepb.Ping{Nonce: 7}}})
	go func() { _ = c.SendRaw(burst) }()
	const handshake = 2 // Challenge, Welcome
	actortest.Eventually(t, 20*time.Second, "every answer written or queued", func() bool {
		st := n.edge.Stats()
		return st.FramesOut+st.Pending == handshake+reports+1
	})
	if st := n.edge.Stats(); st.Pending == 0 {
		t.Fatalf("nothing waits in the queue, so this test shows nothing: %+v", st)
	}
	// The edge shuts down: its Close comes after all of them.
	go func() { _ = n.edge.Shutdown(context.Background()) }()
	acked, pong := map[uint64]bool{}, false
	for {
		f, err := c.Recv(10 * time.Second)
		if err != nil {
			t.Fatalf("after %d acks (pong %v): %v", len(acked), pong, err)
		}
		if cl := f.GetClose(); cl != nil {
			if cl.Reason != devicepb.CloseReason_CLOSE_REASON_SERVER_SHUTDOWN {
				t.Fatalf("want Close(SERVER_SHUTDOWN), got %v", cl)
			}
			break
		}
		switch {
		case f.GetAck() != nil:
			acked[f.GetAck().Seq] = true
		case f.GetPong() != nil:
			pong = true
		}
	}
	if len(acked) != reports || !pong {
		t.Fatalf("before the Close: %d of %d acks, pong %v", len(acked), reports, pong)
	}
	if _, err := c.Recv(5 * time.Second); !errors.Is(err, io.EOF) {
		t.Fatalf("after the Close: want the end of the stream, got %v", err)
	}
}

// gatedStore holds every write of readings until open is closed.
type gatedStore struct {
	actors.Store
	entered chan struct{}
	open    chan struct{}
	once    sync.Once
}

func (g *gatedStore) Append(ctx context.Context, id string, b actors.Batch) error {
	if len(b.Readings) > 0 {
		g.once.Do(func() { close(g.entered) })
		<-g.open
	}
	return g.Store.Append(ctx, id, b)
}

func TestAReportItsGrainNeverAnswersEndsTheConnectionAfterTheGrainTimeout(t *testing.T) {
	t.Parallel()
	st := &gatedStore{Store: memory.New(), entered: make(chan struct{}), open: make(chan struct{})}
	clock := clockwork.NewFakeClock()
	n := startNode(t, st, device.Options{Clock: clock, GrainTimeout: 5 * time.Second})
	t.Cleanup(func() { close(st.open) }) // before the node stops
	secret := n.addDevice(t, "pot-1")
	c := n.connect(t, "pot-1", secret)
	if err := c.Send(telemetryFrame(1)); err != nil {
		t.Fatal(err)
	}
	<-st.entered // the grain is stuck storing it
	actortest.Eventually(t, 5*time.Second, "the report read", func() bool { return n.edge.Stats().FramesIn == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := clock.BlockUntilContext(ctx, 1); err != nil { // the watchdog's ticker
		t.Fatal(err)
	}
	clock.Advance(6 * time.Second)
	f, err := c.Recv(5 * time.Second)
	if err != nil || f.GetClose().GetReason() != devicepb.CloseReason_CLOSE_REASON_UNAVAILABLE {
		t.Fatalf("want Close(UNAVAILABLE) once the grain timeout has passed, got %v %v", f, err)
	}
}
