package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/sprout-iot/sprout/actors"
)

// PushJSON is a push as the API shows it.
type PushJSON struct {
	ID          string    `json:"id"`
	OpenID      string    `json:"open_id"`
	Kind        string    `json:"kind"`
	MessageKind string    `json:"message_kind,omitempty"`
	Text        string    `json:"text,omitempty"`
	Status      string    `json:"status"`
	Channel     string    `json:"channel,omitempty"`
	ErrCode     int       `json:"errcode"`
	Reason      string    `json:"reason,omitempty"`
	Attempts    int       `json:"attempts"`
	CreatedAt   time.Time `json:"created_at"`
	Receipt     string    `json:"receipt,omitempty"`
}

func (h *Handler) userStore(w http.ResponseWriter) actors.UserStore {
	us, ok := h.store.(actors.UserStore)
	if !ok {
		writeErr(w, http.StatusNotFound, "no_outbox", "this node's store keeps no push outbox")
	}
	return us
}

// failedPushes lists the messages that failed for good, newest first, with why.
func (h *Handler) failedPushes(w http.ResponseWriter, r *http.Request) {
	us := h.userStore(w)
	if us == nil {
		return
	}
	ps, err := us.FailedPushes(r.Context(), 200)
	if err != nil {
		writeStoreErr(w, err)
		return
	}
	out := make([]PushJSON, 0, len(ps))
	for _, p := range ps {
		var pl actors.PushPayload
		_ = json.Unmarshal(p.Payload, &pl)
		out = append(out, PushJSON{ID: p.ID, OpenID: p.OpenID, Kind: p.Kind, MessageKind: pl.MessageKind, Text: pl.Text,
			Status: p.Status, Channel: p.Channel, ErrCode: p.ErrCode, Reason: p.LastError, Attempts: p.Attempts,
			CreatedAt: p.CreatedAt, Receipt: p.Receipt})
	}
	writeJSON(w, http.StatusOK, map[string]any{"pushes": out})
}

// retryPush puts a failed push back in the outbox, due now; the pusher chooses its channel afresh.
func (h *Handler) retryPush(w http.ResponseWriter, r *http.Request) {
	us := h.userStore(w)
	if us == nil {
		return
	}
	id := chi.URLParam(r, "pid")
	err := us.RetryPush(r.Context(), id, time.Now())
	switch {
	case errors.Is(err, actors.ErrNotFailed):
		writeErr(w, http.StatusConflict, "push_not_failed", "push "+id+" is unknown, pending or sent")
	case err != nil:
		writeStoreErr(w, err)
	default:
		if h.opts.PushWake != nil {
			h.opts.PushWake()
		}
		writeJSON(w, http.StatusOK, map[string]any{"retried": id})
	}
}
