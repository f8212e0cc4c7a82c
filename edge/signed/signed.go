// Package signed signs the short values the web pages hand to browsers (session cookies, CSRF
// tokens, invitations) with HMAC-SHA256, each bound to a purpose so that a value signed for one
// use cannot be replayed as another, and sets cookies with the attributes those pages need.
package signed

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strings"
	"time"
)

// Key is an HMAC key (at least 32 bytes).
type Key []byte

// MAC is HMAC-SHA256(key, purpose|payload).
func (k Key) MAC(purpose, payload string) []byte {
	m := hmac.New(sha256.New, k)
	m.Write([]byte(purpose + "|" + payload))
	return m.Sum(nil)
}

// Sign returns "payload.mac", both base64url.
func (k Key) Sign(purpose, payload string) string {
	p := base64.RawURLEncoding.EncodeToString([]byte(payload))
	return p + "." + base64.RawURLEncoding.EncodeToString(k.MAC(purpose, p))
}

// Verify returns the payload of a value Sign made for purpose, or false.
func (k Key) Verify(purpose, value string) (string, bool) {
	p, sig, ok := strings.Cut(value, ".")
	if !ok {
		return "", false
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || !hmac.Equal(got, k.MAC(purpose, p)) {
		return "", false
	}
	raw, err := base64.RawURLEncoding.DecodeString(p)
	return string(raw), err == nil
}

// Secure reports whether the request came over TLS (directly or through a proxy that says so).
func Secure(r *http.Request) bool {
	return r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https"
}

// SetCookie sets an HttpOnly cookie (Secure behind TLS); a zero expiry deletes it.
func SetCookie(w http.ResponseWriter, r *http.Request, name, value, path string, sameSite http.SameSite, expires time.Time) {
	c := &http.Cookie{Name: name, Value: value, Path: path, HttpOnly: true, SameSite: sameSite,
		Secure: Secure(r), Expires: expires}
	if expires.IsZero() {
		c.MaxAge = -1
	} else {
		c.MaxAge = int(time.Until(expires) / time.Second)
	}
	http.SetCookie(w, c)
}
