package web

import (
	"net/http"
	"strings"
)

// langOf picks the page language: ?lang=en|zh, else Accept-Language, else Chinese.
func langOf(r *http.Request) string {
	switch q := r.URL.Query().Get("lang"); {
	case strings.HasPrefix(q, "en"):
		return "en"
	case strings.HasPrefix(q, "zh"):
		return "zh"
	}
	for _, part := range strings.Split(r.Header.Get("Accept-Language"), ",") {
		tag := strings.ToLower(strings.TrimSpace(strings.SplitN(part, ";", 2)[0]))
		switch {
		case strings.HasPrefix(tag, "zh"):
			return "zh"
		case strings.HasPrefix(tag, "en"):
			return "en"
		}
	}
	return "zh"
}

// tr is the text for key in lang (Chinese when English lacks it).
func tr(lang, key string) string {
	if lang == "en" {
		if s, ok := textsEN[key]; ok {
			return s
		}
	}
	if s, ok := textsZH[key]; ok {
		return s
	}
	return key
}

var textsZH = map[string]string{
	"title":            "我的植物",
	"plant":            "植物",
	"no_plants":        "还没有绑定的花盆。扫描花盆上的二维码，或点右上角“绑定花盆”。",
	"online":           "在线",
	"offline":          "离线",
	"moisture":         "土壤湿度",
	"temperature":      "温度",
	"tank":             "水箱",
	"updated":          "更新于",
	"no_reading":       "暂无数据",
	"water":            "立即浇水",
	"watering":         "浇水中…",
	"owner":            "主人",
	"member":           "家人",
	"chart":            "最近 24 小时",
	"chart_empty":      "最近 24 小时没有数据",
	"chart_week":       "最近 7 天",
	"chart_week_empty": "最近 7 天没有数据",
	"back":             "返回",
	"alert_ok":         "一切正常",
	"soil_dry":         "土壤太干",
	"too_hot":          "温度过高",
	"tank_empty":       "水箱没水了",
	"pump_fault":       "水泵故障",
	"done":             "浇水完成",
	"pot_offline":      "花盆离线，没有浇水",
	"failed":           "浇水失败",
	"rejected":         "花盆拒绝了浇水",
	"busy":             "花盆正忙，请稍后再试",
	"timed_out":        "花盆没有及时回应（超时）",
	"unknown_device":   "找不到这个花盆",
	"invalid":          "请求无效",
	"not_bound":        "你没有绑定这个花盆",
	"unavailable":      "服务暂时不可用，请稍后再试",
	"too_many":         "操作太频繁，请稍后再试",
	"not_found":        "找不到这个花盆",
	"err_state":        "登录已过期，请重新打开页面",
	"err_signin":       "微信登录失败，请重新打开页面",
	"signed_out":       "已退出",
	"error":            "出错了",
	"settings":         "提醒设置",
	"settings_hint":    "低于最低湿度、高于最高温度或水箱低于此值时提醒你。保存需要花盆在线。",
	"moisture_min":     "最低土壤湿度",
	"temp_max":         "最高温度",
	"tank_level":       "水箱见底提醒",
	"save":             "保存",
	"saving":           "保存中…",
	"settings_done":    "设置已保存到花盆",
	"settings_offline": "花盆离线：设置需要花盆在线才能保存",
	"settings_failed":  "设置没有生效，请稍后再试",
	"settings_invalid": "设置无效：湿度和水箱 0–100%，温度 -20–80°C",
	"owner_only":       "只有主人可以这样做",
	"family":           "家人共享",
	"you":              "我",
	"remove":           "移除",
	"no_member":        "找不到这位家人",
	"member_removed":   "已移除",
	"invite":           "邀请家人",
	"invite_hint":      "让家人用微信扫码或打开这个链接，即可一起照顾这盆植物。",
	"invite_expires":   "链接有效期至",
	"bad_invite":       "邀请无效或已过期，请让主人重新邀请",
	"join":             "加入",
	"join_confirm":     "加入并一起照顾花盆 %s？",
	"unbind":           "解除绑定",
	"unbind_confirm":   "解除与花盆 %s 的绑定？之后你将看不到它，也不会再收到提醒。",
	"unbound":          "已解除绑定",
	"cancel":           "取消",
	"bind":             "绑定花盆",
	"bind_code":        "花盆上的绑定码",
	"bind_hint":        "输入花盆底部二维码下方印的绑定码（以 s1. 开头），或在微信里扫码。",
	"bind_unavailable": "暂不支持在这里绑定，请在公众号里扫描花盆上的二维码。",
	"bad_code":         "绑定码无效，请检查后重试",
	"bind_done":        "绑定成功！",
	"bind_already":     "你已经绑定了这个花盆",
	"bind_unknown":     "找不到这个花盆，或它已停用",
	"open_plant":       "查看植物",
	"scan":             "扫一扫",
	"wifi_setup":       "配置花盆 WiFi",
	"wifi_wechat":      "让手机连上 2.4 GHz 的 WiFi，接通花盆电源，然后点下面的按钮，输入 WiFi 密码。",
	"wifi_button":      "配置 WiFi",
	"wifi_ok":          "WiFi 已发送给花盆，稍等它上线",
	"wifi_fail":        "没有配置成功，请重试",
	"wifi_step1":       "接通花盆电源。还没有联网的花盆会等待配网（AirKiss / ESP-TOUCH）。",
	"wifi_step2":       "让手机连上家里 2.4 GHz 的 WiFi（花盆不支持 5 GHz）。",
	"wifi_step3":       "在微信里打开本页点“配置 WiFi”（AirKiss），或用乐鑫 ESP-TOUCH App 输入 WiFi 密码。",
	"wifi_step4":       "花盆连上后会出现在“我的植物”里，显示“在线”。",
	"lang_other":       "English",
	"lang_other_q":     "en",
}

