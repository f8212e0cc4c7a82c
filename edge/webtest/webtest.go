// Package webtest drives Debian's headless Chromium for the pages' browser tests (edge/web,
// edge/console): the flags this closed network needs, screenshots for the docs, and steps that
// report the page's text when they fail. It is imported by tests only.
package webtest

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// ChromiumPath is Debian's Chromium; SPROUT_CHROMIUM overrides it. A missing browser fails the
// test (it never skips), naming the package to install.
func ChromiumPath(t testing.TB) string {
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

// Start starts a headless Chromium with a window of width x height whose Accept-Language is lang,
// closed when the test ends (40 s at most).
func Start(t *testing.T, width, height int, lang string) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(ChromiumPath(t)), chromedp.NoSandbox, chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-gpu", true), chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true), chromedp.WindowSize(width, height),
		// headless Chromium otherwise says en-US whatever the page's audience
		chromedp.Flag("lang", lang), chromedp.Flag("accept-lang", lang))
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(alloc)
	ctx, cancelT := context.WithTimeout(ctx, 40*time.Second)
	t.Cleanup(func() { cancelT(); cancel(); cancelAlloc() })
	return ctx
}

// Shot saves a full-page screenshot as NAME.png in the directory SPROUT_WEB_SCREENSHOTS names
// (the docs refresh); without it, nothing is written.
func Shot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	dir := os.Getenv("SPROUT_WEB_SCREENSHOTS")
	if dir == "" {
		return
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// Do runs steps; on failure the test fails with the page's text.
func Do(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		body, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ''`))
		t.Fatalf("%s: %v\npage text:\n%s", what, err, body)
	}
}
