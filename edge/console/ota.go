package console

import (
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/edge/api"
)

// The firmware and rollout pages (docs/ota.md): stored images with an upload form, rollouts with
// a form to start one, and one rollout's stages and pots with pause, resume and abort. Everything
// goes through actors.OTA, as the API and the CLI do.

type firmwareView struct {
	Images   []api.FirmwareJSON
	CanSign  bool
	MaxBytes int
	Disabled bool // the store keeps no firmware, or the node runs no OTA
	Added    *api.FirmwareJSON
}

type rolloutsView struct {
	Rollouts []api.RolloutJSON
	Images   []api.FirmwareJSON
	Disabled bool
	Form     rolloutForm
}

// rolloutForm is the "start a rollout" form, kept as typed when it is refused.
type rolloutForm struct {
	Product, Version, Stages, Tag, Devices, ThresholdPct, TimeoutH string
}

type stageView struct {
	Index, Percent int
	State          string // done, open, waiting
	Label          string
	Pots, Done     int
	Failed         int
}

type targetView struct {
	api.TargetJSON
	Label string // "downloading 40 %"
}

type rolloutView struct {
	R       api.RolloutJSON
	State   string // translated
	Stages  []stageView
	Targets []targetView
	Counts  []stateCount
}

type stateCount struct {
	State string
	N     int
}

func (h *Handler) otaStore() (actors.FirmwareStore, bool) {
	fs, ok := h.opts.Store.(actors.FirmwareStore)
	return fs, ok && h.opts.OTA != nil
}

func (h *Handler) firmwarePage(w http.ResponseWriter, r *http.Request) {
	h.showFirmware(w, r, http.StatusOK, "", nil)
}

func (h *Handler) showFirmware(w http.ResponseWriter, r *http.Request, status int, msg string, added *api.FirmwareJSON) {
	p := h.newPage(r)
	v := &firmwareView{Added: added}
	fs, ok := h.otaStore()
	if !ok {
		v.Disabled = true
	} else {
		v.CanSign, v.MaxBytes = h.opts.OTA.CanSign(), h.opts.OTA.MaxFirmwareBytes()
		list, err := fs.ListFirmware(r.Context(), "")
		if err != nil {
			h.opts.Logger.Warn("console: listing firmware", "err", err)
			msg, status = tr(p.Lang, "unavailable"), http.StatusServiceUnavailable
		}
		for _, f := range list {
			v.Images = append(v.Images, api.FirmwareOf(f))
		}
	}
	p.Firmware, p.Message, p.Good = v, msg, added != nil
	h.render(w, status, "firmware.html", p)
}

// uploadFirmware stores and signs an image from the upload form, as POST /api/v1/firmware does.
func (h *Handler) uploadFirmware(w http.ResponseWriter, r *http.Request) {
	if _, ok := h.otaStore(); !ok {
		h.messagePage(w, r, http.StatusNotImplemented, "ota_disabled")
		return
	}
	lang := langOf(r)
	if !h.opts.OTA.CanSign() {
		h.showFirmware(w, r, http.StatusNotImplemented, tr(lang, "no_signing_key"), nil)
		return
	}
	product, version, data, err := api.ReadFirmwareUpload(r, h.opts.OTA)
	var img actors.FirmwareImage
	if err == nil {
		img, err = h.opts.OTA.AddFirmware(r.Context(), product, version, data, nil)
	}
	if err != nil {
		status, msg := otaProblem(lang, err)
		if status >= 500 {
			h.opts.Logger.Error("console: uploading firmware", "err", err)
		}
		h.showFirmware(w, r, status, msg, nil)
		return
	}
	h.opts.Logger.Info("console: firmware uploaded", "product", img.Product, "version", img.Version, "size", img.Size)
	j := api.FirmwareOf(img)
	h.showFirmware(w, r, http.StatusCreated, fmt.Sprintf("%s %s %s", tr(lang, "firmware_added"), img.Product, img.Version), &j)
}

