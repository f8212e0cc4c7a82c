// Package wechatsim is a fake WeChat for running and testing Sprout without WeChat: the active API
// (access tokens, template and customer-service messages, the hardware platform's /device/*
// calls, parametric QR codes, OAuth2) served over real HTTP, and simulated users who scan QR
// codes, click menus and send text, which it turns into signed (and in safe mode encrypted)
// callbacks to Sprout's /wechat URL exactly as WeChat builds them.
//
// It records everything each user received and exposes it to tests (Conversation, WaitFor) and to
// people (GET /_sim/conversations). It is a simulator, not a conformance suite: where WeChat's
// behaviour is undocumented it picks something plausible and says so in the code.
package wechatsim

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/sprout-iot/sprout/edge/wechat"
)

// Defaults for Options.
const (
	DefaultAppID            = "wxsim0000000000001"
	DefaultSecret           = "simsecret"
	DefaultAccountID        = "gh_sproutsim0"
	DefaultToken            = "simtoken"
	DefaultTokenTTL         = 7200 * time.Second
	DefaultCallbackTimeout  = 5 * time.Second // WeChat's own limit
	DefaultCallbackAttempts = 3
	DefaultCustomerWindow   = 48 * time.Hour
	DefaultCodeTTL          = 5 * time.Minute
)

// Options configures a Platform. The zero value works: one account with the defaults above,
// plaintext callbacks.
type Options struct {
	AppID     string // default DefaultAppID
	Secret    string // default DefaultSecret
	AccountID string // the account's original id (gh_…), ToUserName of every callback

	// Callback settings: what Sprout was configured with in the "server configuration" page.
	CallbackURL    string // Sprout's /wechat URL; may also be set later with SetCallbackURL
	Token          string // default DefaultToken
	EncodingAESKey string // empty: plaintext callbacks
	Mode           wechat.Mode

	// CallbackTimeout is how long a user's callback waits for Sprout's answer before WeChat
	// retries. Default 5 s; tests use less.
	CallbackTimeout time.Duration
	// CallbackAttempts is how many times a callback is sent in all when no answer arrives (WeChat:
	// "总共重试三次", read as three attempts). Default 3.
	CallbackAttempts int

	TokenTTL       time.Duration // access_token lifetime, default 7200 s
	CustomerWindow time.Duration // customer-service window after a user's interaction, default 48 h
	CodeTTL        time.Duration // OAuth2 code lifetime, default 5 min

	// GetQRCodeRespMsg makes /device/getqrcode answer with the older resp_msg{ret_code,error_info}
	// shape instead of base_resp{errcode,errmsg}.
	GetQRCodeRespMsg bool

	Clock  func() time.Time // default time.Now
	Logger *slog.Logger
}

// Platform is one simulated WeChat official account with its users.
type Platform struct {
	opts   Options
	mode   wechat.Mode
	cipher *wechat.Cipher
	log    *slog.Logger
	client *http.Client

	mu          sync.Mutex
	callbackURL string

	jsTicket        string
	jsTicketExp     time.Time
	jsTicketFetches int
	tokens          map[string]time.Time // valid access tokens -> expiry
	current         string               // the latest /cgi-bin/token token (a new one revokes it)
	stable          string
	fetches         int
	stableFetch     int
	calls           map[string]int
	failures        []failure
	users           map[string]*userState
	devices         map[string]*device // by device id
	deviceQR        map[string]string  // device QR ticket -> device id
	sceneQR         map[string]string  // parametric QR scene -> ticket
	codes           map[string]*oauthCode
	templateIDs     map[string]int64 // touser|client_msg_id -> msgid
	entries         map[string][]Entry
	changed         chan struct{}
	seq             int64

	srv *http.Server
	ln  net.Listener
}

type userState struct {
	subscribed bool
	lastActive time.Time
	statusSubs map[string]bool // device ids the user's client subscribed to status of
	created    time.Time
}

type device struct {
	id, ticket, productID string
	authorized            bool
	bound                 map[string]bool // openids
}

type oauthCode struct {
	openID, scope string
	expires       time.Time
	used          bool
}

type failure struct {
	path    string // "" = any API call except the token endpoints
	left    int
	errcode int
}

