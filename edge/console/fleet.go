package console

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/edge/api"
	"github.com/sprout-iot/sprout/messages/actorpb"
	"github.com/sprout-iot/sprout/messages/devicepb"
	"github.com/sprout-iot/sprout/store"
)

// Fleet management in the console (docs/fleet.md, docs/console.md): a device's queued commands
// with cancel buttons, its tags, and desired configurations per pot and per product, edited in a
// form checked as the API checks them (actors.ValidateConfig).

func (h *Handler) fleetRoutes(r chi.Router) {
	r.Post("/devices/{id}/queue/{cmd}/cancel", h.cancelQueued)
	r.Post("/devices/{id}/tags", h.setTags)
	r.Post("/devices/{id}/config", h.setDeviceConfig)
	r.Post("/operations/config", h.setProductConfig)
}

// queueView is a device's queued commands: those waiting or sent, in delivery order, and the
// ones that ended (oldest first) with their state.
type queueView struct {
	Pending  []api.QueuedJSON
	Finished []api.QueuedJSON
}

func queueOf(id string, st *actorpb.DeviceState) *queueView {
	q := &queueView{}
	for _, c := range st.GetQueuedCommands() {
		j := api.QueuedJSON{DeviceID: id, CommandID: c.Command.GetCommandId(), Kind: api.KindName(c.Command.GetKind()),
			State: "pending", Sends: c.Sends}
		if c.Sent {
			j.State = "delivered"
		}
		if c.QueuedAtMs != 0 {
			t := time.UnixMilli(c.QueuedAtMs)
			j.QueuedAt = &t
		}
		if c.ExpiresAtMs != 0 {
			t := time.UnixMilli(c.ExpiresAtMs)
			j.ExpiresAt = &t
		}
		q.Pending = append(q.Pending, j)
	}
	for _, o := range st.GetQueuedOutcomes() {
		t := time.UnixMilli(o.AtMs)
		q.Finished = append(q.Finished, api.QueuedJSON{DeviceID: o.DeviceId, CommandID: o.CommandId, Kind: api.KindName(o.Kind),
			State: api.StateOf(o.Outcome), Outcome: api.OutcomeName(o.Outcome), Detail: o.Detail, EndedAt: &t})
	}
	return q
}

// cancelQueued cancels a queued command that has not been delivered, as DELETE
// /api/v1/devices/{id}/commands/{cmd} does.
func (h *Handler) cancelQueued(w http.ResponseWriter, r *http.Request) {
	id, cmd := chi.URLParam(r, "id"), chi.URLParam(r, "cmd")
	lang := langOf(r)
	ctx, cancel := context.WithTimeout(r.Context(), h.opts.GrainTimeout)
	defer cancel()
	out, err := h.devices.CancelQueued(ctx, id, cmd, "console")
	switch {
	case errors.Is(err, actors.ErrInvalid) && out == nil:
		h.showDevice(w, r, http.StatusNotFound, tr(lang, "no_such_command")+": "+cmd, false, nil)
	case errors.Is(err, actors.ErrInvalid):
		h.showDevice(w, r, http.StatusConflict, tr(lang, "not_cancellable")+": "+err.Error(), false, nil)
	case err != nil:
		p := api.ProblemOf(err)
		p.Header(w)
		h.showDevice(w, r, p.Status, tr(lang, "unavailable"), false, nil)
	default:
		h.opts.Logger.Info("console: queued command cancelled", "device", id, "command", cmd)
		h.showDevice(w, r, http.StatusOK, tr(lang, "cancelled_ok")+": "+cmd, true, nil)
	}
}

// setTags replaces a device's tags (space or comma separated).
func (h *Handler) setTags(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	lang := langOf(r)
	ts, ok := h.opts.Store.(actors.TagStore)
	if !ok {
		h.showDevice(w, r, http.StatusNotImplemented, tr(lang, "no_tag_store"), false, nil)
		return
	}
	tags := strings.FieldsFunc(r.PostFormValue("tags"), func(c rune) bool { return c == ',' || c == ' ' || c == '\n' || c == '\r' || c == '\t' })
	err := ts.SetDeviceTags(r.Context(), id, tags)
	switch {
	case errors.Is(err, actors.ErrUnknownDevice):
		h.messagePage(w, r, http.StatusNotFound, "unknown_device", id)
	case errors.Is(err, store.ErrInvalid):
		h.showDevice(w, r, http.StatusBadRequest, tr(lang, "invalid_request")+": "+err.Error(), false, nil)
	case err != nil:
		h.opts.Logger.Error("console: setting tags", "device", id, "err", err)
		h.showDevice(w, r, http.StatusServiceUnavailable, tr(lang, "unavailable"), false, nil)
	default:
		h.showDevice(w, r, http.StatusOK, tr(lang, "tags_saved"), true, nil)
	}
}

