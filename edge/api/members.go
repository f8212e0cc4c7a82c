package api

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/messages/actorpb"
)

// Membership (docs/wechat.md, "Who may join"): an operator sees a pot's users and its pending
// requests to join, approves or refuses a request, and removes a user. Every change goes through
// the pot's grain (which tells the users and, with WeChat's device APIs, unbinds in WeChat).

// MembersJSON is GET /api/v1/devices/{id}/members.
type MembersJSON struct {
	Users    []MemberJSON      `json:"users"` // owner first
	Requests []JoinRequestJSON `json:"join_requests"`
}

type MemberJSON struct {
	OpenID string `json:"open_id"`
	Role   string `json:"role"`
}

type JoinRequestJSON struct {
	ID        string    `json:"id"`
	OpenID    string    `json:"open_id"`
	At        time.Time `json:"at"`
	ExpiresAt time.Time `json:"expires_at"`
	Via       string    `json:"via"`
}

func (h *Handler) memberRoutes(r chi.Router) {
	r.Get("/devices/{id}/members", h.members)
	r.Delete("/devices/{id}/members/{openid}", h.removeMember)
	r.Post("/devices/{id}/join-requests/{request}/approve", h.decideJoin(true))
	r.Post("/devices/{id}/join-requests/{request}/refuse", h.decideJoin(false))
}

func (h *Handler) members(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	ctx, cancel := context.WithTimeout(r.Context(), h.opts.GrainTimeout)
	defer cancel()
	st, err := h.devices.State(ctx, id)
	if err != nil {
		writeProblem(w, err)
		return
	}
	out := MembersJSON{Users: []MemberJSON{}, Requests: []JoinRequestJSON{}}
	for i, u := range st.Users {
		role := actors.RoleMember
		if i == 0 {
			role = actors.RoleOwner
		}
		out.Users = append(out.Users, MemberJSON{OpenID: u, Role: role})
	}
	for _, j := range st.JoinRequests {
		out.Requests = append(out.Requests, JoinRequestJSON{ID: j.Id, OpenID: j.OpenId, Via: j.Via,
			At: time.UnixMilli(j.AtMs).UTC(), ExpiresAt: time.UnixMilli(j.ExpiresAtMs).UTC()})
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *Handler) removeMember(w http.ResponseWriter, r *http.Request) {
	id, openID := chi.URLParam(r, "id"), chi.URLParam(r, "openid")
	if openID == "" || len(openID) > 64 {
		writeErr(w, http.StatusBadRequest, "invalid", "open_id must be 1..64 characters")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.opts.GrainTimeout)
	defer cancel()
	if err := h.devices.RemoveUser(ctx, id, openID, actors.JoinViaAPI, false); err != nil {
		writeProblem(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"removed": openID})
}

func (h *Handler) decideJoin(approve bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, rid := chi.URLParam(r, "id"), chi.URLParam(r, "request")
		ctx, cancel := context.WithTimeout(r.Context(), h.opts.GrainTimeout)
		defer cancel()
		d, err := h.devices.DecideJoin(ctx, id, rid, "", approve, actors.JoinViaAPI)
		switch {
		case errors.Is(err, actors.ErrInvalid):
			writeErr(w, http.StatusNotFound, "no_request", "no such pending request (decided already, or expired)")
			return
		case err != nil:
			writeProblem(w, err)
			return
		}
		outcome := "refused"
		if d.Outcome == actorpb.JoinOutcome_JOIN_OUTCOME_APPROVED {
			outcome = "approved"
		}
		writeJSON(w, http.StatusOK, map[string]any{"outcome": outcome, "open_id": d.OpenId})
	}
}
