package main

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/edge/api"
	"github.com/sprout-iot/sprout/edge/tlsconf"
	"github.com/sprout-iot/sprout/edge/wechat/qr"
	"github.com/sprout-iot/sprout/simulations/fleet"
	"github.com/sprout-iot/sprout/simulations/plant"
	"github.com/sprout-iot/sprout/simulations/wechatsim"
)

// runDemo is `make run`: one node on the embedded store, the simulated WeChat platform, a few
// hundred simulated plants and a handful of simulated users, all in one process.
//
// A signal (Ctrl-C, SIGTERM) at any point stops it cleanly, with a nil error: what was started is
// stopped, and an interrupted start is not a failure.
func runDemo(args []string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := demo(ctx, args)
	if ctx.Err() != nil && !errors.Is(err, flag.ErrHelp) && !errors.Is(err, errUsage) {
		return nil
	}
	return err
}

func demo(ctx context.Context, args []string) error {
	var (
		dataDir, edgeAddr, httpAddr, simAddr string
		plants, users                        int
		speed                                int
	)
	fs := newFlagSet("demo", "Runs a small world in one process: a node on the embedded store, a simulated WeChat\n"+
		"platform, simulated plants and simulated WeChat users who bind pots, ask for status, tap \"water now\"\n"+
		"and receive alerts. Prints where to look. Ctrl-C stops everything. The data dir is recreated each run.")
	fs.str(&dataDir, "demo-dir", "./sprout-data/demo", "the demo's embedded store (wiped at start)")
	fs.str(&edgeAddr, "demo-edge-addr", "127.0.0.1:7100", "device TCP listener (another free port if taken)")
	fs.str(&httpAddr, "demo-http-addr", "127.0.0.1:8080", "Sprout's HTTP (another free port if taken)")
	fs.str(&simAddr, "demo-wechat-addr", "127.0.0.1:8081", "the simulated WeChat platform (another free port if taken)")
	fs.int(&plants, "plants", 300, "simulated plants")
	fs.int(&users, "users", 6, "simulated WeChat users")
	fs.int(&speed, "speed", 120, "simulated seconds per real second (soil dries faster)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := newLogger("text", "warn")

	if err := os.RemoveAll(dataDir); err != nil {
		return err
	}
	platform, err := wechatsim.New(wechatsim.Options{})
	if err != nil {
		return err
	}
	if err := platform.Start(freeOr(simAddr)); err != nil {
		return err
	}
	defer platform.Close()

	qrKey := make([]byte, 32)
	_, _ = crand.Read(qrKey)
	token := randomHex(8)
	var cfg serveConfig
	sfs := newFlagSet("serve", "")
	cfg.register(sfs)
	_ = sfs.Parse(nil)
	cfg.store.dataDir, cfg.store.db = dataDir, ""
	cfg.edgeAddr, cfg.httpAddr, cfg.adminToken = freeOr(edgeAddr), freeOr(httpAddr), token
	// TLS out of the box: a development CA and node certificate in the demo's data dir.
	tlsFiles, err := tlsconf.GenerateDev(filepath.Join(dataDir, "tls"), []string{"localhost", "127.0.0.1"}, 0)
	if err != nil {
		return err
	}
	cfg.links.tlsCert, cfg.links.tlsKey = tlsFiles.Cert, tlsFiles.Key
	cfg.links.mqttAddr, cfg.links.mqttsAddr, cfg.links.edgeTLSAddr = freeOr("127.0.0.1:1883"), freeOr("127.0.0.1:8883"), freeOr("127.0.0.1:7443")
	cfg.wx.appID, cfg.wx.secret, cfg.wx.token = platform.AppID(), platform.Secret(), platform.Token()
	cfg.wx.account, cfg.wx.apiBase = platform.AccountID(), platform.URL()
	cfg.wx.qrKeys = "sprout-pot=" + hex.EncodeToString(qrKey)
	cfg.wx.commandTimeout = 20 * time.Second
	var pushed, failed atomic.Int64
	n, err := startNode(ctx, &cfg, log, nodeHooks{wechat: func(w *wechatNode) {
		w.sent = func(p actors.Push) {
			if p.Status == actors.PushSent {
				pushed.Add(1)
			} else if p.Status == actors.PushFailed {
				failed.Add(1)
			}
		}
	}})
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		n.stop(sctx)
	}()
	platform.SetCallbackURL("http://" + n.HTTPAddr + "/wechat")

	// Provision the plants.
	var creds []fleet.Credential
	for i := 1; i <= plants; i++ {
		d, err := api.NewDevice(ctx, n.store, fmt.Sprintf("pot-%04d", i), "sprout-pot", nil)
		if err != nil {
			return err
		}
		creds = append(creds, fleet.Credential{ID: d.ID, Secret: d.Secret})
	}
	fmt.Printf(`
Sprout demo: %d plants, %d WeChat users, one node (embedded store in %s).

  users' WeChat conversations  http://%s/_sim/conversations   (as the simulated WeChat recorded them)
  a user's plant pages         http://%s/app/   (sign in as one of the simulated users)
  the manufacturer's console   http://%s/console/   (sign in with the admin token below)
  Sprout API                   http://%s/api/v1/devices/pot-0001   (Authorization: Bearer %s)
  health                       http://%s/readyz
  device edge                  %s   (try: go run ./cmd/sprout sim --server %s ...)
  device edge over TLS         %s   (CA: %s)
  MQTT, MQTTS                  %s, %s   (docs/mqtt.md; try: go run ./cmd/sprout sim --transport mqtt --server %s ...)

A quarter of the plants talk MQTT, a quarter MQTTS, a quarter the TCP edge over TLS, the rest plain TCP.
Ctrl-C stops everything.

`, plants, users, dataDir, strings.TrimPrefix(platform.URL(), "http://"), n.HTTPAddr, n.HTTPAddr, n.HTTPAddr, token, n.HTTPAddr, n.EdgeAddr, n.EdgeAddr,
		n.links.EdgeTLSAddr, tlsFiles.CA, n.links.MQTTAddr, n.links.MQTTSAddr, n.links.MQTTAddr)
	caTLS, err := tlsconf.ClientConfig(tlsFiles.CA, "")
	if err != nil {
		return err
	}

	// The plants: some start dry so that alerts come early; a few have flaky pumps.
	fctx, fcancel := context.WithCancel(ctx)
	defer fcancel()
	var rep atomic.Pointer[fleet.Snapshot]
	go func() {
		_, _ = fleet.Run(fctx, fleet.Options{Devices: creds, Servers: []string{n.EdgeAddr}, Speed: float64(speed), ConnectRate: 200,
			Progress: func(s fleet.Snapshot) { rep.Store(&s) },
			Plant: func(i int, c *plant.Config) {
				switch i % 4 {
				case 1:
					c.Transport, c.Servers = plant.TransportMQTT, []string{n.links.MQTTAddr}
				case 2:
					c.Transport, c.Servers, c.TLS = plant.TransportMQTT, []string{n.links.MQTTSAddr}, caTLS
				case 3:
					c.Servers, c.TLS = []string{n.links.EdgeTLSAddr}, caTLS
				}
				if i%10 == 0 {
					c.StartMoisture = 22
				}
				if i%25 == 0 {
					c.PumpFaultProbability = 0.3
				}
			}})
	}()

	// The users: each binds a few pots by scanning their printed labels (URLs on this node, what
	// `device add --qr-url` prints) with WeChat's scanner, then lives a little.
	var taps, statuses atomic.Int64
	for u := 0; u < users; u++ {
		go demoUser(fctx, platform, platform.NewUser(fmt.Sprintf("o-demo-user-%d", u+1)), "http://"+n.HTTPAddr, qrKey, u, plants, &taps, &statuses)
	}

	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			fmt.Println("\nstopping...")
			return nil
		case <-tick.C:
			s := rep.Load()
			if s == nil {
				continue
			}
			fmt.Printf("plants online %4d | readings stored %8d | taps %4d, status asks %4d | pushes sent %4d, failed %d\n",
				s.Connected, s.FramesAcked, taps.Load(), statuses.Load(), pushed.Load(), failed.Load())
		}
	}
}

