package console

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/sprout-iot/sprout/edge/api"
	"github.com/sprout-iot/sprout/edge/signed"
)

const (
	sessionCookie = "sprout_console"
	// loginCookie carries a random nonce from the sign-in form to its POST: the form's CSRF
	// token is the nonce's MAC, so a page elsewhere cannot post a token into the console.
	loginCookie = "sprout_console_login"
	cookiePath  = "/console"
)

// session is a signed-in admin: the payload of the cookie, "expiry-unix|nonce", signed.
type session struct {
	Payload string
	Expires time.Time
}

type ctxKey struct{}

func sessionFrom(ctx context.Context) session {
	s, _ := ctx.Value(ctxKey{}).(session)
	return s
}

// mac, sign and verify use the console's key for one purpose each (see package signed).
func (h *Handler) mac(purpose, payload string) []byte { return signed.Key(h.key).MAC(purpose, payload) }

func (h *Handler) sign(purpose, payload string) string {
	return signed.Key(h.key).Sign(purpose, payload)
}

func (h *Handler) verify(purpose, value string) (string, bool) {
	return signed.Key(h.key).Verify(purpose, value)
}

func nonce() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (h *Handler) newSession() session {
	exp := h.opts.Now().Add(h.opts.SessionTTL).Truncate(time.Second)
	return session{Payload: strconv.FormatInt(exp.Unix(), 10) + "|" + nonce(), Expires: exp}
}

func (h *Handler) decodeSession(v string) (session, bool) {
	payload, ok := h.verify("session", v)
	if !ok {
		return session{}, false
	}
	exp, _, _ := strings.Cut(payload, "|")
	sec, err := strconv.ParseInt(exp, 10, 64)
	if err != nil {
		return session{}, false
	}
	s := session{Payload: payload, Expires: time.Unix(sec, 0)}
	return s, h.opts.Now().Before(s.Expires)
}

// csrfToken is tied to one session: a token from an earlier sign-in is refused.
func (h *Handler) csrfToken(s session) string {
	return base64.RawURLEncoding.EncodeToString(h.mac("csrf", s.Payload))
}

func checkToken(r *http.Request, want string) bool {
	got := r.PostFormValue("csrf")
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

func setCookie(w http.ResponseWriter, r *http.Request, name, value string, expires time.Time) {
	signed.SetCookie(w, r, name, value, cookiePath, http.SameSiteStrictMode, expires)
}

// session lets signed-in admins through, sends page views to the sign-in form and refuses
// anything else with 401; every POST must carry the session's CSRF token.
func (h *Handler) session(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var s session
		ok := false
		if c, err := r.Cookie(sessionCookie); err == nil {
			s, ok = h.decodeSession(c.Value)
		}
		if !ok {
			if r.Method == http.MethodGet {
				http.Redirect(w, r, "/console/login", http.StatusFound)
				return
			}
			http.Error(w, "not signed in", http.StatusUnauthorized)
			return
		}
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, h.postLimit(r))
			if !checkToken(r, h.csrfToken(s)) {
				http.Error(w, "bad CSRF token: reload the page and try again", http.StatusForbidden)
				return
			}
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, s)))
	})
}

func (h *Handler) loginForm(w http.ResponseWriter, r *http.Request) {
	n := nonce()
	setCookie(w, r, loginCookie, n, h.opts.Now().Add(time.Hour))
	p := h.newPage(r)
	p.CSRF = base64.RawURLEncoding.EncodeToString(h.mac("login", n))
	h.render(w, http.StatusOK, "login.html", p)
}

func (h *Handler) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	c, err := r.Cookie(loginCookie)
	if err != nil || !checkToken(r, base64.RawURLEncoding.EncodeToString(h.mac("login", c.Value))) {
		http.Error(w, "bad CSRF token: reload the sign-in page and try again", http.StatusForbidden)
		return
	}
	addr := clientAddr(r)
	if !h.loginAllowed(addr) {
		w.Header().Set("Retry-After", "60")
		h.messagePage(w, r, http.StatusTooManyRequests, "too_many")
		return
	}
	tok := r.PostFormValue("token")
	if tok == "" || subtle.ConstantTimeCompare([]byte(tok), []byte(h.opts.AdminToken)) != 1 {
		h.loginFailed(addr)
		h.opts.Logger.Warn("console: wrong admin token", "remote", r.RemoteAddr)
		p := h.newPage(r)
		n := nonce()
		setCookie(w, r, loginCookie, n, h.opts.Now().Add(time.Hour))
		p.CSRF = base64.RawURLEncoding.EncodeToString(h.mac("login", n))
		p.Message = p.T("wrong_token")
		h.render(w, http.StatusUnauthorized, "login.html", p)
		return
	}
	s := h.newSession()
	setCookie(w, r, loginCookie, "", time.Time{})
	setCookie(w, r, sessionCookie, h.sign("session", s.Payload), s.Expires)
	h.opts.Logger.Info("console: admin signed in", "remote", r.RemoteAddr)
	http.Redirect(w, r, "/console/", http.StatusSeeOther)
}

func (h *Handler) logout(w http.ResponseWriter, r *http.Request) {
	setCookie(w, r, sessionCookie, "", time.Time{})
	http.Redirect(w, r, "/console/login", http.StatusSeeOther)
}

// clientAddr is the IP a request came from (the TCP peer; forwarded headers are not trusted).
func clientAddr(r *http.Request) string {
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return r.RemoteAddr
}

// loginAllowed reports whether addr may try a token now: fewer than MaxLoginFailures wrong ones
// from it, and fewer than MaxLoginFailuresTotal from everyone, in the current minute.
func (h *Handler) loginAllowed(addr string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.opts.Now()
	if h.allFails.count(now) >= h.opts.MaxLoginFailuresTotal {
		return false
	}
	w := h.failures[addr]
	return w == nil || w.count(now) < h.opts.MaxLoginFailures
}

func (h *Handler) loginFailed(addr string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.opts.Now()
	h.allFails.add(now)
	if h.failures == nil {
		h.failures = map[string]*failWindow{}
	}
	w := h.failures[addr]
	if w == nil {
		if len(h.failures) >= maxFailAddrs {
			for a, old := range h.failures {
				if old.count(now) == 0 {
					delete(h.failures, a)
				}
			}
			if len(h.failures) >= maxFailAddrs {
				return // counted in the total only
			}
		}
		w = &failWindow{}
		h.failures[addr] = w
	}
	w.add(now)
}

// count is how many wrong tokens the window holds at now: none once its minute is over.
func (w *failWindow) count(now time.Time) int {
	if now.Sub(w.since) >= time.Minute {
		return 0
	}
	return w.n
}

func (w *failWindow) add(now time.Time) {
	if w.count(now) == 0 {
		w.n, w.since = 0, now
	}
	w.n++
}

// postLimit bounds a POST body: 16 KiB, or an image and its form for a firmware upload.
func (h *Handler) postLimit(r *http.Request) int64 {
	if h.opts.OTA != nil && r.URL.Path == "/console/firmware" {
		return api.UploadLimit(h.opts.OTA)
	}
	return 16 << 10
}
