package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	pcluster "github.com/asynkron/protoactor-go/cluster"

	wxapi "github.com/sprout-iot/sprout/edge/wechat/api"
	"github.com/sprout-iot/sprout/edge/wechat/bridge"
	"github.com/sprout-iot/sprout/edge/wechat/qr"
)

// maxTempQR is WeChat's longest temporary parametric QR (QR_STR_SCENE): 30 days.
const maxTempQR = 30 * 24 * time.Hour

// labelMaker decides what a printed label encodes (docs/wechat.md, "Labels"):
//   - with --qr-wechat, WeChat's parametric QR for the code (scan: follow and bind in one step);
//   - with --qr-url (or SPROUT_PUBLIC_URL), the label URL <public URL>/b/<code> (scan: WeChat's
//     browser opens Sprout's bind page, which signs the user in and binds);
//   - otherwise the bare code, which only Sprout's own page scanner can bind: WeChat's scanner
//     shows it as text. The command says so on stderr.
type labelMaker struct {
	base   string
	ttl    time.Duration
	client *wxapi.Client // --qr-wechat
}

func newLabelMaker(withKeys bool, base string, paramQR bool, ttl time.Duration, wx wechatConfig) (*labelMaker, error) {
	base = strings.TrimSpace(base)
	if !withKeys {
		if paramQR {
			return nil, fmt.Errorf("--qr-wechat needs --qr-keys: the parametric QR's scene is the signed code")
		}
		return &labelMaker{}, nil
	}
	l := &labelMaker{base: base, ttl: ttl}
	if base != "" {
		u, err := url.Parse(base)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			return nil, fmt.Errorf("--qr-url must be Sprout's public URL, like https://sprout.example.com (no query), got %q", base)
		}
		if u.Scheme == "http" {
			fmt.Fprintln(os.Stderr, "sprout: --qr-url is http: WeChat opens it, but the account's OAuth and JS-SDK domains expect https")
		}
	}
	if paramQR {
		if wx.appID == "" || wx.secret == "" {
			return nil, fmt.Errorf("--qr-wechat needs --wechat-appid and --wechat-secret (a verified service account's)")
		}
		if ttl > maxTempQR {
			return nil, fmt.Errorf("--qr-wechat with --qr-ttl: WeChat's temporary codes live at most 30 days, got %s", ttl)
		}
		// stable_token: a token of its own, so that this command never revokes the one the
		// running nodes use.
		f := &wxapi.Fetcher{BaseURL: wx.apiBase, AppID: wx.appID, Secret: wx.secret, Stable: true}
		c, err := wxapi.New(wxapi.Options{BaseURL: wx.apiBase, Tokens: wxapi.NewTokenCache(f.Fetch, wxapi.CacheOptions{})})
		if err != nil {
			return nil, err
		}
		l.client = c
		if ttl == 0 {
			fmt.Fprintln(os.Stderr, "sprout: --qr-wechat creates permanent codes: each counts against the account's 100,000 for good")
		}
	} else if base == "" {
		fmt.Fprintln(os.Stderr, "sprout: no --qr-url (or SPROUT_PUBLIC_URL): labels hold the bare code, which WeChat's scanner (扫一扫) only shows as text;"+
			" only the scanner on Sprout's bind page can bind it. Give --qr-url https://<your domain> for labels that bind with one scan.")
	}
	return l, nil
}

// make fills c's label fields for its signed code c.QR and returns what the printed QR encodes.
func (l *labelMaker) make(ctx context.Context, c *credential) (string, error) {
	content := c.QR
	if l.base != "" {
		c.QRURL = qr.LabelURL(l.base, c.QR)
		content = c.QRURL
	}
	if l.client != nil {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		q, err := l.client.CreateQRCode(ctx, wxapi.QRCodeRequest{Scene: c.QR, ExpireSeconds: int(l.ttl / time.Second)})
		if err != nil {
			return "", fmt.Errorf("WeChat qrcode/create: %w", err)
		}
		if q.URL == "" {
			return "", fmt.Errorf("WeChat qrcode/create answered no url")
		}
		c.WeChatParamQR, content = q.URL, q.URL
	}
	return content, nil
}

// registerLabel adds the flags of the label pages (how users who do not follow are told to).
func (c *wechatConfig) registerLabel(fs *flagSet) {
	fs.str(&c.followQR, "wechat-follow-qr", "", "the content of the account's own QR code (http://weixin.qq.com/r/...): drawn on the bind page for users not known to follow")
	fs.str(&c.followURL, "wechat-follow-url", "", "a link that opens the account's profile, shown with the follow hint")
}

// verifyDeviceQR resolves a WeChat device QR scanned on the bind page (/device/verify_qrcode).
func (w *wechatNode) verifyDeviceQR(c *pcluster.Cluster) func(ctx context.Context, content string) (string, error) {
	client, err := wxapi.New(wxapi.Options{BaseURL: w.cfg.apiBase, Tokens: &bridge.GrainTokens{Cluster: c, AppID: w.cfg.appID}})
	if err != nil {
		return nil
	}
	return func(ctx context.Context, content string) (string, error) {
		info, err := client.VerifyQRCode(ctx, content)
		return info.DeviceID, err
	}
}
