package actors

import (
	"errors"
	"fmt"
	"strings"
	"unicode"

	"github.com/sprout-iot/sprout/messages/actorpb"
	"github.com/sprout-iot/sprout/messages/devicepb"
)

// Languages a user can be answered in: Chinese by default, English once they write English.
const (
	LangZH = "zh"
	LangEN = "en"
)

// detectLang guesses the language of a user's text: any Han character means Chinese; Latin
// letters without Han mean English; anything else (digits, emoji) keeps the current language.
func detectLang(text, current string) string {
	latin := false
	for _, r := range text {
		if unicode.Is(unicode.Han, r) {
			return LangZH
		}
		if r < 128 && unicode.IsLetter(r) {
			latin = true
		}
	}
	if latin {
		return LangEN
	}
	return current
}

// texts holds every sentence Sprout says to a WeChat user, in each language.
var texts = map[string]map[string]string{
	LangZH: {
		"bound_owner":      "绑定成功：%s 已绑定到你的微信，你是管理员。",
		"bound_member":     "绑定成功：你已加入 %s 的家庭成员。",
		"bound_already":    "%s 已经绑定过了。",
		"bind_unknown":     "找不到这个设备（%s），请确认二维码来自 Sprout 花盆。",
		"bind_revoked":     "这个设备（%s）已停用，无法绑定。",
		"bind_bad_qr":      "二维码无效或已过期，请重新扫描花盆上的二维码。",
		"unbound":          "已解绑 %s，你将不再收到它的消息。",
		"no_devices":       "你还没有绑定花盆。扫描花盆上的二维码即可绑定。",
		"pick_device":      "你有多个花盆，请回复编号，例如「浇水 1」：\n%s",
		"not_yours":        "没有找到编号或名称为「%s」的花盆。",
		"watering":         "收到，正在为 %s 浇水……结果稍后通知你。",
		"water_done":       "%s 浇水完成（%d 毫升）。",
		"water_failed":     "%s 浇水失败：%s",
		"water_rejected":   "%s 拒绝浇水：%s",
		"water_busy":       "%s 正在执行其他操作，请稍后再试。",
		"water_offline":    "%s 当前离线，无法浇水。请检查花盆的电源和 WiFi。",
		"water_timeout":    "%s 没有在规定时间内回应，浇水可能没有完成。",
		"water_denied":     "你没有绑定 %s，无法控制它。",
		"water_error":      "%s 暂时无法执行（%s），请稍后再试。",
		"status_line":      "%s：%s，土壤湿度 %.0f%%，温度 %.1f°C，水箱 %.0f%%（%s）",
		"status_nodata":    "%s：%s，还没有数据。",
		"online":           "在线",
		"offline":          "离线",
		"alerts_none":      "一切正常",
		"alert_soil_dry":   "土壤太干",
		"alert_too_hot":    "温度过高",
		"alert_tank_empty": "水箱空了",
		"alert_pump_fault": "水泵故障",
		"alert_raised":     "%s 提醒：%s（当前 %.1f，阈值 %.1f）。",
		"flapping":         "%s 频繁断线重连（%d 秒内超过 %d 次），已暂停连接约 %d 分钟。请检查它的 WiFi 信号和路由器。",
		"flapping_short":   "频繁断线",
		"alert_cleared":    "%s：%s 已恢复正常。",
		"alert_blip":       "%s：%s（当前 %.1f）出现后已恢复正常。",
		"op_water":         "浇水",
		"pots_n":           "%d 个花盆",
		"alerts_n":         "%d 条提醒",
		"reply_later":      "回复",
		"alert_summary":    "你的 %d 个花盆需要关注：\n%s",
		"went_offline":     "%s 已离线。",
		"device_list":      "你的花盆：\n%s",
		"help":             "可以回复：浇水、状态、我的设备、解绑 编号。扫描花盆上的二维码即可绑定。",
		"unavailable":      "系统繁忙，请稍后再试。",
		"water_joined":     "%s 正在浇水（你刚才已经让它浇了），结果稍后通知你。",
		"device_no_answer": "%s 没有回应，没有执行任何操作，请稍后再试。",
		"device_revoked":   "%s 已停用。",
		"status_error":     "%s：%s",
		"no_answer":        "没有回应",
		"not_available":    "暂时无法读取，请稍后再试",
		"not_bound":        "你没有绑定它",
		"unknown_device":   "找不到这个设备",
		"revoked":          "已停用",
		"role_owner":       "管理员",
		"role_member":      "家庭成员",
		"ago":              "%s前",
	},
	LangEN: {
		"bound_owner":      "Bound: %s is now linked to your WeChat, and you are its owner.",
		"bound_member":     "Bound: you joined %s as a family member.",
		"bound_already":    "%s is already bound to you.",
		"bind_unknown":     "No such pot (%s). Please scan the QR code on a Sprout pot.",
		"bind_revoked":     "This pot (%s) has been retired and cannot be bound.",
		"bind_bad_qr":      "That QR code is invalid or expired. Please scan the code on the pot again.",
		"unbound":          "Unbound %s. You will no longer hear from it.",
		"no_devices":       "You have no pots yet. Scan the QR code on a pot to bind it.",
		"pick_device":      "You have several pots. Reply with a number, e.g. \"water 1\":\n%s",
		"not_yours":        "No pot numbered or named \"%s\".",
		"watering":         "Got it, watering %s... you will hear the result shortly.",
		"water_done":       "%s: watering done (%d ml).",
		"water_failed":     "%s: watering failed: %s",
		"water_rejected":   "%s refused to water: %s",
		"water_busy":       "%s is busy with something else; try again shortly.",
		"water_offline":    "%s is offline, so it cannot water. Check its power and WiFi.",
		"water_timeout":    "%s did not answer in time; watering may not have happened.",
		"water_denied":     "You are not bound to %s, so you cannot control it.",
		"water_error":      "%s cannot do that right now (%s); try again shortly.",
		"status_line":      "%s: %s, soil moisture %.0f%%, temperature %.1f°C, tank %.0f%% (%s)",
		"status_nodata":    "%s: %s, no readings yet.",
		"online":           "online",
		"offline":          "offline",
		"alerts_none":      "all fine",
		"alert_soil_dry":   "soil too dry",
		"alert_too_hot":    "too hot",
		"alert_tank_empty": "water tank empty",
		"alert_pump_fault": "pump fault",
		"alert_raised":     "%s alert: %s (now %.1f, threshold %.1f).",
		"flapping":         "%s keeps dropping and reconnecting (more than %[3]d times in %[2]d s); it is paused for about %[4]d minutes. Please check its WiFi signal and router.",
		"flapping_short":   "keeps reconnecting",
		"alert_cleared":    "%s: %s is back to normal.",
		"alert_blip":       "%s: %s (%.1f) happened and is back to normal.",
		"op_water":         "water",
		"pots_n":           "%d pots",
		"alerts_n":         "%d alerts",
		"reply_later":      "reply",
		"alert_summary":    "%d of your pots need attention:\n%s",
		"went_offline":     "%s went offline.",
		"device_list":      "Your pots:\n%s",
		"help":             "Reply: water, status, my devices, unbind N. Scan the QR code on a pot to bind it.",
		"unavailable":      "The system is busy; please try again shortly.",
		"water_joined":     "%s is already watering (you asked a moment ago); you will hear the result shortly.",
		"device_no_answer": "%s is not answering; nothing was done. Please try again shortly.",
		"device_revoked":   "%s has been retired.",
		"status_error":     "%s: %s",
		"no_answer":        "not answering",
		"not_available":    "not available right now; try again shortly",
		"not_bound":        "not bound to you",
		"unknown_device":   "no such pot",
		"revoked":          "retired",
		"role_owner":       "owner",
		"role_member":      "family",
		"ago":              "%s ago",
	},
}

