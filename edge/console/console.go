// Package console is Sprout's web console for the manufacturer (/console): the fleet at a glance
// (online, alerts, firmware), one device's state, readings and event log with a command form,
// provisioning in batches with a printable sheet of QR codes, and revoking a device. Pages are
// server-rendered, work on desktop and phone, and embed their templates and CSS.
//
// It is for the people who make and support the pots, signed in with the admin token (the same
// SPROUT_ADMIN_TOKEN as the JSON API in edge/api); it is not the users' app (edge/web). Reads and
// commands go through the device grains, history and the registry through the store, as the API
// does, so the console can do nothing the API cannot.
package console

import (
	"crypto/hmac"
	"crypto/sha256"
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
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Options configures the console. Zero fields take the defaults documented on each.
type Options struct {
	Cluster *pcluster.Cluster
	Store   actors.Store
	// AdminToken is what the sign-in form asks for (SPROUT_ADMIN_TOKEN). Empty disables the console.
	AdminToken string
	// CookieKey signs session cookies and CSRF tokens (at least 32 bytes). Changing it, or the
	// admin token, signs everyone out.
	CookieKey []byte
	// QRKeys maps a product to its Sprout QR key (edge/wechat/qr); nil: no QR sheet.
	QRKeys map[string][]byte
	// PublicURL is Sprout's public origin (SPROUT_PUBLIC_URL). With it, each label on the QR
	// sheet encodes <PublicURL>/b/<code> (qr.LabelURL), which WeChat's own scanner opens and binds
	// with one scan; without it, the bare code, which only Sprout's page scanner binds (the sheet
	// says so).
	PublicURL string
	Logger    *slog.Logger

	// SessionTTL is how long a sign-in lasts (default 12 h).
	SessionTTL time.Duration
	// PageSize is the number of devices on one fleet page (default 50, at most 1000).
	PageSize int
	// Concurrency bounds the device grains asked for their state at once by one fleet page (default
	// 8); the whole page waits at most GrainTimeout for them.
	Concurrency int
	// GrainTimeout bounds each request to a device grain for its state (default 3 s).
	GrainTimeout time.Duration
	// CommandTimeout is the device's deadline for a command sent from the device page (default
	// actors.DefaultCommandTimeout); the page waits this long plus GrainTimeout for the outcome.
	CommandTimeout time.Duration
	// WaterMs is how long "water" runs the pump (default 5000).
	WaterMs uint32
	// MaxBatch is the most devices one provisioning batch creates (default 200).
	MaxBatch int
	// QRSize is the side of each QR code on the sheet, in pixels (default 256).
	QRSize int
	// ReadingsShown and EventsShown are how many of the latest readings (last 24 h) and events
	// (last 7 days) the device page shows (defaults 20 and 50).
	ReadingsShown, EventsShown int
	// MaxLoginFailures is how many wrong tokens the sign-in form takes per minute from one client
	// address before it answers that address 429 (default 5): the token is the whole fleet's key.
	// Other addresses can still sign in, so one guesser cannot lock the operators out.
	MaxLoginFailures int
	// MaxLoginFailuresTotal caps wrong tokens per minute from all addresses together (default 100),
	// against guessing spread over many addresses. (Behind a reverse proxy every client has the
	// proxy's address; X-Forwarded-For is not trusted, since a guesser could set it.)
	MaxLoginFailuresTotal int
	// RefreshEvery is how often an open fleet page reloads its rows in place (each reload asks
	// the page's grains for their state again, at most PageSize of them); default 5 s, negative:
	// never (the operator reloads).
	RefreshEvery time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// PushHealth, if set, reports the templates' problems and WeChat's refusals that need the
	// operator (the pushes page); PushWake wakes the node's pusher after "send again".
	PushHealth func() PushHealth
	PushWake   func()
	// OTA runs firmware rollouts (docs/ota.md); nil, or a store that keeps no firmware: the
	// firmware and rollout pages say so. Uploads are signed with its SigningKey.
	OTA *actors.OTA
}

func (o *Options) defaults() {
	if o.SessionTTL <= 0 {
		o.SessionTTL = 12 * time.Hour
	}
	if o.PageSize <= 0 {
		o.PageSize = 50
	}
	o.PageSize = min(o.PageSize, 1000)
	if o.Concurrency <= 0 {
		o.Concurrency = 8
	}
	if o.GrainTimeout <= 0 {
		o.GrainTimeout = 3 * time.Second
	}
	if o.CommandTimeout <= 0 {
		o.CommandTimeout = actors.DefaultCommandTimeout
	}
	if o.WaterMs == 0 {
		o.WaterMs = 5000
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 200
	}
	if o.QRSize <= 0 {
		o.QRSize = 256
	}
	if o.ReadingsShown <= 0 {
		o.ReadingsShown = 20
	}
	if o.EventsShown <= 0 {
		o.EventsShown = 50
	}
	if o.MaxLoginFailures <= 0 {
		o.MaxLoginFailures = 5
	}
	if o.RefreshEvery == 0 {
		o.RefreshEvery = 5 * time.Second
	}
	if o.MaxLoginFailuresTotal <= 0 {
		o.MaxLoginFailuresTotal = 100
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Handler serves /console.
type Handler struct {
	opts    Options
	devices *actors.DeviceClient
	key     []byte // HMAC key for cookies and CSRF: derived from CookieKey and AdminToken
	pages   map[string]*template.Template
	static  http.Handler

	mu       sync.Mutex
	failures map[string]*failWindow // wrong tokens by client address, this minute
	allFails failWindow             // wrong tokens from everyone, this minute
}

// failWindow counts wrong tokens during the minute that began at since.
type failWindow struct {
	n     int
	since time.Time
}

// maxFailAddrs bounds the per-address failure table; past it, new addresses count only in the total.
const maxFailAddrs = 10000

// New returns the console's handler. It panics if the embedded templates do not parse (a build
// error, caught by the tests) or if CookieKey is shorter than 32 bytes.
func New(opts Options) *Handler {
	opts.defaults()
	if len(opts.CookieKey) < 32 {
		panic("console: Options.CookieKey must be at least 32 bytes")
	}
	m := hmac.New(sha256.New, opts.CookieKey)
	m.Write([]byte("sprout-console\x00" + opts.AdminToken))
	sub, _ := fs.Sub(staticFS, "static")
	return &Handler{opts: opts, key: m.Sum(nil), pages: parsePages(),
		devices: actors.NewDeviceClient(opts.Cluster, actors.ClientOptions{Timeout: opts.GrainTimeout, Concurrency: opts.Concurrency}),
		static:  http.StripPrefix("/console/static/", http.FileServerFS(sub))}
}

// Routes mounts the console on r.
func (h *Handler) Routes(r chi.Router) {
	r.Route("/console", func(r chi.Router) {
		r.Use(securityHeaders, h.enabled)
		r.Handle("/static/*", h.static)
		r.Get("/login", h.loginForm)
		r.Post("/login", h.login)
		r.Group(func(r chi.Router) {
			r.Use(h.session)
			r.Get("/", h.fleet)
			r.Get("/devices/{id}", h.device)
			r.Post("/devices/{id}/commands", h.command)
			r.Post("/devices/{id}/revoke", h.revoke)
			r.Get("/operations", h.operations)
			r.Post("/operations/commands", h.queueProduct)
			r.Get("/provision", h.provisionForm)
			r.Post("/provision", h.provision)
			r.Post("/logout", h.logout)
			r.Get("/pushes", h.pushes)
			r.Post("/pushes/{id}/retry", h.retryPush)
			r.Get("/firmware", h.firmwarePage)
			r.Post("/firmware", h.uploadFirmware)
			r.Get("/rollouts", h.rolloutsPage)
			r.Post("/rollouts", h.startRollout)
			r.Get("/rollouts/{rid}", h.rolloutPage)
			r.Post("/rollouts/{rid}/{action}", h.rolloutAction)
			h.fleetRoutes(r)
		})
	})
	r.Get("/console", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/console/", http.StatusFound)
	})
}

// enabled refuses everything while no admin token is configured.
func (h *Handler) enabled(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h.opts.AdminToken == "" {
			http.Error(w, "the console is disabled: set SPROUT_ADMIN_TOKEN", http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "same-origin")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}
