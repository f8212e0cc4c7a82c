package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/go-chi/chi/v5"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/edge/web"
	"github.com/sprout-iot/sprout/edge/wechat"
	"github.com/sprout-iot/sprout/edge/wechat/api"
	"github.com/sprout-iot/sprout/edge/wechat/bridge"
	"github.com/sprout-iot/sprout/edge/wechat/qr"
)

// wechatConfig is the WeChat part of `sprout serve`'s configuration.
type wechatConfig struct {
	appID, secret, token, aesKey, apiBase, account string
	tplAlert, tplOutcome                           string
	qrKeys                                         string
	statusPushes, deviceAPI                        string
	waterMs                                        int
	commandTimeout                                 time.Duration
	alertBurst                                     int
	alertWindow                                    time.Duration
	webCookieKey, publicURL                        string
	followQR, followURL                            string // labels: how the pages tell users to follow
}

// cookieKey signs the pages' session cookies: SPROUT_WEB_COOKIE_KEY (hex, 32+ bytes), or one
// derived from the account's AppID and secret, so that every node agrees without another setting
// (rotating the secret then signs everyone out).
func (c *wechatConfig) cookieKey() []byte {
	if k, err := hex.DecodeString(c.webCookieKey); err == nil && len(k) >= 32 {
		return k
	}
	k := sha256.Sum256([]byte("sprout web cookies|" + c.appID + "|" + c.secret))
	return k[:]
}

// authorizeBase is where the pages send users to sign in: WeChat's own OAuth page, or the
// simulated platform's when the API base points at it.
func (c *wechatConfig) authorizeBase() string {
	if c.apiBase != api.DefaultBaseURL {
		return c.apiBase
	}
	return ""
}

func (c *wechatConfig) register(fs *flagSet) {
	fs.str(&c.appID, "wechat-appid", "", "the official account's AppID; empty disables WeChat")
	fs.str(&c.secret, "wechat-secret", "", "the account's AppSecret (never logged)")
	fs.str(&c.token, "wechat-token", "", "the callback Token from the account's server settings (never logged)")
	fs.str(&c.aesKey, "wechat-aes-key", "", "EncodingAESKey (43 characters) for safe/compatible mode; empty: plaintext mode (never logged)")
	fs.str(&c.apiBase, "wechat-api-base", api.DefaultBaseURL, "WeChat API base URL (the simulated platform's URL in make run)")
	fs.str(&c.account, "wechat-account", "", "the account's original id (gh_...): callbacks to another account are refused, and it is the device type of status pushes")
	fs.str(&c.tplAlert, "wechat-template-alert", "", "template id for alerts, used outside the 48 h customer-service window")
	fs.str(&c.tplOutcome, "wechat-template-outcome", "", "template id for command outcomes, used outside the window")
	fs.str(&c.statusPushes, "wechat-status-pushes", "false", "push device online/offline to WeChat with transmsg (true/false)")
	fs.str(&c.deviceAPI, "wechat-device-api", "false", "call compel_bind/compel_unbind when Sprout's own QR codes bind (true/false)")
	fs.str(&c.qrKeys, "qr-keys", "", "per-product keys of Sprout's own QR codes: product=hexkey[,product=hexkey] (never logged)")
	fs.int(&c.waterMs, "water-ms", 5000, "how long \"water now\" runs the pump")
	fs.dur(&c.commandTimeout, "command-timeout", 30*time.Second, "deadline of a user's water command (1s..300s)")
	fs.int(&c.alertBurst, "alert-burst", 3, "alert pushes per user per --alert-window before they are summarised")
	fs.dur(&c.alertWindow, "alert-window", time.Minute, "the alert rate-limit window")
	fs.str(&c.webCookieKey, "web-cookie-key", "", "hex key (16+ bytes) signing the /app pages' session cookies; empty: derived from the AppID and secret (never logged)")
	fs.str(&c.publicURL, "public-url", "", "the URL users reach this service at (OAuth redirects for /app, printed labels' <URL>/b/<code>); empty: taken from each request")
	c.registerLabel(fs)
}

// parseQRKeys reads product=hexkey pairs.
func parseQRKeys(s string) (qr.KeyMap, error) {
	keys := qr.KeyMap{}
	for _, kv := range strings.Split(s, ",") {
		if kv = strings.TrimSpace(kv); kv == "" {
			continue
		}
		p, k, ok := strings.Cut(kv, "=")
		b, err := hex.DecodeString(k)
		if !ok || err != nil || len(b) < 16 {
			return nil, fmt.Errorf("--qr-keys: want product=hexkey with at least 16 bytes of key, got %q", p+"=...")
		}
		keys[p] = b
	}
	return keys, nil
}

