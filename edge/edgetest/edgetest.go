// Package edgetest stands up the part of a Sprout node that the edge packages' tests share
// (edge/console, edge/web, edge/wechat/bridge): a quiet logger, cluster members, the device edge
// on a loopback port, provisioned devices, test pots online at that edge (speaking the protocol
// through messages/deviceclient), an HTTP server for the handler under test, and GET and
// form-POST helpers. Each package keeps its own test world for what differs (its options, the
// simulated WeChat platform, its handlers). It is imported by tests only and imports no
// simulator; the browser helpers are in edge/webtest.
package edgetest

import (
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/go-chi/chi/v5"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/cluster"
	"github.com/sprout-iot/sprout/edge/device"
	"github.com/sprout-iot/sprout/messages/deviceclient"
	"github.com/sprout-iot/sprout/messages/devicepb"
)

// Quiet logs errors only, so that passing tests print nothing; SPROUT_TEST_LOG=1 logs everything.
func Quiet() *slog.Logger {
	level := slog.LevelError
	if os.Getenv("SPROUT_TEST_LOG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// StartMember starts a cluster member, stopped when the test ends.
func StartMember(t testing.TB, o cluster.Options) *cluster.Member {
	t.Helper()
	m, err := cluster.Start(o)
	if err != nil {
		t.Fatalf("starting a cluster member: %v", err)
	}
	t.Cleanup(func() { m.Stop(true) })
	return m
}

// ServeDevices runs the device edge in front of m on a loopback port and returns its address. It
// shuts down when the test ends, before m stops.
func ServeDevices(t testing.TB, m *cluster.Member, log *slog.Logger) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	edge := device.NewServer(m.Cluster, device.Options{Logger: log})
	go func() { _ = edge.Serve(ln) }()
	t.Cleanup(func() { _ = edge.Shutdown(context.Background()) })
	return ln.Addr().String()
}

// StartNode starts one member hosting kinds with the device edge in front of it, as `sprout serve`
// does, and returns the member and the edge's address. Both stop when the test ends.
func StartNode(t testing.TB, log *slog.Logger, kinds ...*pcluster.Kind) (*cluster.Member, string) {
	t.Helper()
	m := StartMember(t, cluster.Options{Logger: log, Kinds: kinds})
	return m, ServeDevices(t, m, log)
}

// Registry is where AddDevice provisions devices (a part of actors.Store).
type Registry interface {
	CreateDevice(ctx context.Context, d actors.Device) error
}

// AddDevice provisions device id of product with a fresh random 32-byte secret, which it returns.
func AddDevice(t testing.TB, r Registry, id, product string) []byte {
	t.Helper()
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	if err := r.CreateDevice(context.Background(), actors.Device{ID: id, Product: product, Secret: secret, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	return secret
}

// Dial brings device id online at the device edge and hands the connection to the test, which
// reads it itself (nothing answers commands or pings). It is closed when the test ends.
func Dial(t testing.TB, edgeAddr, id string, secret []byte) *deviceclient.Conn {
	t.Helper()
	return dial(t, edgeAddr, deviceclient.Hello{DeviceID: id, Secret: secret})
}

func dial(t testing.TB, edgeAddr string, h deviceclient.Hello) *deviceclient.Conn {
	t.Helper()
	c, err := deviceclient.Dial(edgeAddr, "", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if _, err := c.Handshake(h, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	return c
}

// PotOptions shape how a Pot answers.
type PotOptions struct {
	// Firmware is the version the pot announces (default deviceclient.DefaultFirmware).
	Firmware string
	// Status answers every command (default COMMAND_STATUS_DONE), with 1 ml watered per 50 ms of
	// WaterMs.
	Status devicepb.CommandStatus
	// OncePerID counts and answers a command id only the first time, as the firmware does when the
	// device grain sends an open command again; otherwise every Command frame counts.
	OncePerID bool
}

// kindsBuffer is how many command kinds a Pot keeps for a test that has not read them yet; later
// ones are dropped so that the pot keeps answering.
const kindsBuffer = 64

// Pot is an online test device: a reader answers its commands and pings, counts the commands and
// reports their kinds, and the test sends readings with Report.
type Pot struct {
	c        *deviceclient.Conn
	seq      atomic.Uint64
	commands atomic.Int64
	kinds    chan devicepb.CommandKind

	ackMu sync.Mutex
	acked uint64        // the highest seq acked
	ackCh chan struct{} // closed and replaced at every ack
}

// Connect brings device id online at the device edge as a Pot; its connection closes when the test
// ends.
func Connect(t testing.TB, edgeAddr, id string, secret []byte, o PotOptions) *Pot {
	t.Helper()
	if o.Status == 0 {
		o.Status = devicepb.CommandStatus_COMMAND_STATUS_DONE
	}
	p := &Pot{c: dial(t, edgeAddr, deviceclient.Hello{DeviceID: id, Secret: secret, Firmware: o.Firmware}),
		kinds: make(chan devicepb.CommandKind, kindsBuffer), ackCh: make(chan struct{})}
	go p.answer(o)
	return p
}

func (p *Pot) answer(o PotOptions) {
	seen := map[string]bool{}
	for {
		f, err := p.c.Recv(0)
		if err != nil {
			return
		}
		switch b := f.Body.(type) {
		case *devicepb.Frame_Command:
			if o.OncePerID {
				if seen[b.Command.CommandId] {
					continue
				}
				seen[b.Command.CommandId] = true
			}
			p.commands.Add(1)
			select {
			case p.kinds <- b.Command.Kind:
			default:
			}
			_ = p.c.Send(&devicepb.Frame{Body: &devicepb.Frame_CommandResult{CommandResult: &devicepb.CommandResult{
				CommandId: b.Command.CommandId, Status: o.Status, WateredMl: b.Command.WaterMs / 50}}})
		case *devicepb.Frame_Ping:
			_ = p.c.Send(&devicepb.Frame{Body: &devicepb.Frame_Pong{Pong: &devicepb.Pong{Nonce: b.Ping.Nonce}}})
		case *devicepb.Frame_Ack:
			p.ackMu.Lock()
			if b.Ack.Seq > p.acked {
				p.acked = b.Ack.Seq
			}
			close(p.ackCh)
			p.ackCh = make(chan struct{})
			p.ackMu.Unlock()
		}
	}
}

// reportAckTimeout bounds how long Report waits for the edge's Ack of its reading.
const reportAckTimeout = 10 * time.Second

// awaitAck waits until seq is acked (stored by the grain), so what a test checks next sees it.
func (p *Pot) awaitAck(t testing.TB, seq uint64) {
	t.Helper()
	deadline := time.After(reportAckTimeout)
	for {
		p.ackMu.Lock()
		done, ch := p.acked >= seq, p.ackCh
		p.ackMu.Unlock()
		if done {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("reading %d was not acked within %s", seq, reportAckTimeout)
		}
	}
}

// Commands is how many commands the pot has received.
func (p *Pot) Commands() int64 { return p.commands.Load() }

// Kinds receives the kind of each command the pot receives, in order.
func (p *Pot) Kinds() <-chan devicepb.CommandKind { return p.kinds }

// Report sends one reading and returns once the edge acked it (the grain has stored it and taken
// it into its state), so the pages and the API show it from then on.
func (p *Pot) Report(t testing.TB, moisture, temp, tank float32) {
	t.Helper()
	seq := p.seq.Add(1)
	err := p.c.Send(&devicepb.Frame{Body: &devicepb.Frame_Telemetry{Telemetry: &devicepb.Telemetry{
		Seq: seq, DeviceTimeMs: time.Now().UnixMilli(), SoilMoisturePct: moisture, TemperatureC: temp,
		TankLevelPct: tank, SupplyMv: 3300}}})
	if err != nil {
		t.Fatal(err)
	}
	p.awaitAck(t, seq)
}

// Serve serves the routes a handler adds to a chi router on a loopback HTTP server and returns
// its URL. The server closes, with any connection still open, when the test ends.
func Serve(t testing.TB, routes func(chi.Router)) string {
	t.Helper()
	r := chi.NewRouter()
	routes(r)
	srv := httptest.NewServer(r)
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
	})
	return srv.URL
}

// Get fetches u with c, adding header, and returns the answer's status and body.
func Get(t testing.TB, c *http.Client, u string, header http.Header) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	return do(t, c, req, header)
}

// PostForm posts form to u with c, adding header, and returns the answer's status and body.
func PostForm(t testing.TB, c *http.Client, u string, form url.Values, header http.Header) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return do(t, c, req, header)
}

func do(t testing.TB, c *http.Client, req *http.Request, header http.Header) (int, string) {
	t.Helper()
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}
