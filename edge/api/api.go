// Package api is Sprout's JSON API under /api/v1 and its health endpoints: what operators, the
// console and tools use to look at devices and send them commands. Requests to devices go through
// their grains; history comes from the store.
package api

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"go.opentelemetry.io/otel/trace"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/cluster/observe"
	"github.com/sprout-iot/sprout/messages/actorpb"
	"github.com/sprout-iot/sprout/messages/devicepb"
	"github.com/sprout-iot/sprout/store"
)

// Options configures the API.
type Options struct {
	// AdminToken authorises /api/v1 (Authorization: Bearer TOKEN). Empty disables /api/v1.
	AdminToken string
	// MaxBodyBytes bounds request bodies (default 64 KiB).
	MaxBodyBytes int64
	// Ready reports whether the node is ready (joined, storage reachable, edges listening).
	Ready func(ctx context.Context) error
	// Self is this member's cluster address.
	Self string
	// GrainTimeout bounds a request to a device grain for its state or a revocation, and is
	// added to a command's own deadline while the API waits for its outcome (default 5 s).
	GrainTimeout time.Duration
	Logger       *slog.Logger
	// PushWake, if set, wakes the node's pusher after a push is sent again.
	PushWake func()
	// OTA runs firmware rollouts (ota.go, docs/ota.md); nil: the firmware and rollout endpoints answer 501.
	OTA *actors.OTA
}

// Handler serves the API.
type Handler struct {
	opts    Options
	cluster *pcluster.Cluster
	devices *actors.DeviceClient
	store   actors.Store
}

// New returns the API handler.
func New(c *pcluster.Cluster, st actors.Store, o Options) *Handler {
	if o.MaxBodyBytes == 0 {
		o.MaxBodyBytes = 64 << 10
	}
	if o.GrainTimeout <= 0 {
		o.GrainTimeout = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &Handler{opts: o, cluster: c, store: st,
		devices: actors.NewDeviceClient(c, actors.ClientOptions{Timeout: o.GrainTimeout})}
}

// Routes mounts the API on r.
func (h *Handler) Routes(r chi.Router) {
	r.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	r.Get("/readyz", h.readyz)
	r.Route("/api/v1", func(r chi.Router) {
		r.Use(h.auth)
		r.Get("/devices", h.listDevices)
		r.Post("/devices", h.addDevice)
		r.Group(func(r chi.Router) {
			r.Use(validID)
			r.Get("/devices/{id}", h.getDevice)
			r.Post("/devices/{id}/commands", h.sendCommand)
			r.Get("/devices/{id}/readings", h.readings)
			r.Get("/devices/{id}/events", h.events)
			r.Post("/devices/{id}/revoke", h.revoke)
			h.memberRoutes(r)
			h.deviceFleetRoutes(r)
			h.tagRoutes(r)
		})
		r.Get("/tags/{tag}", h.taggedDevices)
		h.fleetRoutes(r)
		r.Get("/cluster", h.clusterMembers)
		r.Get("/pushes/failed", h.failedPushes)
		r.Post("/pushes/{pid}/retry", h.retryPush)
		h.otaRoutes(r)
	})
	// Go's profiler, behind the same token: for operators chasing a slow node.
	r.With(h.auth).Mount("/debug", middleware.Profiler())
}

func (h *Handler) readyz(w http.ResponseWriter, r *http.Request) {
	if h.opts.Ready != nil {
		if err := h.opts.Ready(r.Context()); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
	}
	_, _ = w.Write([]byte("ready\n"))
}

func (h *Handler) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h.opts.AdminToken == "" {
			writeErr(w, http.StatusForbidden, "api_disabled", "the API is disabled: set SPROUT_ADMIN_TOKEN")
			return
		}
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(tok), []byte(h.opts.AdminToken)) != 1 {
			writeErr(w, http.StatusUnauthorized, "unauthorized", "missing or wrong bearer token")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, h.bodyLimit(r))
		next.ServeHTTP(w, r)
	})
}

