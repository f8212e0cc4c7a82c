package wechat_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/sprout-iot/sprout/edge/wechat"
	"github.com/sprout-iot/sprout/simulations/wechatsim"
)

// WeChat sends numbers as text, inside CDATA or not, with spaces, sometimes as "1.0": every such
// push reaches the dispatcher with the number read, and a value that is no number at all does not
// reject the push (OpType is then OpTypeUnknown, never "unsubscribe").
func TestNumericFieldsSentAsTextParseLeniently(t *testing.T) {
	d := &dispatcher{}
	e := start(t, wechatsim.Options{}, nil, d)
	cases := []struct {
		opType, createTime string
		wantOp             int
		wantTime           int64
	}{
		{"1", "1700000000", wechat.OpTypeHeartbeat, 1700000000},
		{" 1 ", " 1700000000 ", wechat.OpTypeHeartbeat, 1700000000},
		{"<![CDATA[2]]>", "<![CDATA[1700000000]]>", wechat.OpTypeSubscribe, 1700000000},
		{"<![CDATA[ 0 ]]>", "1700000000", wechat.OpTypeUnsubscribe, 1700000000},
		{"\u00a02\u00a0", "+1700000000", wechat.OpTypeSubscribe, 1700000000},
		{"1.0", "1700000000.000", wechat.OpTypeHeartbeat, 1700000000},
		{"on", "soon", wechat.OpTypeUnknown, 0},
		{"-1", "1700000000", wechat.OpTypeUnknown, 1700000000},
	}
	for i, tc := range cases {
		body := fmt.Sprintf(`<xml><ToUserName><![CDATA[%s]]></ToUserName><FromUserName><![CDATA[oU%d]]></FromUserName>`+
			`<CreateTime>%s</CreateTime><MsgType><![CDATA[device_event]]></MsgType><Event><![CDATA[subscribe_status]]></Event>`+
			`<DeviceType><![CDATA[%s]]></DeviceType><DeviceID><![CDATA[dev1]]></DeviceID><OpType>%s</OpType><OpenID><![CDATA[oU%d]]></OpenID></xml>`,
			account, i, tc.createTime, account, tc.opType, i)
		status, answer := post(t, signedURL(e.url, time.Now(), nil), body)
		if status != 200 || answer != "success" {
			t.Fatalf("OpType %q: answered %d %q, want 200 success", tc.opType, status, answer)
		}
		got := d.calls()
		m := got[len(got)-1]
		if m.FromUserName != fmt.Sprintf("oU%d", i) || m.OpType != tc.wantOp || m.CreateTime != tc.wantTime {
			t.Errorf("OpType %q CreateTime %q: dispatched OpType %d CreateTime %d, want %d %d",
				tc.opType, tc.createTime, m.OpType, m.CreateTime, tc.wantOp, tc.wantTime)
		}
	}
}

// A parametric QR of the same account that is not Sprout's (a campaign poster) is dispatched as a
// plain subscribe or SCAN, so the user grain welcomes the user instead of answering "invalid
// code"; a Sprout-shaped scene, valid or forged, still reaches the dispatcher as a scene.
func TestParametricQRThatIsNotSproutsIsDispatchedWithoutItsScene(t *testing.T) {
	d := &dispatcher{}
	e := start(t, wechatsim.Options{}, nil, d)
	cases := []struct {
		event, key, wantKey, wantForeign string
	}{
		{"subscribe", "qrscene_spring-campaign", "", "spring-campaign"},
		{"SCAN", "shop-poster-7", "", "shop-poster-7"},
		{"SCAN", "123456", "", "123456"},
		{"subscribe", "qrscene_s1.sprout-pot.pot-1.0.AAAAAAAAAAAAAAAA", "qrscene_s1.sprout-pot.pot-1.0.AAAAAAAAAAAAAAAA", ""},
		{"SCAN", "s1.sprout-pot.pot-1.0.AAAAAAAAAAAAAAAA", "s1.sprout-pot.pot-1.0.AAAAAAAAAAAAAAAA", ""},
		{"subscribe", "", "", ""},
	}
	for i, tc := range cases {
		body := fmt.Sprintf(`<xml><ToUserName><![CDATA[%s]]></ToUserName><FromUserName><![CDATA[oQ%d]]></FromUserName>`+
			`<CreateTime>1700000000</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[%s]]></Event>`+
			`<EventKey><![CDATA[%s]]></EventKey><Ticket><![CDATA[TK]]></Ticket></xml>`, account, i, tc.event, tc.key)
		status, answer := post(t, signedURL(e.url, time.Now(), nil), body)
		if status != 200 || answer != "success" {
			t.Fatalf("%s %q: answered %d %q", tc.event, tc.key, status, answer)
		}
		got := d.calls()
		m := got[len(got)-1]
		if m.EventKey != tc.wantKey || m.ForeignScene != tc.wantForeign {
			t.Errorf("%s %q: dispatched EventKey %q ForeignScene %q, want %q %q", tc.event, tc.key, m.EventKey, m.ForeignScene, tc.wantKey, tc.wantForeign)
		}
	}
}
