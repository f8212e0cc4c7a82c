package wechatsim

import (
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The phone-chat rendering of conversations (GET /_sim/chat, /_sim/chat/{openid}): what each
// simulated user would see in WeChat, plus, in grey, what happened out of their sight (callbacks
// that were not answered, receipts, sends WeChat refused, in red).

// errMeaning is what each errcode means, in Chinese, for the chat's red lines.
var errMeaning = map[int]string{
	-1:    "系统繁忙，请稍后再试",
	40001: "access_token 无效或不是最新的",
	40003: "不合法的 OpenID（不是本公众号的用户）",
	40037: "不合法的模板 ID",
	40097: "参数错误",
	40164: "调用接口的 IP 不在白名单中",
	41001: "缺少 access_token",
	42001: "access_token 已过期",
	43004: "用户未关注公众号（已取消关注），无法下发",
	45009: "模板消息超过每日调用限额",
	45011: "接口调用超过频率限制",
	45015: "超出客服消息时限：用户最近没有可开启客服消息的互动",
	45047: "客服消息下发条数超过限制（本次互动允许的条数已用完）",
	47001: "数据格式错误",
	47003: "模板参数不合法",
	48001: "接口未授权",
}

var cst = time.FixedZone("CST", 8*3600)

type chatLine struct {
	Side    string // "me" (right), "them" (left), "sys" (centre)
	Class   string // extra CSS class
	Time    string // a time label shown above the line ("" = none)
	Label   string // a small caption above a bubble
	Text    string
	Card    *chatCard
	Refused *chatRefused
	Note    string // a small grey or red note under the line
	NoteRed bool
}

type chatCard struct {
	Title  string
	Date   string
	Fields []TemplateField
	URL    string
}

type chatRefused struct {
	What    string // 客服消息 / 模板消息「title」
	Preview string
	Code    int
	Meaning string
	Errmsg  string
	Detail  string // WeChat's errmsg when it names the field at fault
}

// showable replaces what the chat's fonts cannot draw (emoji outside the BMP) with a marker.
func showable(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r > 0xFFFF {
			b.WriteString("[表情]")
		} else {
			b.WriteRune(r)
		}
	}
	return b.String()
}

func describeEvent(e Entry) (side, text, note string) {
	switch e.MsgType {
	case "text":
		return "me", e.Text, ""
	case "location":
		return "me", "[位置] " + e.Text, ""
	case "device_text":
		return "sys", "设备通过微信发来数据", ""
	case "device_event":
		switch e.Event {
		case "bind":
			return "sys", "你绑定了设备 " + e.DeviceID, ""
		case "unbind":
			return "sys", "你解除了与设备 " + e.DeviceID + " 的绑定", ""
		case "subscribe_status":
			return "sys", "微信订阅了设备 " + e.DeviceID + " 的状态", ""
		case "unsubscribe_status":
			return "sys", "微信取消订阅设备 " + e.DeviceID + " 的状态", ""
		}
	case "event":
		switch e.Event {
		case "subscribe":
			if strings.HasPrefix(e.Text, "qrscene_") {
				return "sys", "你扫描二维码关注了公众号", ""
			}
			return "sys", "你关注了公众号", ""
		case "unsubscribe":
			return "sys", "你取消关注了公众号", ""
		case "SCAN":
			return "sys", "你扫描了公众号的二维码", ""
		case "CLICK":
			return "me", "点击菜单「" + e.Text + "」", ""
		case "VIEW":
			return "sys", "你打开了菜单链接", e.Text
		case "LOCATION":
			return "sys", "微信上报了你的位置", ""
		}
	}
	return "sys", e.MsgType + " " + e.Event, ""
}