// validID refuses a device id in the path that no device can have (store.ValidID) before any
// grain is asked about it.
func validID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := store.ValidID(chi.URLParam(r, "id")); err != nil {
			writeErr(w, http.StatusBadRequest, "invalid_device", err.Error())
			return
		}
		next.ServeHTTP(w, r)
	})
}

type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// writeErr answers an error; a 503 carries Retry-After.
func writeErr(w http.ResponseWriter, status int, code, msg string) {
	RetryAfterHeader(w, status)
	writeJSON(w, status, map[string]apiError{"error": {Code: code, Message: msg}})
}

// writeStoreErr answers a store's error: 400 bad_query for input the store refuses (a cursor it
// cannot compare, too many buckets), else 503 storage_unavailable.
func writeStoreErr(w http.ResponseWriter, err error) {
	if errors.Is(err, store.ErrInvalid) {
		writeErr(w, http.StatusBadRequest, "bad_query", err.Error())
		return
	}
	writeErr(w, http.StatusServiceUnavailable, "storage_unavailable", err.Error())
}

// writeProblem answers a grain error with its one HTTP mapping (ProblemOf).
func writeProblem(w http.ResponseWriter, err error) {
	p := ProblemOf(err)
	writeErr(w, p.Status, p.Code, err.Error())
}

// writeJSON encodes v before it writes the status, so that a value JSON cannot hold is a 500
// with an error body, never a 200 with an empty one.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b, _ = json.Marshal(map[string]apiError{"error": {Code: "internal", Message: "encoding the answer: " + err.Error()}})
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// Metric is a measured value as JSON: a number, or null for a sensor that gave no finite value
// (NaN or ±Inf on the wire and in the store).
type Metric float32

// MarshalJSON writes null for a non-finite value, which JSON numbers cannot hold.
func (m Metric) MarshalJSON() ([]byte, error) {
	f := float64(m)
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return []byte("null"), nil
	}
	return strconv.AppendFloat(nil, f, 'g', -1, 32), nil
}

// UnmarshalJSON reads null as NaN (no value).
func (m *Metric) UnmarshalJSON(b []byte) error {
	if bytes.Equal(b, []byte("null")) {
		*m = Metric(math.NaN())
		return nil
	}
	var f float32
	if err := json.Unmarshal(b, &f); err != nil {
		return err
	}
	*m = Metric(f)
	return nil
}

// query returns r's query parameters, refusing any not in allowed and any given twice: a
// parameter the API would ignore is an error the caller should hear about.
func query(r *http.Request, allowed ...string) (url.Values, error) {
	q := r.URL.Query()
	for k, vs := range q {
		switch {
		case !slices.Contains(allowed, k):
			if len(allowed) == 0 {
				return nil, fmt.Errorf("unknown query parameter %q (this endpoint takes none)", k)
			}
			return nil, fmt.Errorf("unknown query parameter %q (this endpoint takes %s)", k, strings.Join(allowed, ", "))
		case len(vs) > 1:
			return nil, fmt.Errorf("query parameter %q given %d times", k, len(vs))
		}
	}
	return q, nil
}

// intParam is query parameter name as an integer in lo..hi, or def when absent.
func intParam(q url.Values, name string, def, lo, hi int) (int, error) {
	v := q.Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("%s must be an integer from %d to %d, not %q", name, lo, hi, v)
	}
	return n, nil
}

// DeviceJSON is a device as the API shows it.
type DeviceJSON struct {
	ID        string    `json:"id"`
	Product   string    `json:"product"`
	CreatedAt time.Time `json:"created_at"`
	Revoked   bool      `json:"revoked"`
	Secret    string    `json:"secret,omitempty"` // only when just created
}

func deviceJSON(d actors.Device) DeviceJSON {
	return DeviceJSON{ID: d.ID, Product: d.Product, CreatedAt: d.CreatedAt, Revoked: d.Revoked()}
}