func demoUser(ctx context.Context, p *wechatsim.Platform, u *wechatsim.User, publicURL string, key []byte, idx, plants int, taps, statuses *atomic.Int64) {
	call := func(f func(context.Context) (*wechatsim.Reply, error)) {
		c, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_, _ = f(c)
	}
	call(u.Subscribe)
	for k := 0; k < 3; k++ {
		device := fmt.Sprintf("pot-%04d", 1+(idx*3+k)%plants)
		scene, err := qr.Scene(key, qr.Code{Product: "sprout-pot", Device: device})
		if err != nil {
			continue
		}
		// The pot's printed label: WeChat's scanner opens it, and the bind page signs in and binds.
		c, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, _ = u.Scan(c, qr.LabelURL(publicURL, scene))
		cancel()
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Duration(5+rand.IntN(10)) * time.Second):
		}
		switch rand.IntN(4) {
		case 0:
			statuses.Add(1)
			call(func(c context.Context) (*wechatsim.Reply, error) { return u.ClickMenu(c, actors.MenuStatus) })
		case 1:
			taps.Add(1)
			call(func(c context.Context) (*wechatsim.Reply, error) {
				return u.SendText(c, fmt.Sprintf("浇水 %d", 1+rand.IntN(3)))
			})
		case 2:
			call(func(c context.Context) (*wechatsim.Reply, error) { return u.ClickMenu(c, actors.MenuMyDevices) })
		default:
			taps.Add(1)
			call(func(c context.Context) (*wechatsim.Reply, error) { return u.SendText(c, "water 1") })
		}
	}
}

// freeOr returns addr if it can be listened on, else a free loopback port.
func freeOr(addr string) string {
	ln, err := net.Listen("tcp", addr)
	if err == nil {
		ln.Close()
		return addr
	}
	ln, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return addr
	}
	defer ln.Close()
	return ln.Addr().String()
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = crand.Read(b)
	return hex.EncodeToString(b)
}
