package console

import (
	"bytes"
	"encoding/base64"
	"encoding/csv"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/sprout-iot/sprout/edge/wechat/qr"
)

var (
	csvLink = regexp.MustCompile(`href="data:text/csv;charset=utf-8;base64,([A-Za-z0-9+/=]+)"`)
	labelPN = regexp.MustCompile(`<img src="data:image/png;base64,([A-Za-z0-9+/=&#;]+)" alt="QR ([^"]+)"`)
)

// provisionLabels makes a batch of n and returns the page and the CSV rows (header first).
func provisionLabels(t *testing.T, w *world, prefix string, n string) (string, [][]string) {
	t.Helper()
	c, _ := w.signIn(t, testToken)
	_, page := get(t, c, w.url+"/console/provision")
	status, body := post(t, c, w.url+"/console/provision", url.Values{"csrf": {csrfOf(t, page)}, "count": {n}, "prefix": {prefix}, "product": {"sprout-pot"}})
	if status != http.StatusCreated {
		t.Fatalf("batch: HTTP %d:\n%s", status, body)
	}
	m := csvLink.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no CSV on the batch page")
	}
	raw, _ := base64.StdEncoding.DecodeString(m[1])
	rows, err := csv.NewReader(bytes.NewReader(raw)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	return body, rows
}

// With a public URL, every label on the sheet encodes <public URL>/b/<signed code>: what WeChat's
// own scanner opens and binds with one scan.
func TestQRSheetEncodesTheLabelURLWithAPublicURL(t *testing.T) {
	w := newWorld(t, func(o *Options) { o.PublicURL = "https://sprout.example.com/" })
	body, rows := provisionLabels(t, w, "pot-l", "2")
	if strings.Contains(body, `id="bare-qr"`) {
		t.Fatal("the sheet warns about bare codes although it has a public URL")
	}
	pngs := labelPN.FindAllStringSubmatch(body, -1)
	if len(pngs) != 2 || len(rows) != 3 {
		t.Fatalf("%d labels, %d CSV rows", len(pngs), len(rows))
	}
	for i, row := range rows[1:] {
		id, tok, label := row[0], row[3], row[4]
		if label != "https://sprout.example.com/b/"+tok || !qr.IsCode(label) {
			t.Fatalf("%s's label is %q, want the label URL of %q", id, label, tok)
		}
		want, _ := qr.PNG(label, 256)
		if pngs[i][2] != id || html.UnescapeString(pngs[i][1]) != base64.StdEncoding.EncodeToString(want) {
			t.Fatalf("the sheet's code for %s is not the label URL %s", id, label)
		}
	}
}

// Without one, the sheet holds the bare codes as before and says that WeChat's scanner cannot
// bind them.
func TestQRSheetWithoutAPublicURLSaysWeChatsScannerCannotBind(t *testing.T) {
	w := newWorld(t, nil)
	body, rows := provisionLabels(t, w, "pot-n", "1")
	if !strings.Contains(body, `id="bare-qr"`) || !strings.Contains(body, "cannot bind") {
		t.Fatalf("no warning that bare codes do not bind from WeChat's scanner:\n%s", body)
	}
	if rows[1][4] != rows[1][3] || !strings.HasPrefix(rows[1][3], "s1.") {
		t.Fatalf("CSV row %v: the label should be the bare code", rows[1])
	}
	want, _ := qr.PNG(rows[1][3], 256)
	if m := labelPN.FindStringSubmatch(body); m == nil || html.UnescapeString(m[1]) != base64.StdEncoding.EncodeToString(want) {
		t.Fatal("the sheet's code is not the bare code")
	}
}
