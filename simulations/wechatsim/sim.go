// Package wechatsim is a simulated WeChat official account (服务号) with the hardware platform, for
// running and testing Sprout without WeChat. It is written from WeChat's public documentation, not
// from Sprout's code (it imports nothing of Sprout), and it is as strict as the documentation:
//
//   - the active API over real HTTP: access tokens, customer-service messages under the
//     interaction allowance (45015, 45047, 43004), template messages checked against the account's
//     templates (40037, 47003, 45009) and answered later by TEMPLATESENDJOBFINISH, parametric QR
//     codes, the device APIs (/device/*), OAuth2 and the JS-SDK ticket;
//   - simulated users who follow, unfollow, type, tap the menu, open pages and scan codes with
//     WeChat's scanner, which become signed (and in safe mode encrypted) callbacks to Sprout's URL
//     exactly as WeChat builds them;
//   - a record of every user's conversation (Conversation, WaitFor), as JSON
//     (GET /_sim/conversations) and as a phone chat (GET /_sim/chat).
//
// Where WeChat's behaviour is not documented the simulator takes the conservative reading and says
// so next to the code.
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
)

// Defaults for Options.
const (
	DefaultAppID              = "wxsim0000000000001"
	DefaultSecret             = "simsecret"
	DefaultAccountID          = "gh_sproutsim0"
	DefaultToken              = "simtoken"
	DefaultTokenTTL           = 7200 * time.Second
	DefaultCallbackTimeout    = 5 * time.Second // WeChat's own limit
	DefaultCallbackAttempts   = 3
	DefaultCustomerWindow     = 48 * time.Hour // after a message from the user
	DefaultCustomerAllowance  = 5              // customer-service sends after a message from the user
	DefaultEventWindow        = time.Minute    // after a menu click, a subscribe or a scan
	DefaultEventAllowance     = 3              // customer-service sends after such an event
	DefaultCodeTTL            = 5 * time.Minute
	DefaultTemplateDailyQuota = 100000
)

// Options configures a Platform. The zero value works: one account with the defaults above,
// plaintext callbacks and DefaultTemplates.
type Options struct {
	AppID     string // default DefaultAppID
	Secret    string // default DefaultSecret
	AccountID string // the account's original id (gh_…), ToUserName of every callback

	// Callback settings: what Sprout was configured with in the "server configuration" page.
	CallbackURL    string // Sprout's /wechat URL; may also be set later with SetCallbackURL
	Token          string // default DefaultToken
	EncodingAESKey string // 43 characters; empty: plaintext callbacks
	Mode           Mode   // default ModeAuto (safe with a key, plaintext without)

	// CallbackTimeout is how long a callback waits for Sprout's answer before WeChat drops the
	// connection and retries. Default 5 s; tests use less.
	CallbackTimeout time.Duration
	// CallbackAttempts is how many times a callback is sent in all when no answer arrives (WeChat:
	// "总共重试三次", read as three attempts). Default 3.
	CallbackAttempts int

	TokenTTL time.Duration // access_token lifetime, default 7200 s
	CodeTTL  time.Duration // OAuth2 code lifetime, default 5 min

	// The customer-service allowance (客服消息下发额度). A message from the user opens
	// CustomerWindow (default 48 h) with CustomerAllowance sends (default 5); a menu click, a
	// subscribe or a scan opens EventWindow (default 1 min) with EventAllowance sends (default 3).
	// The latest action replaces the previous window.
	CustomerWindow    time.Duration
	CustomerAllowance int
	EventWindow       time.Duration
	EventAllowance    int

	// Templates are the account's private templates (我的模板); nil means DefaultTemplates().
	Templates []Template
	// TemplateDailyQuota is how many template sends a day are accepted before 45009.
	// Default DefaultTemplateDailyQuota.
	TemplateDailyQuota int

	// OAuthDomains, when set, are the hosts (网页授权域名) a redirect_uri may point to; any other
	// gets WeChat's "redirect_uri 参数错误" page. Empty: any host.
	OAuthDomains []string

	// GetQRCodeRespMsg makes /device/getqrcode answer with the older resp_msg{ret_code,error_info}
	// shape instead of base_resp{errcode,errmsg}.
	GetQRCodeRespMsg bool

	Clock  func() time.Time // default time.Now
	Logger *slog.Logger
}

// Platform is one simulated WeChat official account with its users.
type Platform struct {
	opts      Options
	mode      Mode
	env       *envelope
	log       *slog.Logger
	client    *http.Client
	templates map[string]*Template

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
	deviceQR        map[string]string  // device QR ticket (http://we.qq.com/d/…) -> device id
	qrByCode        map[string]*paramQR
	qrByScene       map[string]*paramQR
	codes           map[string]*oauthCode
	templateIDs     map[string]int64 // touser|client_msg_id -> msgid
	templateDay     string
	templateCount   int
	receiptsHeld    bool
	receipts        []*receiptJob
	receiptCond     *sync.Cond
	receiptWorker   bool
	closing         bool
	entries         map[string][]Entry
	changed         chan struct{}
	seq             int64
	bg              sync.WaitGroup

	srv *http.Server
	ln  net.Listener
}

