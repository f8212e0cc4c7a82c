package plant_test

import (
	"context"
	"crypto/hmac"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sprout-iot/sprout/messages"
	"github.com/sprout-iot/sprout/messages/deviceclient"
	"github.com/sprout-iot/sprout/messages/devicepb"
	"github.com/sprout-iot/sprout/simulations/plant"
)

var testSecret = []byte("0123456789abcdef0123456789abcdef")

// server is a scripted edge for tests: it handshakes, then hands each connection to the test,
// optionally acking every Telemetry and Event itself.
type server struct {
	t       *testing.T
	ln      net.Listener
	cfg     *devicepb.Config
	autoAck atomic.Bool
	lastSeq atomic.Uint64 // sent in the next Welcome
	refuse  atomic.Int32  // if set, the CloseReason to answer Hello with
	noProof atomic.Bool   // if set, the Welcome carries no server proof (a server without the secret)
	hellos  atomic.Int32
	conns   chan *sconn
}

func newServer(t *testing.T, cfg *devicepb.Config, autoAck bool) *server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &server{t: t, ln: ln, cfg: cfg, conns: make(chan *sconn, 16)}
	s.autoAck.Store(autoAck)
	t.Cleanup(func() { ln.Close() })
	go s.accept()
	return s
}

func (s *server) addr() string { return s.ln.Addr().String() }

func (s *server) accept() {
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			return
		}
		go s.handshake(deviceclient.NewConn(nc))
	}
}

func (s *server) handshake(c *deviceclient.Conn) {
	f, err := c.Recv(5 * time.Second)
	if err != nil || f.GetHello() == nil {
		c.Close()
		return
	}
	s.hellos.Add(1)
	h := f.GetHello()
	if r := s.refuse.Load(); r != 0 {
		_ = c.Send(&devicepb.Frame{Body: &devicepb.Frame_Close{Close: &devicepb.Close{Reason: devicepb.CloseReason(r)}}})
		c.Close()
		return
	}
	nonce := make([]byte, messages.NonceBytes)
	_ = c.Send(&devicepb.Frame{Body: &devicepb.Frame_Challenge{Challenge: &devicepb.Challenge{ServerNonce: nonce}}})
	f, err = c.Recv(5 * time.Second)
	if err != nil || f.GetAuth() == nil || !hmac.Equal(f.GetAuth().Mac, messages.MAC(testSecret, h.DeviceNonce, nonce, h.DeviceId)) {
		_ = c.Send(&devicepb.Frame{Body: &devicepb.Frame_Close{Close: &devicepb.Close{Reason: devicepb.CloseReason_CLOSE_REASON_AUTH_FAILED}}})
		c.Close()
		return
	}
	proof := messages.ServerProof(testSecret, h.DeviceNonce, nonce)
	if s.noProof.Load() {
		proof = nil // a server that does not know the secret
	}
	_ = c.Send(&devicepb.Frame{Body: &devicepb.Frame_Welcome{Welcome: &devicepb.Welcome{
		SessionId: "test", Config: s.cfg, LastSeq: s.lastSeq.Load(), ServerProof: proof}}})
	sc := &sconn{Conn: c, frames: make(chan *devicepb.Frame, 4096)}
	go func() {
		defer close(sc.frames)
		for {
			f, err := c.Recv(0)
			if err != nil {
				return
			}
			if s.autoAck.Load() {
				if seq, ok := seqOf(f); ok {
					_ = c.Send(&devicepb.Frame{Body: &devicepb.Frame_Ack{Ack: &devicepb.Ack{Seq: seq}}})
				}
			}
			sc.frames <- f
		}
	}()
	s.conns <- sc
}

// next waits for the next connection to complete its handshake.
func (s *server) next(t *testing.T) *sconn {
	t.Helper()
	select {
	case sc := <-s.conns:
		t.Cleanup(func() { sc.Close() })
		return sc
	case <-time.After(5 * time.Second):
		t.Fatal("no connection within 5s")
		return nil
	}
}

type sconn struct {
	*deviceclient.Conn
	frames  chan *devicepb.Frame
	skipped []*devicepb.Frame // read by expect without matching, in order; later expects see them first
}

func seqOf(f *devicepb.Frame) (uint64, bool) {
	switch b := f.Body.(type) {
	case *devicepb.Frame_Telemetry:
		return b.Telemetry.Seq, true
	case *devicepb.Frame_Event:
		return b.Event.Seq, true
	}
	return 0, false
}

// expect returns the first frame not yet returned for which match is true.
func (sc *sconn) expect(t *testing.T, what string, match func(*devicepb.Frame) bool) *devicepb.Frame {
	t.Helper()
	for i, f := range sc.skipped {
		if match(f) {
			sc.skipped = append(sc.skipped[:i], sc.skipped[i+1:]...)
			return f
		}
	}
	deadline := time.After(5 * time.Second)
	for {
		select {
		case f, ok := <-sc.frames:
			if !ok {
				t.Fatalf("connection closed while waiting for %s", what)
			}
			if match(f) {
				return f
			}
			sc.skipped = append(sc.skipped, f)
		case <-deadline:
			t.Fatalf("no %s within 5s", what)
		}
	}
}

// quiet asserts that no frame matching match arrives within d.
func (sc *sconn) quiet(t *testing.T, d time.Duration, what string, match func(*devicepb.Frame) bool) {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case f, ok := <-sc.frames:
			if !ok {
				return
			}
			if match(f) {
				t.Fatalf("unexpected %s: %v", what, f)
			}
		case <-deadline:
			return
		}
	}
}

func (sc *sconn) command(t *testing.T, c *devicepb.Command) {
	t.Helper()
	if err := sc.Send(&devicepb.Frame{Body: &devicepb.Frame_Command{Command: c}}); err != nil {
		t.Fatal(err)
	}
}

func (sc *sconn) result(t *testing.T, id string) *devicepb.CommandResult {
	t.Helper()
	return sc.expect(t, "result of "+id, func(f *devicepb.Frame) bool {
		return f.GetCommandResult().GetCommandId() == id
	}).GetCommandResult()
}

func (sc *sconn) ack(t *testing.T, seq uint64) {
	t.Helper()
	if err := sc.Send(&devicepb.Frame{Body: &devicepb.Frame_Ack{Ack: &devicepb.Ack{Seq: seq}}}); err != nil {
		t.Fatal(err)
	}
}

// run starts p and stops it when the test ends.
func run(t *testing.T, p *plant.Plant) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	var stopped atomic.Bool
	stop = func() {
		if stopped.Swap(true) {
			return
		}
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return within 10s of cancel")
		}
	}
	t.Cleanup(stop)
	return stop
}

func testConfig(addr string) plant.Config {
	return plant.Config{
		ID: "pot-1", Secret: testSecret, Servers: []string{addr},
		ReportInterval: time.Hour, MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
		Model: plant.ModelParams{NoisePct: -1},
	}
}

func isTelemetry(f *devicepb.Frame) bool { return f.GetTelemetry() != nil }
