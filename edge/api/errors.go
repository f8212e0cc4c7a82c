package api

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/sprout-iot/sprout/actors"
)

// RetryAfter is the Retry-After of every 503 (an unavailable grain, a grain that timed out,
// storage unavailable): long enough for a storage blip or a membership change to pass.
const RetryAfter = 5 * time.Second

// Problem is how the HTTP surface (the API, the console, the pages) answers one of the grains'
// errors: the one mapping of the taxonomy in actors/errors.go to HTTP.
type Problem struct {
	Status int
	Code   string // the API's stable error code
}

// ProblemOf maps a grain error: unknown device 404, unavailable or timed out 503 (with
// Retry-After: see Header), not bound 403, not the owner 403, revoked 409, invalid 400. An
// error outside the taxonomy is unavailable (503): worth a retry, never a definitive answer.
func ProblemOf(err error) Problem {
	switch {
	case errors.Is(err, actors.ErrUnknownDevice):
		return Problem{http.StatusNotFound, "unknown_device"}
	case errors.Is(err, actors.ErrNotBound):
		return Problem{http.StatusForbidden, "not_bound"}
	case errors.Is(err, actors.ErrNotOwner):
		return Problem{http.StatusForbidden, "not_owner"}
	case errors.Is(err, actors.ErrRevoked):
		return Problem{http.StatusConflict, "revoked"}
	case errors.Is(err, actors.ErrInvalid):
		return Problem{http.StatusBadRequest, "invalid"}
	default:
		return Problem{http.StatusServiceUnavailable, "unavailable"}
	}
}

// ProblemCodes are the codes ProblemOf answers (for the API's documentation test).
var ProblemCodes = []string{"unknown_device", "not_bound", "not_owner", "revoked", "invalid", "unavailable"}

// Header sets the headers the status needs before it is written: Retry-After on a 503.
func (p Problem) Header(w http.ResponseWriter) {
	RetryAfterHeader(w, p.Status)
}

// RetryAfterHeader sets Retry-After (RetryAfter) when status is 503.
func RetryAfterHeader(w http.ResponseWriter, status int) {
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", strconv.Itoa(int(RetryAfter/time.Second)))
	}
}
