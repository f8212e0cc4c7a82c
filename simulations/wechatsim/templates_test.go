package wechatsim_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sprout-iot/sprout/simulations/wechatsim"
)

func TestTheAccountListsItsTemplates(t *testing.T) {
	p := start(t, wechatsim.Options{})
	a := newAPI(t, p)
	m := a.get("/cgi-bin/template/get_all_private_template")
	list, _ := m["template_list"].([]any)
	if len(list) != 6 {
		t.Fatalf("template_list %v", m)
	}
	byID := map[string]map[string]any{}
	for _, x := range list {
		tm := x.(map[string]any)
		byID[tm["template_id"].(string)] = tm
	}
	want := map[string]string{
		"tmpl_alert_raised":    "设备名称：{{thing1.DATA}}\n告警内容：{{thing2.DATA}}\n当前数值：{{character_string3.DATA}}\n告警时间：{{time4.DATA}}",
		"tmpl_alert_cleared":   "设备名称：{{thing1.DATA}}\n恢复内容：{{thing2.DATA}}\n恢复时间：{{time3.DATA}}",
		"tmpl_command_outcome": "设备名称：{{thing1.DATA}}\n操作：{{thing2.DATA}}\n结果：{{phrase3.DATA}}\n完成时间：{{time4.DATA}}",
		"tmpl_device_notice":   "设备名称：{{thing1.DATA}}\n设备状态：{{phrase2.DATA}}\n说明：{{thing3.DATA}}\n时间：{{time4.DATA}}",
		"tmpl_join_request":    "设备名称：{{thing1.DATA}}\n申请人：{{thing2.DATA}}\n申请时间：{{time3.DATA}}",
		"tmpl_legacy_notice":   "{{first.DATA}}\n设备：{{keyword1.DATA}}\n内容：{{keyword2.DATA}}\n时间：{{keyword3.DATA}}\n{{remark.DATA}}",
	}
	for id, content := range want {
		tm := byID[id]
		if tm == nil || tm["content"] != content || tm["title"] == "" || tm["example"] == "" || tm["primary_industry"] == "" {
			t.Errorf("%s: %v", id, tm)
		}
	}
	own := start(t, wechatsim.Options{Templates: []wechatsim.Template{{ID: "x", Title: "T", Content: "{{thing1.DATA}}"}}})
	if l := newAPI(t, own).get("/cgi-bin/template/get_all_private_template")["template_list"].([]any); len(l) != 1 {
		t.Fatalf("own templates: %v", l)
	}
}