type userState struct {
	subscribed   bool
	everFollowed bool
	statusSubs   map[string]bool // device ids the user's client subscribed to status of
	created      time.Time
	snapshot     bool
	blockStatus  string // TEMPLATESENDJOBFINISH status for this user's template sends ("" = success)
	jar          http.CookieJar
	browser      *http.Client

	// The customer-service window the user's latest own action opened.
	windowKind  string // ActionMessage or ActionEvent; "" = never opened
	windowStart time.Time
	windowEnd   time.Time
	windowLeft  int
}

type device struct {
	id, ticket, productID, mac string
	authorized                 bool
	bound                      map[string]bool // openids
}

// paramQR is a parametric QR code made by /cgi-bin/qrcode/create.
type paramQR struct {
	scene, ticket, code string
	expires             time.Time // zero: permanent
}

type oauthCode struct {
	openID, scope string
	snapshot      bool
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
	defD := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	defI := func(i *int, v int) {
		if *i <= 0 {
			*i = v
		}
	}
	defD(&opts.CallbackTimeout, DefaultCallbackTimeout)
	defI(&opts.CallbackAttempts, DefaultCallbackAttempts)
	defD(&opts.TokenTTL, DefaultTokenTTL)
	defD(&opts.CodeTTL, DefaultCodeTTL)
	defD(&opts.CustomerWindow, DefaultCustomerWindow)
	defI(&opts.CustomerAllowance, DefaultCustomerAllowance)
	defD(&opts.EventWindow, DefaultEventWindow)
	defI(&opts.EventAllowance, DefaultEventAllowance)
	defI(&opts.TemplateDailyQuota, DefaultTemplateDailyQuota)
	if opts.Templates == nil {
		opts.Templates = DefaultTemplates()
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
		callbackURL: opts.CallbackURL, templates: map[string]*Template{},
		tokens: map[string]time.Time{}, calls: map[string]int{},
		users: map[string]*userState{}, devices: map[string]*device{},
		deviceQR: map[string]string{}, qrByCode: map[string]*paramQR{}, qrByScene: map[string]*paramQR{},
		codes: map[string]*oauthCode{}, templateIDs: map[string]int64{}, entries: map[string][]Entry{},
		changed: make(chan struct{}), seq: 1000000,
	}
	p.receiptCond = sync.NewCond(&p.mu)
	for i := range opts.Templates {
		t := opts.Templates[i]
		if t.ID == "" {
			return nil, fmt.Errorf("wechatsim: template %d has no ID", i)
		}
		if _, dup := p.templates[t.ID]; dup {
			return nil, fmt.Errorf("wechatsim: template %s declared twice", t.ID)
		}
		p.templates[t.ID] = &t
	}
	if p.mode == ModeAuto {
		p.mode = ModePlaintext
		if opts.EncodingAESKey != "" {
			p.mode = ModeSafe
		}
	}
	if p.mode != ModePlaintext {
		e, err := newEnvelope(opts.EncodingAESKey, opts.AppID)
		if err != nil {
			return nil, fmt.Errorf("wechatsim: %w", err)
		}
		p.env = e
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

// Close stops the server, drops the receipts not posted yet and waits for the one being posted.
func (p *Platform) Close() error {
	p.mu.Lock()
	srv := p.srv
	p.mu.Unlock()
	var err error
	if srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		err = srv.Shutdown(ctx)
	}
	p.mu.Lock()
	for range p.receipts { // receipts not posted yet are dropped: the platform is going away
		p.bg.Done()
	}
	p.receipts, p.closing = nil, true
	p.receiptCond.Broadcast()
	p.mu.Unlock()
	p.bg.Wait()
	return err
}

// SetCallbackURL sets Sprout's callback URL (for when Sprout starts after the simulator).
func (p *Platform) SetCallbackURL(u string) {
	p.mu.Lock()
	p.callbackURL = u
	p.mu.Unlock()
}

// AppID, Secret, Token, EncodingAESKey, AccountID and Mode return the account's settings, for
// configuring Sprout against this platform.
func (p *Platform) AppID() string          { return p.opts.AppID }
func (p *Platform) Secret() string         { return p.opts.Secret }
func (p *Platform) Token() string          { return p.opts.Token }
func (p *Platform) EncodingAESKey() string { return p.opts.EncodingAESKey }
func (p *Platform) AccountID() string      { return p.opts.AccountID }
func (p *Platform) Mode() Mode             { return p.mode }

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

// ClearFailures drops every failure FailNext injected that has not happened yet.
func (p *Platform) ClearFailures() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failures = nil
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
