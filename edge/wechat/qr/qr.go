// Package qr is Sprout's own device QR code: a short token naming a product and a device, signed
// with HMAC-SHA256 under a per-product key and optionally expiring. It lets a user bind a pot by
// scanning a code Sprout printed, without WeChat's device QR (whose /device/* APIs may be closed
// to new accounts): the token rides in a parametric QR's scene (subscribe/SCAN event) or in a URL
// for an H5 page, and Sprout then calls compel_bind itself.
//
// Token format (ASCII, at most 64 characters when used as a WeChat scene):
//
//	s1.<product>.<device>.<expiry>.<mac>
//
// product and device are [A-Za-z0-9_-]; expiry is unix seconds in base 36, "0" for none; mac is
// the first 12 bytes of HMAC-SHA256(key, "sprout-qr\x00" + everything before ".<mac>"), base64url
// without padding (16 characters). The package holds no keys; callers supply them per product.
package qr

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	qrcode "github.com/skip2/go-qrcode"
)

// Errors from Sign and Verify. Verify's errors are what a bind attempt answers the user with.
var (
	ErrMalformed      = errors.New("qr: not a Sprout QR code")
	ErrForged         = errors.New("qr: signature does not match (forged or altered code)")
	ErrExpired        = errors.New("qr: code has expired")
	ErrUnknownProduct = errors.New("qr: no key for the code's product")
	ErrTooLong        = errors.New("qr: token longer than 64 characters, too long for a WeChat scene; use the URL form")
	ErrWeakKey        = errors.New("qr: product key must be at least 16 bytes")
	ErrBadField       = errors.New("qr: product (1..16) and device (1..64) must be [A-Za-z0-9_-]")
)

const (
	version     = "s1"
	macBytes    = 12
	domain      = "sprout-qr\x00"
	maxScene    = 64
	maxProduct  = 16
	maxDevice   = 64
	minKeyBytes = 16
	// URLParam is the query parameter carrying the token in the URL form.
	URLParam = "c"
	// ScenePrefix is what WeChat prefixes to a scene in a subscribe event's EventKey.
	ScenePrefix = "qrscene_"
)

// Code is what a QR code names.
type Code struct {
	Product string
	Device  string
	Expires time.Time // zero: never
}

// Keys looks up a product's signing key.
type Keys interface {
	Key(product string) ([]byte, bool)
}

// KeyMap is Keys over a map of product -> key.
type KeyMap map[string][]byte

// Key implements Keys.
func (m KeyMap) Key(product string) ([]byte, bool) {
	k, ok := m[product]
	return k, ok
}

// Sign returns the signed token for c under its product's key.
func Sign(key []byte, c Code) (string, error) {
	if len(key) < minKeyBytes {
		return "", ErrWeakKey
	}
	if !validField(c.Product, maxProduct) || !validField(c.Device, maxDevice) {
		return "", ErrBadField
	}
	exp := "0"
	if !c.Expires.IsZero() {
		exp = strconv.FormatInt(c.Expires.Unix(), 36)
	}
	body := version + "." + c.Product + "." + c.Device + "." + exp
	return body + "." + mac(key, body), nil
}

// Scene signs c and checks that the token fits WeChat's scene_str (64 characters), for
// /cgi-bin/qrcode/create.
func Scene(key []byte, c Code) (string, error) {
	tok, err := Sign(key, c)
	if err != nil {
		return "", err
	}
	if len(tok) > maxScene {
		return "", fmt.Errorf("%w (%d characters for device %q)", ErrTooLong, len(tok), c.Device)
	}
	return tok, nil
}

// URL is the URL form: base (an H5 page of Sprout's) with the token in the "c" parameter.
func URL(base, token string) string {
	sep := "?"
	if strings.Contains(base, "?") {
		sep = "&"
	}
	return base + sep + URLParam + "=" + url.QueryEscape(token)
}

// LabelPath is the path of the label URL (LabelURL): <public URL>/b/<token>. It is short on
// purpose: the shorter the URL, the coarser and easier to scan the printed code.
const LabelPath = "/b/"

// LabelURL is what a printed label encodes: an https URL to Sprout's bind page, which WeChat's
// own scanner opens in its browser (a bare token would only be shown as text). publicURL is the
// service's external origin (SPROUT_PUBLIC_URL), e.g. https://sprout.example.com.
func LabelURL(publicURL, token string) string {
	return strings.TrimRight(publicURL, "/") + LabelPath + token
}

// Extract finds the token in what a scan produced: a bare token, a subscribe EventKey
// ("qrscene_<token>"), the label URL (…/b/<token>), or the older URL form (…?c=<token>).
func Extract(s string) string {
	s = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(s), ScenePrefix))
	if strings.Contains(s, "://") {
		u, err := url.Parse(s)
		if err != nil {
			return ""
		}
		if c := u.Query().Get(URLParam); c != "" {
			return c
		}
		if i := strings.LastIndex(u.Path, LabelPath); i >= 0 {
			return u.Path[i+len(LabelPath):]
		}
		return ""
	}
	return s
}

// IsCode reports whether s (any form Extract accepts) has the shape of a Sprout code, signed or
// not. A parametric QR scene that is not (the account's other QR codes: a campaign, a shop
// poster) is none of Sprout's business, and is ignored rather than answered as an invalid code.
func IsCode(s string) bool {
	tok := Extract(s)
	return strings.HasPrefix(tok, version+".") && strings.Count(tok, ".") == 4
}

// Verify checks a scanned token (any form Extract accepts) at time now and returns its Code.
func Verify(keys Keys, scanned string, now time.Time) (Code, error) {
	tok := Extract(scanned)
	parts := strings.Split(tok, ".")
	if len(parts) != 5 || parts[0] != version || !validField(parts[1], maxProduct) || !validField(parts[2], maxDevice) {
		return Code{}, ErrMalformed
	}
	c := Code{Product: parts[1], Device: parts[2]}
	if parts[3] != "0" {
		sec, err := strconv.ParseInt(parts[3], 36, 64)
		if err != nil || sec <= 0 {
			return Code{}, ErrMalformed
		}
		c.Expires = time.Unix(sec, 0)
	}
	got, err := base64.RawURLEncoding.DecodeString(parts[4])
	if err != nil || len(got) != macBytes {
		return Code{}, ErrMalformed
	}
	key, ok := keys.Key(c.Product)
	if !ok {
		return Code{}, fmt.Errorf("%w %q", ErrUnknownProduct, c.Product)
	}
	want, _ := base64.RawURLEncoding.DecodeString(mac(key, strings.Join(parts[:4], ".")))
	if !hmac.Equal(got, want) {
		return Code{}, ErrForged
	}
	if !c.Expires.IsZero() && !now.Before(c.Expires) {
		return Code{}, fmt.Errorf("%w (at %s)", ErrExpired, c.Expires.UTC().Format(time.RFC3339))
	}
	return c, nil
}

// PNG renders content (a token, scene URL or URL form) as a QR code image of size×size pixels,
// for `sprout device add --qr-png`.
func PNG(content string, size int) ([]byte, error) {
	png, err := qrcode.Encode(content, qrcode.Medium, size)
	if err != nil {
		return nil, fmt.Errorf("qr: rendering PNG: %w", err)
	}
	return png, nil
}

func mac(key []byte, body string) string {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(domain))
	h.Write([]byte(body))
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil)[:macBytes])
}

func validField(s string, max int) bool {
	if len(s) == 0 || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
