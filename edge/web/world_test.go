package web

import (
	"context"
	"crypto/rand"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"testing"
	"time"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/cluster"
	"github.com/sprout-iot/sprout/edge/edgetest"
	"github.com/sprout-iot/sprout/messages/actorpb"
	"github.com/sprout-iot/sprout/messages/devicepb"
	"github.com/sprout-iot/sprout/simulations/wechatsim"
	"github.com/sprout-iot/sprout/store/memory"
)

// world is one Sprout node with the web app, wired to the simulated WeChat platform the way
// `sprout serve` wires it.
type world struct {
	store    *memory.Store
	member   *cluster.Member
	edgeAddr string
	platform *wechatsim.Platform
	web      *Handler
	url      string // the app's origin
}

func newWorld(t *testing.T, tune func(*Options)) *world {
	t.Helper()
	return newWorldOn(t, nil, tune)
}

// newWorldOn is newWorld with the grains and the app on blip, a wrapper of the world's memory
// store (nil: the store itself).
func newWorldOn(t *testing.T, blip func(*memory.Store) *edgetest.BlipStore, tune func(*Options)) *world {
	t.Helper()
	w := &world{store: memory.New()}
	var st interface {
		actors.Store
		actors.UserStore
	} = w.store
	if blip != nil {
		st = blip(w.store)
	}
	log := edgetest.Quiet()
	p, err := wechatsim.NewServer(wechatsim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	w.platform = p
	w.member, w.edgeAddr = edgetest.StartNode(t, log,
		actors.NewDeviceKind(actors.DeviceOptions{Store: st, Users: st, Logger: log}))

	key := make([]byte, 32)
	_, _ = rand.Read(key)
	o := Options{Cluster: w.member.Cluster, Store: st, Users: st, CookieKey: key, Logger: log,
		OAuth:          OAuth{AppID: p.AppID(), Secret: p.Secret(), APIBase: p.URL(), AuthorizeBase: p.URL()},
		CommandTimeout: 3 * time.Second, StreamInterval: 200 * time.Millisecond}
	if tune != nil {
		tune(&o)
	}
	w.web = New(o)
	w.url = edgetest.Serve(t, w.web.Routes)
	return w
}

// addPot provisions a pot and binds it to the given users (the first is the owner).
func (w *world) addPot(t *testing.T, id string, openIDs ...string) []byte {
	t.Helper()
	secret := edgetest.AddDevice(t, w.store, id, "pot")
	for _, o := range openIDs {
		br, err := w.web.devices.Bind(context.Background(), id, o, "test")
		if err != nil {
			t.Fatalf("binding %s to %s: %v", o, id, err)
		}
		if br.Role == actors.RolePending { // after the owner: the owner approves
			if _, err := w.web.devices.DecideJoin(context.Background(), id, "", o, true, openIDs[0]); err != nil {
				t.Fatalf("approving %s on %s: %v", o, id, err)
			}
		}
	}
	return secret
}

// connect brings a pot online that answers every command with status and pings with pongs.
func (w *world) connect(t *testing.T, id string, secret []byte, status devicepb.CommandStatus) *edgetest.Pot {
	t.Helper()
	return edgetest.Connect(t, w.edgeAddr, id, secret, edgetest.PotOptions{Status: status})
}

// signIn walks the OAuth flow as a browser would, choosing openID on the simulated consent
// page, and returns a client holding the session cookie.
func (w *world) signIn(t *testing.T, openID string) *http.Client {
	t.Helper()
	c, _ := w.signInAt(t, openID, "/app/")
	return c
}

// signInAt opens target (a path with its query) signed out, goes through OAuth as openID and
// expects to land back on target; it returns the client and the page.
func (w *world) signInAt(t *testing.T, openID, target string) (*http.Client, string) {
	t.Helper()
	w.platform.NewUser(openID)
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second,
		CheckRedirect: func(req *http.Request, _ []*http.Request) error {
			if req.URL.Path == "/connect/oauth2/authorize" && req.URL.Query().Get("sim_openid") == "" {
				q := req.URL.Query()
				q.Set("sim_openid", openID)
				req.URL.RawQuery = q.Encode()
			}
			return nil
		}}
	res, err := c.Get(w.url + target)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || res.Request.URL.RequestURI() != target {
		t.Fatalf("sign-in ended at %s with %d: %s", res.Request.URL, res.StatusCode, body)
	}
	return c, string(body)
}

// post submits a form as the page's script does (JSON answer), adding the session's CSRF token
// unless vals has one; the client follows redirects.
func (w *world) post(t *testing.T, c *http.Client, openID, path string, vals url.Values) (int, string) {
	t.Helper()
	if vals == nil {
		vals = url.Values{}
	}
	if _, ok := vals["csrf"]; !ok {
		vals.Set("csrf", w.web.csrfToken(w.sessionOf(t, c, openID)))
	}
	return edgetest.PostForm(t, c, w.url+path, vals, jsonAnswer)
}

// jsonAnswer is what the page's script accepts.
var jsonAnswer = http.Header{"Accept": {"application/json"}}

// users asks the device grain for the bound OpenIDs (owner first) and the config.
func (w *world) users(t *testing.T, id string) *actorpb.DeviceState {
	t.Helper()
	st, err := w.web.devices.State(context.Background(), id)
	if err != nil {
		t.Fatalf("state of %s: %v", id, err)
	}
	return st
}

func get(t *testing.T, c *http.Client, u string) (int, string) {
	t.Helper()
	return edgetest.Get(t, c, u, nil)
}

// water taps "water now" as the page's script does.
func (w *world) water(t *testing.T, c *http.Client, openID, device string) (int, string) {
	t.Helper()
	return w.post(t, c, openID, "/app/plants/"+device+"/water", nil)
}

func (w *world) sessionOf(t *testing.T, c *http.Client, openID string) session {
	t.Helper()
	u, _ := url.Parse(w.url + "/app/")
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == sessionCookie {
			s, err := w.web.decodeSession(ck.Value)
			if err != nil || s.OpenID != openID {
				t.Fatalf("session cookie of %s: %+v %v", openID, s, err)
			}
			return s
		}
	}
	t.Fatalf("%s has no session cookie", openID)
	return session{}
}
