package web

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/sprout-iot/sprout/edge/signed"
)

const (
	sessionCookie = "sprout_session"
	stateCookie   = "sprout_oauth_state"
	// stateTTL bounds the time between the redirect to WeChat and the return (codes live 5 min).
	stateTTL = 10 * time.Minute
)

// session is a signed-in WeChat user.
type session struct {
	OpenID  string
	Expires time.Time
}

type ctxKey struct{}

func sessionFrom(ctx context.Context) session {
	s, _ := ctx.Value(ctxKey{}).(session)
	return s
}

var errBadSession = errors.New("bad or expired session")

// sign, mac and verify use the cookie key for one purpose each (see package signed).
func (h *Handler) sign(purpose, payload string) string {
	return signed.Key(h.opts.CookieKey).Sign(purpose, payload)
}

func (h *Handler) mac(purpose, payload string) []byte {
	return signed.Key(h.opts.CookieKey).MAC(purpose, payload)
}

func (h *Handler) verify(purpose, value string) (string, bool) {
	return signed.Key(h.opts.CookieKey).Verify(purpose, value)
}

// encodeSession is "openid|expiry-unix", signed.
func (h *Handler) encodeSession(s session) string {
	return h.sign("session", s.OpenID+"|"+strconv.FormatInt(s.Expires.Unix(), 10))
}

func (h *Handler) decodeSession(v string) (session, error) {
	payload, ok := h.verify("session", v)
	if !ok {
		return session{}, errBadSession
	}
	id, exp, ok := strings.Cut(payload, "|")
	sec, err := strconv.ParseInt(exp, 10, 64)
	if !ok || err != nil || id == "" {
		return session{}, errBadSession
	}
	s := session{OpenID: id, Expires: time.Unix(sec, 0)}
	if !h.opts.Now().Before(s.Expires) {
		return session{}, errBadSession
	}
	return s, nil
}

// csrfToken is tied to one session: it names the OpenID and the session's expiry, so a token
// from another user's (or an earlier) session is refused.
func (h *Handler) csrfToken(s session) string {
	return base64.RawURLEncoding.EncodeToString(h.mac("csrf", s.OpenID+"|"+strconv.FormatInt(s.Expires.Unix(), 10)))
}

func (h *Handler) checkCSRF(r *http.Request, s session) bool {
	got := r.Header.Get("X-CSRF-Token")
	if got == "" {
		got = r.PostFormValue("csrf")
	}
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(h.csrfToken(s))) == 1
}

func (h *Handler) setCookie(w http.ResponseWriter, r *http.Request, name, value, path string, expires time.Time) {
	signed.SetCookie(w, r, name, value, path, http.SameSiteLaxMode, expires)
}

// session lets signed-in users through and sends others to WeChat's consent page (snsapi_base:
// silent inside WeChat) with a random state remembered in a short-lived cookie.
func (h *Handler) session(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c, err := r.Cookie(sessionCookie); err == nil {
			if s, err := h.decodeSession(c.Value); err == nil {
				next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, s)))
				return
			}
		}
		if r.Method != http.MethodGet || r.URL.Path == "/app/events" {
			http.Error(w, "not signed in", http.StatusUnauthorized)
			return
		}
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		state := hex.EncodeToString(b)
		back := r.URL.Path
		if r.URL.RawQuery != "" && len(r.URL.RawQuery) <= 1024 { // e.g. an invite's token, ?lang=en
			back += "?" + r.URL.RawQuery
		}
		h.setCookie(w, r, stateCookie, h.sign("state", state+"|"+back), "/app", h.opts.Now().Add(stateTTL))
		redirect := h.publicURL(r) + "/app/oauth"
		http.Redirect(w, r, h.oauth.AuthorizeURL(redirect, "snsapi_base", state), http.StatusFound)
	})
}

func (h *Handler) publicURL(r *http.Request) string {
	if h.opts.PublicURL != "" {
		return strings.TrimRight(h.opts.PublicURL, "/")
	}
	scheme := "http"
	if signed.Secure(r) {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// oauthCallback is WeChat's redirect back: check the state, exchange the code for the OpenID,
// and start a session.
func (h *Handler) oauthCallback(w http.ResponseWriter, r *http.Request) {
	lang := langOf(r)
	c, err := r.Cookie(stateCookie)
	var saved string
	if err == nil {
		saved, _ = h.verify("state", c.Value)
	}
	state, back, _ := strings.Cut(saved, "|")
	if state == "" || subtle.ConstantTimeCompare([]byte(state), []byte(r.URL.Query().Get("state"))) != 1 {
		h.errorPage(w, r, http.StatusBadRequest, tr(lang, "err_state"))
		return
	}
	code := r.URL.Query().Get("code")
	if code == "" { // the user declined (snsapi_userinfo only) or WeChat sent no code
		h.errorPage(w, r, http.StatusBadRequest, tr(lang, "err_signin"))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	tok, err := h.oauth.Exchange(ctx, code)
	if err != nil {
		h.opts.Logger.Warn("web: OAuth code exchange failed", "err", err)
		h.errorPage(w, r, http.StatusBadGateway, tr(lang, "err_signin"))
		return
	}
	if tok.Snapshot() {
		// WeChat's page snapshot (a link opened from Moments without "use full service"): the
		// OpenID is not the user's, so no session, and nothing is bound or shown.
		h.opts.Logger.Info("web: OAuth answered a snapshot user; no session")
		h.setCookie(w, r, stateCookie, "", "/app", time.Time{})
		h.errorPage(w, r, http.StatusForbidden, tr(lang, "snapshot"))
		return
	}
	s := session{OpenID: tok.OpenID, Expires: h.opts.Now().Add(h.opts.SessionTTL).Truncate(time.Second)}
	h.setCookie(w, r, stateCookie, "", "/app", time.Time{})
	h.setCookie(w, r, sessionCookie, h.encodeSession(s), "/app", s.Expires)
	if !strings.HasPrefix(back, "/app/") {
		back = "/app/"
	}
	http.Redirect(w, r, back, http.StatusFound)
}

func (h *Handler) logout(w http.ResponseWriter, r *http.Request) {
	if !h.checkCSRF(r, sessionFrom(r.Context())) {
		http.Error(w, "bad CSRF token", http.StatusForbidden)
		return
	}
	h.setCookie(w, r, sessionCookie, "", "/app", time.Time{})
	_, _ = w.Write([]byte(tr(langOf(r), "signed_out")))
}
