package console

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/edge/api"
	"github.com/sprout-iot/sprout/messages/actorpb"
	"github.com/sprout-iot/sprout/messages/devicepb"
)

// row is one device on the fleet page.
type row struct {
	ID, Product string
	Created     time.Time
	Revoked     bool
	Answered    bool // the grain answered GetState within GrainTimeout
	Online      bool
	Alerts      int
	Firmware    string
	LastSeen    time.Time
}

type fleetView struct {
	Query   string
	Rows    []row
	Online  int
	NextURL string // empty on the last page
	Paged   bool   // not the first page
	// RefreshMs is how often the page reloads its rows in place (static/fleet.js); 0: never.
	RefreshMs int64
}

// page lists one page of the registry: ids after `after` that start with prefix. The store
// pages by id, so a prefix search starts just before the prefix (the prefix itself is looked up
// on its own, as it is not "after" itself) and stops at the first id past it.
func (h *Handler) listPage(ctx context.Context, prefix, after string) ([]actors.Device, bool, error) {
	var out []actors.Device
	if after == "" && prefix != "" {
		d, err := h.opts.Store.GetDevice(ctx, prefix)
		switch {
		case err == nil:
			out = append(out, d)
		case !errors.Is(err, actors.ErrUnknownDevice):
			return nil, false, err
		}
		after = prefix
	}
	ds, err := h.opts.Store.ListDevices(ctx, actors.ListQuery{AfterID: after, Limit: h.opts.PageSize + 1})
	if err != nil {
		return nil, false, err
	}
	for _, d := range ds {
		if !strings.HasPrefix(d.ID, prefix) {
			break
		}
		out = append(out, d)
	}
	more := len(out) > h.opts.PageSize
	if more {
		out = out[:h.opts.PageSize]
	}
	return out, more, nil
}

// rows asks every listed device's grain for its state at once (at most Concurrency in flight,
// all within GrainTimeout). A grain that does not answer, or cannot, leaves its row marked
// unanswered rather than failing the page.
func (h *Handler) rows(ctx context.Context, ds []actors.Device) []row {
	out := make([]row, len(ds))
	ids := make([]string, len(ds))
	for i, d := range ds {
		out[i] = row{ID: d.ID, Product: d.Product, Created: d.CreatedAt, Revoked: d.Revoked()}
		ids[i] = d.ID
	}
	ctx, cancel := context.WithTimeout(ctx, h.opts.GrainTimeout)
	defer cancel()
	for i, a := range h.devices.States(ctx, ids) {
		if a.Err != nil {
			h.opts.Logger.Warn("console: device grain did not answer", "device", a.ID, "err", a.Err)
			continue
		}
		st, r := a.State, &out[i]
		r.Answered, r.Online, r.Firmware = true, st.Online, st.FirmwareVersion
		r.Revoked = r.Revoked || st.Revoked
		if st.LastSeenMs > 0 {
			r.LastSeen = time.UnixMilli(st.LastSeenMs)
		}
		for _, a := range st.Alerts {
			if a.Active {
				r.Alerts++
			}
		}
	}
	return out
}

func (h *Handler) fleet(w http.ResponseWriter, r *http.Request) {
	p := h.newPage(r)
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	after := r.URL.Query().Get("after")
	ds, more, err := h.listPage(r.Context(), q, after)
	if err != nil {
		h.opts.Logger.Error("console: listing devices", "err", err)
		h.messagePage(w, r, http.StatusServiceUnavailable, "unavailable")
		return
	}
	f := &fleetView{Query: q, Rows: h.rows(r.Context(), ds), Paged: after != "", RefreshMs: max(h.opts.RefreshEvery.Milliseconds(), 0)}
	for _, x := range f.Rows {
		if x.Online {
			f.Online++
		}
	}
	if more {
		v := url.Values{"after": {ds[len(ds)-1].ID}}
		if q != "" {
			v.Set("q", q)
		}
		f.NextURL = "/console/?" + v.Encode()
	}
	p.Fleet = f
	h.render(w, http.StatusOK, "fleet.html", p)
}

// deviceView is the device page.
type deviceView struct {
	Device   actors.Device
	State    *actorpb.DeviceState
	Stale    bool // the grain did not answer: no live state
	LastSeen time.Time
	LatestAt time.Time
	Alerts   []alertView
	Open     []api.OutcomeJSON
	Readings []actors.Reading // newest first
	Events   []eventView      // newest first
	Outcome  *api.OutcomeJSON // the command just sent from this page
	Kinds    []string

	// fleet.go: queued commands, tags, desired configuration.
	Queue   *queueView
	Tags    []string
	NoTags  bool
	Desired *desiredView
}

type alertView struct {
	Kind   string
	Active bool
	Value  float32
	Since  time.Time
}

type eventView struct {
	At   time.Time
	Kind string
	Body string
}

// commandKinds are the commands the device page offers, by their API names.
var commandKinds = map[string]devicepb.CommandKind{
	"water": devicepb.CommandKind_COMMAND_KIND_WATER, "read_now": devicepb.CommandKind_COMMAND_KIND_READ_NOW,
	"reboot": devicepb.CommandKind_COMMAND_KIND_REBOOT,
}

