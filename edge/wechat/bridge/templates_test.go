package bridge

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/sprout-iot/sprout/actors"
)

// The demo account's templates, as WeChat's get_all_private_template gives their content.
const (
	alertRaisedContent = "设备名称：{{thing1.DATA}}\n告警内容：{{thing2.DATA}}\n当前数值：{{character_string3.DATA}}\n告警时间：{{time4.DATA}}"
	outcomeContent     = "设备名称：{{thing1.DATA}}\n操作：{{thing2.DATA}}\n结果：{{phrase3.DATA}}\n完成时间：{{time4.DATA}}"
	noticeContent      = "设备名称：{{thing1.DATA}}\n设备状态：{{phrase2.DATA}}\n说明：{{thing3.DATA}}\n时间：{{time4.DATA}}"
	joinContent        = "设备名称：{{thing1.DATA}}\n申请人：{{thing2.DATA}}\n申请时间：{{time3.DATA}}"
	legacyContent      = "{{first.DATA}}\n设备：{{keyword1.DATA}}\n内容：{{keyword2.DATA}}\n时间：{{keyword3.DATA}}\n{{remark.DATA}}"
)

func fields(keys []TemplateKey) map[string]string {
	m := map[string]string{}
	for _, k := range keys {
		m[k.Key] = k.Field
	}
	return m
}

// TestTemplateKeysAreLearnedFromTheContentAndMappedByLabelAndType: each key's field comes from
// the label written before it, else from its type; the override file wins.
func TestTemplateKeysAreLearnedFromTheContentAndMappedByLabelAndType(t *testing.T) {
	cases := []struct {
		content  string
		override map[string]string
		want     map[string]string
	}{
		{alertRaisedContent, nil, map[string]string{"thing1": FieldPot, "thing2": FieldWhat, "character_string3": FieldValue, "time4": FieldTime}},
		{outcomeContent, nil, map[string]string{"thing1": FieldPot, "thing2": FieldWhat, "phrase3": FieldState, "time4": FieldTime}},
		{noticeContent, nil, map[string]string{"thing1": FieldPot, "phrase2": FieldState, "thing3": FieldDetail, "time4": FieldTime}},
		{joinContent, nil, map[string]string{"thing1": FieldPot, "thing2": FieldWho, "time3": FieldTime}},
		{legacyContent, nil, map[string]string{"first": FieldWhat, "keyword1": FieldPot, "keyword2": FieldWhat, "keyword3": FieldTime, "remark": FieldDetail}},
		// No labels: by type, things take the pot, then what happened, then the detail.
		{"{{thing1.DATA}}{{thing2.DATA}}{{thing3.DATA}}{{time9.DATA}}{{phrase4.DATA}}", nil,
			map[string]string{"thing1": FieldPot, "thing2": FieldWhat, "thing3": FieldDetail, "time9": FieldTime, "phrase4": FieldState}},
		{alertRaisedContent, map[string]string{"thing2": FieldDetail}, map[string]string{"thing1": FieldPot, "thing2": FieldDetail, "character_string3": FieldValue, "time4": FieldTime}},
	}
	for _, tc := range cases {
		keys := resolve(ParseTemplateContent(tc.content), tc.override)
		got := fields(keys)
		if len(got) != len(tc.want) {
			t.Errorf("%q: keys %v, want %v", tc.content, got, tc.want)
			continue
		}
		for k, f := range tc.want {
			if got[k] != f {
				t.Errorf("%q: %s -> %q, want %q (all: %v)", tc.content, k, got[k], f, got)
			}
		}
	}
	keys := ParseTemplateContent(alertRaisedContent)
	if keys[2].Type != "character_string" || keys[2].Label != "当前数值" {
		t.Errorf("key 3 = %+v", keys[2])
	}
}

// TestTemplateThatCannotBeFilledIsReported: a key whose field the kind does not have, a phrase
// that would take anything but the state word, a type Sprout cannot fill.
func TestTemplateThatCannotBeFilledIsReported(t *testing.T) {
	cases := []struct {
		kind, content, want string
	}{
		{actors.MsgCommandOutcome, alertRaisedContent, `"value"`}, // outcomes have no reading
		{actors.MsgAlertRaised, joinContent, `"who"`},             // alerts have no applicant
		{actors.MsgAlertRaised, "名称：{{thing1.DATA}}\n车牌：{{car_number2.DATA}}", "car_number"},
		{actors.MsgAlertRaised, "设备名称：{{phrase1.DATA}}", "phrase"},
	}
	for _, tc := range cases {
		var why []string
		for _, k := range resolve(ParseTemplateContent(tc.content), nil) {
			if w := fillable(tc.kind, k); w != "" {
				why = append(why, w)
			}
		}
		if !strings.Contains(strings.Join(why, ";"), tc.want) {
			t.Errorf("%s with %q: problems %v, want one naming %s", tc.kind, tc.content, why, tc.want)
		}
	}
	for _, c := range []string{alertRaisedContent, noticeContent, legacyContent} {
		for _, k := range resolve(ParseTemplateContent(c), nil) {
			if w := fillable(actors.MsgAlertRaised, k); w != "" {
				t.Errorf("%q: unexpected problem %s", c, w)
			}
		}
	}
}

// TestValuesKeepWithinEachTypesRules: lengths counted in characters and cut on their
// boundaries, emoji dropped, each type's characters only.
func TestValuesKeepWithinEachTypesRules(t *testing.T) {
	cases := []struct {
		typ, in, want string
	}{
		{"thing", "阳台的绿萝🌱 pot-1", "阳台的绿萝 pot-1"},
		{"thing", "一二三四五六七八九十一二三四五六七八九十超出", "一二三四五六七八九十一二三四五六七八九十"},
		{"thing", "a<b>c{d}", "abcd"},
		{"phrase", "已恢复 ok", "已恢复"},
		{"phrase", "一二三四五六", "一二三四五"},
		{"phrase", "done", "-"},
		{"character_string", "12.5 %", "12.5%"},
		{"character_string", "温度35", "35"},
		{"character_string", strings.Repeat("x", 40), strings.Repeat("x", 32)},
		{"number", "now 12.5%", "12.5"},
		{"amount", "12345678901234", "1234567890"},
		{"time", "2026-12-03 21:05", "2026-12-03 21:05"},
		{"first", "☀️ Hot " + strings.Repeat("热", 300), "Hot " + strings.Repeat("热", 196)},
		{"thing", "", "-"},
	}
	for _, tc := range cases {
		got := FormatValue(tc.typ, tc.in)
		if got != tc.want {
			t.Errorf("FormatValue(%s, %q) = %q, want %q", tc.typ, tc.in, got, tc.want)
		}
		if !utf8.ValidString(got) {
			t.Errorf("FormatValue(%s, %q) is not valid UTF-8", tc.typ, tc.in)
		}
	}
	// time fields are formatted in China's time zone.
	if got := field(actors.MessageFields{AtMs: 1796302800000}, FieldTime); got != "2026-12-03 21:00" {
		t.Errorf("time = %q", got)
	}
}