// wechatNode is the WeChat side of one node: the user and token grains, the callback endpoint,
// and the pusher.
type wechatNode struct {
	cfg    *wechatConfig
	users  actors.UserStore
	log    *slog.Logger
	kindsL []*pcluster.Kind
	pusher atomic.Pointer[bridge.Pusher]
	cancel context.CancelFunc
	// pushing is closed when the pusher's Run has returned (its pushes finished or released).
	pushing chan struct{}
	// sent, if set before start, observes every push's recorded fate (the demo's display).
	sent func(actors.Push)
	// qrKeys verify Sprout's own QR codes (scanned in WeChat, or typed into the pages).
	qrKeys qr.KeyMap
}

// verifyScene turns a scanned or typed Sprout QR code into its device id.
func (w *wechatNode) verifyScene(scene string) (string, error) {
	c, err := qr.Verify(w.qrKeys, scene, time.Now())
	return c.Device, err
}

func newWeChat(cfg *wechatConfig, users actors.UserStore, log *slog.Logger) (*wechatNode, error) {
	w := &wechatNode{cfg: cfg, users: users, log: log}
	if users == nil {
		if cfg.appID != "" {
			return nil, fmt.Errorf("WeChat needs a store that keeps bindings and the push outbox")
		}
		return w, nil
	}
	keys, err := parseQRKeys(cfg.qrKeys)
	if err != nil {
		return nil, err
	}
	w.qrKeys = keys
	uo := actors.UserOptions{
		Store: users, Logger: log, AlertTemplateID: cfg.tplAlert, OutcomeTemplateID: cfg.tplOutcome,
		StatusPushes: cfg.statusPushes == "true", CompelBind: cfg.deviceAPI == "true", DeviceType: cfg.account, WaterMs: uint32(cfg.waterMs),
		CommandTimeout: cfg.commandTimeout, AlertBurst: cfg.alertBurst, AlertWindow: cfg.alertWindow,
		VerifyScene: w.verifyScene,
		Pushed: func() {
			if p := w.pusher.Load(); p != nil {
				p.Wake()
			}
		},
	}
	w.kindsL = append(w.kindsL, actors.NewUserKind(uo))
	if cfg.appID != "" {
		f := &api.Fetcher{BaseURL: cfg.apiBase, AppID: cfg.appID, Secret: cfg.secret}
		w.kindsL = append(w.kindsL, bridge.NewTokenKind(f.Fetch, api.CacheOptions{}))
	}
	return w, nil
}

func (w *wechatNode) kinds() []*pcluster.Kind { return w.kindsL }

func (w *wechatNode) enabled() bool { return w.cfg.appID != "" && w.users != nil }

// start mounts /wechat and starts the pusher.
func (w *wechatNode) start(c *pcluster.Cluster, r chi.Router, owner string) error {
	if !w.enabled() {
		return nil
	}
	h, err := wechat.NewHandler(wechat.Options{AppID: w.cfg.appID, Token: w.cfg.token, EncodingAESKey: w.cfg.aesKey,
		AccountID: w.cfg.account, Logger: w.log}, &bridge.Dispatcher{Cluster: c, Logger: w.log})
	if err != nil {
		return fmt.Errorf("WeChat callback endpoint: %w", err)
	}
	r.Handle("/wechat", h)
	client, err := api.New(api.Options{BaseURL: w.cfg.apiBase, Tokens: &bridge.GrainTokens{Cluster: c, AppID: w.cfg.appID}})
	if err != nil {
		return err
	}
	p := bridge.NewPusher(w.users, client, bridge.PusherOptions{Owner: owner, Logger: w.log, Sent: w.sent})
	w.pusher.Store(p)
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel, w.pushing = cancel, make(chan struct{})
	go func() {
		defer close(w.pushing)
		p.Run(ctx)
	}()
	return nil
}

// stop stops the pusher and waits, at most until ctx ends, for the pushes it is sending to be
// recorded and the rest of its batch released.
func (w *wechatNode) stop(ctx context.Context) {
	if w.cancel == nil {
		return
	}
	w.cancel()
	select {
	case <-w.pushing:
	case <-ctx.Done():
		w.log.Warn("stopped waiting for the pusher: pushes it was sending are sent again after their lease", "err", ctx.Err())
	}
}

// jsConfig signs wx.config for the pages (JS-SDK: scanQRCode, configWXDeviceWiFi).
func (w *wechatNode) jsConfig(c *pcluster.Cluster) func(ctx context.Context, pageURL string) (*web.JSConfig, error) {
	client, err := api.New(api.Options{BaseURL: w.cfg.apiBase, Tokens: &bridge.GrainTokens{Cluster: c, AppID: w.cfg.appID}})
	if err != nil {
		return nil
	}
	j := &bridge.JSSDK{Client: client, AppID: w.cfg.appID}
	return func(ctx context.Context, pageURL string) (*web.JSConfig, error) {
		cfg, err := j.Config(ctx, pageURL)
		if err != nil {
			return nil, err
		}
		return &web.JSConfig{AppID: cfg.AppID, Timestamp: cfg.Timestamp, NonceStr: cfg.NonceStr, Signature: cfg.Signature}, nil
	}
}
