package console

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/sprout-iot/sprout/actors/actortest"
	"github.com/sprout-iot/sprout/edge/webtest"
)

// The browser helpers live in edge/webtest; these keep the tests' short names.
func chromiumPath(t *testing.T) string { return webtest.ChromiumPath(t) }

func browser(t *testing.T) context.Context { return webtest.Start(t, 1200, 800, "en-US") }

func shot(t *testing.T, ctx context.Context, name string) { webtest.Shot(t, ctx, "console-"+name) }

func do(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	webtest.Do(t, ctx, what, steps...)
}

// waitFor evaluates expr until it is true, riding out navigations (a form POST answered with a
// redirect destroys the page's script context, which chromedp.Poll reports as an error).
func waitFor(t *testing.T, ctx context.Context, what, expr string, timeout time.Duration) {
	t.Helper()
	var err error
	defer func() {
		if t.Failed() {
			body, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ''`))
			t.Logf("%s: last error %v\npage text:\n%s", expr, err, body)
		}
	}()
	actortest.Eventually(t, timeout, what, func() bool {
		var ok bool
		ok, err = chromedp.Run(ctx, chromedp.Evaluate[bool](`!!(`+expr+`)`))
		return err == nil && ok
	})
}

func TestBrowserSignInSeesFleet(t *testing.T) {
	chromiumPath(t) // fail before starting a node
	w := newWorld(t, func(o *Options) { o.RefreshEvery = 300 * time.Millisecond })
	secret := w.addDevice(t, "pot-2026a-0001")
	secret2 := w.addDevice(t, "pot-2026a-0002")
	w.addDevice(t, "pot-2026a-0003")
	p := w.connect(t, "pot-2026a-0001", secret)
	p.Report(t, 41, 22.5, 80)

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
	// The open page follows the fleet without a reload: a second pot comes online.
	do(t, ctx, "mark the page", chromedp.Evaluate[chromedp.Void](`window.sameDocument = true`))
	w.connect(t, "pot-2026a-0002", secret2)
	row2 := `document.querySelector('#device-pot-2026a-0002')`
	waitFor(t, ctx, "the second pot online in place", `window.sameDocument && `+row2+`.dataset.online === 'true' && document.getElementById('online-count').textContent === '2'`, 5*time.Second)
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