func TestTemplateSendsAreCheckedAgainstTheTemplate(t *testing.T) {
	p := start(t, wechatsim.Options{})
	newSprout(t, p)
	a := newAPI(t, p)
	u := p.NewUser("oT")
	u.Subscribe(ctx5(t))
	with := func(k, v string) map[string]string {
		d := alertData()
		if v == "<delete>" {
			delete(d, k)
		} else {
			d[k] = v
		}
		return d
	}
	cases := []struct {
		name, id, url string
		data          map[string]string
		code          int
	}{
		{"valid", "tmpl_alert_raised", "https://sprout.example/pots/p1", alertData(), 0},
		{"unknown template", "tmpl_nope", "", alertData(), 40037},
		{"missing key", "tmpl_alert_raised", "", with("time4", "<delete>"), 47003},
		{"extra key", "tmpl_alert_raised", "", with("remark", "hello"), 47003},
		{"Sprout's old fixed keys", "tmpl_alert_raised", "", map[string]string{"device": "a", "alert": "b", "detail": "c"}, 47003},
		{"thing over 20", "tmpl_alert_raised", "", with("thing1", strings.Repeat("绿", 21)), 47003},
		{"thing of 20", "tmpl_alert_raised", "", with("thing1", strings.Repeat("绿", 20)), 0},
		{"emoji", "tmpl_alert_raised", "", with("thing2", "土壤太干🌵"), 47003},
		{"BMP pictograph", "tmpl_alert_raised", "", with("thing2", "土壤太干☀"), 47003},
		{"character_string with Chinese", "tmpl_alert_raised", "", with("character_string3", "百分之十二"), 47003},
		{"character_string over 32", "tmpl_alert_raised", "", with("character_string3", strings.Repeat("1", 33)), 47003},
		{"time as words", "tmpl_alert_raised", "", with("time4", "刚刚"), 47003},
		{"time clock only", "tmpl_alert_raised", "", with("time4", "15:01"), 0},
		{"time in Chinese", "tmpl_alert_raised", "", with("time4", "2026年12月3日 15:01"), 0},
		{"empty value", "tmpl_alert_raised", "", with("thing1", ""), 47003},
		{"phrase of 5 Chinese", "tmpl_command_outcome", "", map[string]string{"thing1": "绿萝", "thing2": "浇水5秒", "phrase3": "执行成功了", "time4": "13:06"}, 0},
		{"phrase over 5", "tmpl_command_outcome", "", map[string]string{"thing1": "绿萝", "thing2": "浇水5秒", "phrase3": "已经执行成功", "time4": "13:06"}, 47003},
		{"phrase not Chinese", "tmpl_command_outcome", "", map[string]string{"thing1": "绿萝", "thing2": "浇水5秒", "phrase3": "ok", "time4": "13:06"}, 47003},
		{"legacy keywords", "tmpl_legacy_notice", "", map[string]string{"first": "您的设备有新通知", "keyword1": "绿萝", "keyword2": "土壤太干", "keyword3": "13:05", "remark": "点击查看"}, 0},
		{"legacy keyword over 200", "tmpl_legacy_notice", "", map[string]string{"first": "x", "keyword1": strings.Repeat("a", 201), "keyword2": "b", "keyword3": "c", "remark": "d"}, 47003},
		{"url not http", "tmpl_alert_raised", "ftp://sprout.example/p", alertData(), 47003},
		{"url relative", "tmpl_alert_raised", "/pots/p1", alertData(), 47003},
	}
	for _, tc := range cases {
		m := a.template("oT", tc.id, tc.url, tc.data)
		if code := errcode(m); code != tc.code {
			t.Errorf("%s: errcode %d (%v), want %d", tc.name, code, m["errmsg"], tc.code)
			continue
		}
		e := lastSend(p, "oT")
		if tc.code == 0 && (e.Kind != wechatsim.KindTemplate || m["msgid"] == nil) {
			t.Errorf("%s: accepted but recorded %+v", tc.name, e)
		}
		if tc.code != 0 && (e.Kind != wechatsim.KindRefused || e.Errcode != tc.code || e.Attempted != wechatsim.KindTemplate) {
			t.Errorf("%s: refusal recorded as %+v", tc.name, e)
		}
	}
}

func TestATemplateCardRendersTheTemplatesLines(t *testing.T) {
	p := start(t, wechatsim.Options{})
	newSprout(t, p)
	a := newAPI(t, p)
	p.NewUser("oCARD").Subscribe(ctx5(t))
	a.template("oCARD", "tmpl_alert_raised", "https://sprout.example/p/1", alertData())
	e, err := p.WaitFor("oCARD", time.Second, func(e wechatsim.Entry) bool { return e.Kind == wechatsim.KindTemplate })
	if err != nil {
		t.Fatal(err)
	}
	if e.Title != "设备告警通知" || len(e.Fields) != 4 || e.Fields[0] != (wechatsim.TemplateField{Label: "设备名称", Key: "thing1", Value: "阳台的绿萝"}) ||
		e.Fields[3].Value != "2026-12-03 13:05" || e.URL != "https://sprout.example/p/1" || e.Delivery != wechatsim.DeliverySuccess {
		t.Fatalf("card %+v", e)
	}
}

func TestEveryAcceptedTemplateIsFollowedByItsReceipt(t *testing.T) {
	p := start(t, wechatsim.Options{EncodingAESKey: aesKey})
	s := newSprout(t, p)
	a := newAPI(t, p)
	u := p.NewUser("oRCPT")
	u.Subscribe(ctx5(t))
	s.next() // subscribe
	m := a.template("oRCPT", "tmpl_alert_raised", "", alertData())
	r := s.next()
	msgid := strconv.FormatInt(int64(m["msgid"].(float64)), 10)
	if r.MsgType != "event" || r.Event != "TEMPLATESENDJOBFINISH" || r.MsgID != msgid || r.Status != "success" ||
		r.FromUserName != "oRCPT" || r.Query.Get("encrypt_type") != "aes" {
		t.Fatalf("receipt %+v for msgid %s", r, msgid)
	}
	// The user blocked the account's templates: still accepted, the receipt says so, and the
	// user sees nothing.
	u.SetDeliveryStatus(wechatsim.DeliveryUserBlock)
	m = a.template("oRCPT", "tmpl_alert_cleared", "", map[string]string{"thing1": "绿萝", "thing2": "土壤湿度已恢复", "time3": "15:01"})
	if errcode(m) != 0 {
		t.Fatalf("blocked user's send: %v", m)
	}
	r = s.next()
	if r.Status != "failed:user block" {
		t.Fatalf("receipt status %q", r.Status)
	}
	card, _ := p.WaitFor("oRCPT", time.Second, func(e wechatsim.Entry) bool {
		return e.Kind == wechatsim.KindTemplate && e.TemplateID == "tmpl_alert_cleared"
	})
	if card.Delivery != wechatsim.DeliveryUserBlock {
		t.Fatalf("card %+v", card)
	}
}

