package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// TokenSource provides the account's access token. In a cluster it is backed by one owner (the
// token grain per AppID): every fetch of a new token revokes the previous one, so independent
// fetchers on several nodes would keep revoking each other.
type TokenSource interface {
	// Token returns a currently valid access token.
	Token(ctx context.Context) (string, error)
	// Invalidate reports that WeChat rejected bad (40001/40014/42001). The owner refreshes once;
	// reports naming a token already replaced are ignored.
	Invalidate(ctx context.Context, bad string)
}

// AccessToken is a token and when it expires.
type AccessToken struct {
	Value     string
	ExpiresAt time.Time
}

// FetchFunc fetches a new access token. forceRefresh asks for a new one even where the endpoint
// would return the current one (stable_token); it is set after an Invalidate.
type FetchFunc func(ctx context.Context, forceRefresh bool) (AccessToken, error)

// Fetcher gets access tokens from /cgi-bin/token, or /cgi-bin/stable_token when Stable is set.
// Its Secret is sent only in the request, never in errors.
type Fetcher struct {
	BaseURL    string // default DefaultBaseURL
	AppID      string
	Secret     string
	Stable     bool          // use stable_token: not revoked by other callers, 20 forced refreshes a day
	Timeout    time.Duration // per request, default DefaultTimeout
	HTTPClient *http.Client
	Clock      func() time.Time
}

// Fetch implements FetchFunc.
func (f *Fetcher) Fetch(ctx context.Context, forceRefresh bool) (AccessToken, error) {
	base := strings.TrimRight(f.BaseURL, "/")
	if base == "" {
		base = DefaultBaseURL
	}
	hc := f.HTTPClient
	if hc == nil {
		t := f.Timeout
		if t <= 0 {
			t = DefaultTimeout
		}
		hc = &http.Client{Timeout: t}
	}
	clock := f.Clock
	if clock == nil {
		clock = time.Now
	}
	var (
		raw  []byte
		err  error
		path string
	)
	if f.Stable {
		path = "/cgi-bin/stable_token"
		body, _ := json.Marshal(map[string]any{"grant_type": "client_credential", "appid": f.AppID,
			"secret": f.Secret, "force_refresh": forceRefresh})
		raw, err = roundTrip(ctx, hc, http.MethodPost, base+path, body, DefaultMaxResponseBytes)
	} else {
		path = "/cgi-bin/token"
		q := url.Values{"grant_type": {"client_credential"}, "appid": {f.AppID}, "secret": {f.Secret}}
		raw, err = roundTrip(ctx, hc, http.MethodGet, base+path+"?"+q.Encode(), nil, DefaultMaxResponseBytes)
	}
	if err != nil {
		return AccessToken{}, fmt.Errorf("wechat api %s: %w", path, err)
	}
	var out struct {
		status
		AccessToken string `json:"access_token"`
		ExpiresIn   int64  `json:"expires_in"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return AccessToken{}, fmt.Errorf("wechat api %s: decoding response: %w", path, err)
	}
	if code, msg, _ := out.result(); code != 0 {
		// 40001 here means a wrong AppSecret, not a stale token.
		return AccessToken{}, newError(path, code, msg, clock())
	}
	if out.AccessToken == "" || out.ExpiresIn <= 0 {
		return AccessToken{}, fmt.Errorf("wechat api %s: response without access_token or expires_in", path)
	}
	return AccessToken{Value: out.AccessToken, ExpiresAt: clock().Add(time.Duration(out.ExpiresIn) * time.Second)}, nil
}

// Defaults for CacheOptions.
const (
	DefaultRefreshMargin = 5 * time.Minute
	DefaultFetchTimeout  = 15 * time.Second
)

// CacheOptions configures a TokenCache.
type CacheOptions struct {
	// RefreshMargin: a token with less than this left is refreshed (WeChat keeps the old token
	// valid for 5 minutes after a new fetch). Capped at half a token's lifetime. Default 5 min.
	RefreshMargin time.Duration
	// FetchTimeout bounds one fetch, which runs detached from any one caller. Default 15 s.
	FetchTimeout time.Duration
	Clock        func() time.Time // default time.Now
}

// TokenCache is a TokenSource over a FetchFunc: it refreshes before expiry, runs at most one fetch
// at a time however many callers wait (single flight), and refreshes once per rejected token. The
// token grain holds one; everyone else reaches it through the grain.
type TokenCache struct {
	fetch  FetchFunc
	margin time.Duration
	ftime  time.Duration
	clock  func() time.Time

	mu        sync.Mutex
	tok       AccessToken
	refreshAt time.Time
	stale     bool // invalidated: the next fetch forces a refresh
	flight    *flight
	fetches   int
}

type flight struct {
	done chan struct{}
	tok  AccessToken
	err  error
}

// NewTokenCache returns a cache over fetch.
func NewTokenCache(fetch FetchFunc, opts CacheOptions) *TokenCache {
	c := &TokenCache{fetch: fetch, margin: opts.RefreshMargin, ftime: opts.FetchTimeout, clock: opts.Clock}
	if c.margin <= 0 {
		c.margin = DefaultRefreshMargin
	}
	if c.ftime <= 0 {
		c.ftime = DefaultFetchTimeout
	}
	if c.clock == nil {
		c.clock = time.Now
	}
	return c
}

// Token returns the cached token, fetching one first when there is none, it is due for refresh or
// it was invalidated. Concurrent callers share one fetch.
func (c *TokenCache) Token(ctx context.Context) (string, error) {
	c.mu.Lock()
	if c.tok.Value != "" && !c.stale && c.clock().Before(c.refreshAt) {
		v := c.tok.Value
		c.mu.Unlock()
		return v, nil
	}
	f := c.flight
	if f == nil {
		f = c.startLocked()
	}
	c.mu.Unlock()
	select {
	case <-f.done:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	if f.err == nil {
		return f.tok.Value, nil
	}
	// A failed early refresh is not fatal while the current token is still valid.
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tok.Value != "" && !c.stale && c.clock().Before(c.tok.ExpiresAt) {
		return c.tok.Value, nil
	}
	return "", f.err
}

// Invalidate marks bad as rejected and starts one refresh, unless bad is no longer the cached
// token (already replaced) or a refresh is already running.
func (c *TokenCache) Invalidate(_ context.Context, bad string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if bad == "" || bad != c.tok.Value || c.stale {
		return
	}
	c.stale = true
	if c.flight == nil {
		c.startLocked()
	}
}

// Fetches counts fetches started, for metrics and tests.
func (c *TokenCache) Fetches() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fetches
}

// startLocked starts a fetch detached from any caller's context, so one caller giving up does not
// fail the others. Must be called with c.mu held.
func (c *TokenCache) startLocked() *flight {
	f := &flight{done: make(chan struct{})}
	c.flight = f
	c.fetches++
	force := c.stale
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), c.ftime)
		tok, err := c.fetch(ctx, force)
		cancel()
		if err == nil && tok.Value == "" {
			err = errors.New("wechat api: fetch returned an empty token")
		}
		c.mu.Lock()
		if err == nil {
			now := c.clock()
			margin := min(c.margin, tok.ExpiresAt.Sub(now)/2)
			c.tok, c.refreshAt, c.stale = tok, tok.ExpiresAt.Add(-margin), false
		}
		f.tok, f.err = tok, err
		c.flight = nil
		c.mu.Unlock()
		close(f.done)
	}()
	return f
}
