package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// DefaultAuthorizeBase is where WeChat's OAuth2 consent page lives.
const DefaultAuthorizeBase = "https://open.weixin.qq.com"

// OAuth is the web-page authorisation flow (网页授权) for Sprout's H5 pages: send the user to
// AuthorizeURL, then Exchange the code WeChat appends to the redirect for the user's OpenID.
type OAuth struct {
	BaseURL       string // API base, default DefaultBaseURL
	AuthorizeBase string // default DefaultAuthorizeBase; the simulator's URL in tests
	AppID         string
	Secret        string // never in errors or logs
	Timeout       time.Duration
	HTTPClient    *http.Client
	Clock         func() time.Time
}

// UserToken is the result of a code exchange. For snsapi_base only OpenID matters.
type UserToken struct {
	AccessToken    string `json:"access_token"`
	ExpiresIn      int    `json:"expires_in"`
	RefreshToken   string `json:"refresh_token"`
	OpenID         string `json:"openid"`
	Scope          string `json:"scope"`
	UnionID        string `json:"unionid"`
	IsSnapshotUser int    `json:"is_snapshotuser"` // 1: a "snapshot" (preview) user without a real OpenID binding
}

// Snapshot reports whether the token is a snapshot user's: a page opened in WeChat's snapshot
// mode (from Moments, before the user taps "use full service") gets a placeholder OpenID that is
// not the user's. Such a token must not sign anyone in.
func (t UserToken) Snapshot() bool { return t.IsSnapshotUser == 1 }

// AuthorizeURL builds the consent URL. scope is snsapi_base (silent) or snsapi_userinfo; state is
// [A-Za-z0-9], at most 128 bytes. Parameter order and the #wechat_redirect suffix are required.
func (o *OAuth) AuthorizeURL(redirectURI, scope, state string) string {
	base := strings.TrimRight(o.AuthorizeBase, "/")
	if base == "" {
		base = DefaultAuthorizeBase
	}
	return base + "/connect/oauth2/authorize?appid=" + url.QueryEscape(o.AppID) +
		"&redirect_uri=" + url.QueryEscape(redirectURI) + "&response_type=code&scope=" + url.QueryEscape(scope) +
		"&state=" + url.QueryEscape(state) + "#wechat_redirect"
}

// Exchange trades a code (single use, 5 minutes) for the user's token and OpenID. An unknown,
// expired or reused code gives ErrInvalidCode.
func (o *OAuth) Exchange(ctx context.Context, code string) (UserToken, error) {
	base := strings.TrimRight(o.BaseURL, "/")
	if base == "" {
		base = DefaultBaseURL
	}
	hc := o.HTTPClient
	if hc == nil {
		t := o.Timeout
		if t <= 0 {
			t = DefaultTimeout
		}
		hc = &http.Client{Timeout: t}
	}
	clock := o.Clock
	if clock == nil {
		clock = time.Now
	}
	const path = "/sns/oauth2/access_token"
	q := url.Values{"appid": {o.AppID}, "secret": {o.Secret}, "code": {code}, "grant_type": {"authorization_code"}}
	raw, err := roundTrip(ctx, hc, http.MethodGet, base+path+"?"+q.Encode(), nil, DefaultMaxResponseBytes)
	if err != nil {
		return UserToken{}, fmt.Errorf("wechat api %s: %w", path, err)
	}
	var out struct {
		status
		UserToken
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return UserToken{}, fmt.Errorf("wechat api %s: decoding response: %w", path, err)
	}
	if c, msg, _ := out.result(); c != 0 {
		return UserToken{}, newError(path, c, msg, clock())
	}
	if out.OpenID == "" {
		return UserToken{}, fmt.Errorf("wechat api %s: response without openid", path)
	}
	return out.UserToken, nil
}