func (p *Platform) chatLines(es []Entry) []chatLine {
	var out []chatLine
	var last time.Time
	for _, e := range es {
		var l chatLine
		switch {
		case e.Kind == KindCallback:
			l.Side, l.Text, l.Note = describeEvent(e)
			if e.Status == 0 {
				l.Note, l.NoteRed = fmt.Sprintf("Sprout 没有应答（重试 %d 次）", e.Attempts), true
			} else if e.Status != http.StatusOK {
				l.Note, l.NoteRed = fmt.Sprintf("该公众号暂时无法提供服务，请稍后再试（HTTP %d）", e.Status), true
			}
		case e.Kind == KindReceipt:
			l.Side, l.Class = "sys", "muted"
			l.Text = "模板消息送达回执：" + deliveryText(e.Delivery)
		case e.Kind == KindScanText:
			l.Side, l.Label, l.Text = "me", "扫一扫", e.Text
			l.Note = "微信只显示了这段文字，没有通知公众号"
			if e.Errmsg != "" {
				l.Note = e.Errmsg
			}
		case e.Kind == KindPage:
			l.Side, l.Class = "sys", "muted"
			l.Text = "在微信中打开网页 " + e.URL
			if e.Errmsg != "" {
				l.Note, l.NoteRed = "网页无法打开："+e.Errmsg, true
			} else if e.Status != http.StatusOK {
				l.Note, l.NoteRed = fmt.Sprintf("网页返回 HTTP %d", e.Status), true
			}
		case e.Kind == KindReply && e.MsgType == "text":
			l.Side, l.Text = "them", e.Text
		case e.Kind == KindReply && e.MsgType == "device_status":
			l.Side, l.Class, l.Text = "sys", "muted", "设备 "+e.DeviceID+" 状态："+map[string]string{"0": "未连接", "1": "已连接"}[e.DeviceStatus]
		case e.Kind == KindReply:
			l.Side, l.Class, l.Text = "sys", "muted", fmt.Sprintf("回复了 %s 消息", e.MsgType)
		case e.Kind == KindCustomText:
			l.Side, l.Text = "them", e.Text
		case e.Kind == KindTemplate:
			l.Side = "them"
			l.Card = &chatCard{Title: e.Title, Date: e.At.In(cst).Format("1月2日"), Fields: e.Fields, URL: e.URL}
			if e.Delivery != "" && e.Delivery != DeliverySuccess {
				l.Class = "undelivered"
				l.Note, l.NoteRed = "未送达："+deliveryText(e.Delivery)+"（用户看不到这条消息）", true
			}
		case e.Kind == KindRefused:
			l.Side = "them"
			r := &chatRefused{Code: e.Errcode, Meaning: errMeaning[e.Errcode], Errmsg: e.Errmsg, Preview: e.Text}
			if r.Meaning == "" {
				r.Meaning = "错误码 " + strconv.Itoa(e.Errcode)
			}
			if e.Attempted == KindTemplate {
				r.What = "模板消息"
				if e.Title != "" {
					r.What += "「" + e.Title + "」"
				} else if e.TemplateID != "" {
					r.What += " " + e.TemplateID
				}
				var parts []string
				for _, f := range e.Fields {
					if f.Value != "" {
						parts = append(parts, f.Value)
					}
				}
				r.Preview = strings.Join(parts, " / ")
			} else {
				r.What = "客服消息"
			}
			r.Preview = showable(r.Preview)
			if e.Errcode == 47003 && e.Errmsg != "" {
				r.Detail = e.Errmsg
			}
			l.Refused = r
		case e.Kind == KindTransMsg:
			l.Side, l.Class, l.Text = "sys", "muted", fmt.Sprintf("发送给设备 %s 的数据（%d 字节）", e.DeviceID, len(e.Payload))
		case e.Kind == KindDeviceStatus:
			l.Side, l.Class, l.Text = "sys", "muted", "设备 "+e.DeviceID+" 状态推送："+map[string]string{"0": "未连接", "1": "已连接"}[e.DeviceStatus]
		default:
			continue
		}
		if last.IsZero() || e.At.Sub(last) > 5*time.Minute || e.At.In(cst).Day() != last.In(cst).Day() {
			l.Time = e.At.In(cst).Format("1月2日 15:04")
		}
		last = e.At
		out = append(out, l)
	}
	return out
}

func deliveryText(s string) string {
	switch s {
	case DeliverySuccess, "":
		return "成功"
	case DeliveryUserBlock:
		return "用户拒收（" + s + "）"
	case DeliverySystemFailed:
		return "系统原因失败（" + s + "）"
	}
	return s
}

