package web

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/sprout-iot/sprout/edge/webtest"
)

// wxStub stands in for WeChat's JS-SDK (jweixin), and only for it: the real one works only inside
// WeChat's browser, which no test can run. It records wx.config and lets the test decide when
// (and whether) WeChat answers: window.__wx.ready() or window.__wx.error(reason), as WeChat calls
// the callbacks registered with wx.ready and wx.error. Everything else on the pages is Sprout's
// own script, run by a real Chromium.
const wxStub = `window.wx = (function () {
  var readies = [], errors = [];
  window.__wx = {config: null, calls: [], scanResult: '',
    ready: function () { readies.forEach(function (f) { f(); }); },
    error: function (msg) { errors.forEach(function (f) { f({errMsg: msg}); }); }};
  function call(name) { return function () { window.__wx.calls.push(name); }; }
  return {
    config: function (c) { window.__wx.config = c; },
    ready: function (f) { readies.push(f); },
    error: function (f) { errors.push(f); },
    scanQRCode: function (o) { window.__wx.calls.push('scanQRCode'); o.success({resultStr: window.__wx.scanResult}); },
    invoke: function (name, args, cb) { window.__wx.calls.push(name); cb({err_msg: name + ':ok'}); },
    checkJsApi: call('checkJsApi')
  };
})();`

// wechatBrowser is a headless Chromium that says it is WeChat's browser (the pages offer the
// JS-SDK buttons only there).
func wechatBrowser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(webtest.ChromiumPath(t)), chromedp.NoSandbox, chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-gpu", true), chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true), chromedp.WindowSize(390, 844),
		chromedp.Flag("lang", "zh-CN"), chromedp.Flag("accept-lang", "zh-CN"),
		chromedp.UserAgent("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.50(0x1800323c) NetType/WIFI Language/zh_CN"))
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(alloc)
	ctx, cancelT := context.WithTimeout(ctx, 40*time.Second)
	t.Cleanup(func() { cancelT(); cancel(); cancelAlloc() })
	return ctx
}