// otaProblem is the status and the operator's message for an OTA error.
func otaProblem(lang string, err error) (int, string) {
	switch {
	case errors.Is(err, actors.ErrFirmwareTooLarge):
		return http.StatusRequestEntityTooLarge, tr(lang, "too_large") + ": " + err.Error()
	case errors.Is(err, actors.ErrFirmwareExists), errors.Is(err, actors.ErrRolloutExists):
		return http.StatusConflict, tr(lang, "exists") + ": " + err.Error()
	case errors.Is(err, actors.ErrUnknownFirmware), errors.Is(err, actors.ErrUnknownRollout), errors.Is(err, actors.ErrUnknownDevice):
		return http.StatusNotFound, tr(lang, "not_found") + ": " + err.Error()
	case errors.Is(err, actors.ErrNoSigningKey):
		return http.StatusNotImplemented, tr(lang, "no_signing_key")
	case errors.Is(err, actors.ErrOTAInvalid), errors.Is(err, actors.ErrInvalid), strings.Contains(err.Error(), "bad firmware upload"),
		strings.Contains(err.Error(), "invalid input"):
		return http.StatusBadRequest, tr(lang, "invalid_request") + ": " + err.Error()
	}
	return http.StatusServiceUnavailable, tr(lang, "unavailable")
}

func (h *Handler) rolloutsPage(w http.ResponseWriter, r *http.Request) {
	h.showRollouts(w, r, http.StatusOK, "", rolloutForm{Stages: "1,10,100", ThresholdPct: "20", TimeoutH: "24"})
}

func (h *Handler) showRollouts(w http.ResponseWriter, r *http.Request, status int, msg string, form rolloutForm) {
	p := h.newPage(r)
	v := &rolloutsView{Form: form}
	fs, ok := h.otaStore()
	if !ok {
		v.Disabled = true
	} else {
		list, err := fs.ListRollouts(r.Context())
		imgs, err2 := fs.ListFirmware(r.Context(), "")
		if err = errors.Join(err, err2); err != nil {
			h.opts.Logger.Warn("console: listing rollouts", "err", err)
			msg, status = tr(p.Lang, "unavailable"), http.StatusServiceUnavailable
		}
		for _, x := range list {
			v.Rollouts = append(v.Rollouts, api.RolloutOf(x))
		}
		for _, f := range imgs {
			v.Images = append(v.Images, api.FirmwareOf(f))
		}
	}
	p.Rollouts, p.Message = v, msg
	h.render(w, status, "rollouts.html", p)
}

