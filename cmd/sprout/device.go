package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/edge/api"
	wxapi "github.com/sprout-iot/sprout/edge/wechat/api"
	"github.com/sprout-iot/sprout/edge/wechat/qr"
	"github.com/sprout-iot/sprout/store"
)

func runDevice(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: sprout device add|list|revoke|tag [flags]")
	}
	switch args[0] {
	case "add":
		return runDeviceAdd(args[1:])
	case "list":
		return runDeviceList(args[1:])
	case "revoke":
		return runDeviceRevoke(args[1:])
	case "tag":
		return runDeviceTag(args[1:])
	}
	return fmt.Errorf("unknown device command %q (want add, list, revoke or tag)", args[0])
}

// credential is one line of `sprout device add --json`, the format `sprout sim --creds` reads.
type credential struct {
	ID     string `json:"id"`
	Secret string `json:"secret"`           // hex
	QR     string `json:"qr,omitempty"`     // the signed Sprout code (also a WeChat scene string)
	QRURL  string `json:"qr_url,omitempty"` // the label URL, <public URL>/b/<code>, with --qr-url
	// WeChatParamQR is the parametric QR WeChat created for the code (with --qr-wechat): its
	// content, http://weixin.qq.com/q/...; scanning it follows the account and binds in one step.
	WeChatParamQR string `json:"wechat_param_qr,omitempty"`
	// WeChatQR is the device QR from WeChat's /device/getqrcode (with --wechat-product): scanning
	// it in WeChat binds the pot through WeChat's device platform.
	WeChatQR string `json:"wechat_qr,omitempty"`
}