func TestAHeldReceiptArrivesLateAndAnUnansweredOneIsRetried(t *testing.T) {
	p := start(t, wechatsim.Options{CallbackTimeout: 200 * time.Millisecond})
	s := newSprout(t, p)
	a := newAPI(t, p)
	p.NewUser("oLATE").Subscribe(ctx5(t))
	s.next()
	p.HoldReceipts()
	m1 := a.template("oLATE", "tmpl_alert_raised", "", alertData())
	m2 := a.template("oLATE", "tmpl_alert_raised", "", alertData())
	a.cs("oLATE", "in between") // the subscribe's window is still open
	if n := len(s.all()); n != 1 {
		t.Fatalf("%d pushes while receipts are held", n)
	}
	s.answer = func(n int, m push) (time.Duration, string) {
		if n == 2 {
			return time.Second, "" // the first receipt's first attempt gets no answer
		}
		return 0, "success"
	}
	p.ReleaseReceipts()
	id := func(m map[string]any) string { return strconv.FormatInt(int64(m["msgid"].(float64)), 10) }
	if _, err := p.WaitFor("oLATE", 5*time.Second, func(e wechatsim.Entry) bool {
		return e.Kind == wechatsim.KindReceipt && strconv.FormatInt(e.MsgID, 10) == id(m2)
	}); err != nil {
		t.Fatal(err)
	}
	ps := s.all()
	if len(ps) != 4 {
		t.Fatalf("%d pushes, want subscribe, receipt 1 twice, receipt 2: %+v", len(ps), p.Conversation("oLATE"))
	}
	r1, r2, r3 := ps[1], ps[2], ps[3]
	if r1.MsgID != id(m1) || r2.MsgID != id(m1) || r3.MsgID != id(m2) {
		t.Fatalf("receipts %s %s %s, want %s (twice: retried) then %s", r1.MsgID, r2.MsgID, r3.MsgID, id(m1), id(m2))
	}
	if r1.Raw != r2.Raw {
		t.Fatal("the retried receipt changed")
	}
}

func TestTheDailyTemplateQuotaAnswers45009UntilTheNextDay(t *testing.T) {
	c := newClock()
	p := start(t, wechatsim.Options{Clock: c.Now, TemplateDailyQuota: 2, TokenTTL: 1000 * time.Hour})
	newSprout(t, p)
	a := newAPI(t, p)
	p.NewUser("oQ").Subscribe(ctx5(t))
	for i := 0; i < 2; i++ {
		if code := errcode(a.template("oQ", "tmpl_alert_raised", "", alertData())); code != 0 {
			t.Fatalf("send %d: %d", i, code)
		}
	}
	if code := errcode(a.template("oQ", "tmpl_alert_raised", "", alertData())); code != 45009 {
		t.Fatalf("over quota: %d, want 45009", code)
	}
	c.Advance(24 * time.Hour)
	if code := errcode(a.template("oQ", "tmpl_alert_raised", "", alertData())); code != 0 {
		t.Fatalf("next day: %d", code)
	}
}

func TestARepeatedClientMsgIDIsSentOnce(t *testing.T) {
	p := start(t, wechatsim.Options{})
	newSprout(t, p)
	a := newAPI(t, p)
	p.NewUser("oDUP").Subscribe(ctx5(t))
	body := map[string]any{"touser": "oDUP", "template_id": "tmpl_join_request", "client_msg_id": "push-7",
		"data": map[string]any{"thing1": map[string]string{"value": "绿萝"}, "thing2": map[string]string{"value": "小明"}, "time3": map[string]string{"value": "13:40"}}}
	m1 := a.post("/cgi-bin/message/template/send", body)
	m2 := a.post("/cgi-bin/message/template/send", body)
	if errcode(m1) != 0 || m1["msgid"] != m2["msgid"] {
		t.Fatalf("%v / %v", m1, m2)
	}
	n := 0
	for _, e := range p.Conversation("oDUP") {
		if e.Kind == wechatsim.KindTemplate {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d cards", n)
	}
}
