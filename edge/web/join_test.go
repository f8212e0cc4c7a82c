package web

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/sprout-iot/sprout/edge/wechat/qr"
)

const (
	ivy = "oIvy-000000000005"
	jon = "oJon-000000000006"
	kim = "oKim-000000000007"
)

// testJoin is TestApp's part on requests to join: a second scanner waits for the owner, who
// approves with one tap on the page the join_request push links to, or refuses on the pot's page.
func testJoin(t *testing.T, w *world) {
	w.addPot(t, "pot-join", ivy)
	ivyC, jonC, kimC := w.signIn(t, ivy), w.signIn(t, jon), w.signIn(t, kim)
	code, _ := qr.Sign(testQRKey, qr.Code{Product: "pot", Device: "pot-join"})

	t.Run("SecondScannerWaitsAndSeesNothing", func(t *testing.T) {
		st, body := w.post(t, jonC, jon, "/app/bind", url.Values{"code": {code}})
		if r := outcomeOf(t, body); st != 200 || r.Outcome != "pending" || !strings.Contains(r.Message, "等待批准") {
			t.Fatalf("a second scan: %d %s, want pending", st, body)
		}
		if us := w.users(t, "pot-join").Users; len(us) != 1 {
			t.Fatalf("users while jon waits: %v", us)
		}
		st, body = get(t, jonC, w.url+"/app/plants/pot-join")
		if st != 200 || !strings.Contains(body, "等待管理员批准") || strings.Contains(body, "water") || strings.Contains(body, `class="card plant`) {
			t.Fatalf("the requester's pot page (%d) should only say it waits:\n%s", st, body)
		}
		if st, body := w.water(t, jonC, jon, "pot-join"); st != http.StatusNotFound {
			t.Fatalf("a requester watering: %d %s, want 404", st, body)
		}
		if _, body := get(t, jonC, w.url+"/app/"); strings.Contains(body, "pot-join") {
			t.Fatal("a requester lists the pot")
		}
	})

	t.Run("OwnerApprovesWithOneTap", func(t *testing.T) {
		reqs := w.users(t, "pot-join").JoinRequests
		if len(reqs) != 1 || reqs[0].OpenId != jon {
			t.Fatalf("pending requests: %v", reqs)
		}
		_, body := get(t, ivyC, w.url+"/app/plants/pot-join")
		if !strings.Contains(body, mask(jon)) || strings.Contains(body, jon) || !strings.Contains(body, "/requests/"+reqs[0].Id) {
			t.Fatalf("the owner's pot page should list jon's request, masked:\n%s", body)
		}
		link, _ := url.Parse(ApproveURL(w.url)("pot-join", reqs[0].Id))
		// A member or a stranger cannot open it.
		if st, _ := get(t, kimC, link.String()); st != http.StatusNotFound {
			t.Fatalf("a stranger opening the approval page: %d, want 404", st)
		}
		st, body := get(t, ivyC, link.String())
		if st != 200 || !strings.Contains(body, `id="approve"`) || !strings.Contains(body, mask(jon)) {
			t.Fatalf("the approval page (%d):\n%s", st, body)
		}
		if st, body := w.post(t, jonC, jon, link.Path, url.Values{"decision": {"approve"}}); st != http.StatusNotFound {
			t.Fatalf("the requester approving himself: %d %s, want 404", st, body)
		}
		st, body = w.post(t, ivyC, ivy, link.Path, url.Values{"decision": {"approve"}})
		if r := outcomeOf(t, body); st != 200 || r.Outcome != "approved" {
			t.Fatalf("approving: %d %s", st, body)
		}
		if us := w.users(t, "pot-join").Users; len(us) != 2 || us[1] != jon {
			t.Fatalf("users after the approval: %v", us)
		}
		if st, body := get(t, jonC, w.url+"/app/plants/pot-join"); st != 200 || !strings.Contains(body, "家人") {
			t.Fatalf("jon's pot page after the approval (%d):\n%s", st, body)
		}
		// Deciding again: already decided.
		if st, _ := w.post(t, ivyC, ivy, link.Path, url.Values{"decision": {"refuse"}}); st != http.StatusNotFound {
			t.Fatalf("deciding again: %d, want 404", st)
		}
		if st, _ := get(t, jonC, link.String()); st != http.StatusForbidden {
			t.Fatalf("a member opening the approval page: %d, want 403", st)
		}
	})

	t.Run("OwnerRefusesOnThePotPage", func(t *testing.T) {
		if st, body := w.post(t, kimC, kim, "/app/bind", url.Values{"code": {code}}); outcomeOf(t, body).Outcome != "pending" {
			t.Fatalf("kim's scan: %d %s", st, body)
		}
		reqs := w.users(t, "pot-join").JoinRequests
		if len(reqs) != 1 {
			t.Fatalf("pending: %v", reqs)
		}
		st, body := w.post(t, ivyC, ivy, "/app/plants/pot-join/requests/"+reqs[0].Id, url.Values{"decision": {"refuse"}})
		if r := outcomeOf(t, body); st != 200 || r.Outcome != "refused" {
			t.Fatalf("refusing: %d %s", st, body)
		}
		if st, _ := get(t, kimC, w.url+"/app/plants/pot-join"); st != http.StatusNotFound {
			t.Fatalf("a refused requester's pot page: %d, want 404", st)
		}
		if us := w.users(t, "pot-join").Users; len(us) != 2 {
			t.Fatalf("users after refusing: %v", us)
		}
	})
}
