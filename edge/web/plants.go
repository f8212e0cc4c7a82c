package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/edge/api"
	"github.com/sprout-iot/sprout/messages/actorpb"
	"github.com/sprout-iot/sprout/messages/devicepb"
)

// chinaTime is how times are shown: WeChat users are in China (UTC+8, no DST).
var chinaTime = time.FixedZone("CST", 8*3600)

// problem answers a grain error on the pages with the one HTTP mapping (api.ProblemOf: 503 with
// Retry-After for an unavailable grain, 409 for a revoked pot, ...), except that not bound reads
// as 404 "no such pot", as an unknown pot does: a user cannot tell someone else's pot from none.
func (h *Handler) problem(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, actors.ErrNotBound) || errors.Is(err, actors.ErrUnknownDevice) {
		h.reply(w, r, http.StatusNotFound, "not_found", "not_found")
		return
	}
	p := api.ProblemOf(err)
	p.Header(w)
	key := p.Code
	switch p.Status {
	case http.StatusForbidden:
		key = "owner_only"
	case http.StatusServiceUnavailable:
		h.opts.Logger.Warn("web: device grain unavailable", "err", err)
	}
	h.reply(w, r, p.Status, p.Code, key)
}

// metric formats a measured value with prec decimals and its unit, or "–" for a sensor that gave
// no finite value (NaN, ±Inf).
func metric(v float32, prec int, unit string) string {
	f := float64(v)
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return "–"
	}
	return strconv.FormatFloat(f, 'f', prec, 32) + unit
}

// plantView is one plant as the pages and the live stream show it.
type plantView struct {
	ID       string   `json:"id"`
	Role     string   `json:"-"`
	Online   bool     `json:"online"`
	Presence string   `json:"presence"`
	Moisture string   `json:"moisture"`
	Temp     string   `json:"temperature"`
	Tank     string   `json:"tank"`
	Updated  string   `json:"updated"`
	Alerts   string   `json:"alerts"`
	Alerting bool     `json:"alerting"`
	Seq      uint64   `json:"seq"`
	Kinds    []string `json:"alert_kinds"`
}

func newPlantView(lang, role string, st *actorpb.DeviceState) plantView {
	v := plantView{ID: st.DeviceId, Role: tr(lang, role), Online: st.Online, Presence: tr(lang, "offline"),
		Moisture: "–", Temp: "–", Tank: "–", Updated: tr(lang, "no_reading"), Seq: st.LastSeq, Kinds: []string{}}
	if st.Online {
		v.Presence = tr(lang, "online")
	}
	if l := st.Latest; l != nil {
		v.Moisture = metric(l.SoilMoisturePct, 0, "%")
		v.Temp = metric(l.TemperatureC, 1, "°C")
		v.Tank = metric(l.TankLevelPct, 0, "%")
		if st.LatestAtMs > 0 {
			v.Updated = tr(lang, "updated") + " " + time.UnixMilli(st.LatestAtMs).In(chinaTime).Format("01-02 15:04:05")
		}
	}
	var alerts []string
	for _, a := range st.Alerts {
		if a.Active {
			k := api.AlertName(a.Kind)
			v.Kinds = append(v.Kinds, k)
			alerts = append(alerts, tr(lang, k))
		}
	}
	v.Alerting = len(alerts) > 0
	v.Alerts = tr(lang, "alert_ok")
	if v.Alerting {
		v.Alerts = strings.Join(alerts, lang2sep(lang))
	}
	return v
}

func lang2sep(lang string) string {
	if lang == "en" {
		return ", "
	}
	return "，"
}

// binding returns the user's binding to a plant from the store, without waking the device grain
// for ids the user has no business asking about.
func (h *Handler) binding(ctx context.Context, openID, deviceID string) (actors.Binding, error) {
	bs, err := h.opts.Users.UserBindings(ctx, openID)
	if err != nil {
		return actors.Binding{}, err
	}
	for _, b := range bs {
		if b.DeviceID == deviceID {
			return b, nil
		}
	}
	return actors.Binding{}, fmt.Errorf("device %s: %w", deviceID, actors.ErrNotBound)
}

