package device_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sprout-iot/sprout/actors/actortest"
	"github.com/sprout-iot/sprout/edge/device"
	"github.com/sprout-iot/sprout/messages"
	"github.com/sprout-iot/sprout/messages/deviceclient"
	"github.com/sprout-iot/sprout/messages/devicepb"
	"github.com/sprout-iot/sprout/store/memory"
)

// Tests of what reading welcomed sockets with the poller (no goroutine per socket) makes risky:
// frames split across reads, frames that come with the handshake, many sockets readable at once,
// oversize frames, a socket that ends while its frames are being dispatched. Each also runs with
// a goroutine per connection (the TLS path), which must behave the same.

func bothReadPaths(t *testing.T, run func(t *testing.T, opts device.Options)) {
	for _, tc := range []struct {
		name string
		opts device.Options
	}{{"poller", device.Options{}}, {"goroutine per connection", device.Options{GoroutinePerConn: true}}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			run(t, tc.opts)
		})
	}
}

func encode(t *testing.T, fs ...*devicepb.Frame) []byte {
	t.Helper()
	var b []byte
	for _, f := range fs {
		var err error
		if b, err = messages.AppendFrame(b, f); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

func TestFramesSplitAcrossReadsAreReassembled(t *testing.T) {
	t.Parallel()
	bothReadPaths(t, func(t *testing.T, opts device.Options) {
		st := memory.New()
		n := startNode(t, st, opts)
		secret := n.addDevice(t, "pot-1")
		c := n.connect(t, "pot-1", secret)
		b := encode(t, telemetryFrame(1), telemetryFrame(2), telemetryFrame(3))
		// Cut inside the first length, inside a body, and right after the second frame's length.
		first := len(encode(t, telemetryFrame(1)))
		for _, piece := range [][]byte{b[:1], b[1:5], b[5 : first+1], b[first+1:]} {
			if err := c.SendRaw(piece); err != nil {
				t.Fatal(err)
			}
			time.Sleep(10 * time.Millisecond) // each piece in its own segment, read on its own
		}
		for seq := uint64(1); seq <= 3; seq++ {
			if err := c.AwaitAck(seq, 5*time.Second, nil); err != nil {
				t.Fatalf("seq %d: %v", seq, err)
			}
		}
		rs, _ := st.Readings(context.Background(), "pot-1", time.Time{}, time.Now().Add(time.Hour), 100)
		if len(rs) != 3 {
			t.Fatalf("want 3 stored readings, got %d", len(rs))
		}
	})
}

func TestFramesSentWithAuthAreServedAfterTheWelcome(t *testing.T) {
	t.Parallel()
	bothReadPaths(t, func(t *testing.T, opts device.Options) {
		n := startNode(t, memory.New(), opts)
		secret := n.addDevice(t, "pot-1")
		c, err := deviceclient.Dial(n.addr, "", 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		h := deviceclient.Hello{DeviceID: "pot-1", Secret: secret}
		nonce, err := c.SendHello(h)
		if err != nil {
			t.Fatal(err)
		}
		ch, err := c.AwaitChallenge(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		// Auth, a reading and a Ping in one write: the edge's handshake reads past Auth.
		auth := &devicepb.Frame{Body: &devicepb.Frame_Auth{Auth: &devicepb.Auth{Mac: messages.MAC(secret, nonce, ch.ServerNonce, "pot-1")}}}
		ping := &devicepb.Frame{Body: &devicepb.Frame_Ping{Ping: &devicepb.Ping{Nonce: 7}}}
		if err := c.SendRaw(encode(t, auth, telemetryFrame(1), ping)); err != nil {
			t.Fatal(err)
		}
		f, err := c.Recv(5 * time.Second)
		if err != nil || f.GetWelcome() == nil {
			t.Fatalf("want Welcome first, got %v, %v", f, err)
		}
		var acked, ponged bool
		for !acked || !ponged {
			f, err := c.Recv(5 * time.Second)
			if err != nil {
				t.Fatalf("after the Welcome: %v (ack %v, pong %v)", err, acked, ponged)
			}
			acked = acked || f.GetAck().GetSeq() == 1
			ponged = ponged || f.GetPong().GetNonce() == 7
		}
	})
}

func TestManySocketsReadableAtOnceAreAllServed(t *testing.T) {
	t.Parallel()
	bothReadPaths(t, func(t *testing.T, opts device.Options) {
		const pots = 100
		st := memory.New()
		n := startNode(t, st, opts)
		conns := make([]*deviceclient.Conn, pots)
		for i := range conns {
			id := fmt.Sprintf("pot-%d", i)
			conns[i] = n.connect(t, id, n.addDevice(t, id))
		}
		// Every pot writes its readings at the same moment, in one write each.
		start := make(chan struct{})
		errs := make(chan error, pots)
		var wg sync.WaitGroup
		for i, c := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				if err := c.SendRaw(encode(t, telemetryFrame(1), telemetryFrame(2), telemetryFrame(3))); err != nil {
					errs <- err
					return
				}
				for seq := uint64(1); seq <= 3; seq++ {
					if err := c.AwaitAck(seq, 10*time.Second, nil); err != nil {
						errs <- fmt.Errorf("pot-%d seq %d: %w", i, seq, err)
						return
					}
				}
			}()
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		for i := 0; i < pots; i += 17 {
			rs, _ := st.Readings(context.Background(), fmt.Sprintf("pot-%d", i), time.Time{}, time.Now().Add(time.Hour), 100)
			if len(rs) != 3 {
				t.Fatalf("pot-%d: want 3 stored readings, got %d", i, len(rs))
			}
		}
	})
}

func TestAFrameLargerThanTheLimitAfterTheWelcomeIsRefused(t *testing.T) {
	t.Parallel()
	bothReadPaths(t, func(t *testing.T, opts device.Options) {
		n := startNode(t, memory.New(), opts)
		secret := n.addDevice(t, "pot-1")
		c := n.connect(t, "pot-1", secret)
		// A good frame, then a length past the limit (the body never needs to come).
		b := append(encode(t, telemetryFrame(1)), 0x80, 0x40) // 8192 bytes
		if err := c.SendRaw(b); err != nil {
			t.Fatal(err)
		}
		err := c.AwaitAck(2, 5*time.Second, nil) // reads the ack of 1, then the Close
		expectClose(t, err, devicepb.CloseReason_CLOSE_REASON_FRAME_TOO_LARGE)
		actortest.Eventually(t, 5*time.Second, "the pot offline", func() bool { return !n.state(t, "pot-1").Online })
	})
}

func TestASocketThatEndsWhileItsFramesAreDispatchedLeavesNothingBehind(t *testing.T) {
	t.Parallel()
	bothReadPaths(t, func(t *testing.T, opts device.Options) {
		st := memory.New()
		n := startNode(t, st, opts)
		secret := n.addDevice(t, "pot-1")
		for round := 0; round < 5; round++ {
			c := n.connect(t, "pot-1", secret)
			var fs []*devicepb.Frame
			for seq := uint64(1); seq <= 60; seq++ { // past MaxInFlight: the edge pauses on the way
				fs = append(fs, telemetryFrame(uint64(round*100)+seq))
			}
			if err := c.SendRaw(encode(t, fs...)); err != nil {
				t.Fatal(err)
			}
			if round%2 == 0 {
				_ = c.Reset()
			} else {
				_ = c.Close()
			}
			actortest.Eventually(t, 10*time.Second, "the connection released", func() bool {
				st := n.edge.Stats()
				return st.Open == 0 && st.Pending == 0 && st.PendingBytes == 0
			})
			actortest.Eventually(t, 5*time.Second, "the pot offline", func() bool { return !n.state(t, "pot-1").Online })
		}
		// What was stored is what the pot sent, in order, without gaps within a round.
		rs, _ := st.Readings(context.Background(), "pot-1", time.Time{}, time.Now().Add(time.Hour), 1000)
		last := map[uint64]uint64{}
		for _, r := range rs {
			round, seq := r.Seq/100, r.Seq%100
			if seq != last[round]+1 {
				t.Fatalf("round %d: seq %d after %d", round, seq, last[round])
			}
			last[round] = seq
		}
	})
}