func (h *Handler) listDevices(w http.ResponseWriter, r *http.Request) {
	v, err := query(r, "after", "limit")
	if err != nil {
		writeErr(w, http.StatusBadRequest, "bad_query", err.Error())
		return
	}
	q := actors.ListQuery{AfterID: v.Get("after")}
	if q.Limit, err = intParam(v, "limit", store.DefaultListLimit, 1, store.MaxListLimit); err != nil {
		writeErr(w, http.StatusBadRequest, "bad_query", err.Error())
		return
	}
	ds, err := h.store.ListDevices(r.Context(), q)
	if err != nil {
		writeStoreErr(w, err)
		return
	}
	out := make([]DeviceJSON, 0, len(ds))
	for _, d := range ds {
		out = append(out, deviceJSON(d))
	}
	writeJSON(w, http.StatusOK, map[string]any{"devices": out})
}

// NewDevice provisions a device with a fresh 32-byte secret (or the given one).
func NewDevice(ctx context.Context, st actors.Store, id, product string, secret []byte) (actors.Device, error) {
	if id == "" {
		b := make([]byte, 6)
		_, _ = rand.Read(b)
		id = "pot-" + hex.EncodeToString(b)
	}
	if err := store.ValidID(id); err != nil {
		return actors.Device{}, err
	}
	if product == "" {
		product = "sprout-pot"
	}
	if secret == nil {
		secret = make([]byte, 32)
		_, _ = rand.Read(secret)
	}
	d := actors.Device{ID: id, Product: product, Secret: secret, CreatedAt: time.Now().UTC()}
	if err := st.CreateDevice(ctx, d); err != nil {
		return actors.Device{}, err
	}
	return d, nil
}

func (h *Handler) addDevice(w http.ResponseWriter, r *http.Request) {
	var req struct {
		ID      string `json:"id"`
		Product string `json:"product"`
		Secret  string `json:"secret"` // optional, hex, at least 16 bytes: for devices whose secret was made at the factory
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeErr(w, http.StatusBadRequest, "bad_json", err.Error())
		return
	}
	var secret []byte
	if req.Secret != "" {
		var err error
		if secret, err = hex.DecodeString(req.Secret); err != nil || len(secret) < 16 {
			writeErr(w, http.StatusBadRequest, "invalid_secret", "secret must be at least 16 bytes of hex")
			return
		}
	}
	d, err := NewDevice(r.Context(), h.store, req.ID, req.Product, secret)
	switch {
	case errors.Is(err, actors.ErrDeviceExists):
		writeErr(w, http.StatusConflict, "device_exists", err.Error())
	case err != nil && errors.Is(err, actors.ErrUnavailable):
		writeStoreErr(w, err)
	case err != nil:
		writeErr(w, http.StatusBadRequest, "invalid_device", err.Error())
	default:
		j := deviceJSON(d)
		j.Secret = hex.EncodeToString(d.Secret)
		writeJSON(w, http.StatusCreated, j)
	}
}

// StateJSON is a device grain's state as the API shows it.
type StateJSON struct {
	DeviceID   string        `json:"device_id"`
	Online     bool          `json:"online"`
	Revoked    bool          `json:"revoked"`
	LastSeen   *time.Time    `json:"last_seen,omitempty"`
	Firmware   string        `json:"firmware,omitempty"`
	LastSeq    uint64        `json:"last_seq"`
	Latest     *ReadingJSON  `json:"latest,omitempty"`
	Alerts     []AlertJSON   `json:"alerts"`
	OpenCmds   []OutcomeJSON `json:"open_commands"`
	ReportSecs uint32        `json:"report_interval_s"`
}