// configForm is the desired configuration form, kept as typed when it is refused.
type configForm struct {
	ReportS, HeartbeatS, MaxWaterMs, MinWaterS      string
	MoistureMin, TempMax, TankEmpty, HystPct, HystC string
}

// configFields name the form's inputs, in the order shown, with the API's field names.
var configFields = []struct{ Name, Label string }{
	{"report_interval_s", "5..86400"}, {"heartbeat_interval_s", "5..600"}, {"max_water_ms", "1..300000"},
	{"min_water_interval_s", "≥ 0"}, {"soil_moisture_min_pct", "%"}, {"temperature_max_c", "°C"},
	{"tank_empty_pct", "%"}, {"hysteresis_pct", "≥ 0 %"}, {"hysteresis_c", "≥ 0 °C"},
}

func (f *configForm) ptrs() []*string {
	return []*string{&f.ReportS, &f.HeartbeatS, &f.MaxWaterMs, &f.MinWaterS, &f.MoistureMin, &f.TempMax, &f.TankEmpty, &f.HystPct, &f.HystC}
}

// Values pairs each field with its value, for the template.
func (f configForm) Values() []configField {
	out := make([]configField, len(configFields))
	for i, p := range f.ptrs() {
		out[i] = configField{Name: configFields[i].Name, Hint: configFields[i].Label, Value: *p}
	}
	return out
}

type configField struct{ Name, Hint, Value string }

func formOf(c *devicepb.Config) configForm {
	if c == nil {
		return configForm{}
	}
	th := c.GetThresholds()
	f := func(v float32) string { return strconv.FormatFloat(float64(v), 'g', -1, 32) }
	u := func(v uint32) string { return strconv.FormatUint(uint64(v), 10) }
	return configForm{ReportS: u(c.ReportIntervalS), HeartbeatS: u(c.HeartbeatIntervalS), MaxWaterMs: u(c.MaxWaterMs),
		MinWaterS: u(c.MinWaterIntervalS), MoistureMin: f(th.GetSoilMoistureMinPct()), TempMax: f(th.GetTemperatureMaxC()),
		TankEmpty: f(th.GetTankEmptyPct()), HystPct: f(th.GetHysteresisPct()), HystC: f(th.GetHysteresisC())}
}

func readConfigForm(r *http.Request) configForm {
	var f configForm
	for i, p := range f.ptrs() {
		*p = strings.TrimSpace(r.PostFormValue(configFields[i].Name))
	}
	return f
}

// config checks the form: every field a number, then the platform's limits (actors.ValidateConfig,
// as PUT /api/v1/.../config). The error names the field.
func (f configForm) config() (*devicepb.Config, error) {
	ints := make([]uint32, 4)
	for i, p := range f.ptrs()[:4] {
		n, err := strconv.ParseUint(*p, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("%s: %q is not a whole number", configFields[i].Name, *p)
		}
		ints[i] = uint32(n)
	}
	floats := make([]float32, 5)
	for i, p := range f.ptrs()[4:] {
		v, err := strconv.ParseFloat(*p, 32)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("%s: %q is not a number", configFields[4+i].Name, *p)
		}
		floats[i] = float32(v)
	}
	c := &devicepb.Config{ReportIntervalS: ints[0], HeartbeatIntervalS: ints[1], MaxWaterMs: ints[2], MinWaterIntervalS: ints[3],
		Thresholds: &devicepb.Thresholds{SoilMoistureMinPct: floats[0], TemperatureMaxC: floats[1], TankEmptyPct: floats[2],
			HysteresisPct: floats[3], HysteresisC: floats[4]}}
	if err := actors.ValidateConfig(c); err != nil {
		return nil, err
	}
	return c, nil
}

