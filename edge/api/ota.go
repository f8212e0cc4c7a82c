package api

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/sprout-iot/sprout/actors"
)

// Firmware images and rollouts (docs/ota.md). Images are added with `sprout firmware add`, which
// signs them; the API lists them and runs rollouts.

// FirmwareJSON is a stored image.
type FirmwareJSON struct {
	Product   string    `json:"product"`
	Version   string    `json:"version"`
	Size      int       `json:"size"`
	SHA256    string    `json:"sha256"`
	Signature string    `json:"signature"`
	CreatedAt time.Time `json:"created_at"`
}

// RolloutJSON is a rollout; Targets only in GET /rollouts/{id}.
type RolloutJSON struct {
	ID               string         `json:"id"`
	Product          string         `json:"product"`
	Version          string         `json:"version"`
	Stages           []int          `json:"stages"`
	Stage            int            `json:"stage"`
	FailureThreshold float64        `json:"failure_threshold"`
	State            string         `json:"state"`
	Reason           string         `json:"reason,omitempty"`
	CreatedAt        time.Time      `json:"created_at"`
	UpdatedAt        time.Time      `json:"updated_at"`
	Counts           map[string]int `json:"counts,omitempty"` // targets by state
	Targets          []TargetJSON   `json:"targets,omitempty"`
}

// TargetJSON is one pot's state in a rollout.
type TargetJSON struct {
	DeviceID  string    `json:"device_id"`
	Stage     int       `json:"stage"`
	State     string    `json:"state"`
	Percent   int       `json:"percent"`
	Reason    string    `json:"reason,omitempty"`
	UpdatedAt time.Time `json:"updated_at"`
}

// RolloutRequest is POST /api/v1/rollouts.
type RolloutRequest struct {
	ID               string   `json:"id,omitempty"`
	Product          string   `json:"product"`
	Version          string   `json:"version"`
	Devices          []string `json:"devices,omitempty"`
	Stages           []int    `json:"stages,omitempty"`
	FailureThreshold float64  `json:"failure_threshold,omitempty"`
}

func (h *Handler) otaRoutes(r chi.Router) {
	r.Get("/firmware", h.listFirmware)
	r.Get("/rollouts", h.listRollouts)
	r.Post("/rollouts", h.startRollout)
	r.Get("/rollouts/{rid}", h.getRollout)
	for _, action := range []string{"pause", "resume", "abort"} {
		r.Post("/rollouts/{rid}/"+action, h.rolloutAction(action))
	}
}

func (h *Handler) otaReady(w http.ResponseWriter) (actors.FirmwareStore, bool) {
	fs, ok := h.store.(actors.FirmwareStore)
	if !ok || h.opts.OTA == nil {
		writeErr(w, http.StatusNotImplemented, "ota_disabled", "this node's store does not keep firmware")
		return nil, false
	}
	return fs, true
}

func firmwareJSON(f actors.FirmwareImage) FirmwareJSON {
	return FirmwareJSON{Product: f.Product, Version: f.Version, Size: f.Size, SHA256: hex.EncodeToString(f.SHA256),
		Signature: hex.EncodeToString(f.Signature), CreatedAt: f.CreatedAt}
}

func rolloutJSON(r actors.Rollout) RolloutJSON {
	return RolloutJSON{ID: r.ID, Product: r.Product, Version: r.Version, Stages: r.Stages, Stage: r.Stage,
		FailureThreshold: r.FailureThreshold, State: string(r.State), Reason: r.Reason, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt}
}

func (h *Handler) otaErr(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, actors.ErrOTAInvalid):
		writeErr(w, http.StatusBadRequest, "invalid", err.Error())
	case errors.Is(err, actors.ErrUnknownFirmware), errors.Is(err, actors.ErrUnknownRollout), errors.Is(err, actors.ErrUnknownDevice):
		writeErr(w, http.StatusNotFound, "not_found", err.Error())
	case errors.Is(err, actors.ErrRolloutExists):
		writeErr(w, http.StatusConflict, "exists", err.Error())
	default:
		h.opts.Logger.Error("ota request failed", "err", err)
		writeErr(w, http.StatusServiceUnavailable, "unavailable", "storage unavailable, try again")
	}
}

func (h *Handler) listFirmware(w http.ResponseWriter, r *http.Request) {
	fs, ok := h.otaReady(w)
	if !ok {
		return
	}
	list, err := fs.ListFirmware(r.Context(), r.URL.Query().Get("product"))
	if err != nil {
		h.otaErr(w, err)
		return
	}
	out := make([]FirmwareJSON, 0, len(list))
	for _, f := range list {
		out = append(out, firmwareJSON(f))
	}
	writeJSON(w, http.StatusOK, map[string]any{"firmware": out})
}

func (h *Handler) listRollouts(w http.ResponseWriter, r *http.Request) {
	fs, ok := h.otaReady(w)
	if !ok {
		return
	}
	list, err := fs.ListRollouts(r.Context())
	if err != nil {
		h.otaErr(w, err)
		return
	}
	out := make([]RolloutJSON, 0, len(list))
	for _, x := range list {
		out = append(out, rolloutJSON(x))
	}
	writeJSON(w, http.StatusOK, map[string]any{"rollouts": out})
}

func (h *Handler) startRollout(w http.ResponseWriter, r *http.Request) {
	if _, ok := h.otaReady(w); !ok {
		return
	}
	var req RolloutRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeErr(w, http.StatusBadRequest, "invalid", "body: "+err.Error())
		return
	}
	ro, err := h.opts.OTA.StartRollout(r.Context(), actors.RolloutSpec{ID: req.ID, Product: req.Product, Version: req.Version,
		Devices: req.Devices, Stages: req.Stages, FailureThreshold: req.FailureThreshold})
	if err != nil {
		h.otaErr(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, rolloutJSON(ro))
}

func (h *Handler) getRollout(w http.ResponseWriter, r *http.Request) {
	fs, ok := h.otaReady(w)
	if !ok {
		return
	}
	id := chi.URLParam(r, "rid")
	ro, err := fs.GetRollout(r.Context(), id)
	if err != nil {
		h.otaErr(w, err)
		return
	}
	ts, err := fs.RolloutTargets(r.Context(), id)
	if err != nil {
		h.otaErr(w, err)
		return
	}
	out := rolloutJSON(ro)
	out.Counts = map[string]int{}
	for _, t := range ts {
		out.Counts[t.State]++
		out.Targets = append(out.Targets, TargetJSON{DeviceID: t.DeviceID, Stage: t.Stage, State: t.State, Percent: t.Percent,
			Reason: t.Reason, UpdatedAt: t.UpdatedAt})
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *Handler) rolloutAction(action string) http.HandlerFunc {
	state := map[string]actors.RolloutState{"pause": actors.RolloutPaused, "resume": actors.RolloutRunning,
		"abort": actors.RolloutAborted}[action]
	return func(w http.ResponseWriter, r *http.Request) {
		if _, ok := h.otaReady(w); !ok {
			return
		}
		ro, err := h.opts.OTA.SetRolloutState(r.Context(), chi.URLParam(r, "rid"), state, "by an operator")
		if err != nil {
			h.otaErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, rolloutJSON(ro))
	}
}