func (h *Handler) loadDevice(ctx context.Context, id string) (*deviceView, error) {
	d, err := h.opts.Store.GetDevice(ctx, id)
	if err != nil {
		return nil, err
	}
	v := &deviceView{Device: d, Kinds: []string{"water", "read_now", "reboot"}}
	gctx, cancel := context.WithTimeout(ctx, h.opts.GrainTimeout)
	defer cancel()
	st, err := h.devices.State(gctx, id)
	if err != nil {
		h.opts.Logger.Warn("console: device grain did not answer", "device", id, "err", err)
		v.Stale = true
	} else {
		v.State = st
		if st.LastSeenMs > 0 {
			v.LastSeen = time.UnixMilli(st.LastSeenMs)
		}
		if st.LatestAtMs > 0 {
			v.LatestAt = time.UnixMilli(st.LatestAtMs)
		}
		for _, a := range st.Alerts {
			v.Alerts = append(v.Alerts, alertView{Kind: api.AlertName(a.Kind), Active: a.Active, Value: a.Value,
				Since: time.UnixMilli(a.SinceMs)})
		}
		for _, o := range st.OpenCommands {
			v.Open = append(v.Open, outcomeJSON(o))
		}
	}
	now := h.opts.Now()
	rs, err := h.opts.Store.Readings(ctx, id, now.Add(-24*time.Hour), now.Add(time.Minute), 10000)
	if err != nil {
		return nil, err
	}
	v.Readings = newest(rs, h.opts.ReadingsShown)
	evs, err := h.opts.Store.Events(ctx, id, now.Add(-7*24*time.Hour), now.Add(time.Minute), 10000)
	if err != nil {
		return nil, err
	}
	for _, e := range newest(evs, h.opts.EventsShown) {
		v.Events = append(v.Events, eventView{At: e.At, Kind: e.Kind, Body: string(e.Body)})
	}
	return v, nil
}

// newest returns the last n of xs (stored oldest first), newest first.
func newest[T any](xs []T, n int) []T {
	xs = slices.Clone(xs[max(0, len(xs)-n):])
	slices.Reverse(xs)
	return xs
}

func outcomeJSON(o *actorpb.CommandOutcome) api.OutcomeJSON {
	return api.OutcomeJSON{DeviceID: o.DeviceId, CommandID: o.CommandId, Outcome: api.OutcomeName(o.Outcome),
		Detail: o.Detail, WateredMl: o.WateredMl, At: time.UnixMilli(o.AtMs).UTC()}
}

// showDevice renders the device page, with a message or a command's outcome when given.
func (h *Handler) showDevice(w http.ResponseWriter, r *http.Request, status int, msg string, good bool, outcome *api.OutcomeJSON) {
	p := h.newPage(r)
	id := chi.URLParam(r, "id")
	v, err := h.loadDevice(r.Context(), id)
	switch {
	case errors.Is(err, actors.ErrUnknownDevice):
		h.messagePage(w, r, http.StatusNotFound, "unknown_device", id)
		return
	case err != nil:
		h.opts.Logger.Error("console: loading device", "device", id, "err", err)
		h.messagePage(w, r, http.StatusServiceUnavailable, "unavailable")
		return
	}
	v.Outcome = outcome
	h.fleetDetails(r, v)
	p.Device, p.Message, p.Good = v, msg, good
	h.render(w, status, "device.html", p)
}

func (h *Handler) device(w http.ResponseWriter, r *http.Request) {
	h.showDevice(w, r, http.StatusOK, "", false, nil)
}

// command sends one command through the device grain, as the API does but as "console", and
// shows the device page with its outcome.
func (h *Handler) command(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	kind, ok := commandKinds[r.PostFormValue("kind")]
	if !ok {
		h.messagePage(w, r, http.StatusBadRequest, "invalid", r.PostFormValue("kind"))
		return
	}
	cmd := &actorpb.SendCommand{CommandId: api.NewCommandID(), Kind: kind,
		TimeoutMs: uint32(h.opts.CommandTimeout / time.Millisecond), RequestedBy: "console"}
	if kind == devicepb.CommandKind_COMMAND_KIND_WATER {
		cmd.WaterMs = h.opts.WaterMs
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.opts.CommandTimeout+h.opts.GrainTimeout)
	defer cancel()
	out, err := h.devices.Command(ctx, id, cmd)
	if out == nil {
		h.opts.Logger.Warn("console: no outcome from the device grain", "device", id, "err", err)
		p := api.ProblemOf(err)
		p.Header(w)
		h.showDevice(w, r, p.Status, tr(langOf(r), "unavailable"), false, nil)
		return
	}
	h.opts.Logger.Info("console: command", "device", id, "kind", r.PostFormValue("kind"), "outcome", api.OutcomeName(out.Outcome))
	o := outcomeJSON(out)
	status := http.StatusOK
	if err != nil { // refused by the grain: unknown, revoked, unavailable, invalid
		p := api.ProblemOf(err)
		p.Header(w)
		status = p.Status
	}
	h.showDevice(w, r, status, "", false, &o)
}

// revoke revokes the device through its grain (stored, the pot disconnected with
// DEVICE_REVOKED, refused from then on), as the API does.
func (h *Handler) revoke(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	ctx, cancel := context.WithTimeout(r.Context(), h.opts.GrainTimeout)
	defer cancel()
	_, err := h.devices.Revoke(ctx, id, "console", "")
	switch {
	case errors.Is(err, actors.ErrUnknownDevice):
		h.messagePage(w, r, http.StatusNotFound, "unknown_device", id)
	case err != nil:
		h.opts.Logger.Error("console: revoking", "device", id, "err", err)
		api.ProblemOf(err).Header(w)
		h.messagePage(w, r, http.StatusServiceUnavailable, "unavailable")
	default:
		h.opts.Logger.Info("console: device revoked", "device", id)
		h.showDevice(w, r, http.StatusOK, tr(langOf(r), "revoked_ok"), true, nil)
	}
}
