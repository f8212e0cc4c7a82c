package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/go-chi/chi/v5"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/edge/api"
	"github.com/sprout-iot/sprout/messages/actorpb"
	"github.com/sprout-iot/sprout/messages/devicepb"
)

// chinaTime is how times are shown: WeChat users are in China (UTC+8, no DST).
var chinaTime = time.FixedZone("CST", 8*3600)

// errNotBound means the plant is not (or no longer) bound to the user: the page answers 404,
// never revealing whether the pot exists.
var errNotBound = errors.New("plant not bound to this user")

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
		v.Moisture = fmt.Sprintf("%.0f%%", l.SoilMoisturePct)
		v.Temp = fmt.Sprintf("%.1f°C", l.TemperatureC)
		v.Tank = fmt.Sprintf("%.0f%%", l.TankLevelPct)
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
	return actors.Binding{}, errNotBound
}

// state asks the device grain for the plant's state on the user's behalf; the grain refuses
// (Denied) users it does not have bound, which is the authority over a stale store read.
func (h *Handler) state(openID, deviceID string) (*actorpb.DeviceState, error) {
	res, err := h.opts.Cluster.Request(deviceID, actors.DeviceKind, &actorpb.GetState{OpenId: openID},
		pcluster.WithTimeout(h.opts.GrainTimeout))
	if err != nil {
		return nil, fmt.Errorf("state of %s: %w", deviceID, err)
	}
	st, ok := res.(*actorpb.DeviceState)
	if !ok {
		return nil, fmt.Errorf("state of %s: unexpected reply %T", deviceID, res)
	}
	if st.Denied || !st.Known {
		return nil, errNotBound
	}
	return st, nil
}

// userPlants reads the user's bindings and asks every plant's grain for its state at once.
// Plants whose grain does not answer are shown offline rather than hiding the whole page.
func (h *Handler) userPlants(ctx context.Context, lang, openID string) ([]plantView, error) {
	bs, err := h.opts.Users.UserBindings(ctx, openID)
	if err != nil {
		return nil, err
	}
	if len(bs) > h.opts.MaxPlants {
		bs = bs[:h.opts.MaxPlants]
	}
	views := make([]*plantView, len(bs))
	var wg sync.WaitGroup
	for i, b := range bs {
		wg.Go(func() {
			st, err := h.state(openID, b.DeviceID)
			switch {
			case errors.Is(err, errNotBound):
				return
			case err != nil:
				h.opts.Logger.Warn("web: device grain did not answer", "device", b.DeviceID, "err", err)
				st = &actorpb.DeviceState{DeviceId: b.DeviceID}
			}
			v := newPlantView(lang, b.Role, st)
			views[i] = &v
		})
	}
	wg.Wait()
	out := make([]plantView, 0, len(views))
	for _, v := range views {
		if v != nil {
			out = append(out, *v)
		}
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
		st, err = h.state(s.OpenID, id)
	}
	switch {
	case errors.Is(err, errNotBound):
		h.errorPage(w, r, http.StatusNotFound, tr(p.Lang, "not_found"))
		return
	case err != nil:
		h.errorPage(w, r, http.StatusServiceUnavailable, tr(p.Lang, "unavailable"))
		return
	}
	p.Plants = []plantView{newPlantView(p.Lang, b.Role, st)}
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
		if errors.Is(err, errNotBound) {
			reply(http.StatusNotFound, "not_found", "not_found")
		} else {
			reply(http.StatusServiceUnavailable, "unavailable", "unavailable")
		}
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
	res, err := h.opts.Cluster.Request(id, actors.DeviceKind, cmd, pcluster.WithTimeout(h.opts.CommandTimeout+h.opts.GrainTimeout))
	out, ok := res.(*actorpb.CommandOutcome)
	if err != nil || !ok {
		h.opts.Logger.Warn("web: no outcome from the device grain", "device", id, "err", err)
		reply(http.StatusServiceUnavailable, "unavailable", "unavailable")
		return
	}
	name := api.OutcomeName(out.Outcome)
	switch out.Outcome {
	case actorpb.Outcome_OUTCOME_NOT_BOUND, actorpb.Outcome_OUTCOME_UNKNOWN_DEVICE:
		reply(http.StatusNotFound, name, "not_found")
	case actorpb.Outcome_OUTCOME_OFFLINE:
		reply(http.StatusOK, name, "pot_offline")
	default:
		reply(http.StatusOK, name, name)
	}
}

func writeJSON(w io.Writer, v any) error { return json.NewEncoder(w).Encode(v) }

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