var textsEN = map[string]string{
	"title":            "My plants",
	"plant":            "Plant",
	"no_plants":        "No pots bound yet. Scan the QR code on a pot, or tap \"Bind a plant\" at the top.",
	"online":           "online",
	"offline":          "offline",
	"moisture":         "Soil moisture",
	"temperature":      "Temperature",
	"tank":             "Tank",
	"updated":          "updated",
	"no_reading":       "no readings yet",
	"water":            "Water now",
	"watering":         "Watering…",
	"owner":            "owner",
	"member":           "family",
	"chart":            "Last 24 hours",
	"chart_empty":      "No readings in the last 24 hours",
	"chart_week":       "Last 7 days",
	"chart_week_empty": "No readings in the last 7 days",
	"back":             "Back",
	"alert_ok":         "All good",
	"soil_dry":         "Soil is dry",
	"too_hot":          "Too hot",
	"tank_empty":       "Tank is empty",
	"pump_fault":       "Pump fault",
	"done":             "Watering done",
	"pot_offline":      "The pot is offline: nothing was sent",
	"failed":           "Watering failed",
	"rejected":         "The pot refused to water",
	"busy":             "The pot is busy, try again shortly",
	"timed_out":        "The pot did not answer in time (timed out)",
	"unknown_device":   "No such pot",
	"invalid":          "Invalid request",
	"not_bound":        "You are not bound to this pot",
	"unavailable":      "Temporarily unavailable, try again shortly",
	"too_many":         "Too many taps, wait a moment",
	"not_found":        "No such pot",
	"err_state":        "Sign-in expired: open the page again",
	"err_signin":       "WeChat sign-in failed: open the page again",
	"signed_out":       "Signed out",
	"error":            "Something went wrong",
	"settings":         "Alert settings",
	"settings_hint":    "You are alerted below the moisture minimum, above the temperature maximum, or when the tank falls to this level. Saving needs the pot online.",
	"moisture_min":     "Soil moisture minimum",
	"temp_max":         "Temperature maximum",
	"tank_level":       "Tank empty level",
	"save":             "Save",
	"saving":           "Saving…",
	"settings_done":    "Settings saved on the pot",
	"settings_offline": "The pot is offline: settings need the pot online",
	"settings_failed":  "The settings did not take effect, try again later",
	"settings_invalid": "Invalid settings: moisture and tank 0–100%, temperature -20–80°C",
	"owner_only":       "Only the owner can do this",
	"family":           "Family",
	"you":              "you",
	"remove":           "Remove",
	"no_member":        "No such family member",
	"member_removed":   "Removed",
	"invite":           "Invite family",
	"invite_hint":      "Family members scan this code in WeChat or open the link to look after this plant with you.",
	"invite_expires":   "The link is valid until",
	"bad_invite":       "This invite is invalid or has expired: ask the owner for a new one",
	"join":             "Join",
	"join_confirm":     "Join and look after pot %s?",
	"unbind":           "Unbind",
	"unbind_confirm":   "Unbind pot %s? You will no longer see it or get its alerts.",
	"unbound":          "Unbound",
	"cancel":           "Cancel",
	"bind":             "Bind a plant",
	"bind_code":        "The code printed on the pot",
	"bind_hint":        "Type the code printed under the QR code on the pot (it starts with s1.), or scan it in WeChat.",
	"bind_unavailable": "Binding is not available here: scan the QR code on the pot in the official account.",
	"bad_code":         "That code is not valid: check it and try again",
	"bind_done":        "Bound!",
	"bind_already":     "You have already bound this pot",
	"bind_unknown":     "No such pot, or it has been retired",
	"open_plant":       "Open the plant",
	"scan":             "Scan",
	"wifi_setup":       "Set up the pot's WiFi",
	"wifi_wechat":      "Connect the phone to a 2.4 GHz WiFi, power the pot on, then tap the button and enter the WiFi password.",
	"wifi_button":      "Configure WiFi",
	"wifi_ok":          "WiFi sent to the pot: wait for it to come online",
	"wifi_fail":        "WiFi setup did not succeed, try again",
	"wifi_step1":       "Power the pot on. A pot that is not online yet waits for WiFi setup (AirKiss / ESP-TOUCH).",
	"wifi_step2":       "Connect the phone to your 2.4 GHz WiFi (the pot does not support 5 GHz).",
	"wifi_step3":       "Open this page in WeChat and tap \"Configure WiFi\" (AirKiss), or enter the WiFi password in Espressif's ESP-TOUCH app.",
	"wifi_step4":       "Once connected, the pot shows \"online\" in My plants.",
	"lang_other":       "中文",
	"lang_other_q":     "zh",
}