func runDeviceAdd(args []string) error {
	var (
		sf               storeFlags
		id, product, sec string
		prefix           string
		count            int
		asJSON           bool
		qrKeys, qrPNG    string
		qrBase           string
		qrTTL            time.Duration
		wx               wechatConfig
		wxProduct, macs  string
		paramQR          bool
	)
	fs := newFlagSet("device add", "Provisions devices: generates an id and a secret for each and prints them.\nWrite the secret into the device (vdev --secret, or the factory's NVS image); it is the only copy outside the store.")
	sf.register(fs)
	fs.str(&id, "id", "", "device id (default: generated pot-xxxxxxxxxxxx); with --count, ignored")
	fs.str(&product, "product", "sprout-pot", "product name")
	fs.str(&sec, "secret", "", "the secret as hex (default: 32 random bytes)")
	fs.str(&prefix, "prefix", "", "with --count: ids are PREFIX0001, PREFIX0002, ...")
	fs.int(&count, "count", 1, "how many devices to provision")
	fs.BoolVar(&asJSON, "json", false, "print a JSON array of {id, secret} (what sprout sim --creds reads)")
	fs.str(&qrKeys, "qr-keys", "", "product=hexkey[,...]: also print each device's signed Sprout QR content (the same keys serve verifies with)")
	fs.str(&qrPNG, "qr-png", "", "with --qr-keys: write each device's label as DIR/ID.png (the label URL with --qr-url, WeChat's parametric QR with --qr-wechat, else the bare code)")
	fs.str(&qrBase, "qr-url", os.Getenv("SPROUT_PUBLIC_URL"), "with --qr-keys: Sprout's public URL (https://sprout.example.com; default SPROUT_PUBLIC_URL): labels encode <URL>/b/<code>, which WeChat's own scanner opens and binds with one scan")
	fs.dur(&qrTTL, "qr-ttl", 0, "with --qr-keys: the codes expire after this long (0: never)")
	fs.BoolVar(&paramQR, "qr-wechat", os.Getenv("SPROUT_WECHAT_PARAM_QR") == "true", "with --qr-keys: have WeChat create a parametric QR per device (/cgi-bin/qrcode/create, scene = the code): one scan follows the account and binds; verified service accounts only; permanent codes count against the account's 100,000 (with --qr-ttl: temporary, at most 30 days); needs --wechat-appid and --wechat-secret [SPROUT_WECHAT_PARAM_QR=true]")
	fs.str(&wxProduct, "wechat-product", "", "also register each device with WeChat's device platform under this product id: its id is then the one WeChat allocates (/device/getqrcode), it is authorised (/device/authorize_device) and its WeChat device QR is printed; needs --wechat-appid, --wechat-secret and --wechat-macs")
	fs.str(&macs, "wechat-macs", "", "with --wechat-product: the devices' WiFi MACs (12 hex digits each, comma-separated, one per device in --count order)")
	fs.str(&wx.appID, "wechat-appid", "", "with --wechat-product or --qr-wechat: the official account's AppID")
	fs.str(&wx.secret, "wechat-secret", "", "with --wechat-product or --qr-wechat: the account's AppSecret (never logged)")
	fs.str(&wx.apiBase, "wechat-api-base", wxapi.DefaultBaseURL, "with --wechat-product or --qr-wechat: WeChat API base URL")
	if err := fs.Parse(args); err != nil {
		return err
	}
	labels, err := newLabelMaker(qrKeys != "", qrBase, paramQR, qrTTL, wx)
	if err != nil {
		return err
	}
	var wxDevices *wechatDevices
	if wxProduct != "" {
		if id != "" || prefix != "" {
			return fmt.Errorf("--wechat-product: WeChat allocates the ids; drop --id and --prefix")
		}
		var err error
		if wxDevices, err = newWeChatDevices(wx, wxProduct, macs, count); err != nil {
			return err
		}
	}
	var secret []byte
	if sec != "" {
		var err error
		if secret, err = hex.DecodeString(sec); err != nil || len(secret) < 16 {
			return fmt.Errorf("--secret must be at least 16 bytes of hex")
		}
	}
	ctx := context.Background()
	st, _, err := sf.open(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	keys, err := parseQRKeys(qrKeys)
	if err != nil {
		return err
	}
	var out []credential
	for i := 1; i <= count; i++ {
		did := id
		if count > 1 {
			did = ""
			if prefix != "" {
				did = fmt.Sprintf("%s%04d", prefix, i)
			}
		}
		var wxQR string
		if wxDevices != nil {
			// WeChat first: a device WeChat refused is not created here either.
			if did, wxQR, err = wxDevices.register(ctx, i-1); err != nil {
				return fmt.Errorf("device %d of %d: %w (devices before it were provisioned and printed above)", i, count, err)
			}
		}
		d, err := api.NewDevice(ctx, st, did, product, secret)
		if err != nil {
			return fmt.Errorf("adding device %q: %w", did, err)
		}
		c := credential{ID: d.ID, Secret: hex.EncodeToString(d.Secret), WeChatQR: wxQR}
		if wxQR != "" && qrPNG != "" {
			if err := writePNG(qrPNG, d.ID+".wechat.png", wxQR); err != nil {
				return err
			}
		}
		if key, ok := keys[product]; ok {
			code := qr.Code{Product: product, Device: d.ID}
			if qrTTL > 0 {
				code.Expires = time.Now().Add(qrTTL)
			}
			if c.QR, err = qr.Scene(key, code); err != nil {
				return fmt.Errorf("QR for %s: %w", d.ID, err)
			}
			content, err := labels.make(ctx, &c)
			if err != nil {
				return fmt.Errorf("device %s was provisioned, but its label was not made: %w", d.ID, err)
			}
			if qrPNG != "" {
				if err := writePNG(qrPNG, d.ID+".png", content); err != nil {
					return err
				}
			}
		} else if qrKeys != "" {
			return fmt.Errorf("--qr-keys has no key for product %q", product)
		}
		out = append(out, c)
	}
	if asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", " ")
		return enc.Encode(out)
	}
	for _, c := range out {
		fmt.Printf("id=%s secret=%s", c.ID, c.Secret)
		if c.QR != "" {
			fmt.Printf(" qr=%s", c.QR)
		}
		if c.QRURL != "" {
			fmt.Printf(" qr_url=%s", c.QRURL)
		}
		if c.WeChatParamQR != "" {
			fmt.Printf(" wechat_param_qr=%s", c.WeChatParamQR)
		}
		if c.WeChatQR != "" {
			fmt.Printf(" wechat_qr=%s", c.WeChatQR)
		}
		fmt.Println()
	}
	return nil
}

// writePNG writes content as a 256-pixel QR code to dir/name.
func writePNG(dir, name, content string) error {
	png, err := qr.PNG(content, 256)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, name), png, 0o644)
}

// wechatDevices registers devices with WeChat's device platform for `device add --wechat-product`.
type wechatDevices struct {
	client  *wxapi.Client
	product string
	macs    []string
}

