// Package api is Sprout's client for the WeChat API it calls actively: template and
// customer-service messages, the hardware platform's /device/* calls, parametric QR codes and the
// OAuth2 code exchange; plus the access-token fetcher and a single-flight token cache.
//
// The client never owns the access token. It asks a TokenSource, which in a cluster is one owner
// (the token grain per AppID) because every fetch of /cgi-bin/token revokes the previous token.
// The client refreshes once on a rejected token and classifies every other refusal into typed
// errors (see errors.go); it does not retry by itself beyond that one refresh.
package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Defaults for Options.
const (
	DefaultBaseURL          = "https://api.weixin.qq.com"
	DefaultTimeout          = 10 * time.Second
	DefaultMaxResponseBytes = 1 << 20
)

// Options configures a Client.
type Options struct {
	// BaseURL of the API; the simulator's URL in tests and `make run`. Default DefaultBaseURL.
	BaseURL string
	// Tokens provides the access token. Required.
	Tokens TokenSource
	// Timeout bounds each HTTP request (not the whole call, which may refresh the token and
	// retry once). Default 10 s.
	Timeout time.Duration
	// HTTPClient, if set, is used as is (its own Timeout then applies instead of Timeout).
	HTTPClient *http.Client
	// MaxResponseBytes caps a response body. Default 1 MiB.
	MaxResponseBytes int64
	// Clock is used for quota backoffs (daily quotas reset at midnight China time). Default time.Now.
	Clock func() time.Time
}

// Client calls the WeChat API. It is safe for concurrent use.
type Client struct {
	base   string
	tokens TokenSource
	http   *http.Client
	max    int64
	clock  func() time.Time
}

// New returns a Client.
func New(opts Options) (*Client, error) {
	if opts.Tokens == nil {
		return nil, errors.New("wechat api: Options.Tokens is required")
	}
	c := &Client{base: strings.TrimRight(opts.BaseURL, "/"), tokens: opts.Tokens, http: opts.HTTPClient,
		max: opts.MaxResponseBytes, clock: opts.Clock}
	if c.base == "" {
		c.base = DefaultBaseURL
	}
	if c.http == nil {
		t := opts.Timeout
		if t <= 0 {
			t = DefaultTimeout
		}
		c.http = &http.Client{Timeout: t}
	}
	if c.max <= 0 {
		c.max = DefaultMaxResponseBytes
	}
	if c.clock == nil {
		c.clock = time.Now
	}
	return c, nil
}

// status is the union of the result shapes WeChat uses: errcode/errmsg, base_resp, resp_msg and
// (transmsg) ret/ret_info.
type status struct {
	ErrCode  int    `json:"errcode"`
	ErrMsg   string `json:"errmsg"`
	Ret      *int   `json:"ret"`
	RetInfo  string `json:"ret_info"`
	BaseResp *struct {
		ErrCode int    `json:"errcode"`
		ErrMsg  string `json:"errmsg"`
	} `json:"base_resp"`
	RespMsg *struct {
		RetCode   int    `json:"ret_code"`
		ErrorInfo string `json:"error_info"`
	} `json:"resp_msg"`
}

// result returns the first non-zero code among the shapes, and whether it came from ret.
func (s status) result() (code int, msg string, fromRet bool) {
	switch {
	case s.ErrCode != 0:
		return s.ErrCode, s.ErrMsg, false
	case s.BaseResp != nil && s.BaseResp.ErrCode != 0:
		return s.BaseResp.ErrCode, s.BaseResp.ErrMsg, false
	case s.RespMsg != nil && s.RespMsg.RetCode != 0:
		return s.RespMsg.RetCode, s.RespMsg.ErrorInfo, false
	case s.Ret != nil && *s.Ret != 0:
		return *s.Ret, s.RetInfo, true
	}
	return 0, "", false
}

// call performs one API call with the access token: on 40001/40014/42001 it invalidates the token
// and retries once with a fresh one. out (may be nil) receives the JSON body on success.
func (c *Client) call(ctx context.Context, method, path string, q url.Values, in, out any) error {
	var body []byte
	if in != nil {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false) // WeChat shows "\u003c" literally in some message types
		if err := enc.Encode(in); err != nil {
			return fmt.Errorf("wechat api %s: encoding request: %w", path, err)
		}
		body = buf.Bytes()
	}
	for attempt := 0; ; attempt++ {
		tok, err := c.tokens.Token(ctx)
		if err != nil {
			return fmt.Errorf("wechat api %s: getting access token: %w", path, err)
		}
		qq := url.Values{}
		for k, v := range q {
			qq[k] = v
		}
		qq.Set("access_token", tok)
		raw, err := roundTrip(ctx, c.http, method, c.base+path+"?"+qq.Encode(), body, c.max)
		if err != nil {
			return fmt.Errorf("wechat api %s: %w", path, err)
		}
		var st status
		if err := json.Unmarshal(raw, &st); err != nil {
			return fmt.Errorf("wechat api %s: decoding response: %w", path, err)
		}
		code, msg, fromRet := st.result()
		if code == 0 {
			if out != nil {
				if err := json.Unmarshal(raw, out); err != nil {
					return fmt.Errorf("wechat api %s: decoding response: %w", path, err)
				}
			}
			return nil
		}
		if fromRet {
			return retError(path, code, msg)
		}
		if isTokenError(code) && attempt == 0 {
			c.tokens.Invalidate(ctx, tok)
			continue
		}
		return newError(path, code, msg, c.clock())
	}
}

// retError classifies transmsg's ret codes, a namespace of their own: ret -1 there is not
// "system busy".
func retError(path string, code int, msg string) *Error {
	e := &Error{API: path, Code: code, Msg: msg, kind: ErrPermanent}
	if strings.Contains(msg, "subscribe") {
		e.is = ErrStatusUnsubscribed
	}
	return e
}

// roundTrip sends one request and returns the body of a 200 answer. Errors never include the URL,
// which carries the access token or the AppSecret.
func roundTrip(ctx context.Context, hc *http.Client, method, u string, body []byte, max int64) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, redact(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, redact(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		return nil, fmt.Errorf("reading response: %w", redact(err))
	}
	if int64(len(raw)) > max {
		return nil, fmt.Errorf("response larger than %d bytes", max)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return raw, nil
}

func redact(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		if u, perr := url.Parse(ue.URL); perr == nil {
			u.RawQuery = ""
			ue.URL = u.String()
		}
	}
	return err
}
