package api

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/store"
)

// Firmware images and rollouts (docs/ota.md). Images are added with `sprout firmware add` or
// POST /api/v1/firmware (signed with the node's key, --firmware-key); both go through
// actors.OTA.ReadImage and AddFirmware.

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
	ID               string    `json:"id"`
	Product          string    `json:"product"`
	Version          string    `json:"version"`
	Stages           []int     `json:"stages"`
	Stage            int       `json:"stage"`
	FailureThreshold float64   `json:"failure_threshold"`
	State            string    `json:"state"`
	Reason           string    `json:"reason,omitempty"`
	CreatedAt        time.Time `json:"created_at"`
	UpdatedAt        time.Time `json:"updated_at"`
	Tag              string    `json:"tag,omitempty"`
	// StageTimeoutS is how long a stage may stay open before the rollout pauses (0: never).
	StageTimeoutS int64 `json:"stage_timeout_s"`
	// StageOpenedAt is when the open stage opened or the rollout was last resumed.
	StageOpenedAt *time.Time     `json:"stage_opened_at,omitempty"`
	Counts        map[string]int `json:"counts,omitempty"` // targets by state
	Targets       []TargetJSON   `json:"targets,omitempty"`
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
	Tag              string   `json:"tag,omitempty"`
	Stages           []int    `json:"stages,omitempty"`
	FailureThreshold float64  `json:"failure_threshold,omitempty"`
	// StageTimeoutS: 0 the default (24 h), -1 never, else at least 60.
	StageTimeoutS int64 `json:"stage_timeout_s,omitempty"`
}

// Spec is the request as the OTA service takes it.
func (q RolloutRequest) Spec() actors.RolloutSpec {
	return actors.RolloutSpec{ID: q.ID, Product: q.Product, Version: q.Version, Devices: q.Devices, Tag: q.Tag,
		Stages: q.Stages, FailureThreshold: q.FailureThreshold, StageTimeout: time.Duration(q.StageTimeoutS) * time.Second}
}

