package console

import (
	"bytes"
	"encoding/base64"
	"encoding/csv"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/edge/api"
	"github.com/sprout-iot/sprout/edge/wechat/qr"
)

// provisionForm is what the form last held.
type provisionForm struct {
	Count    int
	Prefix   string
	Product  string
	Products []string // products with a QR key, offered in the form
	MaxBatch int
}

// batchView is a batch just created: shown once, secrets included.
type batchView struct {
	Product string
	Devices []credential
	HasQR   bool
	// BareQR: the labels hold the bare code (no PublicURL): WeChat's scanner cannot bind them.
	BareQR  bool
	Err     string       // why the batch stopped early
	CSV     template.URL // data:text/csv;base64,... of Devices, for the factory's flashing line
	CSVName string       // the file name the browser saves it under
}

type credential struct {
	ID     string
	Secret string
	QR     string       // the signed token
	Label  string       // what the printed code encodes: the label URL, or the bare token
	PNG    template.URL // data:image/png;base64,...
}

func (h *Handler) products() []string {
	var ps []string
	for p := range h.opts.QRKeys {
		ps = append(ps, p)
	}
	slices.Sort(ps)
	return ps
}

func (h *Handler) provisionForm(w http.ResponseWriter, r *http.Request) {
	p := h.newPage(r)
	p.Form = provisionForm{Count: 10, Product: "sprout-pot", Products: h.products(), MaxBatch: h.opts.MaxBatch}
	h.render(w, http.StatusOK, "provision.html", p)
}

// validName is what a product or id prefix may hold: what both the wire protocol and QR codes accept.
func validName(s string, maxLen int) bool {
	if len(s) > maxLen {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// provision creates Count devices the way edge/api.NewDevice does (random 32-byte secrets).
// With a prefix, ids are prefix+0001, prefix+0002, ...; numbers already taken are skipped, so a
// second batch with the same prefix continues where the first ended. Without one, ids are random.
func (h *Handler) provision(w http.ResponseWriter, r *http.Request) {
	p := h.newPage(r)
	count, _ := strconv.Atoi(strings.TrimSpace(r.PostFormValue("count")))
	prefix := strings.TrimSpace(r.PostFormValue("prefix"))
	product := strings.TrimSpace(r.PostFormValue("product"))
	if product == "" {
		product = "sprout-pot"
	}
	p.Form = provisionForm{Count: count, Prefix: prefix, Product: product, Products: h.products(), MaxBatch: h.opts.MaxBatch}
	if count < 1 || count > h.opts.MaxBatch || !validName(prefix, 48) || product == "" || !validName(product, 16) {
		p.Message = p.T("bad_batch") + fmt.Sprintf(" (1..%d)", h.opts.MaxBatch)
		h.render(w, http.StatusBadRequest, "provision.html", p)
		return
	}
	key, hasQR := h.opts.QRKeys[product]
	b := &batchView{Product: product, HasQR: hasQR, BareQR: hasQR && h.opts.PublicURL == ""}
	next := 1
	for len(b.Devices) < count {
		id := ""
		if prefix != "" {
			if next > 9999 {
				b.Err = fmt.Sprintf("%s: numbers up to 9999 are taken", prefix)
				break
			}
			id = fmt.Sprintf("%s%04d", prefix, next)
			next++
		}
		d, err := api.NewDevice(r.Context(), h.opts.Store, id, product, nil)
		if errors.Is(err, actors.ErrDeviceExists) && prefix != "" {
			continue
		}
		if err != nil {
			h.opts.Logger.Error("console: provisioning", "device", id, "err", err)
			b.Err = err.Error()
			break
		}
		c := credential{ID: d.ID, Secret: hex.EncodeToString(d.Secret)}
		if hasQR {
			if c.QR, err = qr.Scene(key, qr.Code{Product: product, Device: d.ID}); err != nil {
				b.Err = fmt.Sprintf("QR for %s: %v", d.ID, err)
				b.Devices = append(b.Devices, c)
				break
			}
			c.Label = c.QR
			if h.opts.PublicURL != "" {
				c.Label = qr.LabelURL(h.opts.PublicURL, c.QR)
			}
			png, err := qr.PNG(c.Label, h.opts.QRSize)
			if err != nil {
				b.Err = fmt.Sprintf("QR for %s: %v", d.ID, err)
				b.Devices = append(b.Devices, c)
				break
			}
			c.PNG = template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(png))
		}
		b.Devices = append(b.Devices, c)
	}
	h.opts.Logger.Info("console: provisioned devices", "count", len(b.Devices), "product", product, "prefix", prefix)
	if len(b.Devices) > 0 {
		// Built into the page, not kept on the server: the secrets exist only in this answer.
		b.CSV = template.URL("data:text/csv;charset=utf-8;base64," + base64.StdEncoding.EncodeToString(batchCSV(product, b.Devices)))
		b.CSVName = fmt.Sprintf("sprout-%s-%s-%d.csv", product, h.opts.Now().UTC().Format("20060102-150405"), len(b.Devices))
	}
	p.Batch = b
	status := http.StatusCreated
	if b.Err != "" {
		status = http.StatusOK
		if len(b.Devices) == 0 {
			status = http.StatusServiceUnavailable
		}
	}
	h.render(w, status, "provision.html", p)
}

// batchCSV is a batch as CSV: device_id, secret_hex, product, qr (the signed code, empty without
// a QR key), label (what the printed code encodes: the label URL, or the bare code), with a
// header row. A cell that a spreadsheet would read as a formula (it
// starts with = + - @ or a tab) is prefixed with ' (device ids may start with '-').
func batchCSV(product string, ds []credential) []byte {
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	_ = w.Write([]string{"device_id", "secret_hex", "product", "qr", "label"})
	for _, d := range ds {
		_ = w.Write([]string{csvCell(d.ID), d.Secret, csvCell(product), csvCell(d.QR), csvCell(d.Label)})
	}
	w.Flush()
	return buf.Bytes()
}

func csvCell(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}
