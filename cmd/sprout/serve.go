package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/go-chi/chi/v5"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/cluster"
	"github.com/sprout-iot/sprout/cluster/telemetry"
	"github.com/sprout-iot/sprout/edge/api"
	"github.com/sprout-iot/sprout/edge/console"
	"github.com/sprout-iot/sprout/edge/device"
	"github.com/sprout-iot/sprout/edge/devicelink"
	"github.com/sprout-iot/sprout/edge/mqtt"
	"github.com/sprout-iot/sprout/edge/web"
	"github.com/sprout-iot/sprout/messages/actorpb"
)

// serveConfig is everything `sprout serve` can be told.
type serveConfig struct {
	store      storeFlags
	edgeAddr   string
	httpAddr   string
	adminToken string
	logFormat  string
	logLevel   string

	clusterProvider string
	consulAddr      string
	consulTTL       time.Duration
	clusterHost     string
	clusterPort     int
	advertise       string

	edge      device.Options
	links     linkConfig
	grain     actors.DeviceOptions
	ota       actors.OTAOptions
	wx        wechatConfig
	retention retentionConfig

	// firmwareKey is the signing key file for images uploaded through the API and the console.
	firmwareKey string
}

func (c *serveConfig) register(fs *flagSet) {
	c.store.register(fs)
	fs.str(&c.edgeAddr, "edge-addr", ":7100", "device TCP listener address, plaintext; empty turns it off (do so in production, with --edge-tls-addr)")
	c.links.register(fs)
	fs.str(&c.httpAddr, "http-addr", ":8080", "HTTP address (WeChat callbacks, API, pages, /healthz, /readyz)")
	fs.str(&c.adminToken, "admin-token", "", "bearer token for /api/v1; empty disables the API")
	fs.str(&c.logFormat, "log-format", "json", "log format: json or text")
	fs.str(&c.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.str(&c.clusterProvider, "cluster", "local", "cluster provider: local (one node) or consul")
	fs.str(&c.consulAddr, "consul-addr", "127.0.0.1:8500", "Consul agent HTTP address (with --cluster consul)")
	fs.dur(&c.consulTTL, "consul-ttl", 3*time.Second, "how long Consul keeps a member that stopped refreshing (refreshed every third of it): shorter finds dead nodes sooner, but a node stalled longer than this drops out of its peers' member lists until it restarts (docs/cluster.md)")
	fs.str(&c.clusterHost, "cluster-host", "127.0.0.1", "host the cluster remote endpoint binds")
	fs.int(&c.clusterPort, "cluster-port", 0, "port of the cluster remote endpoint (0: any free port)")
	fs.str(&c.advertise, "cluster-advertise", "", "host:port other members dial (default cluster-host:port)")
	fs.dur(&c.edge.HandshakeTimeout, "handshake-timeout", 10*time.Second, "longest a device may take from connect to Auth")
	fs.dur(&c.edge.IdleTimeout, "idle-timeout", 90*time.Second, "a device silent this long (no frame, no Ping) is dropped and goes offline")
	fs.dur(&c.edge.WriteTimeout, "write-timeout", 10*time.Second, "longest one write to a device may block before it is dropped as a slow consumer")
	fs.int(&c.edge.MaxFrameBytes, "max-frame-bytes", 1024, "largest frame accepted from a device")
	fs.int(&c.edge.MaxPendingFrames, "max-pending-frames", device.DefaultMaxPendingFrames, "frames queued for one device before it is dropped as a slow consumer")
	fs.int(&c.edge.MaxPendingBytes, "max-pending-bytes", device.DefaultMaxPendingBytes, "bytes queued for one device before it is dropped as a slow consumer")
	fs.int(&c.edge.OTAChunksPerSecond, "ota-chunks-per-second", device.DefaultOTAChunksPerSecond, "most firmware chunks of 512 bytes this node sends per second, all pots and both device edges (TCP, MQTT) together (docs/ota.md)")
	fs.dur(&c.edge.OTARecheck, "ota-recheck", device.DefaultOTARecheck, "how often connected pots are checked against rollouts changed by another node or the CLI")
	fs.int(&c.ota.ChunkBytes, "ota-chunk-bytes", actors.DefaultChunkBytes, "firmware chunk size offered to pots on the TCP edge (at most 512; MQTT: --mqtt-ota-chunk-bytes)")
	fs.str(&c.firmwareKey, "firmware-key", "", "firmware signing key file (sprout firmware keygen) for images uploaded through the API and the console; empty: uploads are refused")
	fs.int(&c.ota.MaxFirmwareBytes, "max-firmware-bytes", actors.DefaultMaxFirmwareBytes, "largest firmware image an upload may hold")
	fs.dur(&c.ota.TimeoutCheck, "ota-timeout-check", actors.DefaultTimeoutCheck, "how often rollouts are checked for a stage past its timeout (docs/ota.md)")
	fs.int(&c.edge.MaxConnections, "max-connections", 10000, "most device connections this node holds")
	fs.BoolVar(&c.edge.GoroutinePerConn, "edge-goroutine-per-conn", envDefault("edge-goroutine-per-conn", false, strconv.ParseBool),
		"read every plain-TCP device connection on a goroutine of its own, as TLS ones are (default: an epoll poller reads idle connections without one; docs/performance.md) ["+envName("edge-goroutine-per-conn")+"]")
	fs.BoolVar(&c.edge.SingleReports, "edge-single-reports", envDefault("edge-single-reports", false, strconv.ParseBool),
		"send each device report to its grain on its own instead of batching a read's reports into one store append: for a rolling upgrade from a version without report batching (docs/cluster.md, Rolling upgrades) ["+envName("edge-single-reports")+"]")
	fs.int(&c.edge.MaxHandshakes, "edge-max-handshakes", device.DefaultMaxHandshakes, "most device handshakes waiting for their grain at once, on each device edge (TCP, MQTT); past it a pot is refused as busy (TCP: told when to come back) (negative: no limit; docs/protocol.md)")
	fs.dur(&c.edge.BusyRetry, "edge-busy-retry", device.DefaultBusyRetry, "mean wait a pot refused as busy is told (spread from half to one and a half times it)")
	fs.dur(&c.edge.GrainTimeout, "grain-timeout", 5*time.Second, "longest the edge waits for a device grain")
	fs.dur(&c.grain.IdleTimeout, "grain-idle-timeout", 10*time.Minute, "an offline device grain with nothing to do is passivated after this")
	fs.int(&c.grain.FlapConnects, "flap-connects", 15, "a pot that connects more often than this within --flap-window is refused for --flap-ban (negative: never)")
	fs.dur(&c.grain.FlapWindow, "flap-window", time.Minute, "the window of --flap-connects")
	fs.dur(&c.grain.FlapBan, "flap-ban", 5*time.Minute, "how long a pot that reconnects in a loop is refused (it is told when to come back)")
	c.wx.register(fs)
	c.retention.register(fs)
}

// node is one running Sprout node.
type node struct {
	log    *slog.Logger
	store  actors.Store
	member *cluster.Member
	edge   *device.Server
	links  *links
	http   *http.Server
	router chi.Router
	wx     *wechatNode
	tel    *telemetry.Telemetry
	// stopOTA ends the rollout stage-timeout checker.
	stopOTA context.CancelFunc

	EdgeAddr, HTTPAddr string
}

// nodeHooks let `sprout demo` observe a node without a second code path.
type nodeHooks struct {
	notify func(*actorpb.DeviceNotice)
	wechat func(*wechatNode) // called before the WeChat side starts
}

func startNode(ctx context.Context, cfg *serveConfig, log *slog.Logger, hooks nodeHooks) (*node, error) {
	if cfg.clusterProvider == cluster.ProviderConsul && !strings.HasPrefix(cfg.store.db, "postgres") {
		return nil, fmt.Errorf("a multi-node cluster needs one shared store: set SPROUT_DB=postgres://... " +
			"(the embedded store belongs to one node; several nodes on their own embedded stores would each see a different history)")
	}
	st, desc, err := cfg.store.open(ctx)
	if err != nil {
		return nil, err
	}
	st = withDebugDelay(st, cfg.store.debugDelay)
	n := &node{log: log, store: st}
	cfg.grain.Store = st
	cfg.grain.Logger = log
	cfg.grain.Notify = hooks.notify
	users, _ := st.(actors.UserStore)
	cfg.grain.Users = users
	wx, err := newWeChat(&cfg.wx, st, users, log)
	if err != nil {
		_ = st.Close()
		return nil, err
	}
	cfg.grain.Join = wx.joinOptions()
	if hooks.wechat != nil {
		hooks.wechat(wx)
	}
	m, err := cluster.Start(cluster.Options{
		Provider: cfg.clusterProvider, ConsulAddr: cfg.consulAddr, ConsulTTL: cfg.consulTTL, Host: cfg.clusterHost, Port: cfg.clusterPort,
		AdvertisedHost: cfg.advertise, Logger: log, Kinds: append([]*pcluster.Kind{actors.NewDeviceKind(cfg.grain)}, wx.kinds()...),
	})
	if err != nil {
		_ = st.Close()
		return nil, fmt.Errorf("joining the cluster: %w", err)
	}
	n.member = m
	if n.tel, err = telemetry.Setup(ctx, telemetry.Options{Node: m.Address()}); err != nil {
		n.stop(context.Background())
		return nil, fmt.Errorf("telemetry: %w", err)
	}
	var edgeLn net.Listener
	if cfg.edgeAddr != "" {
		if edgeLn, err = net.Listen("tcp", cfg.edgeAddr); err != nil {
			n.stop(context.Background())
			return nil, fmt.Errorf("device edge on %s: %w", cfg.edgeAddr, err)
		}
	}
	httpLn, err := net.Listen("tcp", cfg.httpAddr)
	if err != nil {
		if edgeLn != nil {
			_ = edgeLn.Close()
		}
		n.stop(context.Background())
		return nil, fmt.Errorf("HTTP on %s: %w", cfg.httpAddr, err)
	}
	n.HTTPAddr = httpLn.Addr().String()
	cfg.edge.Logger = log
	var ota *actors.OTA
	var mqttEdge atomic.Pointer[mqtt.Server] // set once the MQTT edge runs (StageOpened reads it)
	if fw, ok := st.(actors.FirmwareStore); ok {
		cfg.ota.Store, cfg.ota.Devices, cfg.ota.Logger = fw, st, log
		cfg.ota.StageOpened = func() {
			if n.edge != nil {
				n.edge.OfferNow()
			}
			if m := mqttEdge.Load(); m != nil {
				m.OfferNow()
			}
		}
		if cfg.firmwareKey != "" {
			if cfg.ota.SigningKey, err = readSigningKey(cfg.firmwareKey); err != nil {
				_ = httpLn.Close()
				if edgeLn != nil {
					_ = edgeLn.Close()
				}
				n.stop(context.Background())
				return nil, fmt.Errorf("--firmware-key: %w", err)
			}
		}
		ota = actors.NewOTA(cfg.ota)
		cfg.edge.OTA, cfg.links.mqtt.OTA = ota, ota
		// One pace for both edges: --ota-chunks-per-second bounds the node, not each edge.
		pace := devicelink.NewPace(cfg.edge.OTAChunksPerSecond)
		cfg.edge.OTAPace, cfg.links.mqtt.OTAPace = pace, pace
		cfg.links.mqtt.OTARecheck = cfg.edge.OTARecheck
		otaCtx, cancel := context.WithCancel(context.Background())
		n.stopOTA = cancel
		go ota.Run(otaCtx)
	}
	n.edge = device.NewServer(m.Cluster, cfg.edge)
	if edgeLn != nil {
		n.EdgeAddr = edgeLn.Addr().String()
		go func() {
			if err := n.edge.Serve(edgeLn); err != nil {
				log.Error("device edge stopped", "err", err)
			}
		}()
	}
	cfg.links.mqtt.GrainTimeout = cfg.edge.GrainTimeout
	cfg.links.mqtt.MaxHandshakes = cfg.edge.MaxHandshakes
	n.links, err = startLinks(ctx, &cfg.links, m.Cluster, n.edge, log)
	if err != nil {
		_ = httpLn.Close()
		n.stop(context.Background())
		return nil, err
	}
	mqttEdge.Store(n.links.mqtt)
	r := chi.NewRouter()
	api.New(m.Cluster, st, api.Options{AdminToken: cfg.adminToken, Logger: log, Ready: n.ready, Self: m.Address(), PushWake: wx.wake, OTA: ota}).Routes(r)
	if cfg.adminToken != "" {
		qrKeys, err := parseQRKeys(cfg.wx.qrKeys)
		if err != nil {
			n.stop(context.Background())
			return nil, err
		}
		console.New(console.Options{Cluster: m.Cluster, Store: st, AdminToken: cfg.adminToken,
			CookieKey: cfg.wx.cookieKey(), QRKeys: qrKeys, PublicURL: cfg.wx.publicURL, Logger: log, PushHealth: wx.pushHealth, PushWake: wx.wake, OTA: ota}).Routes(r)
	}
	r.Method(http.MethodGet, "/metrics", n.tel.Handler())
	if err := registerNodeMetrics(n.tel, n); err != nil {
		n.stop(context.Background())
		return nil, err
	}
	if err := registerMQTTMetrics(n.tel, n.links); err != nil {
		n.stop(context.Background())
		return nil, err
	}
	if cfg.wx.appID != "" && users != nil {
		web.New(web.Options{Cluster: m.Cluster, Store: st, Users: users, Logger: log, CookieKey: cfg.wx.cookieKey(),
			PublicURL: cfg.wx.publicURL,
			OAuth:     web.OAuth{AppID: cfg.wx.appID, Secret: cfg.wx.secret, APIBase: cfg.wx.apiBase, AuthorizeBase: cfg.wx.authorizeBase()},
			WaterMs:   uint32(cfg.wx.waterMs), CommandTimeout: cfg.wx.commandTimeout, VerifyScene: wx.verifyScene,
			JSSDK: wx.jsConfig(m.Cluster), VerifyDeviceQR: wx.verifyDeviceQR(m.Cluster), PressWindow: cfg.wx.joinPress,
			Follow: web.Follow{QR: cfg.wx.followQR, URL: cfg.wx.followURL, State: followState(users)}}).Routes(r)
	}
	if err := wx.start(m.Cluster, r, m.Address()); err != nil {
		n.stop(context.Background())
		return nil, err
	}
	n.wx = wx
	n.router = r
	n.http = &http.Server{Handler: r, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute}
	go func() {
		if err := n.http.Serve(httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("HTTP stopped", "err", err)
		}
	}()
	startMaintenance(ctx, st, cfg.retention.every, cfg.retention.options(), log)
	log.Info("sprout node started", "store", desc, "edge", n.EdgeAddr, "edge_tls", n.links.EdgeTLSAddr,
		"mqtt", n.links.MQTTAddr, "mqtts", n.links.MQTTSAddr, "http", n.HTTPAddr,
		"cluster", cfg.clusterProvider, "member", m.Address(), "traces", n.tel.Exporter, "sampler", n.tel.Sampler)
	return n, nil
}

func (n *node) ready(ctx context.Context) error {
	if n.member.Cluster.MemberList.Length() < 1 {
		return errors.New("not joined to the cluster")
	}
	if (n.edge == nil || !n.edge.Listening()) && (n.links == nil || n.links.mqtt == nil || !n.links.mqtt.Listening()) {
		return errors.New("device edge not listening")
	}
	if _, err := n.store.ListDevices(ctx, actors.ListQuery{Limit: 1}); err != nil {
		return fmt.Errorf("storage: %w", err)
	}
	return nil
}

// stop drains: devices are told to reconnect elsewhere, HTTP finishes in-flight requests, the
// pusher finishes the pushes it is sending and releases the rest (it still needs the cluster's
// token grain), the member leaves the cluster, and the store flushes.
func (n *node) stop(ctx context.Context) {
	if n.stopOTA != nil {
		n.stopOTA()
	}
	n.links.stop(ctx)
	if n.edge != nil {
		_ = n.edge.Shutdown(ctx)
	}
	if n.http != nil {
		_ = n.http.Shutdown(ctx)
	}
	if n.wx != nil {
		n.wx.stop(ctx)
	}
	if n.member != nil {
		n.member.Stop(true)
	}
	if err := n.store.Close(); err != nil {
		n.log.Error("closing the store", "err", err)
	}
	if n.tel != nil {
		if err := n.tel.Shutdown(ctx); err != nil {
			n.log.Warn("flushing telemetry", "err", err)
		}
	}
}

func runServe(args []string) error {
	var cfg serveConfig
	fs := newFlagSet("serve", "Runs one Sprout node: the device edges (TCP, MQTT, each also over TLS), HTTP (WeChat callbacks, API, health),\nand device grains in a cluster. Stops cleanly on SIGINT or SIGTERM.")
	cfg.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := newLogger(cfg.logFormat, cfg.logLevel)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	n, err := startNode(ctx, &cfg, log, nodeHooks{})
	if err != nil {
		return err
	}
	<-ctx.Done()
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	n.stop(sctx)
	return nil
}

// followState tells the pages whether a user follows the account, from the contact state the
// user grain and the pusher keep: unfollowed (unsubscribe, or WeChat's 43004), following (any own
// action recorded since), or unknown (nothing recorded: a label scanned by someone who never
// wrote to the account), for which the pages show how to follow.
func followState(users actors.UserStore) func(context.Context, string) (web.FollowState, error) {
	return func(ctx context.Context, openID string) (web.FollowState, error) {
		c, err := users.Contact(ctx, openID)
		switch {
		case err != nil:
			return web.FollowUnknown, err
		case c.Unfollowed:
			return web.NotFollowing, nil
		case c.Kind != "":
			return web.Following, nil
		}
		return web.FollowUnknown, nil
	}
}