// New returns a Platform that is not listening; use Handler, Start or NewServer.
func New(opts Options) (*Platform, error) {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&opts.AppID, DefaultAppID)
	def(&opts.Secret, DefaultSecret)
	def(&opts.AccountID, DefaultAccountID)
	def(&opts.Token, DefaultToken)
	if opts.CallbackTimeout <= 0 {
		opts.CallbackTimeout = DefaultCallbackTimeout
	}
	if opts.CallbackAttempts <= 0 {
		opts.CallbackAttempts = DefaultCallbackAttempts
	}
	if opts.TokenTTL <= 0 {
		opts.TokenTTL = DefaultTokenTTL
	}
	if opts.CustomerWindow <= 0 {
		opts.CustomerWindow = DefaultCustomerWindow
	}
	if opts.CodeTTL <= 0 {
		opts.CodeTTL = DefaultCodeTTL
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	p := &Platform{
		opts: opts, mode: opts.Mode, log: opts.Logger.With("component", "wechatsim"),
		client:      &http.Client{Timeout: opts.CallbackTimeout},
		callbackURL: opts.CallbackURL,
		tokens:      map[string]time.Time{}, calls: map[string]int{},
		users: map[string]*userState{}, devices: map[string]*device{},
		deviceQR: map[string]string{}, sceneQR: map[string]string{}, codes: map[string]*oauthCode{},
		templateIDs: map[string]int64{}, entries: map[string][]Entry{},
		changed: make(chan struct{}), seq: 1000000,
	}
	if p.mode == wechat.ModeAuto {
		p.mode = wechat.ModePlaintext
		if opts.EncodingAESKey != "" {
			p.mode = wechat.ModeSafe
		}
	}
	if p.mode != wechat.ModePlaintext {
		c, err := wechat.NewCipher(opts.EncodingAESKey, opts.AppID)
		if err != nil {
			return nil, fmt.Errorf("wechatsim: %w", err)
		}
		p.cipher = c
	}
	return p, nil
}

// NewServer returns a Platform listening on a loopback port (like httptest.NewServer). Close it.
func NewServer(opts Options) (*Platform, error) {
	p, err := New(opts)
	if err != nil {
		return nil, err
	}
	if err := p.Start("127.0.0.1:0"); err != nil {
		return nil, err
	}
	return p, nil
}

// Start listens on addr and serves the API in the background until Close.
func (p *Platform) Start(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("wechatsim: listen %s: %w", addr, err)
	}
	p.mu.Lock()
	p.ln = ln
	p.srv = &http.Server{Handler: p.Handler(), ReadHeaderTimeout: 5 * time.Second}
	p.mu.Unlock()
	go func() {
		if err := p.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			p.log.Error("serve failed", "err", err)
		}
	}()
	return nil
}

// URL is the base URL of the API (what Sprout uses instead of https://api.weixin.qq.com).
func (p *Platform) URL() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln == nil {
		return ""
	}
	return "http://" + p.ln.Addr().String()
}

// Close stops the server.
func (p *Platform) Close() error {
	p.mu.Lock()
	srv := p.srv
	p.mu.Unlock()
	if srv == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return srv.Shutdown(ctx)
}

// SetCallbackURL sets Sprout's callback URL (for when Sprout starts after the simulator).
func (p *Platform) SetCallbackURL(u string) {
	p.mu.Lock()
	p.callbackURL = u
	p.mu.Unlock()
}

// AppID, Secret, Token, EncodingAESKey and AccountID return the account's settings, for configuring
// Sprout against this platform.
func (p *Platform) AppID() string          { return p.opts.AppID }
func (p *Platform) Secret() string         { return p.opts.Secret }
func (p *Platform) Token() string          { return p.opts.Token }
func (p *Platform) EncodingAESKey() string { return p.opts.EncodingAESKey }
func (p *Platform) AccountID() string      { return p.opts.AccountID }

// TokenFetches counts successful /cgi-bin/token calls (not stable_token).
func (p *Platform) TokenFetches() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.fetches
}

// StableTokenFetches counts successful /cgi-bin/stable_token calls.
func (p *Platform) StableTokenFetches() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stableFetch
}

// Calls counts API calls by path (token endpoints included), whatever their outcome.
func (p *Platform) Calls(path string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls[path]
}

// FailNext makes the next n calls to path (or, with path "", to any API except the token
// endpoints) answer errcode (for example -1, 45009, 45011) after the access token is checked.
func (p *Platform) FailNext(path string, n, errcode int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failures = append(p.failures, failure{path: path, left: n, errcode: errcode})
}

// RevokeTokens invalidates every access token, as when another party fetched a new one.
func (p *Platform) RevokeTokens() {
	p.mu.Lock()
	defer p.mu.Unlock()
	clear(p.tokens)
	p.current, p.stable = "", ""
}

func (p *Platform) now() time.Time { return p.opts.Clock() }

func (p *Platform) nextSeq() int64 {
	p.seq++
	return p.seq
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// ClearFailures drops every failure FailNext injected that has not happened yet.
func (p *Platform) ClearFailures() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failures = nil
}
