package api

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/store"
)

// Device tags (docs/fleet.md): operators' labels on pots ("beta", "shop:shanghai"), for targeting
// a rollout (docs/ota.md) and finding pots.

// TagsJSON is a device's tags.
type TagsJSON struct {
	DeviceID string   `json:"device_id"`
	Tags     []string `json:"tags"`
}

func (h *Handler) tagRoutes(r chi.Router) {
	r.Get("/devices/{id}/tags", h.getTags)
	r.Put("/devices/{id}/tags", h.putTags)
}

func (h *Handler) tagStore(w http.ResponseWriter) actors.TagStore {
	ts, ok := h.store.(actors.TagStore)
	if !ok {
		writeErr(w, http.StatusNotImplemented, "not_supported", "this store keeps no tags")
	}
	return ts
}

func (h *Handler) tagErr(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, actors.ErrUnknownDevice):
		writeErr(w, http.StatusNotFound, "unknown_device", err.Error())
	case errors.Is(err, store.ErrInvalid):
		writeErr(w, http.StatusBadRequest, "invalid_tags", err.Error())
	default:
		writeStoreErr(w, err)
	}
}

func (h *Handler) getTags(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	ts := h.tagStore(w)
	if ts == nil {
		return
	}
	if _, err := h.store.GetDevice(r.Context(), id); err != nil {
		h.tagErr(w, err)
		return
	}
	tags, err := ts.DeviceTags(r.Context(), id)
	if err != nil {
		h.tagErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, TagsJSON{DeviceID: id, Tags: tags})
}

func (h *Handler) putTags(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	ts := h.tagStore(w)
	if ts == nil {
		return
	}
	var req struct {
		Tags []string `json:"tags"`
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeErr(w, http.StatusBadRequest, "bad_json", err.Error())
		return
	}
	if err := ts.SetDeviceTags(r.Context(), id, req.Tags); err != nil {
		h.tagErr(w, err)
		return
	}
	tags, err := ts.DeviceTags(r.Context(), id)
	if err != nil {
		h.tagErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, TagsJSON{DeviceID: id, Tags: tags})
}

// taggedDevices answers GET /api/v1/tags/{tag}: the ids of the devices with the tag.
func (h *Handler) taggedDevices(w http.ResponseWriter, r *http.Request) {
	tag := chi.URLParam(r, "tag")
	ts := h.tagStore(w)
	if ts == nil {
		return
	}
	if err := actors.ValidTag(tag); err != nil {
		writeErr(w, http.StatusBadRequest, "invalid_tags", err.Error())
		return
	}
	ids, err := ts.TaggedDevices(r.Context(), tag)
	if err != nil {
		h.tagErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"tag": tag, "devices": ids})
}
