package wechat

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestParseMessageReadsEveryPushWeHandle(t *testing.T) {
	cases := []struct {
		name string
		xml  string
		want Message
	}{
		{"text", `<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[oU1]]></FromUserName><CreateTime>1348831860</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[water my pot]]></Content><MsgId>1234567890123456</MsgId></xml>`,
			Message{ToUserName: "gh_1", FromUserName: "oU1", CreateTime: 1348831860, MsgType: "text", Content: "water my pot", MsgId: "1234567890123456"}},
		{"subscribe with scene", `<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[oU1]]></FromUserName><CreateTime>1</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe]]></Event><EventKey><![CDATA[qrscene_s1.p.d]]></EventKey><Ticket><![CDATA[TK]]></Ticket></xml>`,
			Message{ToUserName: "gh_1", FromUserName: "oU1", CreateTime: 1, MsgType: "event", Event: "subscribe", EventKey: "qrscene_s1.p.d", Ticket: "TK"}},
		{"device bind", `<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[oU1]]></FromUserName><CreateTime>2</CreateTime><MsgType><![CDATA[device_event]]></MsgType><Event><![CDATA[bind]]></Event><DeviceType><![CDATA[gh_1]]></DeviceType><DeviceID><![CDATA[dev1]]></DeviceID><Content><![CDATA[aGk=]]></Content><SessionID><![CDATA[77]]></SessionID><OpenID><![CDATA[oU1]]></OpenID></xml>`,
			Message{ToUserName: "gh_1", FromUserName: "oU1", CreateTime: 2, MsgType: "device_event", Event: "bind", DeviceType: "gh_1", DeviceID: "dev1", Content: "aGk=", SessionID: "77", OpenID: "oU1"}},
		{"status subscription", `<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[oU1]]></FromUserName><CreateTime>3</CreateTime><MsgType><![CDATA[device_event]]></MsgType><Event><![CDATA[subscribe_status]]></Event><DeviceType><![CDATA[gh_1]]></DeviceType><DeviceID><![CDATA[dev1]]></DeviceID><OpType>2</OpType><OpenID><![CDATA[oU1]]></OpenID></xml>`,
			Message{ToUserName: "gh_1", FromUserName: "oU1", CreateTime: 3, MsgType: "device_event", Event: "subscribe_status", DeviceType: "gh_1", DeviceID: "dev1", OpType: 2, OpenID: "oU1"}},
		{"device text", `<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[oU1]]></FromUserName><CreateTime>4</CreateTime><MsgType><![CDATA[device_text]]></MsgType><DeviceType><![CDATA[gh_1]]></DeviceType><DeviceID><![CDATA[dev1]]></DeviceID><Content><![CDATA[AQI=]]></Content><SessionID><![CDATA[9]]></SessionID><MsgID>5566</MsgID><OpenID><![CDATA[oU1]]></OpenID></xml>`,
			Message{ToUserName: "gh_1", FromUserName: "oU1", CreateTime: 4, MsgType: "device_text", DeviceType: "gh_1", DeviceID: "dev1", Content: "AQI=", SessionID: "9", MsgID: "5566", OpenID: "oU1"}},
		{"template delivery", `<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[oU1]]></FromUserName><CreateTime>5</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[TEMPLATESENDJOBFINISH]]></Event><MsgID>200163836</MsgID><Status><![CDATA[failed:user block]]></Status></xml>`,
			Message{ToUserName: "gh_1", FromUserName: "oU1", CreateTime: 5, MsgType: "event", Event: "TEMPLATESENDJOBFINISH", MsgID: "200163836", Status: "failed:user block"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := ParseMessage([]byte(tc.xml))
			if err != nil {
				t.Fatal(err)
			}
			if *m != tc.want {
				t.Fatalf("parsed\n %+v\nwant\n %+v", *m, tc.want)
			}
		})
	}
}

