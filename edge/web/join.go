package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/messages/actorpb"
)

// Requests to join (docs/pages.md, "Family"; docs/wechat.md, "Who may join"): after the owner,
// a scan is a request that waits. The owner sees the requests on the pot's page and on the page
// the join_request push links to (/app/plants/{id}/requests/{request}), where one tap approves
// or refuses; the requester sees only that they are waiting.

func init() {
	for k, v := range map[string][2]string{
		"join_pending":    {"已向管理员申请加入，等待批准。你也可以在 %d 分钟内按一下花盆上的按钮直接加入。", "Asked the owner to let you join; waiting for approval. Or press the button on the pot within %d minutes to join now."},
		"join_waiting":    {"你加入花盆 %s 的申请正在等待管理员批准。批准前你不能查看或控制它。也可以在扫码后 %d 分钟内按一下花盆上的按钮直接加入。", "Your request to join pot %s is waiting for its owner. Until then you cannot see or control it. Or press the button on the pot within %d minutes of scanning to join now."},
		"join_requests":   {"加入申请", "Requests to join"},
		"join_ask":        {"%s 申请加入花盆 %s（%s）。", "%s asks to join pot %s (%s)."},
		"approve":         {"批准", "Approve"},
		"refuse":          {"拒绝", "Refuse"},
		"join_approved":   {"已批准，对方已成为家人。", "Approved: they are family now."},
		"join_refused":    {"已拒绝。", "Refused."},
		"join_gone":       {"这个申请已经处理过或已过期。", "This request was already decided, or it expired."},
		"join_expires":    {"申请有效期至", "The request expires at"},
		"join_press_hint": {"如果你持有这个花盆，也可以长按花盆上的按钮 5 秒接管它（所有现有用户会被移除）。", "If you hold this pot, a long press (5 s) of its button takes it over (everyone bound now is removed)."},
	} {
		textsZH[k], textsEN[k] = v[0], v[1]
	}
}

// ApproveURL is the link of the owner's join_request push: the page where one tap approves or
// refuses (actors.JoinOptions.ApproveURL). publicURL is the app's origin.
func ApproveURL(publicURL string) func(deviceID, requestID string) string {
	base := strings.TrimRight(publicURL, "/")
	return func(deviceID, requestID string) string {
		return base + "/app/plants/" + deviceID + "/requests/" + requestID
	}
}

// requestView is one pending request as the owner sees it (the requester's OpenID masked).
type requestView struct {
	ID, Masked, At, Expires string
}

func newRequestView(j *actorpb.JoinRequest) requestView {
	return requestView{ID: j.Id, Masked: mask(j.OpenId),
		At:      time.UnixMilli(j.AtMs).In(chinaTime).Format("01-02 15:04"),
		Expires: time.UnixMilli(j.ExpiresAtMs).In(chinaTime).Format("01-02 15:04")}
}

// pressMinutes is the press window as told to users.
func (h *Handler) pressMinutes() int {
	w := h.opts.PressWindow
	if w <= 0 {
		w = actors.DefaultPressWindow
	}
	return int(max(w, time.Minute) / time.Minute)
}

// waiting shows a requester that their request waits for the owner (the pot page of a user who
// is not bound); it reports false when they have no pending request (then they are answered as
// for a pot that is not theirs).
func (h *Handler) waiting(w http.ResponseWriter, r *http.Request, s session, id string) bool {
	ctx, cancel := context.WithTimeout(r.Context(), h.opts.GrainTimeout)
	defer cancel()
	j, err := h.devices.JoinPending(ctx, id, s.OpenID)
	if err != nil || j == nil {
		return false
	}
	p := h.newPage(r, s)
	p.Device = id
	p.Message = fmt.Sprintf(tr(p.Lang, "join_waiting"), id, h.pressMinutes()) + "\n" + tr(p.Lang, "join_expires") + " " + newRequestView(j).Expires
	h.render(w, http.StatusOK, "message.html", p)
	return true
}

// ownerRequests fills the owner's list of pending requests on the pot page.
func (h *Handler) ownerRequests(p *page, st *actorpb.DeviceState) {
	for _, j := range st.JoinRequests {
		p.Requests = append(p.Requests, newRequestView(j))
	}
}

// ownerState is the pot's unchecked state when the signed-in user is its owner (only the owner
// sees requests); it has answered otherwise.
func (h *Handler) ownerState(w http.ResponseWriter, r *http.Request, s session, id string) (*actorpb.DeviceState, bool) {
	st, ok := h.boundState(w, r, s.OpenID, id)
	if !ok {
		return nil, false
	}
	if !isOwner(st, s.OpenID) {
		h.reply(w, r, http.StatusForbidden, "forbidden", "owner_only")
		return nil, false
	}
	return st, true
}

// joinRequestPage is what the owner's join_request push opens: the request and one tap to
// approve or refuse it.
func (h *Handler) joinRequestPage(w http.ResponseWriter, r *http.Request) {
	s := sessionFrom(r.Context())
	id, rid := chi.URLParam(r, "id"), chi.URLParam(r, "request")
	st, ok := h.ownerState(w, r, s, id)
	if !ok {
		return
	}
	p := h.newPage(r, s)
	p.Device = id
	for _, j := range st.JoinRequests {
		if j.Id == rid {
			v := newRequestView(j)
			p.Requests = []requestView{v}
			p.Message = fmt.Sprintf(tr(p.Lang, "join_ask"), v.Masked, id, v.At)
			h.render(w, http.StatusOK, "join.html", p)
			return
		}
	}
	h.reply(w, r, http.StatusNotFound, "not_found", "join_gone", link{"/app/plants/" + id + p.Q, tr(p.Lang, "open_plant")})
}

// decideJoin is the owner's tap: decision=approve or refuse.
func (h *Handler) decideJoin(w http.ResponseWriter, r *http.Request) {
	s, ok := h.postGuard(w, r)
	if !ok {
		return
	}
	id, rid := chi.URLParam(r, "id"), chi.URLParam(r, "request")
	approve := r.PostFormValue("decision") == "approve"
	if !approve && r.PostFormValue("decision") != "refuse" {
		h.reply(w, r, http.StatusBadRequest, "invalid", "join_gone")
		return
	}
	if _, err := h.binding(r.Context(), s.OpenID, id); err != nil {
		h.problem(w, r, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.opts.GrainTimeout)
	defer cancel()
	_, err := h.devices.DecideJoin(ctx, id, rid, "", approve, s.OpenID)
	back := link{"/app/plants/" + id + h.newPage(r, s).Q, tr(langOf(r), "open_plant")}
	switch {
	case errors.Is(err, actors.ErrInvalid):
		h.reply(w, r, http.StatusNotFound, "not_found", "join_gone", back)
	case err != nil:
		h.problem(w, r, err)
	case approve:
		h.reply(w, r, http.StatusOK, "approved", "join_approved", back)
	default:
		h.reply(w, r, http.StatusOK, "refused", "join_refused", back)
	}
}
