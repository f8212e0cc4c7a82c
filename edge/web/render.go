package web

import (
	"bytes"
	"context"
	"fmt"
	"html/template"
	"math"
	"net/http"
	"strings"
	"time"
)

// page is what every template gets.
type page struct {
	Lang    string
	Q       string // "?lang=en" when the language was chosen in the URL, kept on links
	OtherQ  string // the link to the other language
	CSRF    string
	Plants  []plantView
	Live    bool // open the live stream
	Charts  []*chart
	Message string
	Status  int
	Links   []link

	Device   string // the plant a management page is about
	Owner    bool
	Settings *settingsView
	Members  []memberView
	Invite   *inviteView
	Confirm  *confirmView
	CanBind  bool
	Code     string
	JSSDK    *JSConfig
	Label    *labelView // the result of opening a printed label
	JSScript string     // the JS-SDK's URL (Options.JSSDKScript)
}

// cardData is one plant card: the plant and the page it is on.
type cardData struct {
	plantView
	P *page
}

// Cards returns the page's plants as cards.
func (p *page) Cards() []cardData {
	out := make([]cardData, len(p.Plants))
	for i, v := range p.Plants {
		out[i] = cardData{plantView: v, P: p}
	}
	return out
}

// T translates a key for the page's language.
func (p *page) T(key string) string { return tr(p.Lang, key) }

func (h *Handler) newPage(r *http.Request, s session) *page {
	p := &page{Lang: langOf(r)}
	if r.URL.Query().Get("lang") != "" {
		p.Q = "?lang=" + p.Lang
	}
	p.OtherQ = "?lang=" + tr(p.Lang, "lang_other_q")
	if s.OpenID != "" {
		p.CSRF = h.csrfToken(s)
	}
	return p
}

func parsePages() map[string]*template.Template {
	out := map[string]*template.Template{}
	for _, name := range []string{"plants.html", "plant.html", "message.html", "confirm.html", "invite.html", "bind.html", "wifi.html", "label.html"} {
		out[name] = template.Must(template.New(name).ParseFS(templateFS, "templates/layout.html", "templates/"+name))
	}
	return out
}

func (h *Handler) render(w http.ResponseWriter, status int, name string, p *page) {
	var buf bytes.Buffer
	if err := h.pages[name].ExecuteTemplate(&buf, name, p); err != nil {
		h.opts.Logger.Error("web: rendering", "page", name, "err", err)
		http.Error(w, "rendering failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

func (h *Handler) messagePage(w http.ResponseWriter, r *http.Request, status int, msg string) {
	p := h.newPage(r, sessionFrom(r.Context()))
	p.Message, p.Status = msg, status
	h.render(w, status, "message.html", p)
}

func (h *Handler) errorPage(w http.ResponseWriter, r *http.Request, status int, msg string) {
	h.messagePage(w, r, status, msg)
}

// chart is one plant's history (the last day or week) as SVG polylines (soil moisture 0..100 %, temperature
// 0..50 °C), drawn by the server so the page needs no charting library.
type chart struct {
	Title       string // i18n key
	EmptyText   string // i18n key
	W, H        int
	Moisture    string // polyline points
	Temperature string
	Empty       bool
	Ticks       []tick
	Dots        []dot // each bucket's averages, so a lone bucket still shows
}

// dot is one bucket's averages on the chart; M or T is negative when that average had no value.
type dot struct {
	X, M, T float64
}

type tick struct {
	X     int
	Label string
}

const chartW, chartH = 340, 120

// The plant page's two charts: the last day in half hours and the last week in six hours (the
// week reads hourly aggregates once raw readings have expired).
var chartSpecs = []struct {
	title, empty, tickFormat string
	span, bucket             time.Duration
}{
	{"chart", "chart_empty", "15:04", 24 * time.Hour, 30 * time.Minute},
	{"chart_week", "chart_week_empty", "01-02", 7 * 24 * time.Hour, 6 * time.Hour},
}

func (h *Handler) charts(ctx context.Context, deviceID string) []*chart {
	out := make([]*chart, 0, len(chartSpecs))
	for _, sp := range chartSpecs {
		out = append(out, h.chart(ctx, deviceID, sp.title, sp.empty, sp.tickFormat, sp.span, sp.bucket))
	}
	return out
}

func (h *Handler) chart(ctx context.Context, deviceID, title, empty, tickFormat string, chartSpan, chartBucket time.Duration) *chart {
	c := &chart{Title: title, EmptyText: empty, W: chartW, H: chartH, Empty: true}
	if h.opts.Store == nil {
		return c
	}
	to := h.opts.Now()
	from := to.Add(-chartSpan)
	bs, err := h.opts.Store.Buckets(ctx, deviceID, from, to, chartBucket)
	if err != nil {
		h.opts.Logger.Warn("web: reading buckets", "device", deviceID, "err", err)
		return c
	}
	var m, t []string
	for _, b := range bs {
		if b.Count == 0 {
			continue
		}
		x := float64(b.Start.Add(chartBucket/2).Sub(from)) / float64(chartSpan) * chartW
		x = min(max(x, 0), chartW)
		// A bucket whose average is not a finite number (readings with no value) has no point
		// on that line.
		mOK, tOK := finite(b.MoistureAvg), finite(b.TempAvg)
		if !mOK && !tOK {
			continue
		}
		d := dot{X: x, M: -1, T: -1}
		if mOK {
			d.M = scale(b.MoistureAvg, 100)
			m = append(m, fmt.Sprintf("%.1f,%.1f", d.X, d.M))
		}
		if tOK {
			d.T = scale(b.TempAvg, 50)
			t = append(t, fmt.Sprintf("%.1f,%.1f", d.X, d.T))
		}
		c.Dots = append(c.Dots, d)
	}
	c.Moisture, c.Temperature, c.Empty = strings.Join(m, " "), strings.Join(t, " "), len(m) == 0
	for i := 0; i <= 4; i++ {
		at := from.Add(time.Duration(i) * chartSpan / 4)
		c.Ticks = append(c.Ticks, tick{X: i * chartW / 4, Label: at.In(chinaTime).Format(tickFormat)})
	}
	return c
}

func finite(v float32) bool {
	f := float64(v)
	return !math.IsNaN(f) && !math.IsInf(f, 0)
}

func scale(v float32, top float64) float64 {
	y := chartH - float64(v)/top*chartH
	return min(max(y, 0), chartH)
}