const chatCSS = `
*{box-sizing:border-box}
body{margin:0;background:#d9d9d9;font-family:"PingFang SC","Noto Sans CJK SC","Noto Sans SC","Source Han Sans SC","WenQuanYi Micro Hei","Microsoft YaHei",sans-serif;color:#111}
.phone{width:390px;min-height:100vh;margin:0 auto;background:#ededed;display:flex;flex-direction:column}
.bar{background:#ededed;border-bottom:1px solid #d6d6d6;padding:14px 12px;text-align:center;font-size:17px;font-weight:600;position:sticky;top:0}
.bar a{position:absolute;left:12px;color:#111;text-decoration:none;font-weight:400}
.bar small{display:block;font-size:11px;color:#888;font-weight:400}
.msgs{padding:8px 10px 24px;flex:1}
.time{text-align:center;color:#999;font-size:12px;margin:14px 0 6px}
.row{display:flex;margin:8px 0;align-items:flex-start}
.row.me{flex-direction:row-reverse}
.av{width:38px;height:38px;border-radius:5px;flex:none;display:flex;align-items:center;justify-content:center;color:#fff;font-size:15px}
.them .av{background:#3a9b5c}.me .av{background:#5b7db1}
.col{max-width:262px;margin:0 9px;display:flex;flex-direction:column}
.me .col{align-items:flex-end}
.bubble{padding:9px 11px;border-radius:5px;font-size:15px;line-height:1.45;white-space:pre-wrap;word-break:break-word;background:#fff}
.me .bubble{background:#95ec69}
.cap{font-size:11px;color:#888;margin-bottom:3px}
.sys{text-align:center;margin:8px 0}
.sys span{display:inline-block;background:#dadada;color:#555;font-size:12px;padding:3px 8px;border-radius:4px;max-width:330px;word-break:break-all}
.sys.muted span{background:transparent;color:#9a9a9a}
.note{font-size:11px;color:#999;margin-top:3px;max-width:262px;word-break:break-all}
.note.red,.sys .note.red{color:#e64340}
.card{background:#fff;border-radius:6px;width:262px;font-size:14px;overflow:hidden}
.card h3{margin:0;padding:12px 14px 2px;font-size:16px;font-weight:600}
.card .date{padding:0 14px 8px;color:#999;font-size:12px}
.card .fields{padding:4px 14px 10px}
.card .f{margin:3px 0;line-height:1.45}
.card .k{color:#888}
.card .v{color:#222;word-break:break-all}
.card .link{display:flex;justify-content:space-between;border-top:1px solid #eee;padding:10px 14px;color:#111;text-decoration:none}
.card .link:after{content:"›";color:#bbb}
.undelivered .card{opacity:.45}
.refused{background:#fff0f0;border:1px solid #e64340;border-radius:6px;padding:8px 11px;font-size:13px;color:#e64340;max-width:262px}
.refused b{display:block;margin-bottom:2px}
.refused .why{font-size:11px;color:#b55;margin-top:3px;overflow-wrap:anywhere}
.refused .pv{color:#a33;white-space:pre-wrap;word-break:break-word;margin-top:4px;font-size:12px}
.list a{display:flex;justify-content:space-between;padding:14px 12px;background:#fff;border-bottom:1px solid #eee;color:#111;text-decoration:none}
.list small{color:#999}
`

