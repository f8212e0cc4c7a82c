package web

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/sprout-iot/sprout/edge/webtest"

	"github.com/sprout-iot/sprout/messages/devicepb"
)

// The browser helpers live in edge/webtest; these keep the tests' short names.
func chromiumPath(t *testing.T) string { return webtest.ChromiumPath(t) }

func browser(t *testing.T) context.Context { return webtest.Start(t, 390, 844, "zh-CN") }

func shot(t *testing.T, ctx context.Context, name string) { webtest.Shot(t, ctx, "app-"+name) }

func do(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	webtest.Do(t, ctx, what, steps...)
}

// signInBrowser opens /app, lands on the simulated WeChat consent page and picks the user there.
func signInBrowser(t *testing.T, ctx context.Context, w *world, openID string) {
	t.Helper()
	w.platform.NewUser(openID)
	link := `document.querySelector('a[href*="sim_openid=` + openID + `"]')`
	do(t, ctx, "open the app", chromedp.Navigate(w.url+"/app/"),
		chromedp.Poll[chromedp.Void](link, chromedp.WithPollingTimeout(5*time.Second)))
	// Follow the user's link as a tap would (a click inside Evaluate races the navigation).
	href, err := chromedp.Run(ctx, chromedp.Evaluate[string](link+`.href`))
	if err != nil {
		t.Fatal(err)
	}
	do(t, ctx, "sign in as "+openID, chromedp.Navigate(href),
		chromedp.Poll[chromedp.Void](`location.pathname === '/app/' && document.querySelector('main')`, chromedp.WithPollingTimeout(5*time.Second)))
}

func TestBrowserSignInLiveReadingWaterAndIsolation(t *testing.T) {
	chromiumPath(t) // fail before starting a node
	// The command rate limit has its own test (TestApp); here watering and saving follow each other.
	w := newWorld(t, func(o *Options) { o.StreamInterval, o.CommandInterval = 300*time.Millisecond, time.Nanosecond })
	secret := w.addPot(t, "pot-balcony", "oAlice")
	w.addPot(t, "pot-kitchen", "oAlice")
	w.addPot(t, "pot-bob", "oBob")
	pot := w.connect(t, "pot-balcony", secret, devicepb.CommandStatus_COMMAND_STATUS_DONE)
	pot.Report(t, 41, 22.5, 80)
	// A little history for the chart: the memory store buckets whatever it holds.
	for i, m := range []float32{48, 46, 45, 43} {
		pot.Report(t, m, 21+float32(i), 80)
	}
	pot.Report(t, 41, 22.5, 80)

	ctx := browser(t)
	do(t, ctx, "phone viewport", chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2)))
	signInBrowser(t, ctx, w, "oAlice")
	moisture := `document.querySelector('#plant-pot-balcony [data-f=moisture]')`
	do(t, ctx, "alice sees her plant", chromedp.Poll[chromedp.Void](moisture+` && `+moisture+`.textContent === '41%'`,
		chromedp.WithPollingTimeout(5*time.Second)))
	text, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
	if !strings.Contains(text, "在线") || !strings.Contains(text, "pot-kitchen") || strings.Contains(text, "pot-bob") {
		t.Fatalf("alice's page:\n%s", text)
	}
	shot(t, ctx, "plants")

	// The pot reports a dry soil: the open page updates without a reload.
	pot.Report(t, 12, 24, 80)
	do(t, ctx, "live reading", chromedp.Poll[chromedp.Void](moisture+`.textContent === '12%' && document.querySelector('#plant-pot-balcony').classList.contains('alerting')`,
		chromedp.WithPollingTimeout(5*time.Second)))

	msg := `document.querySelector('#plant-pot-balcony .msg')`
	do(t, ctx, "water now",
		chromedp.Evaluate[chromedp.Void](`document.querySelector('#plant-pot-balcony form.water button').click()`),
		chromedp.Poll[chromedp.Void](msg+`.dataset.outcome === 'done'`, chromedp.WithPollingTimeout(8*time.Second)))
	if got, _ := chromedp.Run(ctx, chromedp.Evaluate[string](msg+`.textContent`)); got != "浇水完成" {
		t.Fatalf("after the tap the page says %q, want 浇水完成", got)
	}
	if pot.Commands() != 1 {
		t.Fatalf("the pot got %d commands, want 1", pot.Commands())
	}
	shot(t, ctx, "watered")

	do(t, ctx, "plant page", chromedp.Navigate(w.url+"/app/plants/pot-balcony"),
		chromedp.Poll[chromedp.Void](`document.querySelector('polyline.moisture')`, chromedp.WithPollingTimeout(5*time.Second)))
	shot(t, ctx, "plant")

	// The owner raises the dry threshold: the pot takes the new config, and the page shows it.
	setMsg := `document.querySelector('section.settings .msg')`
	do(t, ctx, "change a threshold",
		chromedp.Evaluate[chromedp.Void](`document.querySelector("section.settings input[name=moisture_min]").value = "30"`),
		chromedp.Evaluate[chromedp.Void](`document.querySelector('section.settings button[type=submit]').click()`),
		chromedp.Poll[chromedp.Void](setMsg+` && `+setMsg+`.textContent.length > 0 && !`+setMsg+`.textContent.includes('…')`,
			chromedp.WithPollingTimeout(8*time.Second)))
	if got, _ := chromedp.Run(ctx, chromedp.Evaluate[string](setMsg+`.textContent`)); !strings.Contains(got, "已保存") {
		t.Fatalf("after saving the threshold the page says %q", got)
	}
	do(t, ctx, "threshold kept", chromedp.Navigate(w.url+"/app/plants/pot-balcony"),
		chromedp.Poll[chromedp.Void](`document.querySelector('section.settings input[name=moisture_min]').value === '30'`,
			chromedp.WithPollingTimeout(5*time.Second)))
	do(t, ctx, "english", chromedp.Navigate(w.url+"/app/?lang=en"),
		chromedp.Poll[chromedp.Void](`document.body.innerText.includes('Water now')`, chromedp.WithPollingTimeout(5*time.Second)))
	shot(t, ctx, "plants-en")

	// Bob, in his own browser profile, sees only his pot and gets 404 for Alice's.
	bctx, cancel := chromedp.NewContext(ctx, chromedp.WithNewBrowserContext())
	defer cancel()
	signInBrowser(t, bctx, w, "oBob")
	text, _ = chromedp.Run(bctx, chromedp.Evaluate[string](`document.body.innerText`))
	if strings.Contains(text, "pot-balcony") || !strings.Contains(text, "pot-bob") {
		t.Fatalf("bob's page shows alice's plant or lacks his own:\n%s", text)
	}
	res, err := chromedp.Run(bctx, chromedp.NavigateResponse(w.url+"/app/plants/pot-balcony"))
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != 404 {
		t.Fatalf("bob opening alice's plant: HTTP %d, want 404", res.Status)
	}
	shot(t, bctx, "not-found")
}
