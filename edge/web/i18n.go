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
	"title":          "我的植物",
	"plant":          "植物",
	"no_plants":      "还没有绑定的花盆。扫描花盆上的二维码即可绑定。",
	"online":         "在线",
	"offline":        "离线",
	"moisture":       "土壤湿度",
	"temperature":    "温度",
	"tank":           "水箱",
	"updated":        "更新于",
	"no_reading":     "暂无数据",
	"water":          "立即浇水",
	"watering":       "浇水中…",
	"owner":          "主人",
	"member":         "家人",
	"chart":          "最近 24 小时",
	"chart_empty":    "最近 24 小时没有数据",
	"back":           "返回",
	"alert_ok":       "一切正常",
	"soil_dry":       "土壤太干",
	"too_hot":        "温度过高",
	"tank_empty":     "水箱没水了",
	"pump_fault":     "水泵故障",
	"done":           "浇水完成",
	"pot_offline":    "花盆离线，没有浇水",
	"failed":         "浇水失败",
	"rejected":       "花盆拒绝了浇水",
	"busy":           "花盆正忙，请稍后再试",
	"timed_out":      "花盆没有及时回应（超时）",
	"unknown_device": "找不到这个花盆",
	"invalid":        "请求无效",
	"not_bound":      "你没有绑定这个花盆",
	"unavailable":    "服务暂时不可用，请稍后再试",
	"too_many":       "操作太频繁，请稍后再试",
	"not_found":      "找不到这个花盆",
	"err_state":      "登录已过期，请重新打开页面",
	"err_signin":     "微信登录失败，请重新打开页面",
	"signed_out":     "已退出",
	"error":          "出错了",
	"lang_other":     "English",
	"lang_other_q":   "en",
}

var textsEN = map[string]string{
	"title":          "My plants",
	"plant":          "Plant",
	"no_plants":      "No pots bound yet. Scan the QR code on a pot to bind it.",
	"online":         "online",
	"offline":        "offline",
	"moisture":       "Soil moisture",
	"temperature":    "Temperature",
	"tank":           "Tank",
	"updated":        "updated",
	"no_reading":     "no readings yet",
	"water":          "Water now",
	"watering":       "Watering…",
	"owner":          "owner",
	"member":         "family",
	"chart":          "Last 24 hours",
	"chart_empty":    "No readings in the last 24 hours",
	"back":           "Back",
	"alert_ok":       "All good",
	"soil_dry":       "Soil is dry",
	"too_hot":        "Too hot",
	"tank_empty":     "Tank is empty",
	"pump_fault":     "Pump fault",
	"done":           "Watering done",
	"pot_offline":    "The pot is offline: nothing was sent",
	"failed":         "Watering failed",
	"rejected":       "The pot refused to water",
	"busy":           "The pot is busy, try again shortly",
	"timed_out":      "The pot did not answer in time (timed out)",
	"unknown_device": "No such pot",
	"invalid":        "Invalid request",
	"not_bound":      "You are not bound to this pot",
	"unavailable":    "Temporarily unavailable, try again shortly",
	"too_many":       "Too many taps, wait a moment",
	"not_found":      "No such pot",
	"err_state":      "Sign-in expired: open the page again",
	"err_signin":     "WeChat sign-in failed: open the page again",
	"signed_out":     "Signed out",
	"error":          "Something went wrong",
	"lang_other":     "中文",
	"lang_other_q":   "zh",
}