func say(lang, key string, args ...any) string {
	t, ok := texts[lang][key]
	if !ok {
		t = texts[LangZH][key]
	}
	return fmt.Sprintf(t, args...)
}

func alertText(lang string, k actorpb.AlertKind) string {
	return say(lang, "alert_"+strings.ToLower(strings.TrimPrefix(k.String(), "ALERT_KIND_")))
}

// statusText describes one device's state in one line.
func statusText(lang string, st *actorpb.DeviceState) string {
	online := say(lang, "offline")
	if st.Online {
		online = say(lang, "online")
	}
	l := st.Latest
	if l == nil {
		return say(lang, "status_nodata", st.DeviceId, online)
	}
	alerts := say(lang, "alerts_none")
	if len(st.Alerts) > 0 {
		var as []string
		for _, a := range st.Alerts {
			as = append(as, alertText(lang, a.Kind))
		}
		alerts = strings.Join(as, ", ")
	}
	return say(lang, "status_line", st.DeviceId, online, l.SoilMoisturePct, l.TemperatureC, l.TankLevelPct, alerts)
}

// outcomeText tells a user how their command ended.
func outcomeText(lang string, o *actorpb.CommandOutcome) string {
	d := o.DeviceId
	switch o.Outcome {
	case actorpb.Outcome_OUTCOME_DONE:
		if o.Kind == devicepb.CommandKind_COMMAND_KIND_WATER {
			return say(lang, "water_done", d, o.WateredMl)
		}
		return say(lang, "water_done", d, o.WateredMl)
	case actorpb.Outcome_OUTCOME_FAILED:
		return say(lang, "water_failed", d, o.Detail)
	case actorpb.Outcome_OUTCOME_REJECTED:
		return say(lang, "water_rejected", d, o.Detail)
	case actorpb.Outcome_OUTCOME_BUSY:
		return say(lang, "water_busy", d)
	case actorpb.Outcome_OUTCOME_OFFLINE:
		return say(lang, "water_offline", d)
	case actorpb.Outcome_OUTCOME_TIMED_OUT:
		return say(lang, "water_timeout", d)
	case actorpb.Outcome_OUTCOME_NOT_BOUND:
		return say(lang, "water_denied", d)
	default:
		return say(lang, "water_error", d, o.Detail)
	}
}

// deviceErrorText tells a user why a pot could not do what they asked: it did not answer, it is
// not available now (busy, try again), or a definitive refusal.
func deviceErrorText(lang, deviceID string, err error) string {
	switch {
	case errors.Is(err, errNoAnswer):
		return say(lang, "device_no_answer", deviceID)
	case errors.Is(err, ErrNotBound):
		return say(lang, "water_denied", deviceID)
	case errors.Is(err, ErrUnknownDevice):
		return say(lang, "bind_unknown", deviceID)
	case errors.Is(err, ErrRevoked):
		return say(lang, "device_revoked", deviceID)
	}
	return say(lang, "unavailable")
}

// statusErrorText is a status line's words for a pot that gave no state (Akka's group query:
// timed out, not available, or a refusal).
func statusErrorText(lang string, err error) string {
	switch {
	case errors.Is(err, errNoAnswer):
		return say(lang, "no_answer")
	case errors.Is(err, ErrNotBound):
		return say(lang, "not_bound")
	case errors.Is(err, ErrUnknownDevice):
		return say(lang, "unknown_device")
	case errors.Is(err, ErrRevoked):
		return say(lang, "revoked")
	}
	return say(lang, "not_available")
}