func TestDedupKeyIsStableAcrossRetriesAndDistinguishesEvents(t *testing.T) {
	text := Message{FromUserName: "o1", CreateTime: 10, MsgType: "text", MsgId: "42"}
	if got := text.DedupKey(); got != "id:42" {
		t.Errorf("text DedupKey = %q, want the MsgId", got)
	}
	bind := Message{FromUserName: "o1", CreateTime: 10, MsgType: "device_event", Event: "bind", DeviceID: "d1"}
	unbind := bind
	unbind.Event = "unbind"
	otherDevice := bind
	otherDevice.DeviceID = "d2"
	click := Message{FromUserName: "o1", CreateTime: 10, MsgType: "event", Event: "CLICK", EventKey: "WATER"}
	otherKey := click
	otherKey.EventKey = "STATUS"
	keys := map[string]string{}
	for name, m := range map[string]Message{"bind": bind, "unbind": unbind, "otherDevice": otherDevice, "click": click, "otherKey": otherKey} {
		k := m.DedupKey()
		if prev, dup := keys[k]; dup {
			t.Errorf("%s and %s share DedupKey %q", name, prev, k)
		}
		keys[k] = name
	}
	retry := bind
	if retry.DedupKey() != bind.DedupKey() {
		t.Error("the same push twice gave two keys")
	}
}

func TestSceneStripsThePrefixOnlyOnSubscribe(t *testing.T) {
	cases := []struct {
		m    Message
		want string
	}{
		{Message{MsgType: "event", Event: "subscribe", EventKey: "qrscene_abc"}, "abc"},
		{Message{MsgType: "event", Event: "SCAN", EventKey: "abc"}, "abc"},
		{Message{MsgType: "event", Event: "subscribe"}, ""},
		{Message{MsgType: "event", Event: "CLICK", EventKey: "qrscene_abc"}, ""},
	}
	for _, tc := range cases {
		if got := tc.m.Scene(); got != tc.want {
			t.Errorf("%+v: Scene = %q, want %q", tc.m, got, tc.want)
		}
	}
}

func TestRepliesRenderWeChatShapes(t *testing.T) {
	m := &Message{ToUserName: "gh_1", FromUserName: "oU1", DeviceType: "gh_1", DeviceID: "dev1", SessionID: "9"}
	now := time.Unix(1700000000, 0)
	cases := []struct {
		name string
		r    *Reply
		want string
	}{
		{"success", Success(), "success"},
		{"text", TextReply("hi ]]> there"), `<xml><ToUserName><![CDATA[oU1]]></ToUserName><FromUserName><![CDATA[gh_1]]></FromUserName><CreateTime>1700000000</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[hi ]]]]><![CDATA[> there]]></Content></xml>`},
		{"device text", DeviceTextReply(m, []byte{1, 2}), `<xml><ToUserName><![CDATA[oU1]]></ToUserName><FromUserName><![CDATA[gh_1]]></FromUserName><CreateTime>1700000000</CreateTime><MsgType><![CDATA[device_text]]></MsgType><DeviceType><![CDATA[gh_1]]></DeviceType><DeviceID><![CDATA[dev1]]></DeviceID><SessionID><![CDATA[9]]></SessionID><Content><![CDATA[AQI=]]></Content></xml>`},
		{"device status", DeviceStatusReply(m, true), `<xml><ToUserName><![CDATA[oU1]]></ToUserName><FromUserName><![CDATA[gh_1]]></FromUserName><CreateTime>1700000000</CreateTime><MsgType><![CDATA[device_status]]></MsgType><DeviceType><![CDATA[gh_1]]></DeviceType><DeviceID><![CDATA[dev1]]></DeviceID><DeviceStatus>1</DeviceStatus></xml>`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := MarshalReply(tc.r, m, now)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Fatalf("got\n %s\nwant\n %s", got, tc.want)
			}
		})
	}
	if _, err := MarshalReply(&Reply{MsgType: "image"}, m, now); err == nil {
		t.Error("an unsupported reply type was rendered")
	}
}

func TestSealedReplyOpensWithTheSameKeyAndToken(t *testing.T) {
	c := mustCipher(t, testKey, testAppID)
	plain := []byte("<xml><MsgType><![CDATA[text]]></MsgType></xml>")
	sealed, err := SealReply(c, "tok", plain, time.Unix(1700000000, 0), "nonce1")
	if err != nil {
		t.Fatal(err)
	}
	for _, tag := range []string{"<Encrypt>", "<MsgSignature>", "<TimeStamp>1700000000</TimeStamp>", "<Nonce>"} {
		if !strings.Contains(string(sealed), tag) {
			t.Errorf("sealed reply lacks %s: %s", tag, sealed)
		}
	}
	got, err := OpenReply(c, "tok", sealed)
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("OpenReply = %q, %v", got, err)
	}
	if _, err := OpenReply(c, "other-token", sealed); err != ErrBadSignature {
		t.Fatalf("OpenReply under another token: %v, want ErrBadSignature", err)
	}
}