// ReadingJSON is one reading; a sensor without a finite value reads null.
type ReadingJSON struct {
	Seq          uint64    `json:"seq"`
	At           time.Time `json:"at"`
	SoilMoisture Metric    `json:"soil_moisture_pct"`
	Temperature  Metric    `json:"temperature_c"`
	TankLevel    Metric    `json:"tank_level_pct"`
	SupplyMv     uint32    `json:"supply_mv"`
}

type AlertJSON struct {
	Kind      string    `json:"kind"`
	Active    bool      `json:"active"`
	Value     Metric    `json:"value"`
	Threshold Metric    `json:"threshold"`
	Since     time.Time `json:"since"`
}

// BucketJSON is one time bucket's aggregates (field names as in Go's actors.Bucket); an
// aggregate over no finite value reads null.
type BucketJSON struct {
	Start                                 time.Time
	Count                                 int
	MoistureMin, MoistureAvg, MoistureMax Metric
	TempMin, TempAvg, TempMax             Metric
	TankMin, TankAvg, TankMax             Metric
}

// OutcomeJSON is a command's outcome.
type OutcomeJSON struct {
	DeviceID  string    `json:"device_id"`
	CommandID string    `json:"command_id"`
	Outcome   string    `json:"outcome"`
	Detail    string    `json:"detail,omitempty"`
	WateredMl uint32    `json:"watered_ml,omitempty"`
	At        time.Time `json:"at"`
}

// OutcomeName is the stable lower-case name of an outcome ("done", "offline", "timed_out", ...).
func OutcomeName(o actorpb.Outcome) string {
	return strings.ToLower(strings.TrimPrefix(o.String(), "OUTCOME_"))
}

// AlertName is the stable lower-case name of an alert kind ("soil_dry", ...).
func AlertName(k actorpb.AlertKind) string {
	return strings.ToLower(strings.TrimPrefix(k.String(), "ALERT_KIND_"))
}

func outcomeJSON(o *actorpb.CommandOutcome) OutcomeJSON {
	return OutcomeJSON{DeviceID: o.DeviceId, CommandID: o.CommandId, Outcome: OutcomeName(o.Outcome), Detail: o.Detail,
		WateredMl: o.WateredMl, At: time.UnixMilli(o.AtMs).UTC()}
}

func (h *Handler) getDevice(w http.ResponseWriter, r *http.Request) {
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
	out := StateJSON{DeviceID: st.DeviceId, Online: st.Online, Revoked: st.Revoked, Firmware: st.FirmwareVersion,
		LastSeq: st.LastSeq, Alerts: []AlertJSON{}, OpenCmds: []OutcomeJSON{}, ReportSecs: st.Config.GetReportIntervalS()}
	if st.LastSeenMs > 0 {
		t := time.UnixMilli(st.LastSeenMs).UTC()
		out.LastSeen = &t
	}
	if l := st.Latest; l != nil {
		out.Latest = &ReadingJSON{Seq: l.Seq, At: time.UnixMilli(st.LatestAtMs).UTC(), SoilMoisture: Metric(l.SoilMoisturePct),
			Temperature: Metric(l.TemperatureC), TankLevel: Metric(l.TankLevelPct), SupplyMv: l.SupplyMv}
	}
	for _, a := range st.Alerts {
		out.Alerts = append(out.Alerts, AlertJSON{Kind: AlertName(a.Kind), Active: a.Active, Value: Metric(a.Value),
			Threshold: Metric(a.Threshold), Since: time.UnixMilli(a.SinceMs).UTC()})
	}
	for _, o := range st.OpenCommands {
		out.OpenCmds = append(out.OpenCmds, outcomeJSON(o))
	}
	writeJSON(w, http.StatusOK, out)
}

