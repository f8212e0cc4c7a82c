package web

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
	"strings"
	"sync/atomic"
	"testing"
	"time"

	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/go-chi/chi/v5"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/cluster"
	"github.com/sprout-iot/sprout/edge/device"
	"github.com/sprout-iot/sprout/messages/actorpb"
	"github.com/sprout-iot/sprout/messages/devicepb"
	"github.com/sprout-iot/sprout/simulations/plant"
	"github.com/sprout-iot/sprout/simulations/wechatsim"
	"github.com/sprout-iot/sprout/store/memory"
)

// world is one Sprout node with the web app, wired to the simulated WeChat platform the way
// `sprout serve` wires it.
type world struct {
	store    *memory.Store
	member   *cluster.Member
	edgeAddr string
	platform *wechatsim.Platform
	web      *Handler
	url      string // the app's origin
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
	p, err := wechatsim.NewServer(wechatsim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	w.platform = p
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
	o := Options{Cluster: m.Cluster, Store: w.store, Users: w.store, CookieKey: key, Logger: log,
		OAuth:          OAuth{AppID: p.AppID(), Secret: p.Secret(), APIBase: p.URL(), AuthorizeBase: p.URL()},
		CommandTimeout: 3 * time.Second, StreamInterval: 200 * time.Millisecond}
	if tune != nil {
		tune(&o)
	}
	w.web = New(o)
	r := chi.NewRouter()
	w.web.Routes(r)
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

// addPot provisions a pot and binds it to the given users (the first is the owner).
func (w *world) addPot(t *testing.T, id string, openIDs ...string) []byte {
	t.Helper()
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	if err := w.store.CreateDevice(context.Background(), actors.Device{ID: id, Product: "pot", Secret: secret, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	for _, o := range openIDs {
		res, err := w.member.Cluster.Request(id, actors.DeviceKind, &actorpb.BindDevice{OpenId: o, Via: "test"},
			pcluster.WithTimeout(5*time.Second))
		if br, ok := res.(*actorpb.BindResult); err != nil || !ok || !br.Ok {
			t.Fatalf("binding %s to %s: %v %v", o, id, res, err)
		}
	}
	return secret
}

// pot is an online test device: it answers every command with status (DONE by default) and
// pings with pongs, and reports readings on demand.
type pot struct {
	c        *plant.Conn
	seq      atomic.Uint64
	commands atomic.Int64
}

func (w *world) connect(t *testing.T, id string, secret []byte, status devicepb.CommandStatus) *pot {
	t.Helper()
	c, err := plant.Dial(w.edgeAddr, "", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if _, err := c.Handshake(plant.Hello{DeviceID: id, Secret: secret}, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	p := &pot{c: c}
	go func() {
		for {
			f, err := c.Recv(0)
			if err != nil {
				return
			}
			switch b := f.Body.(type) {
			case *devicepb.Frame_Command:
				p.commands.Add(1)
				_ = c.Send(&devicepb.Frame{Body: &devicepb.Frame_CommandResult{CommandResult: &devicepb.CommandResult{
					CommandId: b.Command.CommandId, Status: status, WateredMl: b.Command.WaterMs / 50}}})
			case *devicepb.Frame_Ping:
				_ = c.Send(&devicepb.Frame{Body: &devicepb.Frame_Pong{Pong: &devicepb.Pong{Nonce: b.Ping.Nonce}}})
			}
		}
	}()
	return p
}

// report sends one reading (the reader goroutine swallows its Ack).
func (p *pot) report(t *testing.T, moisture, temp, tank float32) {
	t.Helper()
	err := p.c.Send(&devicepb.Frame{Body: &devicepb.Frame_Telemetry{Telemetry: &devicepb.Telemetry{
		Seq: p.seq.Add(1), DeviceTimeMs: time.Now().UnixMilli(), SoilMoisturePct: moisture, TemperatureC: temp,
		TankLevelPct: tank, SupplyMv: 3300}}})
	if err != nil {
		t.Fatal(err)
	}
}

// signIn walks the OAuth flow as a browser would, choosing openID on the simulated consent
// page, and returns a client holding the session cookie.
func (w *world) signIn(t *testing.T, openID string) *http.Client {
	t.Helper()
	c, _ := w.signInAt(t, openID, "/app/")
	return c
}

// signInAt opens target (a path with its query) signed out, goes through OAuth as openID and
// expects to land back on target; it returns the client and the page.
func (w *world) signInAt(t *testing.T, openID, target string) (*http.Client, string) {
	t.Helper()
	w.platform.NewUser(openID)
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second,
		CheckRedirect: func(req *http.Request, _ []*http.Request) error {
			if req.URL.Path == "/connect/oauth2/authorize" && req.URL.Query().Get("sim_openid") == "" {
				q := req.URL.Query()
				q.Set("sim_openid", openID)
				req.URL.RawQuery = q.Encode()
			}
			return nil
		}}
	res, err := c.Get(w.url + target)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || res.Request.URL.RequestURI() != target {
		t.Fatalf("sign-in ended at %s with %d: %s", res.Request.URL, res.StatusCode, body)
	}
	return c, string(body)
}

// post submits a form as the page's script does (JSON answer), adding the session's CSRF token
// unless vals has one; the client follows redirects.
func (w *world) post(t *testing.T, c *http.Client, openID, path string, vals url.Values) (int, string) {
	t.Helper()
	if vals == nil {
		vals = url.Values{}
	}
	if _, ok := vals["csrf"]; !ok {
		vals.Set("csrf", w.web.csrfToken(w.sessionOf(t, c, openID)))
	}
	req, _ := http.NewRequest(http.MethodPost, w.url+path, strings.NewReader(vals.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// users asks the device grain for the bound OpenIDs (owner first) and the config.
func (w *world) users(t *testing.T, id string) *actorpb.DeviceState {
	t.Helper()
	res, err := w.member.Cluster.Request(id, actors.DeviceKind, &actorpb.GetState{}, pcluster.WithTimeout(5*time.Second))
	st, ok := res.(*actorpb.DeviceState)
	if err != nil || !ok {
		t.Fatalf("state of %s: %v %v", id, res, err)
	}
	return st
}

func get(t *testing.T, c *http.Client, u string) (int, string) {
	t.Helper()
	res, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// water taps "water now" as the page's script does.
func (w *world) water(t *testing.T, c *http.Client, openID, device string) (int, string) {
	t.Helper()
	s := w.sessionOf(t, c, openID)
	req, _ := http.NewRequest(http.MethodPost, w.url+"/app/plants/"+device+"/water",
		strings.NewReader(url.Values{"csrf": {w.web.csrfToken(s)}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func (w *world) sessionOf(t *testing.T, c *http.Client, openID string) session {
	t.Helper()
	u, _ := url.Parse(w.url + "/app/")
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == sessionCookie {
			s, err := w.web.decodeSession(ck.Value)
			if err != nil || s.OpenID != openID {
				t.Fatalf("session cookie of %s: %+v %v", openID, s, err)
			}
			return s
		}
	}
	t.Fatalf("%s has no session cookie", openID)
	return session{}
}