// defaultConfigForm is what an empty form proposes: the firmware's defaults (device.proto).
var defaultConfigForm = configForm{ReportS: "60", HeartbeatS: "30", MaxWaterMs: "30000", MinWaterS: "60",
	MoistureMin: "20", TempMax: "35", TankEmpty: "5", HystPct: "5", HystC: "2"}

// desiredView is a device's desired configuration on its page.
type desiredView struct {
	Source     string // device, product or ""
	Desired    string
	Applied    string
	DriftSince time.Time
	LastError  string
	Form       configForm
	Error      string // why the form was refused
	NoStore    bool
}

func desiredOf(st *actorpb.DeviceState) *desiredView {
	d := st.GetDesired()
	v := &desiredView{Source: d.GetSource(), LastError: d.GetLastError(), Form: defaultConfigForm}
	if d.GetDesired() != nil {
		v.Desired, v.Form = string(actors.ConfigJSON(d.GetDesired())), formOf(d.GetDesired())
	} else if d.GetApplied() != nil {
		v.Form = formOf(d.GetApplied())
	}
	if d.GetApplied() != nil {
		v.Applied = string(actors.ConfigJSON(d.GetApplied()))
	}
	if d.GetDriftSinceMs() != 0 {
		v.DriftSince = time.UnixMilli(d.GetDriftSinceMs())
	}
	return v
}

// setDeviceConfig sets (or, with clear, removes) a pot's own desired configuration and tells its
// grain, as PUT/DELETE /api/v1/devices/{id}/config do.
func (h *Handler) setDeviceConfig(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	lang := langOf(r)
	ds, ok := h.opts.Store.(actors.DesiredStore)
	if !ok {
		h.showDevice(w, r, http.StatusNotImplemented, tr(lang, "no_desired_store"), false, nil)
		return
	}
	if _, err := h.opts.Store.GetDevice(r.Context(), id); err != nil {
		h.messagePage(w, r, http.StatusNotFound, "unknown_device", id)
		return
	}
	form := readConfigForm(r)
	var err error
	if r.PostFormValue("action") == "clear" {
		err = ds.DeleteDesiredConfig(r.Context(), actors.ScopeDevice, id)
	} else {
		cfg, cerr := form.config()
		if cerr != nil {
			h.showDeviceForm(w, r, http.StatusBadRequest, tr(lang, "config_invalid")+": "+cerr.Error(), &form)
			return
		}
		err = ds.SetDesiredConfig(r.Context(), actors.DesiredConfig{Scope: actors.ScopeDevice, Key: id,
			Config: actors.ConfigJSON(cfg), UpdatedAt: h.opts.Now().UTC(), By: "console"})
	}
	if err != nil {
		h.opts.Logger.Error("console: setting a desired config", "device", id, "err", err)
		h.showDeviceForm(w, r, http.StatusServiceUnavailable, tr(lang, "unavailable"), &form)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.opts.GrainTimeout)
	defer cancel()
	if _, err := h.devices.ReloadDesired(ctx, id); err != nil {
		h.showDevice(w, r, http.StatusAccepted, tr(lang, "config_saved_unreached"), true, nil)
		return
	}
	h.opts.Logger.Info("console: desired config set", "device", id, "clear", r.PostFormValue("action") == "clear")
	h.showDevice(w, r, http.StatusOK, tr(lang, "config_saved"), true, nil)
}

// showDeviceForm shows the device page with the config form as typed and why it was refused.
func (h *Handler) showDeviceForm(w http.ResponseWriter, r *http.Request, status int, msg string, f *configForm) {
	r = r.WithContext(context.WithValue(r.Context(), formKey{}, formState{form: f, err: msg}))
	h.showDevice(w, r, status, msg, false, nil)
}

type formKey struct{}

type formState struct {
	form *configForm
	err  string
}

// productConfigView is the product configuration form on the operations page.
type productConfigView struct {
	Product string
	Form    configForm
	Error   string
	Configs []productConfigRow
}

type productConfigRow struct {
	Product, Config, By string
	At                  time.Time
}