// CommandRequest is the body of POST /api/v1/devices/{id}/commands.
type CommandRequest struct {
	CommandID string `json:"command_id"` // optional idempotency key; generated when empty
	Kind      string `json:"kind"`       // water, read_now, set_config, reboot
	WaterMs   uint32 `json:"water_ms"`
	TimeoutMs uint32 `json:"timeout_ms"` // default 10000, allowed 1000..300000
	// Queue stores the command and delivers it when the pot is next online (docs/fleet.md): the
	// answer is 202 at once. TTLS bounds how long it may wait (default 24 h, at most 7 days).
	Queue bool   `json:"queue"`
	TTLS  uint32 `json:"ttl_s"`
}

var commandKinds = map[string]devicepb.CommandKind{
	"water": devicepb.CommandKind_COMMAND_KIND_WATER, "read_now": devicepb.CommandKind_COMMAND_KIND_READ_NOW,
	"reboot": devicepb.CommandKind_COMMAND_KIND_REBOOT,
}

// NewCommandID returns a random command id.
func NewCommandID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (h *Handler) sendCommand(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	var req CommandRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeErr(w, http.StatusBadRequest, "bad_json", err.Error())
		return
	}
	kind, ok := commandKinds[req.Kind]
	if !ok {
		writeErr(w, http.StatusBadRequest, "invalid_command", fmt.Sprintf("unknown kind %q (want water, read_now or reboot)", req.Kind))
		return
	}
	if req.CommandID == "" {
		req.CommandID = NewCommandID()
	}
	if req.Queue || req.TTLS != 0 {
		h.queueCommand(w, r, id, req, kind)
		return
	}
	timeout := actors.DefaultCommandTimeout
	if req.TimeoutMs != 0 {
		timeout = time.Duration(req.TimeoutMs) * time.Millisecond
	}
	tctx, span := observe.StartRoot(r.Context(), "api.command", trace.SpanKindServer)
	defer span.End()
	ctx, cancel := context.WithTimeout(tctx, timeout+h.opts.GrainTimeout)
	defer cancel()
	out, err := h.devices.Command(ctx, id, &actorpb.SendCommand{CommandId: req.CommandID, Kind: kind,
		WaterMs: req.WaterMs, TimeoutMs: req.TimeoutMs, RequestedBy: "api", Trace: observe.Inject(tctx)})
	switch {
	case out == nil:
		writeProblem(w, err)
	case err != nil:
		// A refusal from the grain (unknown, revoked, unavailable, invalid): its outcome, with
		// the taxonomy's status.
		p := ProblemOf(err)
		p.Header(w)
		writeJSON(w, p.Status, outcomeJSON(out))
	default:
		writeJSON(w, http.StatusOK, outcomeJSON(out))
	}
}

func timeRange(q url.Values) (time.Time, time.Time, error) {
	to := time.Now().Add(time.Minute)
	from := to.Add(-24 * time.Hour)
	var err error
	if v := q.Get("from"); v != "" {
		if from, err = time.Parse(time.RFC3339, v); err != nil {
			return from, to, fmt.Errorf("from: %w", err)
		}
	}
	if v := q.Get("to"); v != "" {
		if to, err = time.Parse(time.RFC3339, v); err != nil {
			return from, to, fmt.Errorf("to: %w", err)
		}
	}
	if !from.Before(to) {
		return from, to, fmt.Errorf("from (%s) must be before to (%s)", from.Format(time.RFC3339), to.Format(time.RFC3339))
	}
	return from, to, nil
}

