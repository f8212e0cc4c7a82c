package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
	"google.golang.org/protobuf/proto"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/messages/actorpb"
	"github.com/sprout-iot/sprout/messages/devicepb"
	"github.com/sprout-iot/sprout/store"
)

// Fleet management (docs/fleet.md): queued commands and desired configuration.

func (h *Handler) deviceFleetRoutes(r chi.Router) {
	r.Get("/devices/{id}/commands", h.listCommands)
	r.Delete("/devices/{id}/commands/{cmd}", h.cancelCommand)
	r.Get("/devices/{id}/config", h.deviceConfig)
	r.Put("/devices/{id}/config", h.putDeviceConfig)
	r.Delete("/devices/{id}/config", h.deleteDeviceConfig)
}

func (h *Handler) fleetRoutes(r chi.Router) {
	r.Post("/products/{product}/commands", h.productCommand)
	r.Get("/products/{product}/config", h.productConfig)
	r.Put("/products/{product}/config", h.putProductConfig)
	r.Delete("/products/{product}/config", h.deleteProductConfig)
	r.Get("/config/drift", h.drift)
}

// QueuedJSON is a queued command as the API shows it.
type QueuedJSON struct {
	DeviceID  string     `json:"device_id"`
	CommandID string     `json:"command_id"`
	Kind      string     `json:"kind"`
	State     string     `json:"state"` // queued, sent, done, failed, expired, cancelled
	Outcome   string     `json:"outcome,omitempty"`
	Detail    string     `json:"detail,omitempty"`
	WateredMl uint32     `json:"watered_ml,omitempty"`
	QueuedAt  *time.Time `json:"queued_at,omitempty"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	SentAt    *time.Time `json:"sent_at,omitempty"`
	Sends     uint32     `json:"sends,omitempty"`
	EndedAt   *time.Time `json:"ended_at,omitempty"`
}

func msTime(ms int64) *time.Time {
	if ms == 0 {
		return nil
	}
	t := time.UnixMilli(ms).UTC()
	return &t
}

// KindName is the API's name of a command kind (water, read_now, set_config, reboot).
func KindName(k devicepb.CommandKind) string {
	for n, v := range commandKinds {
		if v == k {
			return n
		}
	}
	if k == devicepb.CommandKind_COMMAND_KIND_SET_CONFIG {
		return "set_config"
	}
	return "unknown"
}

// StateOf is the state of a finished queued command: done, expired, cancelled, or failed (any
// other end: failed, rejected, busy, timed_out, revoked; the outcome says which).
func StateOf(o actorpb.Outcome) string {
	switch o {
	case actorpb.Outcome_OUTCOME_DONE:
		return "done"
	case actorpb.Outcome_OUTCOME_EXPIRED:
		return "expired"
	case actorpb.Outcome_OUTCOME_CANCELLED:
		return "cancelled"
	case actorpb.Outcome_OUTCOME_QUEUED:
		return "queued"
	}
	return "failed"
}

func queuedJSON(id string, q *actorpb.QueuedCommand) QueuedJSON {
	j := QueuedJSON{DeviceID: id, CommandID: q.Command.GetCommandId(), Kind: KindName(q.Command.GetKind()), State: "queued",
		QueuedAt: msTime(q.QueuedAtMs), ExpiresAt: msTime(q.ExpiresAtMs), SentAt: msTime(q.SentAtMs), Sends: q.Sends}
	if q.Sent {
		j.State = "sent"
	}
	return j
}

func finishedJSON(o *actorpb.CommandOutcome) QueuedJSON {
	return QueuedJSON{DeviceID: o.DeviceId, CommandID: o.CommandId, Kind: KindName(o.Kind), State: StateOf(o.Outcome),
		Outcome: OutcomeName(o.Outcome), Detail: o.Detail, WateredMl: o.WateredMl, EndedAt: msTime(o.AtMs)}
}

// queueCommand answers a queued POST .../commands: 202 once the command is stored.
func (h *Handler) queueCommand(w http.ResponseWriter, r *http.Request, id string, req CommandRequest, kind devicepb.CommandKind) {
	if !req.Queue {
		writeErr(w, http.StatusBadRequest, "invalid_command", "ttl_s applies only to a queued command: add \"queue\": true")
		return
	}
	out, err := h.queue(r.Context(), id, req, kind, "api")
	h.answerQueued(w, id, out, err)
}

func (h *Handler) queue(ctx context.Context, id string, req CommandRequest, kind devicepb.CommandKind, by string) (*actorpb.CommandOutcome, error) {
	ctx, cancel := context.WithTimeout(ctx, h.opts.GrainTimeout)
	defer cancel()
	return h.devices.Command(ctx, id, &actorpb.SendCommand{CommandId: req.CommandID, Kind: kind, WaterMs: req.WaterMs,
		TimeoutMs: req.TimeoutMs, RequestedBy: by, Queue: true, TtlS: req.TTLS})
}

func (h *Handler) answerQueued(w http.ResponseWriter, id string, out *actorpb.CommandOutcome, err error) {
	switch {
	case out == nil:
		writeProblem(w, err)
	case err != nil:
		p := ProblemOf(err)
		writeErr(w, p.Status, p.Code, out.Detail)
	case out.Outcome == actorpb.Outcome_OUTCOME_BUSY:
		writeErr(w, http.StatusTooManyRequests, "queue_full", out.Detail)
	case out.Outcome == actorpb.Outcome_OUTCOME_QUEUED:
		writeJSON(w, http.StatusAccepted, QueuedJSON{DeviceID: id, CommandID: out.CommandId, Kind: KindName(out.Kind),
			State: "queued", Detail: out.Detail})
	default: // a repeat of a command that already ended
		writeJSON(w, http.StatusOK, finishedJSON(out))
	}
}

// listCommands answers GET /devices/{id}/commands: the queued commands not finished, in
// delivery order, and the last finished ones, oldest first.
func (h *Handler) listCommands(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	if _, err := query(r); err != nil {
		writeErr(w, http.StatusBadRequest, "bad_query", err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.opts.GrainTimeout)
	defer cancel()
	st, err := h.devices.State(ctx, id)
	if err != nil {
		writeProblem(w, err)
		return
	}
	out := struct {
		Queued   []QueuedJSON `json:"queued"`
		Finished []QueuedJSON `json:"finished"`
	}{Queued: []QueuedJSON{}, Finished: []QueuedJSON{}}
	for _, q := range st.QueuedCommands {
		out.Queued = append(out.Queued, queuedJSON(id, q))
	}
	for _, o := range st.QueuedOutcomes {
		out.Finished = append(out.Finished, finishedJSON(o))
	}
	writeJSON(w, http.StatusOK, out)
}

// cancelCommand answers DELETE /devices/{id}/commands/{cmd}.
func (h *Handler) cancelCommand(w http.ResponseWriter, r *http.Request) {
	id, cmd := chi.URLParam(r, "id"), chi.URLParam(r, "cmd")
	ctx, cancel := context.WithTimeout(r.Context(), h.opts.GrainTimeout)
	defer cancel()
	out, err := h.devices.CancelQueued(ctx, id, cmd, "api")
	switch {
	case errors.Is(err, actors.ErrInvalid) && out == nil:
		writeErr(w, http.StatusNotFound, "no_such_command", err.Error())
	case errors.Is(err, actors.ErrInvalid):
		writeErr(w, http.StatusConflict, "not_cancellable", err.Error())
	case err != nil:
		writeProblem(w, err)
	default:
		writeJSON(w, http.StatusOK, finishedJSON(out))
	}
}

// maxBatch bounds the pots one product command or product config reaches in one request.
const maxBatch = 100000

// ProductDevices lists the pots of product that are not revoked (at most 100000).
func ProductDevices(ctx context.Context, st actors.Store, product string) ([]string, error) {
	var ids []string
	q := actors.ListQuery{Limit: store.MaxListLimit}
	for {
		ds, err := st.ListDevices(ctx, q)
		if err != nil {
			return nil, err
		}
		for _, d := range ds {
			if d.Product == product && !d.Revoked() {
				ids = append(ids, d.ID)
			}
		}
		if len(ds) < q.Limit || len(ids) >= maxBatch {
			return ids, nil
		}
		q.AfterID = ds[len(ds)-1].ID
	}
}

func (h *Handler) productDevices(ctx context.Context, product string) ([]string, error) {
	return ProductDevices(ctx, h.store, product)
}

// BatchFailure is a pot a product command could not be queued for, and why.
type BatchFailure struct {
	DeviceID string `json:"device_id"`
	Error    string `json:"error"`
}

// BatchResult is what a product command queued.
type BatchResult struct {
	Product string         `json:"product"`
	Queued  []QueuedJSON   `json:"queued"`
	Failed  []BatchFailure `json:"failed"`
}

// QueueProduct queues one command (cmd, without its id) for every pot of product that is not
// revoked, each with its own command id, asking each grain within timeout. by goes to the event
// log ("api-batch", "console").
func QueueProduct(ctx context.Context, st actors.Store, dc *actors.DeviceClient, timeout time.Duration, product string,
	cmd *actorpb.SendCommand) (BatchResult, error) {
	res := BatchResult{Product: product, Queued: []QueuedJSON{}, Failed: []BatchFailure{}}
	ids, err := ProductDevices(ctx, st, product)
	if err != nil {
		return res, err
	}
	for _, id := range ids {
		one := proto.Clone(cmd).(*actorpb.SendCommand)
		one.CommandId, one.Queue = NewCommandID(), true
		cctx, cancel := context.WithTimeout(ctx, timeout)
		out, err := dc.Command(cctx, id, one)
		cancel()
		switch {
		case err != nil && out != nil:
			res.Failed = append(res.Failed, BatchFailure{id, out.Detail})
		case err != nil:
			res.Failed = append(res.Failed, BatchFailure{id, err.Error()})
		case out.Outcome != actorpb.Outcome_OUTCOME_QUEUED:
			res.Failed = append(res.Failed, BatchFailure{id, OutcomeName(out.Outcome) + ": " + out.Detail})
		default:
			res.Queued = append(res.Queued, QueuedJSON{DeviceID: id, CommandID: out.CommandId, Kind: KindName(cmd.Kind), State: "queued"})
		}
	}
	return res, nil
}

// productCommand answers POST /products/{product}/commands: one queued command for every pot of
// the product (each with its own command id).
func (h *Handler) productCommand(w http.ResponseWriter, r *http.Request) {
	product := chi.URLParam(r, "product")
	var req CommandRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeErr(w, http.StatusBadRequest, "bad_json", err.Error())
		return
	}
	kind, ok := commandKinds[req.Kind]
	switch {
	case !ok:
		writeErr(w, http.StatusBadRequest, "invalid_command", fmt.Sprintf("unknown kind %q (want water, read_now or reboot)", req.Kind))
		return
	case req.CommandID != "":
		writeErr(w, http.StatusBadRequest, "invalid_command", "a product command gets one command id per pot: leave command_id out")
		return
	}
	res, err := QueueProduct(r.Context(), h.store, h.devices, h.opts.GrainTimeout, product, &actorpb.SendCommand{Kind: kind,
		WaterMs: req.WaterMs, TimeoutMs: req.TimeoutMs, TtlS: req.TTLS, RequestedBy: "api-batch"})
	if err != nil {
		writeStoreErr(w, err)
		return
	}
	writeJSON(w, http.StatusAccepted, res)
}

// ---- desired configuration ----

func (h *Handler) desiredStore(w http.ResponseWriter) actors.DesiredStore {
	ds, ok := h.store.(actors.DesiredStore)
	if !ok {
		writeErr(w, http.StatusNotImplemented, "not_supported", "this store does not hold desired configurations")
	}
	return ds
}

// DesiredJSON is a pot's desired configuration state.
type DesiredJSON struct {
	DeviceID   string          `json:"device_id"`
	Product    string          `json:"product,omitempty"`
	Desired    json.RawMessage `json:"desired"`
	Source     string          `json:"source,omitempty"` // device or product
	DesiredAt  *time.Time      `json:"desired_at,omitempty"`
	Applied    json.RawMessage `json:"applied"`
	AppliedAt  *time.Time      `json:"applied_at,omitempty"`
	InSync     bool            `json:"in_sync"`
	DriftSince *time.Time      `json:"drift_since,omitempty"`
	LastError  string          `json:"last_error,omitempty"`
}

func rawConfig(c *devicepb.Config) json.RawMessage {
	if c == nil {
		return json.RawMessage("null")
	}
	return actors.ConfigJSON(c)
}

func rawBytes(b []byte) json.RawMessage {
	if b == nil {
		return json.RawMessage("null")
	}
	return b
}

func desiredJSON(id string, d *actorpb.DesiredConfigState) DesiredJSON {
	return DesiredJSON{DeviceID: id, Desired: rawConfig(d.GetDesired()), Source: d.GetSource(), DesiredAt: msTime(d.GetDesiredAtMs()),
		Applied: rawConfig(d.GetApplied()), AppliedAt: msTime(d.GetAppliedAtMs()), InSync: d.GetDriftSinceMs() == 0,
		DriftSince: msTime(d.GetDriftSinceMs()), LastError: d.GetLastError()}
}

// deviceConfig answers GET /devices/{id}/config: the pot's desired configuration state, from its grain.
func (h *Handler) deviceConfig(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	ctx, cancel := context.WithTimeout(r.Context(), h.opts.GrainTimeout)
	defer cancel()
	st, err := h.devices.State(ctx, id)
	if err != nil {
		writeProblem(w, err)
		return
	}
	writeJSON(w, http.StatusOK, desiredJSON(id, st.Desired))
}

// readConfig reads a request body as a devicepb.Config within the platform's limits.
func readConfig(w http.ResponseWriter, r *http.Request) *devicepb.Config {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		writeErr(w, http.StatusBadRequest, "bad_json", err.Error())
		return nil
	}
	c, err := actors.ParseConfig(b)
	if err != nil {
		writeErr(w, http.StatusBadRequest, "invalid_config", err.Error())
		return nil
	}
	return c
}

func (h *Handler) putDeviceConfig(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	ds := h.desiredStore(w)
	if ds == nil {
		return
	}
	cfg := readConfig(w, r)
	if cfg == nil {
		return
	}
	if _, err := h.store.GetDevice(r.Context(), id); err != nil {
		if errors.Is(err, actors.ErrUnknownDevice) {
			writeErr(w, http.StatusNotFound, "unknown_device", err.Error())
		} else {
			writeStoreErr(w, err)
		}
		return
	}
	if err := ds.SetDesiredConfig(r.Context(), actors.DesiredConfig{Scope: actors.ScopeDevice, Key: id,
		Config: actors.ConfigJSON(cfg), UpdatedAt: time.Now().UTC(), By: "api"}); err != nil {
		writeStoreErr(w, err)
		return
	}
	h.reloadOne(w, r, id)
}

func (h *Handler) deleteDeviceConfig(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	ds := h.desiredStore(w)
	if ds == nil {
		return
	}
	if err := ds.DeleteDesiredConfig(r.Context(), actors.ScopeDevice, id); err != nil {
		writeStoreErr(w, err)
		return
	}
	h.reloadOne(w, r, id)
}

// reloadOne tells the pot's grain and answers with its desired state. The change is stored
// already: a grain that cannot be told now reads it when it next loads (503 says so).
func (h *Handler) reloadOne(w http.ResponseWriter, r *http.Request, id string) {
	ctx, cancel := context.WithTimeout(r.Context(), h.opts.GrainTimeout)
	defer cancel()
	st, err := h.devices.ReloadDesired(ctx, id)
	if err != nil {
		p := ProblemOf(err)
		writeErr(w, p.Status, p.Code, "the desired config is stored, but the pot's grain could not be told yet: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, desiredJSON(id, st))
}

// ProductConfigJSON is a product's desired configuration.
type ProductConfigJSON struct {
	Product   string          `json:"product"`
	Desired   json.RawMessage `json:"desired"`
	UpdatedAt *time.Time      `json:"updated_at,omitempty"`
	Pots      int             `json:"pots,omitempty"`      // pots told of a change
	Unreached []string        `json:"unreached,omitempty"` // pots whose grain could not be told (they read it when they next load)
}

func (h *Handler) productConfig(w http.ResponseWriter, r *http.Request) {
	product := chi.URLParam(r, "product")
	ds := h.desiredStore(w)
	if ds == nil {
		return
	}
	prod, _, err := ds.DesiredConfigs(r.Context(), product, "")
	if err != nil {
		writeStoreErr(w, err)
		return
	}
	if prod == nil {
		writeErr(w, http.StatusNotFound, "no_desired_config", fmt.Sprintf("product %q has no desired configuration", product))
		return
	}
	t := prod.UpdatedAt
	writeJSON(w, http.StatusOK, ProductConfigJSON{Product: product, Desired: prod.Config, UpdatedAt: &t})
}

func (h *Handler) putProductConfig(w http.ResponseWriter, r *http.Request) {
	product := chi.URLParam(r, "product")
	ds := h.desiredStore(w)
	if ds == nil {
		return
	}
	cfg := readConfig(w, r)
	if cfg == nil {
		return
	}
	now := time.Now().UTC()
	if err := ds.SetDesiredConfig(r.Context(), actors.DesiredConfig{Scope: actors.ScopeProduct, Key: product,
		Config: actors.ConfigJSON(cfg), UpdatedAt: now, By: "api"}); err != nil {
		writeStoreErr(w, err)
		return
	}
	res := ProductConfigJSON{Product: product, Desired: actors.ConfigJSON(cfg), UpdatedAt: &now}
	h.reloadProduct(w, r, &res)
}

func (h *Handler) deleteProductConfig(w http.ResponseWriter, r *http.Request) {
	product := chi.URLParam(r, "product")
	ds := h.desiredStore(w)
	if ds == nil {
		return
	}
	if err := ds.DeleteDesiredConfig(r.Context(), actors.ScopeProduct, product); err != nil {
		writeStoreErr(w, err)
		return
	}
	res := ProductConfigJSON{Product: product, Desired: json.RawMessage("null")}
	h.reloadProduct(w, r, &res)
}

// reloadProduct tells every pot of the product's grain.
func (h *Handler) reloadProduct(w http.ResponseWriter, r *http.Request, res *ProductConfigJSON) {
	ids, err := h.productDevices(r.Context(), res.Product)
	if err != nil {
		writeStoreErr(w, err)
		return
	}
	for _, id := range ids {
		ctx, cancel := context.WithTimeout(r.Context(), h.opts.GrainTimeout)
		if _, err := h.devices.ReloadDesired(ctx, id); err != nil {
			res.Unreached = append(res.Unreached, id)
		}
		cancel()
		res.Pots++
	}
	writeJSON(w, http.StatusOK, res)
}

// drift answers GET /config/drift: pots whose applied configuration differs from the desired one.
func (h *Handler) drift(w http.ResponseWriter, r *http.Request) {
	ds := h.desiredStore(w)
	if ds == nil {
		return
	}
	v, err := query(r, "product", "after", "limit")
	if err != nil {
		writeErr(w, http.StatusBadRequest, "bad_query", err.Error())
		return
	}
	q := actors.DriftQuery{Product: v.Get("product"), AfterID: v.Get("after")}
	if q.Limit, err = intParam(v, "limit", store.DefaultListLimit, 1, store.MaxListLimit); err != nil {
		writeErr(w, http.StatusBadRequest, "bad_query", err.Error())
		return
	}
	rs, err := ds.ConfigDrift(r.Context(), q)
	if err != nil {
		writeStoreErr(w, err)
		return
	}
	out := []DesiredJSON{}
	for _, rep := range rs {
		d := DesiredJSON{DeviceID: rep.DeviceID, Product: rep.Product, Desired: rawBytes(rep.Desired), Applied: rawBytes(rep.Applied),
			InSync: rep.DriftSince.IsZero(), LastError: rep.LastError}
		if !rep.DriftSince.IsZero() {
			t := rep.DriftSince.UTC()
			d.DriftSince = &t
		}
		out = append(out, d)
	}
	writeJSON(w, http.StatusOK, map[string]any{"pots": out})
}
