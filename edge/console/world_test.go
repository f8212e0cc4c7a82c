package console

import (
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/go-chi/chi/v5"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/cluster"
	"github.com/sprout-iot/sprout/edge/device"
	"github.com/sprout-iot/sprout/messages/devicepb"
	"github.com/sprout-iot/sprout/simulations/plant"
	"github.com/sprout-iot/sprout/store/memory"
)

const testToken = "test-admin-token-0123456789"

// world is one Sprout node with the console, wired as `sprout serve` wires it: a memory store,
// a cluster member hosting device grains, the device edge, and the console on an HTTP server.
type world struct {
	store    *memory.Store
	member   *cluster.Member
	edgeAddr string
	console  *Handler
	url      string
}

func quiet() *slog.Logger {
	level := slog.LevelError
	if os.Getenv("SPROUT_TEST_LOG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

func newWorld(t *testing.T, tune func(*Options)) *world {
	t.Helper()
	w := &world{store: memory.New()}
	log := quiet()
	m, err := cluster.Start(cluster.Options{Logger: log, Kinds: []*pcluster.Kind{
		actors.NewDeviceKind(actors.DeviceOptions{Store: w.store, Users: w.store, Logger: log}),
	}})
	if err != nil {
		t.Fatal(err)
	}
	w.member = m
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	edge := device.NewServer(m.Cluster, device.Options{Logger: log})
	go func() { _ = edge.Serve(ln) }()
	w.edgeAddr = ln.Addr().String()

	key := make([]byte, 32)
	_, _ = rand.Read(key)
	qrKey := make([]byte, 16)
	_, _ = rand.Read(qrKey)
	o := Options{Cluster: m.Cluster, Store: w.store, AdminToken: testToken, CookieKey: key, Logger: log,
		QRKeys: map[string][]byte{"sprout-pot": qrKey}, CommandTimeout: 3 * time.Second}
	if tune != nil {
		tune(&o)
	}
	w.console = New(o)
	r := chi.NewRouter()
	w.console.Routes(r)
	srv := httptest.NewServer(r)
	w.url = srv.URL
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
		_ = edge.Shutdown(context.Background())
		m.Stop(true)
	})
	return w
}

func (w *world) addDevice(t *testing.T, id string) []byte {
	t.Helper()
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	if err := w.store.CreateDevice(context.Background(), actors.Device{ID: id, Product: "sprout-pot", Secret: secret, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	return secret
}

// pot is an online test device that answers every command with DONE and pings with pongs.
type pot struct {
	c        *plant.Conn
	seq      atomic.Uint64
	commands atomic.Int64
	kinds    chan devicepb.CommandKind
}

func (w *world) connect(t *testing.T, id string, secret []byte) *pot {
	t.Helper()
	c, err := plant.Dial(w.edgeAddr, "", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if _, err := c.Handshake(plant.Hello{DeviceID: id, Secret: secret, Firmware: "1.4.2"}, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	p := &pot{c: c, kinds: make(chan devicepb.CommandKind, 16)}
	go func() {
		for {
			f, err := c.Recv(0)
			if err != nil {
				return
			}
			switch b := f.Body.(type) {
			case *devicepb.Frame_Command:
				p.commands.Add(1)
				p.kinds <- b.Command.Kind
				_ = c.Send(&devicepb.Frame{Body: &devicepb.Frame_CommandResult{CommandResult: &devicepb.CommandResult{
					CommandId: b.Command.CommandId, Status: devicepb.CommandStatus_COMMAND_STATUS_DONE, WateredMl: b.Command.WaterMs / 50}}})
			case *devicepb.Frame_Ping:
				_ = c.Send(&devicepb.Frame{Body: &devicepb.Frame_Pong{Pong: &devicepb.Pong{Nonce: b.Ping.Nonce}}})
			}
		}
	}()
	return p
}

func (p *pot) report(t *testing.T, moisture, temp, tank float32) {
	t.Helper()
	err := p.c.Send(&devicepb.Frame{Body: &devicepb.Frame_Telemetry{Telemetry: &devicepb.Telemetry{
		Seq: p.seq.Add(1), DeviceTimeMs: time.Now().UnixMilli(), SoilMoisturePct: moisture, TemperatureC: temp,
		TankLevelPct: tank, SupplyMv: 3300}}})
	if err != nil {
		t.Fatal(err)
	}
}

// client is a browser without JavaScript: a cookie jar that does not follow redirects.
func client() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Timeout: 15 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func get(t *testing.T, c *http.Client, u string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("Accept-Language", "en")
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func post(t *testing.T, c *http.Client, u string, form url.Values) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept-Language", "en")
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrfOf is the CSRF token in a page's forms.
func csrfOf(t *testing.T, body string) string {
	t.Helper()
	m := csrfField.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no CSRF token in the page:\n%s", body)
	}
	return m[1]
}

// signIn fills the sign-in form with token and returns the POST's status and the client.
func (w *world) signIn(t *testing.T, token string) (*http.Client, int) {
	t.Helper()
	c := client()
	_, body := get(t, c, w.url+"/console/login")
	status, _ := post(t, c, w.url+"/console/login", url.Values{"csrf": {csrfOf(t, body)}, "token": {token}})
	return c, status
}
