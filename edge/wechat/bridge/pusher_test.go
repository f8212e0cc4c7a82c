package bridge_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/actors/actortest"
	"github.com/sprout-iot/sprout/edge/edgetest"
	"github.com/sprout-iot/sprout/edge/wechat/api"
	"github.com/sprout-iot/sprout/edge/wechat/bridge"
	"github.com/sprout-iot/sprout/store/memory"
)

// staticTokens is a TokenSource with one token that never expires.
type staticTokens struct{}

func (staticTokens) Token(context.Context) (string, error) { return "token", nil }
func (staticTokens) Invalidate(context.Context, string)    {}

// heldAPI is WeChat's customer-service API holding every send until the test lets it answer:
// each request is announced on arrived, and answered (success) for each value sent on release,
// or once release is closed.
type heldAPI struct {
	arrived chan string
	release chan struct{}
	once    sync.Once
	sent    atomic.Int64
}

// releaseAll lets every held and later send answer.
func (h *heldAPI) releaseAll() { h.once.Do(func() { close(h.release) }) }

func newHeldAPI(t *testing.T) (*heldAPI, *api.Client) {
	t.Helper()
	h := &heldAPI{arrived: make(chan string, 100), release: make(chan struct{}, 100)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h.arrived <- string(body)
		<-h.release
		h.sent.Add(1)
		_, _ = w.Write([]byte(`{"errcode":0,"errmsg":"ok"}`))
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(h.releaseAll)
	c, err := api.New(api.Options{BaseURL: srv.URL, Tokens: staticTokens{}})
	if err != nil {
		t.Fatal(err)
	}
	return h, c
}

func (h *heldAPI) waitArrival(t *testing.T) string {
	t.Helper()
	select {
	case body := <-h.arrived:
		return body
	case <-time.After(10 * time.Second):
		t.Fatal("no push reached WeChat")
		return ""
	}
}

func textPushes(n int) []actors.Push {
	var ps []actors.Push
	for i := range n {
		ps = append(ps, actors.Push{ID: fmt.Sprintf("m%d", i), OpenID: "oAlice", Kind: actors.PushText,
			Payload: []byte(fmt.Sprintf(`{"text":"push %d"}`, i)), CreatedAt: time.Unix(int64(1000+i), 0)})
	}
	return ps
}

// clock is a settable time for the pusher's leases.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// TestStoppingThePusherFinishesOrReleasesItsPushes: a node shutting down lets the push it is
// sending finish (recorded sent, not cut off and retried), sends nothing more, and releases the
// rest of its batch at once, untouched, for another node to send.
func TestStoppingThePusherFinishesOrReleasesItsPushes(t *testing.T) {
	st := memory.New()
	ctx := context.Background()
	if err := st.EnqueuePushes(ctx, textPushes(5)); err != nil {
		t.Fatal(err)
	}
	wx, client := newHeldAPI(t)
	clk := &clock{now: time.Unix(2000, 0)}
	p := bridge.NewPusher(st, client, bridge.PusherOptions{Owner: "node-a", Workers: 1, Batch: 5,
		Now: clk.Now, Logger: edgetest.Quiet()})
	runCtx, stop := context.WithCancel(ctx)
	stopped := make(chan struct{})
	go func() { p.Run(runCtx); close(stopped) }()

	wx.waitArrival(t)
	stop() // the node shuts down while m0 is with WeChat
	wx.releaseAll()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("the pusher did not stop")
	}
	if n := wx.sent.Load(); n != 1 {
		t.Fatalf("%d pushes reached WeChat after the stop, want only the one in flight", n)
	}
	all, err := st.UserPushes(ctx, "oAlice", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, got := range all {
		switch {
		case got.ID == "m0" && (got.Status != actors.PushSent || got.Attempts != 1 || got.LastError != ""):
			t.Errorf("the push in flight at the stop = %+v, want sent once", got)
		case got.ID != "m0" && (got.Status != actors.PushPending || got.Attempts != 0 || got.LastError != ""):
			t.Errorf("a push not yet sent at the stop = %+v, want pending, untouched", got)
		}
	}
	// Released, not left leased: another node takes them at once.
	next, err := st.ClaimPushes(ctx, "node-b", clk.Now(), 15*time.Second, 10)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, q := range next {
		ids = append(ids, q.ID)
	}
	if !slices.Equal(ids, []string{"m1", "m2", "m3", "m4"}) {
		t.Fatalf("another node's claim right after the stop = %v, want m1..m4", ids)
	}
}

// TestPusherDoesNotSendPushesWhoseLeaseItLost: a pusher whose batch is so slow that the lease
// of the pushes still waiting ran out, and another node claimed them, sends none of those and
// records nothing about them; the push it renewed before sending stays its own. Each push
// reaches WeChat once.
func TestPusherDoesNotSendPushesWhoseLeaseItLost(t *testing.T) {
	st := memory.New()
	ctx := context.Background()
	if err := st.EnqueuePushes(ctx, textPushes(5)); err != nil {
		t.Fatal(err)
	}
	wx, client := newHeldAPI(t)
	clk := &clock{now: time.Unix(2000, 0)}
	var recorded sync.Map
	p := bridge.NewPusher(st, client, bridge.PusherOptions{Owner: "node-a", Workers: 1, Batch: 5, Lease: 15 * time.Second,
		Now: clk.Now, Logger: edgetest.Quiet(), Sent: func(q actors.Push) { recorded.Store(q.ID, q.Status) }})
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	go p.Run(runCtx)

	// node-a claimed m0..m4 at 2000 s (leases until 2015 s) and sends them one at a time, slowly.
	wx.waitArrival(t) // m0
	clk.Advance(10 * time.Second)
	wx.release <- struct{}{}
	wx.waitArrival(t) // m1, its lease renewed at 2010 s
	clk.Advance(10 * time.Second)
	taken, err := st.ClaimPushes(ctx, "node-b", clk.Now(), 15*time.Second, 10)
	var ids []string
	for _, q := range taken {
		ids = append(ids, q.ID)
	}
	if err != nil || !slices.Equal(ids, []string{"m2", "m3", "m4"}) {
		t.Fatalf("node-b's claim at 2020 s = %v, %v; want m2..m4 (m1's lease was renewed when node-a began sending it)", ids, err)
	}
	for _, q := range taken {
		q.Status, q.Attempts, q.SentAt = actors.PushSent, 1, clk.Now()
		if err := st.CompletePush(ctx, q); err != nil {
			t.Fatalf("node-b completing %s: %v", q.ID, err)
		}
	}
	wx.release <- struct{}{}
	actortest.Eventually(t, 10*time.Second, "node-a done with its batch", func() bool {
		n := 0
		recorded.Range(func(any, any) bool { n++; return true })
		return n == 5
	})
	for _, id := range []string{"m0", "m1"} {
		if status, _ := recorded.Load(id); status != actors.PushSent {
			t.Errorf("node-a recorded %s as %v, want sent", id, status)
		}
	}
	if n := wx.sent.Load(); n != 2 {
		t.Fatalf("node-a sent %d pushes, want 2 (m0, m1): node-b holds the others", n)
	}
	all, _ := st.UserPushes(ctx, "oAlice", 0)
	for _, q := range all {
		if q.Status != actors.PushSent || q.Attempts != 1 {
			t.Errorf("%s = %+v, want sent once", q.ID, q)
		}
	}
}