// setProductConfig sets (or, with clear, removes) a product's desired configuration and tells
// each of its pots' grains, as PUT/DELETE /api/v1/products/{product}/config do.
func (h *Handler) setProductConfig(w http.ResponseWriter, r *http.Request) {
	lang := langOf(r)
	ds, ok := h.opts.Store.(actors.DesiredStore)
	if !ok {
		h.showOperations(w, r, http.StatusNotImplemented, tr(lang, "no_desired_store"), nil)
		return
	}
	product := strings.TrimSpace(r.PostFormValue("product"))
	form := readConfigForm(r)
	refuse := func(status int, msg string) {
		r = r.WithContext(context.WithValue(r.Context(), formKey{}, formState{form: &form, err: msg}))
		h.showOperations(w, r, status, msg, nil)
	}
	if product == "" || len(product) > 64 {
		refuse(http.StatusBadRequest, tr(lang, "config_invalid")+": "+tr(lang, "product_required"))
		return
	}
	var err error
	clear := r.PostFormValue("action") == "clear"
	if clear {
		err = ds.DeleteDesiredConfig(r.Context(), actors.ScopeProduct, product)
	} else {
		cfg, cerr := form.config()
		if cerr != nil {
			refuse(http.StatusBadRequest, tr(lang, "config_invalid")+": "+cerr.Error())
			return
		}
		err = ds.SetDesiredConfig(r.Context(), actors.DesiredConfig{Scope: actors.ScopeProduct, Key: product,
			Config: actors.ConfigJSON(cfg), UpdatedAt: h.opts.Now().UTC(), By: "console"})
	}
	if errors.Is(err, store.ErrInvalid) {
		refuse(http.StatusBadRequest, tr(lang, "config_invalid")+": "+err.Error())
		return
	}
	if err != nil {
		h.opts.Logger.Error("console: setting a product's desired config", "product", product, "err", err)
		refuse(http.StatusServiceUnavailable, tr(lang, "unavailable"))
		return
	}
	ids, err := api.ProductDevices(r.Context(), h.opts.Store, product)
	if err != nil {
		refuse(http.StatusServiceUnavailable, tr(lang, "unavailable"))
		return
	}
	unreached := 0
	for _, id := range ids {
		ctx, cancel := context.WithTimeout(r.Context(), h.opts.GrainTimeout)
		if _, err := h.devices.ReloadDesired(ctx, id); err != nil {
			unreached++
		}
		cancel()
	}
	h.opts.Logger.Info("console: product desired config set", "product", product, "clear", clear, "pots", len(ids), "unreached", unreached)
	msg := fmt.Sprintf("%s %s: %d %s", tr(lang, "config_saved"), product, len(ids), tr(lang, "pots_told"))
	if unreached > 0 {
		msg += fmt.Sprintf(" (%d %s)", unreached, tr(lang, "pots_unreached"))
	}
	h.showOperations(w, r, http.StatusOK, msg, nil)
}

// productConfigs fills the operations page's configuration section: the form (for ?product=, or
// as typed when refused) and every product's desired configuration.
func (h *Handler) productConfigs(r *http.Request, ds actors.DesiredStore) *productConfigView {
	v := &productConfigView{Product: r.URL.Query().Get("product"), Form: defaultConfigForm}
	if fs, ok := r.Context().Value(formKey{}).(formState); ok {
		v.Form, v.Error, v.Product = *fs.form, fs.err, strings.TrimSpace(r.PostFormValue("product"))
	} else if v.Product != "" {
		if prod, _, err := ds.DesiredConfigs(r.Context(), v.Product, ""); err == nil && prod != nil {
			if c, err := actors.ParseConfig(prod.Config); err == nil {
				v.Form = formOf(c)
			}
		}
	}
	list, err := ds.ListDesiredConfigs(r.Context(), actors.ScopeProduct)
	if err != nil {
		h.opts.Logger.Warn("console: listing desired configs", "err", err)
	}
	for _, d := range list {
		v.Configs = append(v.Configs, productConfigRow{Product: d.Key, Config: string(d.Config), By: d.By, At: d.UpdatedAt})
	}
	return v
}

