package api

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/sprout-iot/sprout/actors"
)

// The one mapping of the grains' errors to HTTP, as the API, the console and the pages answer.
func TestGrainErrorsMapToOneHTTPStatusEach(t *testing.T) {
	for _, c := range []struct {
		err    error
		status int
		code   string
	}{
		{actors.ErrUnknownDevice, http.StatusNotFound, "unknown_device"},
		{actors.ErrUnavailable, http.StatusServiceUnavailable, "unavailable"},
		{actors.ErrTimedOut, http.StatusServiceUnavailable, "unavailable"},
		{actors.ErrNotBound, http.StatusForbidden, "not_bound"},
		{actors.ErrNotOwner, http.StatusForbidden, "not_owner"},
		{actors.ErrRevoked, http.StatusConflict, "revoked"},
		{actors.ErrInvalid, http.StatusBadRequest, "invalid"},
		{errors.New("disk on fire"), http.StatusServiceUnavailable, "unavailable"},
	} {
		err := fmt.Errorf("device pot-1: %w", c.err)
		p := ProblemOf(err)
		if p.Status != c.status || p.Code != c.code {
			t.Errorf("%v: %d %s, want %d %s", c.err, p.Status, p.Code, c.status, c.code)
		}
		rec := httptest.NewRecorder()
		writeProblem(rec, err)
		if got := rec.Header().Get("Retry-After"); (c.status == http.StatusServiceUnavailable) != (got != "") {
			t.Errorf("%v: HTTP %d with Retry-After %q (only a 503 has one)", c.err, rec.Code, got)
		}
	}
}
