package console

import (
	"crypto/rand"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"testing"
	"time"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/cluster"
	"github.com/sprout-iot/sprout/edge/edgetest"
	"github.com/sprout-iot/sprout/store/memory"
)

const testToken = "test-admin-token-0123456789"

// world is one Sprout node with the console, wired as `sprout serve` wires it: a memory store,
// a cluster member hosting device grains, the device edge, and the console on an HTTP server.
type world struct {
	store    *memory.Store
	member   *cluster.Member
	edgeAddr string
	console  *Handler
	url      string
}

func newWorld(t *testing.T, tune func(*Options)) *world {
	t.Helper()
	w := &world{store: memory.New()}
	log := edgetest.Quiet()
	w.member, w.edgeAddr = edgetest.StartNode(t, log,
		actors.NewDeviceKind(actors.DeviceOptions{Store: w.store, Users: w.store, Logger: log}))

	key := make([]byte, 32)
	_, _ = rand.Read(key)
	qrKey := make([]byte, 16)
	_, _ = rand.Read(qrKey)
	o := Options{Cluster: w.member.Cluster, Store: w.store, AdminToken: testToken, CookieKey: key, Logger: log,
		QRKeys: map[string][]byte{"sprout-pot": qrKey}, CommandTimeout: 3 * time.Second}
	if tune != nil {
		tune(&o)
	}
	w.console = New(o)
	w.url = edgetest.Serve(t, w.console.Routes)
	return w
}

func (w *world) addDevice(t *testing.T, id string) []byte {
	t.Helper()
	return edgetest.AddDevice(t, w.store, id, "sprout-pot")
}

// connect brings a pot online that answers every command with DONE and pings with pongs.
func (w *world) connect(t *testing.T, id string, secret []byte) *edgetest.Pot {
	t.Helper()
	return edgetest.Connect(t, w.edgeAddr, id, secret, edgetest.PotOptions{Firmware: "1.4.2"})
}

// client is a browser without JavaScript: a cookie jar that does not follow redirects.
func client() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Timeout: 15 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// english is what the tests' browser accepts: the pages they read are in English.
var english = http.Header{"Accept-Language": {"en"}}

func get(t *testing.T, c *http.Client, u string) (int, string) {
	t.Helper()
	return edgetest.Get(t, c, u, english)
}

func post(t *testing.T, c *http.Client, u string, form url.Values) (int, string) {
	t.Helper()
	return edgetest.PostForm(t, c, u, form, english)
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrfOf is the CSRF token in a page's forms.
func csrfOf(t *testing.T, body string) string {
	t.Helper()
	m := csrfField.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no CSRF token in the page:\n%s", body)
	}
	return m[1]
}

// signIn fills the sign-in form with token and returns the POST's status and the client.
func (w *world) signIn(t *testing.T, token string) (*http.Client, int) {
	t.Helper()
	c := client()
	_, body := get(t, c, w.url+"/console/login")
	status, _ := post(t, c, w.url+"/console/login", url.Values{"csrf": {csrfOf(t, body)}, "token": {token}})
	return c, status
}
