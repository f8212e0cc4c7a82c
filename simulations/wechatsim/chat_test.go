package wechatsim_test

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/sprout-iot/sprout/edge/webtest"
	"github.com/sprout-iot/sprout/simulations/wechatsim"
)

// chatScript plays a conversation the way Sprout and a user would make it: a label scanned by a
// non-follower, a welcome, a tap on "water now" answered, a result sent too late as a
// customer-service text (refused) and then as a template card, an alert, a template Sprout got
// wrong (refused), and the user thanking.
func chatScript(t *testing.T) (*wechatsim.Platform, *wechatsim.User) {
	c := newClock()
	p := start(t, wechatsim.Options{Clock: c.Now, TokenTTL: 1000 * time.Hour})
	s := newSprout(t, p)
	s.answer = func(n int, m push) (time.Duration, string) {
		switch {
		case m.Event == "subscribe":
			return 0, textReply(p, m, "绑定成功：阳台的绿萝。土壤太干时会提醒你。")
		case m.Event == "CLICK":
			return 0, textReply(p, m, "好的，正在给「阳台的绿萝」浇水 5 秒。")
		case m.MsgType == "text":
			return 0, textReply(p, m, "不客气！")
		}
		return 0, "success"
	}
	a := newAPI(t, p)
	u := p.NewUser("oXiaoMing")
	if _, err := u.Scan(ctx5(t), p.CreateQR("label:SP-0001")); err != nil {
		t.Fatal(err)
	}
	if code := a.cs(u.OpenID, "你好！在菜单「我的花盆」里可以查看湿度和浇水记录。"); code != 0 {
		t.Fatalf("welcome: %d", code)
	}
	c.Advance(3 * time.Minute)
	if _, err := u.ClickMenu(ctx5(t), "WATER_NOW"); err != nil {
		t.Fatal(err)
	}
	c.Advance(2 * time.Minute) // the click's minute is over when the result comes
	if code := a.cs(u.OpenID, "浇水完成：阳台的绿萝 已浇水 5 秒。"); code != 45015 {
		t.Fatalf("late result as customer-service text: %d, want 45015", code)
	}
	if m := a.template(u.OpenID, "tmpl_command_outcome", "https://sprout.example/app/plants/SP-0001", map[string]string{
		"thing1": "阳台的绿萝", "thing2": "浇水5秒", "phrase3": "成功", "time4": "2026-12-03 13:10"}); errcode(m) != 0 {
		t.Fatalf("outcome template: %v", m)
	}
	c.Advance(4 * time.Hour)
	if m := a.template(u.OpenID, "tmpl_alert_raised", "https://sprout.example/app/plants/SP-0001", alertData()); errcode(m) != 0 {
		t.Fatalf("alert template: %v", m)
	}
	a.template(u.OpenID, "tmpl_alert_cleared", "", map[string]string{"thing1": "阳台的绿萝", "thing2": "土壤湿度已恢复🌱", "time3": "17:20"})
	c.Advance(10 * time.Minute)
	if _, err := u.SendText(ctx5(t), "谢谢！"); err != nil {
		t.Fatal(err)
	}
	if _, err := p.WaitFor(u.OpenID, 5*time.Second, func(e wechatsim.Entry) bool {
		return e.Kind == wechatsim.KindReceipt && receiptsDone(p, u.OpenID) == 2
	}); err != nil {
		t.Fatal(err)
	}
	return p, u
}

func receiptsDone(p *wechatsim.Platform, openID string) int {
	n := 0
	for _, e := range p.Conversation(openID) {
		if e.Kind == wechatsim.KindReceipt {
			n++
		}
	}
	return n
}

