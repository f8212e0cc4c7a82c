package console

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/edge/api"
	"github.com/sprout-iot/sprout/messages/actorpb"
	"github.com/sprout-iot/sprout/messages/devicepb"
)

// The operations page (docs/fleet.md): pots whose configuration drifts from the desired one, and
// a command queued for every pot of a product.

// driftShown bounds the drifting pots the page lists.
const driftShown = 200

type driftRow struct {
	DeviceID, Product, Desired, Applied, LastError string
	Since                                          time.Time
}

type opsView struct {
	Drift     []driftRow
	NoStore   bool
	Products  []string
	Kinds     []string
	Result    *api.BatchResult
	DriftMore bool
}

func (h *Handler) operations(w http.ResponseWriter, r *http.Request) {
	h.showOperations(w, r, http.StatusOK, "", nil)
}

func (h *Handler) showOperations(w http.ResponseWriter, r *http.Request, status int, msg string, res *api.BatchResult) {
	p := h.newPage(r)
	v := &opsView{Products: h.products(), Kinds: []string{"read_now", "water", "reboot"}, Result: res}
	if ds, ok := h.opts.Store.(actors.DesiredStore); ok {
		rs, err := ds.ConfigDrift(r.Context(), actors.DriftQuery{Limit: driftShown + 1})
		if err != nil {
			h.opts.Logger.Warn("console: reading the config drift", "err", err)
			msg = tr(p.Lang, "unavailable")
		}
		if len(rs) > driftShown {
			rs, v.DriftMore = rs[:driftShown], true
		}
		for _, rep := range rs {
			v.Drift = append(v.Drift, driftRow{DeviceID: rep.DeviceID, Product: rep.Product, Desired: string(rep.Desired),
				Applied: string(rep.Applied), LastError: rep.LastError, Since: rep.DriftSince})
		}
	} else {
		v.NoStore = true
	}
	p.Ops, p.Message, p.Good = v, msg, res != nil && msg == ""
	h.render(w, status, "operations.html", p)
}

// queueProduct queues one command for every pot of a product.
func (h *Handler) queueProduct(w http.ResponseWriter, r *http.Request) {
	product := strings.TrimSpace(r.PostFormValue("product"))
	kind, ok := commandKinds[r.PostFormValue("kind")]
	hours, err := strconv.Atoi(strings.TrimSpace(r.PostFormValue("ttl_h")))
	if !ok || product == "" || err != nil || hours < 1 || hours > 168 {
		h.showOperations(w, r, http.StatusBadRequest, tr(langOf(r), "batch_invalid"), nil)
		return
	}
	cmd := &actorpb.SendCommand{Kind: kind, TtlS: uint32(hours * 3600), RequestedBy: "console",
		TimeoutMs: uint32(h.opts.CommandTimeout / time.Millisecond)}
	if kind == devicepb.CommandKind_COMMAND_KIND_WATER {
		cmd.WaterMs = h.opts.WaterMs
	}
	res, err := api.QueueProduct(r.Context(), h.opts.Store, h.devices, h.opts.GrainTimeout, product, cmd)
	if err != nil {
		h.opts.Logger.Warn("console: queueing for a product", "product", product, "err", err)
		api.ProblemOf(err).Header(w)
		h.showOperations(w, r, http.StatusServiceUnavailable, tr(langOf(r), "unavailable"), nil)
		return
	}
	h.opts.Logger.Info("console: queued for a product", "product", product, "kind", r.PostFormValue("kind"),
		"queued", len(res.Queued), "failed", len(res.Failed))
	h.showOperations(w, r, http.StatusOK, "", &res)
}