func (h *Handler) otaRoutes(r chi.Router) {
	r.Get("/firmware", h.listFirmware)
	r.Post("/firmware", h.uploadFirmware)
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

// RolloutOf is a rollout as the API shows it (without its targets).
func RolloutOf(r actors.Rollout) RolloutJSON {
	j := RolloutJSON{ID: r.ID, Product: r.Product, Version: r.Version, Stages: r.Stages, Stage: r.Stage,
		FailureThreshold: r.FailureThreshold, State: string(r.State), Reason: r.Reason, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt,
		Tag: r.Tag, StageTimeoutS: int64(r.StageTimeout / time.Second)}
	if !r.StageOpenedAt.IsZero() {
		t := r.StageOpenedAt.UTC()
		j.StageOpenedAt = &t
	}
	return j
}

func rolloutJSON(r actors.Rollout) RolloutJSON { return RolloutOf(r) }

func (h *Handler) otaErr(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, actors.ErrOTAInvalid):
		writeErr(w, http.StatusBadRequest, "invalid", err.Error())
	case errors.Is(err, actors.ErrUnknownFirmware), errors.Is(err, actors.ErrUnknownRollout), errors.Is(err, actors.ErrUnknownDevice):
		writeErr(w, http.StatusNotFound, "not_found", err.Error())
	case errors.Is(err, actors.ErrRolloutExists), errors.Is(err, actors.ErrFirmwareExists):
		writeErr(w, http.StatusConflict, "exists", err.Error())
	case errors.Is(err, actors.ErrFirmwareTooLarge), isTooLarge(err):
		writeErr(w, http.StatusRequestEntityTooLarge, "too_large", err.Error())
	case errors.Is(err, actors.ErrNoSigningKey):
		writeErr(w, http.StatusNotImplemented, "no_signing_key", err.Error())
	case errors.Is(err, errBadUpload), errors.Is(err, store.ErrInvalid):
		writeErr(w, http.StatusBadRequest, "invalid", err.Error())
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
	ro, err := h.opts.OTA.StartRollout(r.Context(), req.Spec())
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

// FirmwareOf is an image as the API shows it.
func FirmwareOf(f actors.FirmwareImage) FirmwareJSON { return firmwareJSON(f) }

// errBadUpload is an upload that is not a well-formed image request (a 400).
var errBadUpload = errors.New("bad firmware upload")

// uploadSlack is what a multipart upload may hold beyond the image: its form fields and headers.
const uploadSlack = 64 << 10

// UploadLimit is the most bytes an upload request body may hold (the image limit and form slack).
func UploadLimit(o *actors.OTA) int64 { return int64(o.MaxFirmwareBytes()) + uploadSlack }

// isTooLarge reports a request body cut by http.MaxBytesReader.
func isTooLarge(err error) bool {
	var mb *http.MaxBytesError
	return errors.As(err, &mb) || err != nil && strings.Contains(err.Error(), "request body too large")
}

// ReadFirmwareUpload reads an image upload: multipart/form-data with the fields product and
// version and the file part "file" (the console's form), or the raw image as the body with
// ?product=&version= (curl --data-binary). The request body must already be bounded
// (UploadLimit); the image is read with OTA.ReadImage, so an image over the limit is
// ErrFirmwareTooLarge whichever way it came.
func ReadFirmwareUpload(r *http.Request, o *actors.OTA) (product, version string, data []byte, err error) {
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct == "multipart/form-data" {
		// Parts beyond 1 MiB go to a temporary file, removed when the request ends.
		if err := r.ParseMultipartForm(1 << 20); err != nil {
			if isTooLarge(err) {
				return "", "", nil, fmt.Errorf("%w: the upload is larger than %d bytes", actors.ErrFirmwareTooLarge, o.MaxFirmwareBytes())
			}
			return "", "", nil, fmt.Errorf("%w: %v", errBadUpload, err)
		}
		product, version = strings.TrimSpace(r.FormValue("product")), strings.TrimSpace(r.FormValue("version"))
		f, _, err := r.FormFile("file")
		if err != nil {
			return product, version, nil, fmt.Errorf("%w: no file part \"file\": %v", errBadUpload, err)
		}
		defer f.Close()
		data, err = o.ReadImage(f)
		return product, version, data, err
	}
	q := r.URL.Query()
	product, version = q.Get("product"), q.Get("version")
	if product == "" || version == "" {
		return product, version, nil, fmt.Errorf("%w: give ?product= and ?version= (or a multipart form)", errBadUpload)
	}
	data, err = o.ReadImage(r.Body)
	if isTooLarge(err) {
		err = fmt.Errorf("%w: the upload is larger than %d bytes", actors.ErrFirmwareTooLarge, o.MaxFirmwareBytes())
	}
	return product, version, data, err
}

// bodyLimit is MaxBodyBytes, or UploadLimit for a firmware upload.
func (h *Handler) bodyLimit(r *http.Request) int64 {
	if h.opts.OTA != nil && r.Method == http.MethodPost && r.URL.Path == "/api/v1/firmware" {
		return UploadLimit(h.opts.OTA)
	}
	return h.opts.MaxBodyBytes
}

// uploadFirmware answers POST /api/v1/firmware: the image stored and signed with the node's key.
func (h *Handler) uploadFirmware(w http.ResponseWriter, r *http.Request) {
	if _, ok := h.otaReady(w); !ok {
		return
	}
	if !h.opts.OTA.CanSign() {
		h.otaErr(w, actors.ErrNoSigningKey)
		return
	}
	product, version, data, err := ReadFirmwareUpload(r, h.opts.OTA)
	if err != nil {
		h.otaErr(w, err)
		return
	}
	img, err := h.opts.OTA.AddFirmware(r.Context(), product, version, data, nil)
	if err != nil {
		h.otaErr(w, err)
		return
	}
	h.opts.Logger.Info("firmware uploaded", "product", img.Product, "version", img.Version, "size", img.Size)
	writeJSON(w, http.StatusCreated, firmwareJSON(img))
}