func TestTheChatPageIsServedInChinese(t *testing.T) {
	p, u := chatScript(t)
	resp, err := http.Get(p.URL() + "/_sim/chat/" + u.OpenID)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	page := string(b)
	for _, want := range []string{`lang="zh-CN"`, "Noto Sans CJK SC", "设备告警通知", "阳台的绿萝", "查看详情",
		"客服消息发送失败（45015）", "模板消息「告警恢复通知」发送失败（47003）", "谢谢！", "不客气！"} {
		if !strings.Contains(page, want) {
			t.Errorf("the chat page lacks %q", want)
		}
	}
	// The same record as JSON.
	resp, err = http.Get(p.URL() + "/_sim/conversations/" + u.OpenID)
	if err != nil {
		t.Fatal(err)
	}
	var es []wechatsim.Entry
	json.NewDecoder(resp.Body).Decode(&es)
	resp.Body.Close()
	var refused []int
	for _, e := range es {
		if e.Kind == wechatsim.KindRefused {
			refused = append(refused, e.Errcode)
		}
	}
	if len(refused) != 2 || refused[0] != 45015 || refused[1] != 47003 {
		t.Fatalf("refused sends in the JSON: %v", refused)
	}
	resp, err = http.Get(p.URL() + "/_sim/chat")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), "/_sim/chat/oXiaoMing") || !strings.Contains(string(b), "已关注") {
		t.Fatalf("index: %s", b)
	}
	if resp, _ := http.Get(p.URL() + "/_sim/chat/oNobody"); resp.StatusCode != 404 {
		t.Fatalf("unknown user: %d", resp.StatusCode)
	}
}

// TestAPersonReadsTheChatInABrowser opens the chat in Chromium and checks what a person sees:
// the user's own messages on the right, the card's fields and link, the refused sends in red.
// With SPROUT_WRITE_SCREENSHOTS=1 it refreshes docs/images/wechat-chat.png.
func TestAPersonReadsTheChatInABrowser(t *testing.T) {
	p, u := chatScript(t)
	ctx := webtest.Start(t, 390, 1600, "zh-CN")
	webtest.Do(t, ctx, "open the chat", chromedp.Navigate(p.URL()+"/_sim/chat/"+u.OpenID),
		chromedp.Poll[chromedp.Void](`document.querySelector('.card')`, chromedp.WithPollingTimeout(5*time.Second)))
	eval := func(js string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](js))
		if err != nil {
			t.Fatalf("%s: %v", js, err)
		}
		return v
	}
	text := eval(`document.body.innerText`)
	for _, want := range []string{"设备告警通知", "设备名称：", "阳台的绿萝", "土壤太干", "12%", "操作结果通知", "浇水5秒",
		"查看详情", "谢谢！", "不客气！", "你扫描二维码关注了公众号", "点击菜单「WATER_NOW」"} {
		if !strings.Contains(text, want) {
			t.Errorf("a person does not see %q; the page says:\n%s", want, text)
		}
	}
	// The alert card shows its fields as lines, and its link opens the pot's page.
	if got := eval(`[...document.querySelectorAll('.card')].find(c => c.innerText.includes('设备告警通知')).querySelector('a.link').href`); got != "https://sprout.example/app/plants/SP-0001" {
		t.Errorf("card link %q", got)
	}
	if got := eval(`[...document.querySelectorAll('.card')][1].querySelectorAll('.f')[1].innerText`); got != "告警内容：土壤太干" {
		t.Errorf("second field of the alert card reads %q", got)
	}
	// Refused sends are red and say why, in Chinese.
	if got := eval(`getComputedStyle(document.querySelector('.refused')).color`); got != "rgb(230, 67, 64)" {
		t.Errorf("a refused send is %s, not red", got)
	}
	if got := eval(`document.querySelector('.refused').innerText`); !strings.Contains(got, "超出客服消息时限") || !strings.Contains(got, "45015") {
		t.Errorf("refused send reads %q", got)
	}
	// The user's messages are on the right, Sprout's on the left.
	// (distances from the phone's right and left edges)
	me, _ := strconv.Atoi(eval(`String(Math.round(document.querySelector('.phone').getBoundingClientRect().right - [...document.querySelectorAll('.row.me .bubble')].find(b => b.innerText === '谢谢！').getBoundingClientRect().right))`))
	them, _ := strconv.Atoi(eval(`String(Math.round([...document.querySelectorAll('.row.them .bubble')].find(b => b.innerText === '不客气！').getBoundingClientRect().left - document.querySelector('.phone').getBoundingClientRect().left))`))
	if me > 80 || them > 80 {
		t.Errorf("the user's bubble ends %d px from the right, Sprout's starts %d px from the left", me, them)
	}
	// Chinese is drawn with a CJK font, not boxes.
	if got := eval(`String(document.fonts.check('16px "Noto Sans CJK SC"', '阳台'))`); got != "true" {
		t.Errorf("the CJK font is not available: %s", got)
	}
	if os.Getenv("SPROUT_WRITE_SCREENSHOTS") == "1" {
		webtest.Do(t, ctx, "phone viewport", chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2)))
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join("..", "..", "docs", "images", "wechat-chat.png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