func init() {
	for k, v := range map[string]string{
		"queue_title": "排队命令", "q_pending": "等待", "q_delivered": "已送达，等待结果", "q_done": "完成", "q_failed": "失败",
		"q_expired": "已过期", "q_cancelled": "已取消", "cancel": "取消", "no_such_command": "没有这条排队命令",
		"not_cancellable": "不能取消", "cancelled_ok": "已取消", "queued_at": "排队于", "expires_at": "过期于", "ended_at": "结束于",
		"no_tag_store": "此存储不保存标签", "tags_saved": "标签已保存", "tags_help": "小写字母、数字和 . _ : -，用空格或逗号分隔",
		"save": "保存", "desired_config": "期望配置", "config_source": "来源", "src_device": "本设备", "src_product": "产品",
		"config_invalid": "配置无效", "config_saved": "配置已保存", "config_saved_unreached": "配置已保存；设备下次加载时生效",
		"clear_device_config": "删除本设备配置（改用产品配置）", "clear_product_config": "删除产品配置",
		"product_config": "产品的期望配置", "product_required": "请填写产品", "pots_told": "台设备已通知", "pots_unreached": "台暂时无法通知",
		"edit": "编辑", "by": "设置者",
		"report_interval_s": "上报间隔（秒）", "heartbeat_interval_s": "心跳间隔（秒）", "max_water_ms": "单次最长浇水（毫秒）",
		"min_water_interval_s": "两次浇水最短间隔（秒）", "soil_moisture_min_pct": "土壤湿度下限", "temperature_max_c": "温度上限",
		"tank_empty_pct": "水箱见底", "hysteresis_pct": "湿度/水箱回差", "hysteresis_c": "温度回差",
	} {
		textsZH[k] = v
	}
	for k, v := range map[string]string{
		"queue_title": "Queued commands", "q_pending": "pending", "q_delivered": "delivered, awaiting its result", "q_done": "done", "q_failed": "failed",
		"q_expired": "expired", "q_cancelled": "cancelled", "cancel": "Cancel", "no_such_command": "No such queued command",
		"not_cancellable": "Cannot be cancelled", "cancelled_ok": "Cancelled", "queued_at": "Queued", "expires_at": "Expires", "ended_at": "Ended",
		"no_tag_store": "This store keeps no tags", "tags_saved": "Tags saved", "tags_help": "lower-case letters, digits and . _ : -, separated by spaces or commas",
		"save": "Save", "desired_config": "Desired configuration", "config_source": "Source", "src_device": "this pot", "src_product": "its product",
		"config_invalid": "Configuration refused", "config_saved": "Configuration saved", "config_saved_unreached": "Configuration saved; the pot gets it when its grain next loads",
		"clear_device_config": "Remove this pot's own configuration (use the product's)", "clear_product_config": "Remove the product's configuration",
		"product_config": "A product's desired configuration", "product_required": "give a product", "pots_told": "pots told", "pots_unreached": "could not be told yet",
		"edit": "Edit", "by": "Set by",
		"report_interval_s": "Report interval (s)", "heartbeat_interval_s": "Heartbeat interval (s)", "max_water_ms": "Longest watering (ms)",
		"min_water_interval_s": "Least time between waterings (s)", "soil_moisture_min_pct": "Soil moisture alert below", "temperature_max_c": "Temperature alert above",
		"tank_empty_pct": "Tank empty at", "hysteresis_pct": "Moisture/tank hysteresis", "hysteresis_c": "Temperature hysteresis",
	} {
		textsEN[k] = v
	}
}

// fleetDetails adds the device page's queue, tags and desired configuration.
func (h *Handler) fleetDetails(r *http.Request, v *deviceView) {
	if v.State != nil {
		v.Queue = queueOf(v.Device.ID, v.State)
		v.Desired = desiredOf(v.State)
	} else {
		v.Desired = &desiredView{Form: defaultConfigForm}
	}
	if _, ok := h.opts.Store.(actors.DesiredStore); !ok {
		v.Desired.NoStore = true
	}
	if fs, ok := r.Context().Value(formKey{}).(formState); ok {
		v.Desired.Form, v.Desired.Error = *fs.form, fs.err
	}
	ts, ok := h.opts.Store.(actors.TagStore)
	if !ok {
		v.NoTags = true
		return
	}
	tags, err := ts.DeviceTags(r.Context(), v.Device.ID)
	if err != nil {
		h.opts.Logger.Warn("console: reading tags", "device", v.Device.ID, "err", err)
	}
	v.Tags = tags
}