func (h *Handler) readings(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	q, err := query(r, "from", "to", "limit", "bucket")
	if err != nil {
		writeErr(w, http.StatusBadRequest, "bad_query", err.Error())
		return
	}
	from, to, err := timeRange(q)
	if err != nil {
		writeErr(w, http.StatusBadRequest, "bad_time", err.Error())
		return
	}
	limit, err := intParam(q, "limit", 1000, 1, store.MaxQueryLimit)
	if err != nil {
		writeErr(w, http.StatusBadRequest, "bad_query", err.Error())
		return
	}
	if b := q.Get("bucket"); b != "" {
		if q.Has("limit") {
			writeErr(w, http.StatusBadRequest, "bad_query", "limit applies to raw readings only, not with bucket")
			return
		}
		d, err := time.ParseDuration(b)
		if err != nil || d < time.Minute {
			writeErr(w, http.StatusBadRequest, "bad_bucket", "bucket must be a duration of at least 1m")
			return
		}
		bs, err := h.store.Buckets(r.Context(), id, from, to, d)
		if err != nil {
			writeStoreErr(w, err)
			return
		}
		out := make([]BucketJSON, 0, len(bs))
		for _, b := range bs {
			out = append(out, BucketJSON{Start: b.Start, Count: b.Count,
				MoistureMin: Metric(b.MoistureMin), MoistureAvg: Metric(b.MoistureAvg), MoistureMax: Metric(b.MoistureMax),
				TempMin: Metric(b.TempMin), TempAvg: Metric(b.TempAvg), TempMax: Metric(b.TempMax),
				TankMin: Metric(b.TankMin), TankAvg: Metric(b.TankAvg), TankMax: Metric(b.TankMax)})
		}
		writeJSON(w, http.StatusOK, map[string]any{"buckets": out})
		return
	}
	rs, err := h.store.Readings(r.Context(), id, from, to, limit)
	if err != nil {
		writeStoreErr(w, err)
		return
	}
	out := make([]ReadingJSON, 0, len(rs))
	for _, x := range rs {
		out = append(out, ReadingJSON{Seq: x.Seq, At: x.ReceivedAt.UTC(), SoilMoisture: Metric(x.SoilMoisture),
			Temperature: Metric(x.Temperature), TankLevel: Metric(x.TankLevel), SupplyMv: x.SupplyMillivolt})
	}
	writeJSON(w, http.StatusOK, map[string]any{"readings": out})
}

func (h *Handler) events(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	q, err := query(r, "from", "to", "limit")
	if err != nil {
		writeErr(w, http.StatusBadRequest, "bad_query", err.Error())
		return
	}
	from, to, err := timeRange(q)
	if err != nil {
		writeErr(w, http.StatusBadRequest, "bad_time", err.Error())
		return
	}
	limit, err := intParam(q, "limit", 1000, 1, store.MaxQueryLimit)
	if err != nil {
		writeErr(w, http.StatusBadRequest, "bad_query", err.Error())
		return
	}
	evs, err := h.store.Events(r.Context(), id, from, to, limit)
	if err != nil {
		writeStoreErr(w, err)
		return
	}
	type ev struct {
		At   time.Time       `json:"at"`
		Kind string          `json:"kind"`
		Seq  uint64          `json:"seq,omitempty"`
		Body json.RawMessage `json:"body"`
	}
	out := make([]ev, 0, len(evs))
	for _, e := range evs {
		body := json.RawMessage(e.Body)
		if !json.Valid(body) {
			body, _ = json.Marshal(string(e.Body))
		}
		out = append(out, ev{At: e.At.UTC(), Kind: e.Kind, Seq: e.Seq, Body: body})
	}
	writeJSON(w, http.StatusOK, map[string]any{"events": out})
}

// revoke revokes the device through its grain, which stores it, closes the pot's connection
// with DEVICE_REVOKED and refuses it from then on. Revoking a revoked device answers when it was
// revoked the first time.
func (h *Handler) revoke(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	ctx, cancel := context.WithTimeout(r.Context(), h.opts.GrainTimeout)
	defer cancel()
	at, err := h.devices.Revoke(ctx, id, "api", "")
	if err != nil {
		writeProblem(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"revoked": id, "revoked_at": at})
}

func (h *Handler) clusterMembers(w http.ResponseWriter, _ *http.Request) {
	var members []string
	for _, m := range h.cluster.MemberList.Members().Members() {
		members = append(members, m.Address())
	}
	writeJSON(w, http.StatusOK, map[string]any{"self": h.opts.Self, "members": members})
}