func newWeChatDevices(cfg wechatConfig, product, macs string, count int) (*wechatDevices, error) {
	if cfg.appID == "" || cfg.secret == "" {
		return nil, fmt.Errorf("--wechat-product needs --wechat-appid and --wechat-secret")
	}
	var list []string
	for _, m := range strings.Split(macs, ",") {
		m = strings.ToLower(strings.NewReplacer(":", "", "-", "").Replace(strings.TrimSpace(m)))
		if m == "" {
			continue
		}
		if b, err := hex.DecodeString(m); err != nil || len(b) != 6 {
			return nil, fmt.Errorf("--wechat-macs: %q is not a MAC (12 hex digits)", m)
		}
		list = append(list, m)
	}
	if len(list) != count {
		return nil, fmt.Errorf("--wechat-macs lists %d MACs for %d devices (--count); give one per device", len(list), count)
	}
	// stable_token: a token of its own, so that this command never revokes the one the running
	// nodes use (a /cgi-bin/token fetch would).
	f := &wxapi.Fetcher{BaseURL: cfg.apiBase, AppID: cfg.appID, Secret: cfg.secret, Stable: true}
	client, err := wxapi.New(wxapi.Options{BaseURL: cfg.apiBase, Tokens: wxapi.NewTokenCache(f.Fetch, wxapi.CacheOptions{})})
	if err != nil {
		return nil, err
	}
	return &wechatDevices{client: client, product: product, macs: list}, nil
}

// register allocates the i-th device's id and QR ticket and authorises it as a WiFi device.
func (w *wechatDevices) register(ctx context.Context, i int) (id, qrTicket string, err error) {
	c, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	q, err := w.client.GetQRCode(c, w.product)
	if err != nil {
		return "", "", fmt.Errorf("WeChat getqrcode: %w", err)
	}
	res, err := w.client.AuthorizeDevice(c, wxapi.AuthorizeRequest{Devices: []wxapi.DeviceAuth{wxapi.WiFiDevice(q.DeviceID, w.macs[i])},
		ProductID: w.product})
	if err != nil {
		return "", "", fmt.Errorf("WeChat authorize_device %s: %w", q.DeviceID, err)
	}
	for _, r := range res {
		if r.ErrCode != 0 {
			return "", "", fmt.Errorf("WeChat refused device %s: %d %s", q.DeviceID, r.ErrCode, r.ErrMsg)
		}
	}
	return q.DeviceID, q.QRTicket, nil
}

func runDeviceList(args []string) error {
	var sf storeFlags
	fs := newFlagSet("device list", "Lists provisioned devices (never their secrets).")
	sf.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx := context.Background()
	st, _, err := sf.open(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	after := ""
	for {
		ds, err := st.ListDevices(ctx, actors.ListQuery{AfterID: after, Limit: 1000})
		if err != nil {
			return err
		}
		for _, d := range ds {
			state := "active"
			if d.Revoked() {
				state = "revoked " + d.RevokedAt.Format(time.RFC3339)
			}
			fmt.Printf("%s\t%s\t%s\t%s\n", d.ID, d.Product, d.CreatedAt.Format(time.RFC3339), state)
		}
		if len(ds) < 1000 {
			return nil
		}
		after = ds[len(ds)-1].ID
	}
}

func runDeviceRevoke(args []string) error {
	var sf storeFlags
	var apiURL, token string
	fs := newFlagSet("device revoke", "Revokes a device: it is disconnected, can no longer connect, and its users are unbound.\n"+
		"While nodes are running, revoke through a node (--api and --admin-token): the device's grain\n"+
		"closes its connection at once. Without --api the store is written directly, which is for a\n"+
		"stopped deployment only: a running grain would not see it until it reloads.\n"+
		"Usage: sprout device revoke [flags] ID")
	sf.register(fs)
	fs.str(&apiURL, "api", "", "base URL of a running node's HTTP API (e.g. http://127.0.0.1:8080): revoke through the device's grain")
	fs.str(&token, "admin-token", "", "bearer token for --api")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("usage: sprout device revoke [flags] ID")
	}
	id := fs.Arg(0)
	if err := store.ValidID(id); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if apiURL != "" {
		return revokeThroughAPI(ctx, apiURL, token, id)
	}
	st, _, err := sf.open(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	return st.RevokeDevice(ctx, id, time.Now().UTC())
}

// revokeThroughAPI asks a running node to revoke id through the device's grain.
func revokeThroughAPI(ctx context.Context, apiURL, token, id string) error {
	u := strings.TrimRight(apiURL, "/") + "/api/v1/devices/" + url.PathEscape(id) + "/revoke"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
	if err != nil {
		return fmt.Errorf("revoke: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("revoke through %s: %w", apiURL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("revoke through %s: %s: %s", apiURL, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}