// parseRolloutForm reads the "start a rollout" form; the error names the field.
func parseRolloutForm(f rolloutForm) (actors.RolloutSpec, error) {
	spec := actors.RolloutSpec{Product: f.Product, Version: f.Version, Tag: f.Tag}
	if f.Product == "" || f.Version == "" {
		return spec, errors.New("product and version are required")
	}
	for _, s := range strings.Split(f.Stages, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			return spec, fmt.Errorf("stages: %q is not a whole percent (write them as 1,10,100)", s)
		}
		spec.Stages = append(spec.Stages, n)
	}
	pct, err := strconv.ParseFloat(strings.TrimSpace(f.ThresholdPct), 64)
	if err != nil || pct <= 0 || pct > 100 {
		return spec, fmt.Errorf("failure threshold: %q is not a percent in (0, 100]", f.ThresholdPct)
	}
	spec.FailureThreshold = pct / 100
	hours, err := strconv.ParseFloat(strings.TrimSpace(f.TimeoutH), 64)
	switch {
	case err != nil || hours < 0 || hours > 24*90:
		return spec, fmt.Errorf("stage timeout: %q is not a number of hours in 0..2160", f.TimeoutH)
	case hours == 0:
		spec.StageTimeout = -1
	default:
		spec.StageTimeout = time.Duration(hours * float64(time.Hour))
	}
	spec.Devices = append(spec.Devices, strings.FieldsFunc(f.Devices, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\r' || r == '\t' })...)
	return spec, nil
}

// startRollout starts a rollout from the form and shows its page.
func (h *Handler) startRollout(w http.ResponseWriter, r *http.Request) {
	lang := langOf(r)
	if _, ok := h.otaStore(); !ok {
		h.messagePage(w, r, http.StatusNotImplemented, "ota_disabled")
		return
	}
	form := rolloutForm{}
	for k, dst := range map[string]*string{"product": &form.Product, "version": &form.Version, "stages": &form.Stages, "tag": &form.Tag,
		"devices": &form.Devices, "threshold_pct": &form.ThresholdPct, "timeout_h": &form.TimeoutH} {
		*dst = strings.TrimSpace(r.PostFormValue(k))
	}
	spec, err := parseRolloutForm(form)
	if err != nil {
		h.showRollouts(w, r, http.StatusBadRequest, tr(lang, "invalid_request")+": "+err.Error(), form)
		return
	}
	ro, err := h.opts.OTA.StartRollout(r.Context(), spec)
	if err != nil {
		status, msg := otaProblem(lang, err)
		h.showRollouts(w, r, status, msg, form)
		return
	}
	h.opts.Logger.Info("console: rollout started", "rollout", ro.ID, "product", ro.Product, "version", ro.Version)
	http.Redirect(w, r, "/console/rollouts/"+ro.ID, http.StatusSeeOther)
}

func (h *Handler) rolloutPage(w http.ResponseWriter, r *http.Request) {
	h.showRollout(w, r, http.StatusOK, "", false)
}

// targetLabel is a pot's state as the page says it.
func targetLabel(lang string, t actors.RolloutTarget) string {
	s := tr(lang, "t_"+t.State)
	if t.State == actors.TargetDownloading {
		s += fmt.Sprintf(" %d %%", t.Percent)
	}
	return s
}

func (h *Handler) showRollout(w http.ResponseWriter, r *http.Request, status int, msg string, good bool) {
	p := h.newPage(r)
	fs, ok := h.otaStore()
	if !ok {
		h.messagePage(w, r, http.StatusNotImplemented, "ota_disabled")
		return
	}
	id := chi.URLParam(r, "rid")
	ro, err := fs.GetRollout(r.Context(), id)
	var ts []actors.RolloutTarget
	if err == nil {
		ts, err = fs.RolloutTargets(r.Context(), id)
	}
	switch {
	case errors.Is(err, actors.ErrUnknownRollout):
		h.messagePage(w, r, http.StatusNotFound, "not_found", id)
		return
	case err != nil:
		h.opts.Logger.Error("console: loading rollout", "rollout", id, "err", err)
		h.messagePage(w, r, http.StatusServiceUnavailable, "unavailable")
		return
	}
	v := &rolloutView{R: api.RolloutOf(ro), State: tr(p.Lang, "r_"+string(ro.State))}
	for i, pct := range ro.Stages {
		st := stageView{Index: i + 1, Percent: pct, State: "waiting"}
		switch {
		case i < ro.Stage || ro.State == actors.RolloutCompleted:
			st.State = "done"
		case i == ro.Stage:
			st.State = "open"
		}
		st.Label = tr(p.Lang, "st_"+st.State)
		v.Stages = append(v.Stages, st)
	}
	counts := map[string]int{}
	for _, t := range ts {
		counts[t.State]++
		if t.Stage < len(v.Stages) {
			s := &v.Stages[t.Stage]
			s.Pots++
			if actors.TargetDone(t.State) {
				s.Done++
			}
			if actors.TargetFailedState(t.State) {
				s.Failed++
			}
		}
		v.Targets = append(v.Targets, targetView{TargetJSON: api.TargetJSON{DeviceID: t.DeviceID, Stage: t.Stage + 1, State: t.State,
			Percent: t.Percent, Reason: t.Reason, UpdatedAt: t.UpdatedAt}, Label: targetLabel(p.Lang, t)})
	}
	for s, n := range counts {
		v.Counts = append(v.Counts, stateCount{State: s, N: n})
	}
	sort.Slice(v.Counts, func(i, j int) bool { return v.Counts[i].State < v.Counts[j].State })
	p.Rollout, p.Message, p.Good = v, msg, good
	h.render(w, status, "rollout.html", p)
}

// rolloutAction pauses, resumes or aborts a rollout, as the API does.
func (h *Handler) rolloutAction(w http.ResponseWriter, r *http.Request) {
	lang := langOf(r)
	if _, ok := h.otaStore(); !ok {
		h.messagePage(w, r, http.StatusNotImplemented, "ota_disabled")
		return
	}
	action := chi.URLParam(r, "action")
	state, ok := map[string]actors.RolloutState{"pause": actors.RolloutPaused, "resume": actors.RolloutRunning,
		"abort": actors.RolloutAborted}[action]
	if !ok {
		h.messagePage(w, r, http.StatusNotFound, "not_found", action)
		return
	}
	id := chi.URLParam(r, "rid")
	_, err := h.opts.OTA.SetRolloutState(r.Context(), id, state, "by an operator (console)")
	if err != nil {
		status, msg := otaProblem(lang, err)
		if status == http.StatusNotFound {
			h.messagePage(w, r, status, "not_found", id)
			return
		}
		h.showRollout(w, r, status, msg, false)
		return
	}
	h.opts.Logger.Info("console: rollout "+action, "rollout", id)
	h.showRollout(w, r, http.StatusOK, tr(lang, "rollout_"+action+"_ok"), true)
}

func init() {
	for k, v := range map[string]string{
		"firmware": "固件", "rollouts": "升级", "firmware_added": "已保存并签名", "too_large": "文件过大",
		"exists": "已存在", "not_found": "找不到", "no_signing_key": "此节点没有固件签名密钥（sprout serve --firmware-key），不能上传",
		"invalid_request": "请求无效", "ota_disabled": "此节点的存储不保存固件",
		"upload": "上传", "upload_firmware": "上传固件", "version": "版本", "size": "大小", "file": "文件",
		"max_size": "最大", "no_images": "还没有固件", "start_rollout": "开始升级", "stages": "阶段（累计百分比）",
		"threshold_pct": "失败率阈值（%）", "timeout_h": "阶段超时（小时，0 = 不限）", "tag": "标签", "tags": "标签",
		"devices_opt": "或设备 ID 列表（逗号分隔）", "target_all": "留空：该产品所有设备", "no_rollouts": "还没有升级",
		"stage": "阶段", "pots": "设备", "st_done": "完成", "failed_n": "失败", "st_open": "进行中", "st_waiting": "等待",
		"pause": "暂停", "resume": "继续", "abort": "中止", "abort_confirm": "确定中止这次升级吗？",
		"rollout_pause_ok": "已暂停", "rollout_resume_ok": "已继续", "rollout_abort_ok": "已中止",
		"r_running": "进行中", "r_paused": "已暂停", "r_completed": "已完成", "r_aborted": "已中止",
		"t_pending": "等待", "t_offered": "已推送", "t_downloading": "下载中", "t_verifying": "校验中", "t_rebooting": "重启中",
		"t_running": "运行新版本", "t_failed": "失败", "t_rolled_back": "已回滚", "t_deferred": "推迟",
		"stage_timeout": "阶段超时", "stage_opened": "本阶段开始于", "never": "不限", "targets": "目标",
		"updated": "更新于", "reason": "原因", "state_of_pots": "各设备状态",
	} {
		textsZH[k] = v
	}
	for k, v := range map[string]string{
		"firmware": "Firmware", "rollouts": "Rollouts", "firmware_added": "Stored and signed:", "too_large": "Too large",
		"exists": "Already exists", "not_found": "Not found", "no_signing_key": "This node has no firmware signing key (sprout serve --firmware-key): uploads are refused",
		"invalid_request": "Not accepted", "ota_disabled": "This node's store keeps no firmware",
		"upload": "Upload", "upload_firmware": "Upload an image", "version": "Version", "size": "Size", "file": "File",
		"max_size": "at most", "no_images": "No images yet", "start_rollout": "Start a rollout", "stages": "Stages (cumulative percents)",
		"threshold_pct": "Failure threshold (%)", "timeout_h": "Stage timeout (hours, 0 = none)", "tag": "Tag", "tags": "Tags",
		"devices_opt": "or device ids (comma-separated)", "target_all": "empty: every pot of the product", "no_rollouts": "No rollouts yet",
		"stage": "Stage", "pots": "Pots", "st_done": "done", "failed_n": "failed", "st_open": "open", "st_waiting": "waiting",
		"pause": "Pause", "resume": "Resume", "abort": "Abort", "abort_confirm": "Abort this rollout?",
		"rollout_pause_ok": "Paused", "rollout_resume_ok": "Resumed", "rollout_abort_ok": "Aborted",
		"r_running": "running", "r_paused": "paused", "r_completed": "completed", "r_aborted": "aborted",
		"t_pending": "pending", "t_offered": "offered", "t_downloading": "downloading", "t_verifying": "verifying", "t_rebooting": "rebooting",
		"t_running": "running the new version", "t_failed": "failed", "t_rolled_back": "rolled back", "t_deferred": "deferred",
		"stage_timeout": "Stage timeout", "stage_opened": "Stage opened", "never": "none", "targets": "Targets",
		"updated": "Updated", "reason": "Reason", "state_of_pots": "Each pot",
	} {
		textsEN[k] = v
	}
}
