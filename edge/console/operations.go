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
	Config    *productConfigView // fleet.go
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
		v.Config = h.productConfigs(r, ds)
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

// The operations page's texts, kept here so that i18n.go stays as it is for the other pages.
func init() {
	for k, v := range map[string]string{
		"operations":         "运维",
		"batch_queued":       "已排队",
		"batch_failed":       "未能排队：",
		"queue_product":      "给一个产品的所有设备排队一条命令",
		"queue_product_help": "离线的设备在下次连接时收到；超过有效期仍未送达的命令作废。",
		"ttl_hours":          "有效期（小时）",
		"queue":              "排队",
		"config_drift":       "配置未同步的设备",
		"no_desired_store":   "此存储不支持期望配置",
		"drift_since":        "未同步自",
		"desired":            "期望配置",
		"applied":            "设备已应用",
		"drift_more":         "只显示前 200 台",
		"no_drift":           "所有设备都已应用期望配置",
		"batch_invalid":      "请填写产品、命令和 1–168 小时的有效期",
	} {
		textsZH[k] = v
	}
	for k, v := range map[string]string{
		"operations":         "Operations",
		"batch_queued":       "Queued",
		"batch_failed":       "Could not queue for:",
		"queue_product":      "Queue a command for every pot of a product",
		"queue_product_help": "Offline pots get it when they next connect; a command not delivered within its ttl expires.",
		"ttl_hours":          "Valid for (hours)",
		"queue":              "Queue",
		"config_drift":       "Pots not running their desired configuration",
		"no_desired_store":   "This store holds no desired configurations",
		"drift_since":        "Drifting since",
		"desired":            "Desired",
		"applied":            "Applied by the pot",
		"drift_more":         "Only the first 200 are shown",
		"no_drift":           "Every pot runs its desired configuration",
		"batch_invalid":      "Give a product, a command and a ttl of 1–168 hours",
	} {
		textsEN[k] = v
	}
}
