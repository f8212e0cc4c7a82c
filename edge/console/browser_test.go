package console

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromiumPath is Debian's Chromium; SPROUT_CHROMIUM overrides it.
func chromiumPath(t *testing.T) string {
	t.Helper()
	p := os.Getenv("SPROUT_CHROMIUM")
	if p == "" {
		p = "/usr/bin/chromium"
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("the browser tests need Chromium at %s: install Debian's package `chromium` (apt-get install chromium) or set SPROUT_CHROMIUM", p)
	}
	return p
}

// browser starts a headless desktop-sized Chromium with the flags this closed network needs.
func browser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)), chromedp.NoSandbox, chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-gpu", true), chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true), chromedp.WindowSize(1200, 800),
		chromedp.Flag("lang", "en-US"), chromedp.Flag("accept-lang", "en-US"))
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(alloc)
	ctx, cancelT := context.WithTimeout(ctx, 40*time.Second)
	t.Cleanup(func() { cancelT(); cancel(); cancelAlloc() })
	return ctx
}

// shot saves a screenshot as docs/images/console-NAME.png when SPROUT_WEB_SCREENSHOTS names the
// directory (the docs refresh; off in ordinary test runs).
func shot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	dir := os.Getenv("SPROUT_WEB_SCREENSHOTS")
	if dir == "" {
		return
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "console-"+name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

func do(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		body, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ''`))
		t.Fatalf("%s: %v\npage text:\n%s", what, err, body)
	}
}

// waitFor evaluates expr until it is true, riding out navigations (a form POST answered with a
// redirect destroys the page's script context, which chromedp.Poll reports as an error).
func waitFor(t *testing.T, ctx context.Context, what, expr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`!!(`+expr+`)`))
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			body, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ''`))
			t.Fatalf("%s: %s never held (last error %v)\npage text:\n%s", what, expr, err, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestBrowserSignInSeesFleet(t *testing.T) {
	chromiumPath(t) // fail before starting a node
	w := newWorld(t, nil)
	secret := w.addDevice(t, "pot-2026a-0001")
	w.addDevice(t, "pot-2026a-0002")
	w.addDevice(t, "pot-2026a-0003")
	p := w.connect(t, "pot-2026a-0001", secret)
	p.report(t, 41, 22.5, 80)

	ctx := browser(t)
	do(t, ctx, "open the console", chromedp.Navigate(w.url+"/console/"),
		chromedp.Poll[chromedp.Void](`location.pathname === '/console/login' && document.querySelector('input[name=token]')`,
			chromedp.WithPollingTimeout(5*time.Second)))
	shot(t, ctx, "login")
	do(t, ctx, "sign in",
		chromedp.Evaluate[chromedp.Void](`document.querySelector('input[name=token]').value = `+"'"+testToken+"'"),
		// Submit after this script returns: a navigation inside Evaluate races its answer.
		chromedp.Evaluate[chromedp.Void](`setTimeout(function () { document.querySelector('form.login').submit() }, 0)`))
	waitFor(t, ctx, "the fleet after signing in", `location.pathname === '/console/' && document.querySelector('table.fleet')`, 5*time.Second)
	row := `document.querySelector('#device-pot-2026a-0001')`
	do(t, ctx, "the fleet shows the device online", chromedp.Poll[chromedp.Void](row+` && `+row+`.dataset.online === 'true'`,
		chromedp.WithPollingTimeout(5*time.Second)))
	text, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
	if !strings.Contains(text, "pot-2026a-0003") || !strings.Contains(text, "1.4.2") || !strings.Contains(text, "online") {
		t.Fatalf("the fleet page:\n%s", text)
	}
	cookies, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.cookie`))
	if strings.Contains(cookies, sessionCookie) {
		t.Fatalf("the session cookie is readable from script: %q", cookies)
	}
	shot(t, ctx, "fleet")

	do(t, ctx, "device page", chromedp.Navigate(w.url+"/console/devices/pot-2026a-0001"),
		chromedp.Poll[chromedp.Void](`document.querySelector('form.commands')`, chromedp.WithPollingTimeout(5*time.Second)))
	do(t, ctx, "water from the device page",
		chromedp.Evaluate[chromedp.Void](`setTimeout(function () { document.querySelector('form.commands button[value=water]').click() }, 0)`))
	waitFor(t, ctx, "the outcome", `document.querySelector('.outcome[data-outcome=done]')`, 10*time.Second)
	shot(t, ctx, "device")

	do(t, ctx, "phone viewport", chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2)),
		chromedp.Navigate(w.url+"/console/"),
		chromedp.Poll[chromedp.Void](row, chromedp.WithPollingTimeout(5*time.Second)))
	shot(t, ctx, "fleet-phone")
}
