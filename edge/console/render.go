package console

import (
	"bytes"
	"html/template"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// page is what every template gets.
type page struct {
	Lang     string
	OtherQ   string // the link to the other language
	CSRF     string
	SignedIn bool
	Message  string
	Good     bool // Message reports a success
	Status   int

	Fleet  *fleetView
	Device *deviceView
	Batch  *batchView
	Form   provisionForm
	Pushes *pushesView
	Ops    *opsView

	Firmware *firmwareView
	Rollouts *rolloutsView
	Rollout  *rolloutView
}

// T translates a key for the page's language.
func (p *page) T(key string) string { return tr(p.Lang, key) }

func (h *Handler) newPage(r *http.Request) *page {
	p := &page{Lang: langOf(r)}
	p.OtherQ = "?lang=" + tr(p.Lang, "lang_other_q")
	if s := sessionFrom(r.Context()); s.Payload != "" {
		p.SignedIn, p.CSRF = true, h.csrfToken(s)
	}
	return p
}

var funcs = template.FuncMap{
	// metric formats a measured value with prec decimals and its unit, or "–" for a sensor that
	// gave no finite value (NaN, ±Inf).
	"metric": func(v float32, prec int, unit string) string {
		f := float64(v)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return "–"
		}
		return strconv.FormatFloat(f, 'f', prec, 32) + unit
	},
	// pct is a fraction as a percentage.
	"pct":  func(f float64) float64 { return f * 100 },
	"join": strings.Join,
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "–"
		}
		return t.In(chinaTime).Format("2006-01-02 15:04:05")
	},
}

// chinaTime is how times are shown: the factory and support are in China (UTC+8, no DST).
var chinaTime = time.FixedZone("CST", 8*3600)

func parsePages() map[string]*template.Template {
	out := map[string]*template.Template{}
	for _, name := range []string{"login.html", "fleet.html", "device.html", "provision.html", "message.html", "pushes.html", "operations.html",
		"firmware.html", "rollouts.html", "rollout.html"} {
		out[name] = template.Must(template.New(name).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+name))
	}
	return out
}

func (h *Handler) render(w http.ResponseWriter, status int, name string, p *page) {
	var buf bytes.Buffer
	if err := h.pages[name].ExecuteTemplate(&buf, name, p); err != nil {
		h.opts.Logger.Error("console: rendering", "page", name, "err", err)
		http.Error(w, "rendering failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// messagePage shows one translated message (key) with a link back.
func (h *Handler) messagePage(w http.ResponseWriter, r *http.Request, status int, key string, args ...string) {
	p := h.newPage(r)
	p.Message, p.Status = strings.Join(append([]string{tr(p.Lang, key)}, args...), " "), status
	h.render(w, status, "message.html", p)
}
