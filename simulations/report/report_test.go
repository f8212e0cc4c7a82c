package report_test

import (
	"bytes"
	"context"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/sprout-iot/sprout/simulations/report"
)

// testdata/report.json is a real run (a scenario with dry pots, taps, a burst and a network
// blip, 120 plants for 20 s), so the page is tested with the data it will show.
func load(t *testing.T) *report.Report {
	t.Helper()
	r, err := report.Load("testdata/report.json")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

const chromium = "/usr/bin/chromium"

// TestReportPageInHeadlessChromium opens the HTML report in Chromium, as a person would, and
// checks what they would see: the verdict, a throughput line drawn across the chart, three
// latency percentiles, the connected devices dipping at the blip, and bars per user. It saves a
// screenshot; SPROUT_UPDATE_SCREENSHOT=1 also writes it to docs/images/report.png.
func TestReportPageInHeadlessChromium(t *testing.T) {
	if _, err := os.Stat(chromium); err != nil {
		t.Fatalf("this test needs Chromium at %s: install Debian's package `chromium` (apt-get install chromium; make deps does): %v", chromium, err)
	}
	r := load(t)
	dir := t.TempDir()
	_, htmlPath, _, err := r.Write(dir)
	if err != nil {
		t.Fatal(err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium),
		chromedp.Flag("headless", true), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true), chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1150, 900),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()

	if err := chromedp.Do(bctx, chromedp.Navigate("file://"+htmlPath), chromedp.WaitVisible("#chart-users")); err != nil {
		t.Fatalf("opening the report in Chromium: %v", err)
	}
	run := func(what string, f func() error) {
		t.Helper()
		if err := f(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	var (
		verdict, verdictColor, connectedD string
		throughputLen                     float64
		latencySeries, userBars, failed   int
		shot                              []byte
	)
	run("verdict", func() (err error) { verdict, err = chromedp.Run(bctx, chromedp.Text("#verdict")); return })
	run("verdict colour", func() (err error) {
		verdictColor, err = chromedp.Run(bctx, chromedp.Evaluate[string](`getComputedStyle(document.getElementById('verdict')).backgroundColor`))
		return
	})
	run("throughput", func() (err error) {
		throughputLen, err = chromedp.Run(bctx, chromedp.Evaluate[float64](`document.querySelector('#chart-throughput path.series').getTotalLength()`))
		return
	})
	run("latency", func() (err error) {
		latencySeries, err = chromedp.Run(bctx, chromedp.Evaluate[int](`document.querySelectorAll('#chart-latency path.series').length`))
		return
	})
	run("connected", func() (err error) {
		connectedD, err = chromedp.Run(bctx, chromedp.Evaluate[string](`document.querySelector('#chart-connected path.series').getAttribute('d')`))
		return
	})
	run("user bars", func() (err error) {
		userBars, err = chromedp.Run(bctx, chromedp.Evaluate[int](`[...document.querySelectorAll('#chart-users rect.bar')].filter(b => b.getBBox().height > 0).length`))
		return
	})
	run("criteria", func() (err error) {
		failed, err = chromedp.Run(bctx, chromedp.Evaluate[int](`document.querySelectorAll('#criteria td.bad').length`))
		return
	})
	run("screenshot", func() (err error) { shot, err = chromedp.Run(bctx, chromedp.FullScreenshot(100)); return })
	if verdict != "PASS" || verdictColor != "rgb(46, 125, 50)" {
		t.Errorf("verdict badge shows %q in %s, want PASS in green", verdict, verdictColor)
	}
	if throughputLen < 300 {
		t.Errorf("the throughput line is %.0f units long: no data drawn", throughputLen)
	}
	if latencySeries != 3 {
		t.Errorf("latency chart has %d lines, want p50, p90 and p99", latencySeries)
	}
	if n := strings.Count(connectedD, "L"); n < len(r.Series)-1 {
		t.Errorf("connected chart has %d segments for %d seconds", n, len(r.Series))
	}
	if userBars < len(r.Users) {
		t.Errorf("%d visible bars for %d users", userBars, len(r.Users))
	}
	if failed != 0 {
		t.Errorf("%d criteria shown as failed in a passing run", failed)
	}

	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if !hasColour(img, 0x1f, 0x77, 0xb4) || !hasColour(img, 0x2e, 0x7d, 0x32) {
		t.Error("the screenshot shows neither the throughput line's blue nor the verdict's green")
	}
	out := filepath.Join(t.TempDir(), "report.png")
	if os.Getenv("SPROUT_UPDATE_SCREENSHOT") != "" {
		out = filepath.Join("..", "..", "docs", "images", "report.png")
		_ = os.MkdirAll(filepath.Dir(out), 0o755)
	}
	var small bytes.Buffer
	enc := png.Encoder{CompressionLevel: png.BestCompression}
	if err := enc.Encode(&small, halve(img)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(out, small.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %dx%d, %d KiB: %s", img.Bounds().Dx()/2, img.Bounds().Dy()/2, small.Len()/1024, out)
}

// hasColour reports whether some pixel is within a small distance of (r, g, b).
func hasColour(img image.Image, r, g, b uint8) bool {
	bd := img.Bounds()
	near := func(a uint32, v uint8) bool { d := int(a>>8) - int(v); return d > -12 && d < 12 }
	for y := bd.Min.Y; y < bd.Max.Y; y++ {
		for x := bd.Min.X; x < bd.Max.X; x++ {
			pr, pg, pb, _ := img.At(x, y).RGBA()
			if near(pr, r) && near(pg, g) && near(pb, b) {
				return true
			}
		}
	}
	return false
}

// halve scales an image to half its size by averaging 2x2 blocks: small enough for the docs.
func halve(img image.Image) image.Image {
	bd := img.Bounds()
	out := image.NewRGBA(image.Rect(0, 0, bd.Dx()/2, bd.Dy()/2))
	for y := 0; y < bd.Dy()/2; y++ {
		for x := 0; x < bd.Dx()/2; x++ {
			var s [4]uint32
			for dy := 0; dy < 2; dy++ {
				for dx := 0; dx < 2; dx++ {
					r, g, b, a := img.At(bd.Min.X+2*x+dx, bd.Min.Y+2*y+dy).RGBA()
					s[0] += r
					s[1] += g
					s[2] += b
					s[3] += a
				}
			}
			i := out.PixOffset(x, y)
			for c := 0; c < 4; c++ {
				out.Pix[i+c] = uint8(s[c] / 4 >> 8)
			}
		}
	}
	return out
}

func TestSummaryFitsOnOneScreenAndNamesEachCriterion(t *testing.T) {
	r := load(t)
	s := r.Summary()
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > 40 {
		t.Errorf("summary is %d lines", len(lines))
	}
	for _, c := range r.Criteria {
		if !strings.Contains(s, "PASS  "+c.Name) {
			t.Errorf("summary does not show criterion %s", c.Name)
		}
	}
	for _, l := range lines {
		if n := len([]rune(l)); n > 160 {
			t.Errorf("summary line of %d characters: %q", n, l)
		}
	}
}

func TestFailedRunNamesItsCriteriaInErrAndHTML(t *testing.T) {
	r := load(t)
	r.Criteria[0].Pass = false
	r.Criteria[0].Detail = "sc-000001 seq 7"
	r.Verdict = report.Fail
	err := r.Err()
	if err == nil || !strings.Contains(err.Error(), r.Criteria[0].Name) || strings.Contains(err.Error(), r.Criteria[1].Name) {
		t.Fatalf("Err() = %v", err)
	}
	h := string(r.HTML())
	if !strings.Contains(h, `class="verdict fail">FAIL`) || !strings.Contains(h, "sc-000001 seq 7") {
		t.Fatal("the page does not show the failure and its detail")
	}
	if strings.Contains(h, "<script") || strings.Contains(h, "http://") || strings.Contains(h, "https://") {
		t.Fatal("the page must be self-contained: no scripts, no external resources")
	}
}