var chatTmpl = template.Must(template.New("chat").Parse(`<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>{{.Title}}</title><style>` + chatCSS + `</style></head><body><div class="phone">
<div class="bar">{{if .Back}}<a href="{{.Back}}">‹</a>{{end}}{{.Name}}<small>{{.Sub}}</small></div>
{{if .Users}}<div class="list">{{range .Users}}<a href="{{.Href}}"><span>{{.OpenID}}<br><small>{{.Last}}</small></span><small>{{.State}}</small></a>{{end}}</div>
{{else if .Lines}}<div class="msgs">{{range .Lines}}
{{if .Time}}<div class="time">{{.Time}}</div>{{end}}
{{if eq .Side "sys"}}<div class="sys {{.Class}}"><span>{{.Text}}</span>{{if .Note}}<div class="note{{if .NoteRed}} red{{end}}">{{.Note}}</div>{{end}}</div>
{{else}}<div class="row {{.Side}} {{.Class}}"><div class="av">{{if eq .Side "me"}}我{{else}}芽{{end}}</div><div class="col">
{{if .Label}}<div class="cap">{{.Label}}</div>{{end}}
{{if .Card}}<div class="card"><h3>{{.Card.Title}}</h3><div class="date">{{.Card.Date}}</div><div class="fields">{{range .Card.Fields}}<div class="f">{{if .Label}}<span class="k">{{.Label}}：</span>{{end}}<span class="v">{{.Value}}</span></div>{{end}}</div>{{if .Card.URL}}<a class="link" href="{{.Card.URL}}">查看详情</a>{{end}}</div>
{{else if .Refused}}<div class="refused"><b>{{.Refused.What}}发送失败（{{.Refused.Code}}）</b>{{.Refused.Meaning}}{{if .Refused.Detail}}<div class="why">{{.Refused.Detail}}</div>{{end}}{{if .Refused.Preview}}<div class="pv">{{.Refused.Preview}}</div>{{end}}</div>
{{else}}<div class="bubble">{{.Text}}</div>{{end}}
{{if .Note}}<div class="note{{if .NoteRed}} red{{end}}">{{.Note}}</div>{{end}}
</div></div>{{end}}{{end}}</div>
{{else}}<div class="msgs"><div class="sys"><span>{{.Empty}}</span></div></div>{{end}}
</div></body></html>`))

type chatUser struct {
	OpenID, Href, Last, State string
}

type chatPage struct {
	Title, Name, Sub, Back, Empty string
	Users                         []chatUser
	Lines                         []chatLine
}

// AccountName is the account's display name in the chat pages.
func (p *Platform) accountName() string { return "Sprout 智能花盆（" + p.opts.AccountID + "）" }

func (p *Platform) handleChatIndex(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	ids := make([]string, 0, len(p.users))
	for id := range p.users {
		ids = append(ids, id)
	}
	for id := range p.entries {
		if p.users[id] == nil {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	pg := chatPage{Title: "模拟微信：用户会话", Name: "模拟微信用户", Sub: p.accountName(), Empty: "还没有用户"}
	for _, id := range ids {
		cu := chatUser{OpenID: id, Href: "/_sim/chat/" + url.PathEscape(id), State: "未关注"}
		if st := p.users[id]; st != nil && st.subscribed {
			cu.State = "已关注"
		} else if st == nil {
			cu.State = "未知用户"
		}
		if es := p.entries[id]; len(es) > 0 {
			cu.Last = es[len(es)-1].At.In(cst).Format("1月2日 15:04")
		}
		pg.Users = append(pg.Users, cu)
	}
	p.mu.Unlock()
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	chatTmpl.Execute(w, pg)
}

func (p *Platform) handleChat(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("openid")
	es := p.Conversation(id)
	p.mu.Lock()
	st := p.users[id]
	sub := "未关注"
	if st != nil && st.subscribed {
		sub = "已关注"
	}
	p.mu.Unlock()
	if st == nil && len(es) == 0 {
		http.Error(w, "no such user", http.StatusNotFound)
		return
	}
	pg := chatPage{Title: "模拟微信：" + id, Name: p.accountName(), Sub: id + " · " + sub, Back: "/_sim/chat",
		Lines: p.chatLines(es), Empty: "还没有消息"}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	chatTmpl.Execute(w, pg)
}

func (p *Platform) handleIndex(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	fmt.Fprintf(w, `<!doctype html><html lang="zh-CN"><meta charset="utf-8"><title>wechatsim</title><h1>Simulated WeChat account %s</h1>`,
		template.HTMLEscapeString(p.opts.AccountID))
	fmt.Fprint(w, `<ul><li><a href="/_sim/chat">用户会话（手机聊天界面）</a></li><li><a href="/_sim/conversations">JSON: /_sim/conversations</a></li></ul>`)
}
