package console

import (
	"net/http"
	"strings"
)

// langOf picks the page language: ?lang=en|zh, else Accept-Language, else Chinese. The choice
// in the URL is kept on the language link; the console is used from a few desks, so it does
// not remember more than that.
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

// tr is the text for key in lang (Chinese when English lacks it, the key when both do).
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
	"title":          "Sprout 控制台",
	"fleet":          "设备",
	"provision":      "批量生产",
	"sign_in":        "登录",
	"sign_out":       "退出",
	"admin_token":    "管理员令牌",
	"wrong_token":    "令牌错误",
	"too_many":       "尝试次数太多，请一分钟后再试",
	"search":         "按 ID 前缀搜索",
	"find":           "搜索",
	"id":             "ID",
	"product":        "产品",
	"status":         "状态",
	"online":         "在线",
	"offline":        "离线",
	"revoked":        "已吊销",
	"alerts":         "告警",
	"firmware":       "固件",
	"last_seen":      "最后在线",
	"created":        "创建于",
	"next":           "下一页 ›",
	"first":          "‹ 第一页",
	"no_devices":     "没有设备",
	"summary":        "本页在线",
	"no_answer":      "未响应",
	"state":          "状态",
	"readings":       "最新读数",
	"events":         "事件记录",
	"commands":       "命令",
	"water":          "浇水",
	"read_now":       "立即读数",
	"reboot":         "重启",
	"revoke":         "吊销设备",
	"revoke_confirm": "吊销后该设备无法再连接或绑定，确定吗？",
	"revoked_ok":     "设备已吊销",
	"outcome":        "命令结果",
	"moisture":       "土壤湿度",
	"temperature":    "温度",
	"tank":           "水箱",
	"supply":         "电压",
	"time":           "时间",
	"kind":           "类型",
	"detail":         "内容",
	"none":           "无",
	"open_commands":  "进行中的命令",
	"report_every":   "上报间隔",
	"count":          "数量",
	"prefix":         "ID 前缀（可选，如 pot-2026a-）",
	"create":         "创建设备",
	"secret":         "密钥",
	"secrets_once":   "密钥只显示这一次：请现在保存或打印。",
	"print_sheet":    "打印二维码",
	"no_qr":          "这个产品没有配置二维码密钥（--qr-keys），没有二维码。",
	"created_n":      "已创建设备：",
	"batch_stopped":  "批量创建中断：",
	"bad_batch":      "数量须为 1 到上限之间，产品和前缀只能用字母、数字、- 和 _",
	"unknown_device": "找不到这个设备",
	"unavailable":    "服务暂时不可用，请稍后再试",
	"back":           "返回",
	"done":           "完成",
	"failed":         "失败",
	"rejected":       "设备拒绝了命令",
	"busy":           "设备正忙",
	"timed_out":      "设备没有及时回应（超时）",
	"invalid":        "请求无效",
	"error":          "出错了",
	"lang_other":     "English",
	"lang_other_q":   "en",
}

var textsEN = map[string]string{
	"title":          "Sprout console",
	"fleet":          "Fleet",
	"provision":      "Provision",
	"sign_in":        "Sign in",
	"sign_out":       "Sign out",
	"admin_token":    "Admin token",
	"wrong_token":    "Wrong token",
	"too_many":       "Too many attempts: try again in a minute",
	"search":         "Search by id prefix",
	"find":           "Search",
	"id":             "ID",
	"product":        "Product",
	"status":         "Status",
	"online":         "online",
	"offline":        "offline",
	"revoked":        "revoked",
	"alerts":         "Alerts",
	"firmware":       "Firmware",
	"last_seen":      "Last seen",
	"created":        "Created",
	"next":           "Next ›",
	"first":          "‹ First",
	"no_devices":     "No devices",
	"summary":        "Online on this page",
	"no_answer":      "no answer",
	"state":          "State",
	"readings":       "Latest readings",
	"events":         "Event log",
	"commands":       "Commands",
	"water":          "Water",
	"read_now":       "Read now",
	"reboot":         "Reboot",
	"revoke":         "Revoke device",
	"revoke_confirm": "A revoked device can no longer connect or be bound. Revoke it?",
	"revoked_ok":     "Device revoked",
	"outcome":        "Command outcome",
	"moisture":       "Soil moisture",
	"temperature":    "Temperature",
	"tank":           "Tank",
	"supply":         "Supply",
	"time":           "Time",
	"kind":           "Kind",
	"detail":         "Detail",
	"none":           "none",
	"open_commands":  "Open commands",
	"report_every":   "Reports every",
	"count":          "Count",
	"prefix":         "Id prefix (optional, e.g. pot-2026a-)",
	"create":         "Create devices",
	"secret":         "Secret",
	"secrets_once":   "Secrets are shown only this once: save or print them now.",
	"print_sheet":    "Print QR sheet",
	"no_qr":          "No QR key is configured for this product (--qr-keys): no QR codes.",
	"created_n":      "Devices created:",
	"batch_stopped":  "The batch stopped:",
	"bad_batch":      "Count must be between 1 and the limit; product and prefix may use letters, digits, - and _ only",
	"unknown_device": "No such device",
	"unavailable":    "Temporarily unavailable, try again shortly",
	"back":           "Back",
	"done":           "the device carried it out",
	"failed":         "failed",
	"rejected":       "the device refused the command",
	"busy":           "the device is busy",
	"timed_out":      "the device did not answer in time (timed out)",
	"invalid":        "invalid request",
	"error":          "Something went wrong",
	"lang_other":     "中文",
	"lang_other_q":   "zh",
}