// state asks the device grain for the plant's state on the user's behalf; the grain refuses
// (ErrNotBound) users it does not have bound, which is the authority over a stale store read.
func (h *Handler) state(ctx context.Context, openID, deviceID string) (*actorpb.DeviceState, error) {
	ctx, cancel := context.WithTimeout(ctx, h.opts.GrainTimeout)
	defer cancel()
	return h.devices.UserState(ctx, deviceID, openID)
}

// userPlants reads the user's bindings and asks every plant's grain for its state at once,
// within GrainTimeout. A plant whose grain does not answer, or cannot load its state, is shown
// offline rather than hidden (a storage blip must not make plants vanish); only the grain's "not
// bound" removes it.
func (h *Handler) userPlants(ctx context.Context, lang, openID string) ([]plantView, error) {
	bs, err := h.opts.Users.UserBindings(ctx, openID)
	if err != nil {
		return nil, err
	}
	if len(bs) > h.opts.MaxPlants {
		bs = bs[:h.opts.MaxPlants]
	}
	ids := make([]string, len(bs))
	for i, b := range bs {
		ids[i] = b.DeviceID
	}
	ctx, cancel := context.WithTimeout(ctx, h.opts.GrainTimeout)
	defer cancel()
	out := make([]plantView, 0, len(bs))
	for i, a := range h.devices.UserStates(ctx, openID, ids) {
		st := a.State
		switch {
		case errors.Is(a.Err, actors.ErrNotBound):
			continue
		case a.Err != nil:
			h.opts.Logger.Warn("web: device grain did not answer", "device", a.ID, "err", a.Err)
			st = &actorpb.DeviceState{DeviceId: a.ID}
		}
		out = append(out, newPlantView(lang, roleOf(st, openID, bs[i].Role), st))
	}
	slices.SortFunc(out, func(a, b plantView) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

func (h *Handler) plants(w http.ResponseWriter, r *http.Request) {
	s := sessionFrom(r.Context())
	p := h.newPage(r, s)
	ps, err := h.userPlants(r.Context(), p.Lang, s.OpenID)
	if err != nil {
		h.opts.Logger.Error("web: reading bindings", "err", err)
		h.errorPage(w, r, http.StatusServiceUnavailable, tr(p.Lang, "unavailable"))
		return
	}
	p.Plants = ps
	p.Live = true
	h.render(w, http.StatusOK, "plants.html", p)
}

func (h *Handler) plant(w http.ResponseWriter, r *http.Request) {
	s := sessionFrom(r.Context())
	p := h.newPage(r, s)
	id := chi.URLParam(r, "id")
	b, err := h.binding(r.Context(), s.OpenID, id)
	var st *actorpb.DeviceState
	if err == nil {
		st, err = h.state(r.Context(), s.OpenID, id)
	}
	if errors.Is(err, actors.ErrNotBound) && h.waiting(w, r, s, id) {
		return // a requester waiting for the owner sees only that
	}
	if err != nil {
		h.problem(w, r, err)
		return
	}
	p.Plants = []plantView{newPlantView(p.Lang, roleOf(st, s.OpenID, b.Role), st)}
	h.fillManage(r, p, s, st)
	p.Live = true
	p.Charts = h.charts(r.Context(), id)
	h.render(w, http.StatusOK, "plant.html", p)
}

// commandResult is the JSON answer to a water tap.
type commandResult struct {
	Outcome string `json:"outcome"`
	Message string `json:"message"`
}

func (h *Handler) water(w http.ResponseWriter, r *http.Request) {
	s := sessionFrom(r.Context())
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	reply := func(status int, outcome, key string) { h.reply(w, r, status, outcome, key) }
	if !h.checkCSRF(r, s) {
		reply(http.StatusForbidden, "forbidden", "err_state")
		return
	}
	id := chi.URLParam(r, "id")
	if _, err := h.binding(r.Context(), s.OpenID, id); err != nil {
		h.problem(w, r, err)
		return
	}
	if !h.allowCommand(s.OpenID) {
		w.Header().Set("Retry-After", fmt.Sprint(int(h.opts.CommandInterval/time.Second)+1))
		reply(http.StatusTooManyRequests, "rate_limited", "too_many")
		return
	}
	cmd := &actorpb.SendCommand{CommandId: api.NewCommandID(), Kind: devicepb.CommandKind_COMMAND_KIND_WATER,
		WaterMs: h.opts.WaterMs, TimeoutMs: uint32(h.opts.CommandTimeout / time.Millisecond),
		RequestedBy: actors.WeChatRequester(s.OpenID)}
	ctx, cancel := context.WithTimeout(r.Context(), h.opts.CommandTimeout+h.opts.GrainTimeout)
	defer cancel()
	out, err := h.devices.Command(ctx, id, cmd)
	if err != nil { // no outcome, or refused by the grain (not bound, revoked, unavailable, ...)
		h.problem(w, r, err)
		return
	}
	name := api.OutcomeName(out.Outcome)
	switch out.Outcome {
	case actorpb.Outcome_OUTCOME_OFFLINE:
		reply(http.StatusOK, name, "pot_offline")
	default:
		reply(http.StatusOK, name, name)
	}
}

// allowCommand admits one command per user per CommandInterval.
func (h *Handler) allowCommand(openID string) bool {
	now := h.opts.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	if last, ok := h.lastCmd[openID]; ok && now.Sub(last) < h.opts.CommandInterval {
		return false
	}
	if len(h.lastCmd) > 10000 { // forget users whose interval has passed: they would be admitted anyway
		for id, t := range h.lastCmd {
			if now.Sub(t) >= h.opts.CommandInterval {
				delete(h.lastCmd, id)
			}
		}
	}
	h.lastCmd[openID] = now
	return true
}

// events is the live stream (Server-Sent Events): every StreamInterval it reads the user's
// plants and sends each plant whose view changed as one JSON message; a plant that was unbound
// is sent as {"id":..., "gone":true}.
func (h *Handler) events(w http.ResponseWriter, r *http.Request) {
	s := sessionFrom(r.Context())
	lang := langOf(r)
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	if !h.openStream(s.OpenID) {
		http.Error(w, tr(lang, "too_many"), http.StatusTooManyRequests)
		return
	}
	defer h.closeStream(s.OpenID)
	hd := w.Header()
	hd.Set("Content-Type", "text/event-stream")
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	_, _ = fmt.Fprintf(w, "retry: 3000\n\n")
	fl.Flush()

	sent := map[string]string{}
	tick := time.NewTicker(h.opts.StreamInterval)
	defer tick.Stop()
	idle := 0
	for {
		if !h.opts.Now().Before(s.Expires) {
			return
		}
		ps, err := h.userPlants(r.Context(), lang, s.OpenID)
		if err == nil {
			seen := map[string]bool{}
			wrote := false
			for _, p := range ps {
				seen[p.ID] = true
				b, _ := json.Marshal(p)
				if sent[p.ID] == string(b) {
					continue
				}
				sent[p.ID] = string(b)
				_, _ = fmt.Fprintf(w, "data: %s\n\n", b)
				wrote = true
			}
			for id := range sent {
				if !seen[id] {
					delete(sent, id)
					_, _ = fmt.Fprintf(w, "data: {\"id\":%q,\"gone\":true}\n\n", id)
					wrote = true
				}
			}
			if idle++; wrote {
				idle = 0
			} else if idle*int(h.opts.StreamInterval/time.Millisecond) >= 15000 {
				_, _ = fmt.Fprint(w, ": keepalive\n\n") // proxies drop silent connections
				idle, wrote = 0, true
			}
			if wrote {
				fl.Flush()
			}
		}
		select {
		case <-r.Context().Done():
			return
		case <-tick.C:
		}
	}
}

func (h *Handler) openStream(openID string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.streams[openID] >= h.opts.MaxStreams {
		return false
	}
	h.streams[openID]++
	return true
}

func (h *Handler) closeStream(openID string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.streams[openID]--; h.streams[openID] <= 0 {
		delete(h.streams, openID)
	}
}

// roleOf is the user's role as the device's grain knows it (its first user is the owner: a member
// promoted when the owner left is the owner, though the store keeps the binding's first role);
// stored when the grain did not answer.
func roleOf(st *actorpb.DeviceState, openID, stored string) string {
	switch {
	case len(st.GetUsers()) == 0:
		return stored
	case st.Users[0] == openID:
		return actors.RoleOwner
	default:
		return actors.RoleMember
	}
}