func TestBrowserJSSDKPagesWaitForReadyAndShowWhyWeChatRefused(t *testing.T) {
	webtest.ChromiumPath(t)
	stub := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/javascript")
		_, _ = w.Write([]byte(wxStub))
	}))
	t.Cleanup(stub.Close)
	w := newWorld(t, func(o *Options) {
		o.VerifyScene = testVerifyScene
		o.Follow = Follow{QR: "http://weixin.qq.com/r/sprout-demo-account", URL: "https://mp.weixin.qq.com/mp/profile_ext?action=home"}
		o.JSSDKScript = stub.URL + "/jweixin-1.6.0.js"
		o.JSSDK = func(_ context.Context, pageURL string) (*JSConfig, error) {
			return &JSConfig{AppID: "wx-test", Timestamp: 1700000000, NonceStr: "n0nce", Signature: "sig-of-" + pageURL}, nil
		}
	})
	w.addPot(t, "pot-scan")
	label := w.label(t, "pot-scan", time.Time{})

	ctx := wechatBrowser(t)
	signInBrowser(t, ctx, w, "oScanner")
	scan, msg := `document.getElementById('scan')`, `document.getElementById('wx-msg')`
	do(t, ctx, "bind page", chromedp.Navigate(w.url+"/app/bind"),
		chromedp.Poll[chromedp.Void](`window.__wx && window.__wx.config`, chromedp.WithPollingTimeout(5*time.Second)))
	cfg, err := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify(window.__wx.config)`))
	if err != nil || !strings.Contains(cfg, `"signature":"sig-of-`) || !strings.Contains(cfg, `"scanQRCode"`) {
		t.Fatalf("wx.config = %s (%v)", cfg, err)
	}
	// Until WeChat says ready, the scan button cannot be used.
	if dis, _ := chromedp.Run(ctx, chromedp.Evaluate[bool](scan+`.disabled && `+msg+`.dataset.state === 'waiting'`)); !dis {
		t.Fatal("the scan button is usable before wx.ready")
	}
	shot(t, ctx, "scan-waiting")
	do(t, ctx, "WeChat is ready", chromedp.Evaluate[chromedp.Void](`__wx.ready()`),
		chromedp.Poll[chromedp.Void](`!`+scan+`.disabled && `+msg+`.dataset.state === 'ready'`, chromedp.WithPollingTimeout(3*time.Second)))

	// The scanner returns the label's URL (what the printed code holds): the page binds the pot.
	do(t, ctx, "scan the label", chromedp.Evaluate[chromedp.Void](`__wx.scanResult = `+jsString(label)+`; setTimeout(function () { `+scan+`.click(); }, 0)`))
	waitText(t, ctx, "绑定成功")
	if got := w.userIDs(t, "pot-scan"); len(got) != 1 || got[0] != "oScanner" {
		t.Fatalf("after scanning, pot-scan's users are %v", got)
	}

	// A printed label opened in WeChat's browser: bound, and how to follow the account.
	w.addPot(t, "pot-balcony")
	// (WaitReady queries again after the redirect's new document; a Poll would race with the
	// navigation and lose its execution context.)
	do(t, ctx, "open a label", chromedp.Navigate(w.label(t, "pot-balcony", time.Time{})),
		chromedp.WaitReady(chromedp.CSS("#label")), chromedp.WaitReady(chromedp.CSS("#follow")))
	if st, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById('label').dataset.state`)); st != "bound" {
		t.Fatalf("the label page's state is %q, want bound", st)
	}
	shot(t, ctx, "label")

	// WeChat refuses the config (a wrong signature, a domain not on the JS接口安全域名): the page
	// says why, and the button stays off even when WeChat calls ready afterwards.
	do(t, ctx, "bind page again", chromedp.Navigate(w.url+"/app/bind"),
		chromedp.Poll[chromedp.Void](`window.__wx && window.__wx.config`, chromedp.WithPollingTimeout(5*time.Second)),
		chromedp.Evaluate[chromedp.Void](`__wx.error('config:invalid signature'); __wx.ready()`),
		chromedp.Poll[chromedp.Void](msg+`.dataset.state === 'error'`, chromedp.WithPollingTimeout(3*time.Second)))
	text, _ := chromedp.Run(ctx, chromedp.Evaluate[string](msg+`.textContent`))
	disabled, _ := chromedp.Run(ctx, chromedp.Evaluate[bool](scan+`.disabled`))
	if !strings.Contains(text, "config:invalid signature") || !strings.Contains(text, "微信接口不可用") || !disabled {
		t.Fatalf("after wx.error the page says %q, button disabled %v", text, disabled)
	}
	shot(t, ctx, "scan-error")

	// The WiFi page follows the same rule.
	wifi := `document.getElementById('wifi')`
	do(t, ctx, "wifi page", chromedp.Navigate(w.url+"/app/wifi"),
		chromedp.Poll[chromedp.Void](`window.__wx && window.__wx.config && window.__wx.config.beta === true`, chromedp.WithPollingTimeout(5*time.Second)))
	if dis, _ := chromedp.Run(ctx, chromedp.Evaluate[bool](wifi+`.disabled`)); !dis {
		t.Fatal("the WiFi button is usable before wx.ready")
	}
	do(t, ctx, "WiFi refused", chromedp.Evaluate[chromedp.Void](`__wx.error('config:fail, the permission value is offline verifying')`),
		chromedp.Poll[chromedp.Void](msg+`.dataset.state === 'error' && `+msg+`.textContent.includes('offline verifying')`, chromedp.WithPollingTimeout(3*time.Second)))
	do(t, ctx, "wifi page, ready", chromedp.Navigate(w.url+"/app/wifi"),
		chromedp.Poll[chromedp.Void](`window.__wx && window.__wx.config`, chromedp.WithPollingTimeout(5*time.Second)),
		chromedp.Evaluate[chromedp.Void](`__wx.ready()`),
		chromedp.Poll[chromedp.Void](`!`+wifi+`.disabled`, chromedp.WithPollingTimeout(3*time.Second)),
		chromedp.Evaluate[chromedp.Void](`setTimeout(function () { `+wifi+`.click(); }, 0)`),
		chromedp.Poll[chromedp.Void](msg+`.dataset.state === 'ok'`, chromedp.WithPollingTimeout(3*time.Second)))

	// Outside WeChat's browser (no MicroMessenger), no JS-SDK is loaded at all.
	plain := browser(t)
	signInBrowser(t, plain, w, "oPlain")
	do(t, plain, "bind page outside WeChat", chromedp.Navigate(w.url+"/app/bind"),
		chromedp.Poll[chromedp.Void](`document.getElementById('bind-form')`, chromedp.WithPollingTimeout(5*time.Second)))
	if has, _ := chromedp.Run(plain, chromedp.Evaluate[bool](`!!document.getElementById('scan') || typeof window.wx !== 'undefined'`)); has {
		t.Fatal("outside WeChat the bind page loads the JS-SDK")
	}
}

// waitText waits for the page (which may be navigating) to show text.
func waitText(t *testing.T, ctx context.Context, text string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		body, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ''`))
		if strings.Contains(body, text) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the page never showed %q:\n%s", text, body)
		}
		_, _ = chromedp.Run(ctx, chromedp.Poll[chromedp.Void](`document.readyState === 'complete'`, chromedp.WithPollingTimeout(time.Second)))
	}
}

// jsString quotes s for a script.
func jsString(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}
