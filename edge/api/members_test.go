package api

import (
	"net/http"
	"testing"

	"github.com/sprout-iot/sprout/actors"
)

// An operator sees a pot's users and requests, approves, refuses and removes through the API.
func TestMembershipThroughTheAPI(t *testing.T) {
	w := newWorld(t, nil)
	w.addDevice(t, "pot-m")
	dc := actors.NewDeviceClient(w.member.Cluster, actors.ClientOptions{})
	for _, u := range []string{"oOwner", "oAsk1", "oAsk2"} {
		if _, err := dc.Bind(bg, "pot-m", u, "sprout_qr"); err != nil {
			t.Fatal(err)
		}
	}
	var m MembersJSON
	w.getJSON(t, "/api/v1/devices/pot-m/members", http.StatusOK, &m)
	if len(m.Users) != 1 || m.Users[0].Role != "owner" || len(m.Requests) != 2 || m.Requests[0].OpenID != "oAsk1" {
		t.Fatalf("members: %+v", m)
	}
	if st, _, b := w.call(t, http.MethodPost, "/api/v1/devices/pot-m/join-requests/"+m.Requests[0].ID+"/approve", nil); st != 200 {
		t.Fatalf("approve: %d %s", st, b)
	}
	if st, _, b := w.call(t, http.MethodPost, "/api/v1/devices/pot-m/join-requests/"+m.Requests[1].ID+"/refuse", nil); st != 200 {
		t.Fatalf("refuse: %d %s", st, b)
	}
	if st, _, b := w.call(t, http.MethodPost, "/api/v1/devices/pot-m/join-requests/"+m.Requests[1].ID+"/approve", nil); st != http.StatusNotFound {
		t.Fatalf("approving a refused request: %d %s, want 404", st, b)
	}
	w.getJSON(t, "/api/v1/devices/pot-m/members", http.StatusOK, &m)
	if len(m.Users) != 2 || m.Users[1].OpenID != "oAsk1" || len(m.Requests) != 0 {
		t.Fatalf("members after deciding: %+v", m)
	}
	if st, _, b := w.call(t, http.MethodDelete, "/api/v1/devices/pot-m/members/oAsk1", nil); st != 200 {
		t.Fatalf("remove: %d %s", st, b)
	}
	w.getJSON(t, "/api/v1/devices/pot-m/members", http.StatusOK, &m)
	if len(m.Users) != 1 {
		t.Fatalf("members after removing: %+v", m)
	}
	if st, _, _ := w.call(t, http.MethodGet, "/api/v1/devices/nope/members", nil); st != http.StatusNotFound {
		t.Fatalf("an unknown pot's members: %d, want 404", st)
	}
}
