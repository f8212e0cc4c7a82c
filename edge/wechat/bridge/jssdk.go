package bridge

import (
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/sprout-iot/sprout/edge/wechat/api"
)

// JSSDK signs wx.config for the account's H5 pages: it holds the JS-SDK ticket (refreshed a
// few minutes before it expires, one fetch at a time) and signs page URLs with it. Unlike the
// access token, fetching a ticket does not revoke the one other nodes hold, so each node keeps its own.
type JSSDK struct {
	Client *api.Client
	AppID  string
	// Margin refreshes the ticket this long before it expires (default 5 min).
	Margin time.Duration
	Now    func() time.Time

	mu     sync.Mutex
	ticket api.JSTicket
}

// JSConfig is what a page passes to wx.config.
type JSConfig struct {
	AppID     string
	Timestamp int64
	NonceStr  string
	Signature string
}

// Config signs wx.config for pageURL (the page's full URL; anything after '#' is ignored).
func (j *JSSDK) Config(ctx context.Context, pageURL string) (*JSConfig, error) {
	t, err := j.current(ctx)
	if err != nil {
		return nil, err
	}
	now := time.Now
	if j.Now != nil {
		now = j.Now
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	c := &JSConfig{AppID: j.AppID, Timestamp: now().Unix(), NonceStr: hex.EncodeToString(b)}
	c.Signature = JSSignature(t, c.NonceStr, c.Timestamp, pageURL)
	return c, nil
}

// JSSignature is WeChat's wx.config signature: the SHA-1 (hex) of
// "jsapi_ticket=T&noncestr=N&timestamp=TS&url=U", with U cut at '#'.
func JSSignature(ticket, nonce string, timestamp int64, pageURL string) string {
	if i := strings.IndexByte(pageURL, '#'); i >= 0 {
		pageURL = pageURL[:i]
	}
	sum := sha1.Sum([]byte(fmt.Sprintf("jsapi_ticket=%s&noncestr=%s&timestamp=%d&url=%s", ticket, nonce, timestamp, pageURL)))
	return hex.EncodeToString(sum[:])
}

func (j *JSSDK) current(ctx context.Context) (string, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	margin := j.Margin
	if margin == 0 {
		margin = 5 * time.Minute
	}
	if j.ticket.Value != "" && time.Until(j.ticket.ExpiresAt) > margin {
		return j.ticket.Value, nil
	}
	t, err := j.Client.JSAPITicket(ctx)
	if err != nil {
		if j.ticket.Value != "" && time.Now().Before(j.ticket.ExpiresAt) {
			return j.ticket.Value, nil // keep using the old one while it lasts
		}
		return "", fmt.Errorf("JS-SDK ticket: %w", err)
	}
	j.ticket = t
	return t.Value, nil
}
