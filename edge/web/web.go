// Package web is Sprout's H5 app for WeChat users (/app): sign-in by WeChat OAuth2 (snsapi_base),
// the user's bound plants with their latest readings, online and alert state, a live stream of
// those readings, and "water now". Pages are server-rendered, mobile-first, Chinese by default
// (English with ?lang=en or Accept-Language), with templates and assets embedded in the binary.
//
// It is not the manufacturer's console and not the JSON API (edge/api): a user here only ever
// sees the plants bound to them, and every read and command goes through the device grain with
// the user's OpenID, so the grain, not this package, is the last word on who may do what.
package web

import (
	"context"
	"embed"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"sync"
	"time"

	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/go-chi/chi/v5"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/edge/wechat/api"
	"github.com/sprout-iot/sprout/edge/wechat/qr"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// OAuth is the official account's web-authorisation settings.
type OAuth struct {
	AppID  string
	Secret string // never logged
	// APIBase is WeChat's API (the code exchange); default api.DefaultBaseURL.
	APIBase string
	// AuthorizeBase is where the consent redirect goes; default api.DefaultAuthorizeBase.
	AuthorizeBase string
}

// Options configures the app. Zero fields take the defaults documented on each.
type Options struct {
	Cluster *pcluster.Cluster
	Store   actors.Store     // readings history (the 24 h chart)
	Users   actors.UserStore // bindings: which plants a user has
	OAuth   OAuth
	// CookieKey signs session cookies and CSRF tokens (at least 32 bytes). Changing it signs
	// everyone out.
	CookieKey []byte
	// PublicURL is the app's external origin (https://sprout.example.com), used to build the
	// OAuth redirect_uri, which must be on the account's 网页授权域名. Empty: taken from the request.
	PublicURL string
	// SessionTTL is how long a sign-in lasts (default 7 days).
	SessionTTL time.Duration
	// CommandInterval is the least time between two commands of one user (default 3 s): a
	// second tap within it is refused with 429 and nothing is sent.
	CommandInterval time.Duration
	// WaterMs is how long "water now" runs the pump (default 5000).
	WaterMs uint32
	// CommandTimeout is the device's deadline for a command (default actors.DefaultCommandTimeout);
	// the page waits this long plus GrainTimeout for the outcome.
	CommandTimeout time.Duration
	// GrainTimeout bounds each request to a device grain for state (default 3 s).
	GrainTimeout time.Duration
	// StreamInterval is how often the live stream polls the plants' state (default 1 s).
	StreamInterval time.Duration
	// MaxStreams is the number of open live streams per user (default 4); more get 429.
	MaxStreams int
	// MaxPlants bounds the plants shown to one user (default 50).
	MaxPlants int
	// InviteTTL is how long an owner's invite link stays valid (default 24 h).
	InviteTTL time.Duration
	// VerifyScene checks the code printed on a pot (a Sprout QR token, or its URL form) and returns
	// the device it names; wire it to qr.Verify with the product QR keys. Nil: "bind a plant" is
	// not offered.
	VerifyScene func(code string) (deviceID string, err error)
	// VerifyDeviceQR resolves a WeChat device QR code (http://we.qq.com/d/…) scanned with the
	// bind page's scanner to its device id; wire it to /device/verify_qrcode
	// (api.Client.VerifyQRCode). Nil: such codes are refused as invalid.
	VerifyDeviceQR func(ctx context.Context, content string) (deviceID string, err error)
	// JSSDK returns wx.config for a page URL (a signature over the account's jsapi_ticket). Nil:
	// the "scan" and "configure WiFi in WeChat" buttons are not shown (typing the code and the
	// AirKiss / ESP-TOUCH instructions still work).
	JSSDK func(ctx context.Context, pageURL string) (*JSConfig, error)
	// Follow is how the pages tell a user who does not follow the official account to follow it
	// (after binding from a label). Zero: a plain "follow the account" note.
	Follow Follow
	// JSSDKScript is the URL of WeChat's JS-SDK (default DefaultJSSDKScript).
	JSSDKScript string
	Logger      *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

func (o *Options) defaults() {
	if o.SessionTTL <= 0 {
		o.SessionTTL = 7 * 24 * time.Hour
	}
	if o.CommandInterval <= 0 {
		o.CommandInterval = 3 * time.Second
	}
	if o.WaterMs == 0 {
		o.WaterMs = 5000
	}
	if o.CommandTimeout <= 0 {
		o.CommandTimeout = actors.DefaultCommandTimeout
	}
	if o.GrainTimeout <= 0 {
		o.GrainTimeout = 3 * time.Second
	}
	if o.StreamInterval <= 0 {
		o.StreamInterval = time.Second
	}
	if o.MaxStreams <= 0 {
		o.MaxStreams = 4
	}
	if o.MaxPlants <= 0 {
		o.MaxPlants = 50
	}
	if o.InviteTTL <= 0 {
		o.InviteTTL = 24 * time.Hour
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.JSSDKScript == "" {
		o.JSSDKScript = DefaultJSSDKScript
	}
}

// DefaultJSSDKScript is WeChat's JS-SDK, which the scan and WiFi buttons need.
const DefaultJSSDKScript = "https://res.wx.qq.com/open/js/jweixin-1.6.0.js"

// Handler serves /app.
type Handler struct {
	opts    Options
	devices *actors.DeviceClient
	oauth   *api.OAuth
	pages   map[string]*template.Template

	mu      sync.Mutex
	lastCmd map[string]time.Time // OpenID -> last accepted command, for CommandInterval
	streams map[string]int       // OpenID -> open live streams
	static  http.Handler
}

// New returns the app's handler. It panics if the embedded templates do not parse (a build
// error, caught by the tests) or if CookieKey is shorter than 32 bytes.
func New(opts Options) *Handler {
	opts.defaults()
	if len(opts.CookieKey) < 32 {
		panic("web: Options.CookieKey must be at least 32 bytes")
	}
	sub, _ := fs.Sub(staticFS, "static")
	h := &Handler{
		opts:    opts,
		devices: actors.NewDeviceClient(opts.Cluster, actors.ClientOptions{Timeout: opts.GrainTimeout, Concurrency: opts.MaxPlants}),
		oauth: &api.OAuth{BaseURL: opts.OAuth.APIBase, AuthorizeBase: opts.OAuth.AuthorizeBase,
			AppID: opts.OAuth.AppID, Secret: opts.OAuth.Secret},
		pages:   parsePages(),
		lastCmd: map[string]time.Time{},
		streams: map[string]int{},
		static:  http.StripPrefix("/app/static/", http.FileServerFS(sub)),
	}
	return h
}

// Routes mounts the app on r.
func (h *Handler) Routes(r chi.Router) {
	r.Route("/app", func(r chi.Router) {
		r.Use(securityHeaders)
		r.Get("/oauth", h.oauthCallback)
		r.With(h.session).Get("/b/{code}", h.labelBind)
		r.Handle("/static/*", h.static)
		r.Group(func(r chi.Router) {
			r.Use(h.session)
			r.Get("/", h.plants)
			r.Get("/plants/{id}", h.plant)
			r.Post("/plants/{id}/water", h.water)
			r.Post("/plants/{id}/settings", h.settings)
			r.Get("/plants/{id}/unbind", h.unbindConfirm)
			r.Post("/plants/{id}/unbind", h.unbind)
			r.Post("/plants/{id}/members/remove", h.removeMember)
			r.Get("/plants/{id}/invite", h.invite)
			r.Get("/join", h.joinConfirm)
			r.Post("/join", h.join)
			r.Get("/bind", h.bindForm)
			r.Post("/bind", h.bindCode)
			r.Get("/wifi", h.wifi)
			r.Get("/events", h.events)
			r.Post("/logout", h.logout)
		})
	})
	r.With(securityHeaders).Get(qr.LabelPath+"{code}", labelRedirect)
	r.Get("/app", func(w http.ResponseWriter, r *http.Request) {
		target := "/app/"
		if r.URL.RawQuery != "" {
			target += "?" + r.URL.RawQuery
		}
		http.Redirect(w, r, target, http.StatusFound)
	})
}

func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "same-origin")
		hd.Set("X-Frame-Options", "DENY")
		next.ServeHTTP(w, r)
	})
}
