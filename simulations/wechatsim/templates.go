package wechatsim

import (
	"fmt"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Template is one of the account's private templates (我的模板), as
// /cgi-bin/template/get_all_private_template lists it. Content holds one {{key.DATA}} placeholder
// per keyword, usually one "label：{{key.DATA}}" per line.
type Template struct {
	ID              string `json:"template_id"`
	Title           string `json:"title"`
	PrimaryIndustry string `json:"primary_industry"`
	DeputyIndustry  string `json:"deputy_industry"`
	Content         string `json:"content"`
	Example         string `json:"example"`
}

// DefaultTemplates are the demo account's templates, the ones Sprout's configuration names by
// default (IDs tmpl_alert_raised, tmpl_alert_cleared, tmpl_command_outcome, tmpl_device_notice,
// tmpl_join_request, and the older keyword-style tmpl_legacy_notice).
func DefaultTemplates() []Template {
	const ind1, ind2 = "IT科技", "互联网|电子商务"
	return []Template{
		{ID: "tmpl_alert_raised", Title: "设备告警通知", PrimaryIndustry: ind1, DeputyIndustry: ind2,
			Content: "设备名称：{{thing1.DATA}}\n告警内容：{{thing2.DATA}}\n当前数值：{{character_string3.DATA}}\n告警时间：{{time4.DATA}}",
			Example: "设备名称：阳台的绿萝\n告警内容：土壤太干\n当前数值：12%\n告警时间：2026-12-03 13:05"},
		{ID: "tmpl_alert_cleared", Title: "告警恢复通知", PrimaryIndustry: ind1, DeputyIndustry: ind2,
			Content: "设备名称：{{thing1.DATA}}\n恢复内容：{{thing2.DATA}}\n恢复时间：{{time3.DATA}}",
			Example: "设备名称：阳台的绿萝\n恢复内容：土壤湿度已恢复\n恢复时间：2026-12-03 15:01"},
		{ID: "tmpl_command_outcome", Title: "操作结果通知", PrimaryIndustry: ind1, DeputyIndustry: ind2,
			Content: "设备名称：{{thing1.DATA}}\n操作：{{thing2.DATA}}\n结果：{{phrase3.DATA}}\n完成时间：{{time4.DATA}}",
			Example: "设备名称：阳台的绿萝\n操作：浇水5秒\n结果：成功\n完成时间：2026-12-03 13:06"},
		{ID: "tmpl_device_notice", Title: "设备状态通知", PrimaryIndustry: ind1, DeputyIndustry: ind2,
			Content: "设备名称：{{thing1.DATA}}\n设备状态：{{phrase2.DATA}}\n说明：{{thing3.DATA}}\n时间：{{time4.DATA}}",
			Example: "设备名称：阳台的绿萝\n设备状态：离线\n说明：设备已离线超过10分钟\n时间：2026-12-03 13:30"},
		{ID: "tmpl_join_request", Title: "加入申请通知", PrimaryIndustry: ind1, DeputyIndustry: ind2,
			Content: "设备名称：{{thing1.DATA}}\n申请人：{{thing2.DATA}}\n申请时间：{{time3.DATA}}",
			Example: "设备名称：阳台的绿萝\n申请人：小明\n申请时间：2026-12-03 13:40"},
		{ID: "tmpl_legacy_notice", Title: "设备通知", PrimaryIndustry: ind1, DeputyIndustry: ind2,
			Content: "{{first.DATA}}\n设备：{{keyword1.DATA}}\n内容：{{keyword2.DATA}}\n时间：{{keyword3.DATA}}\n{{remark.DATA}}",
			Example: "您的设备有新通知\n设备：阳台的绿萝\n内容：土壤太干\n时间：2026-12-03 13:05\n点击查看详情"},
	}
}

var placeholderRE = regexp.MustCompile(`\{\{([A-Za-z_][A-Za-z0-9_]*)\.DATA\}\}`)

// Keys returns the template's declared keys in the order of its content.
func (t Template) Keys() []string {
	var keys []string
	for _, m := range placeholderRE.FindAllStringSubmatch(t.Content, -1) {
		keys = append(keys, m[1])
	}
	return keys
}

// keyType is the rule family of a key: its name without the trailing number (thing1 → thing,
// character_string3 → character_string, keyword2 → keyword).
func keyType(key string) string {
	return strings.TrimRight(key, "0123456789")
}

// TemplateField is one rendered line of a template card.
type TemplateField struct {
	Label string `json:"label,omitempty"` // the text before the placeholder ("设备名称"); "" for first/remark
	Key   string `json:"key"`
	Value string `json:"value"`
}

// render fills the template's content line by line, as the card shows it.
func (t Template) render(data map[string]TemplateValue) []TemplateField {
	var out []TemplateField
	for _, line := range strings.Split(t.Content, "\n") {
		m := placeholderRE.FindStringSubmatchIndex(line)
		if m == nil {
			if strings.TrimSpace(line) != "" {
				out = append(out, TemplateField{Value: line})
			}
			continue
		}
		key := line[m[2]:m[3]]
		label := strings.TrimSpace(strings.TrimRight(line[:m[0]], ":： "))
		val := placeholderRE.ReplaceAllStringFunc(line[m[0]:], func(ph string) string {
			return data[placeholderRE.FindStringSubmatch(ph)[1]].Value
		})
		out = append(out, TemplateField{Label: label, Key: key, Value: val})
	}
	return out
}

var (
	timeREs = []*regexp.Regexp{
		regexp.MustCompile(`^\d{4}[-/]\d{1,2}[-/]\d{1,2}( \d{1,2}:\d{2}(:\d{2})?)?$`),
		regexp.MustCompile(`^\d{4}年\d{1,2}月\d{1,2}日( ?\d{1,2}:\d{2}(:\d{2})?)?$`),
		regexp.MustCompile(`^\d{1,2}:\d{2}(:\d{2})?$`),
	}
	numberRE = regexp.MustCompile(`^[+-]?\d+(\.\d+)?$`)
	amountRE = regexp.MustCompile(`^[¥￥$]?(\d+)(\.\d{1,2})?(元)?$`)
	phoneRE  = regexp.MustCompile(`^[0-9+\-]+$`)
)

// isEmoji reports runes WeChat's templates refuse: anything outside the BMP (emoji, rare
// symbols), the BMP's pictographs and dingbats, and the emoji joiners and variation selectors.
func isEmoji(r rune) bool {
	return r > 0xFFFF || (r >= 0x2600 && r <= 0x27BF) || r == 0x200D || (r >= 0xFE00 && r <= 0xFE0F) ||
		(r >= 0x2B00 && r <= 0x2BFF) || r == 0x3030 || r == 0x303D
}

// thingRune: letters (any script, Chinese included), digits, spaces and common punctuation.
func thingRune(r rune) bool {
	return unicode.IsLetter(r) || unicode.IsDigit(r) || r == ' ' || unicode.IsPunct(r) ||
		strings.ContainsRune("%+=~°℃·", r)
}

// checkValue applies WeChat's rule for a key's type to one value; "" means accepted.
func checkValue(key, v string, t Template) string {
	n := utf8.RuneCountInString(v)
	for _, r := range v {
		if isEmoji(r) {
			return "emoji or symbols outside the BMP are not allowed"
		}
		if unicode.IsControl(r) && r != '\n' {
			return "control characters are not allowed"
		}
	}
	if strings.TrimSpace(v) == "" {
		return "value is empty"
	}
	all := func(ok func(rune) bool) bool {
		for _, r := range v {
			if !ok(r) {
				return false
			}
		}
		return true
	}
	switch typ := keyType(key); typ {
	case "thing":
		if n > 20 {
			return "thing is at most 20 characters"
		}
		if !all(thingRune) {
			return "thing takes letters, digits, Chinese and common punctuation only"
		}
	case "character_string":
		if n > 32 {
			return "character_string is at most 32 characters"
		}
		if !all(func(r rune) bool { return !unicode.Is(unicode.Han, r) && r != '\n' }) {
			return "character_string takes digits, letters and symbols, no Chinese"
		}
	case "time":
		for _, re := range timeREs {
			if re.MatchString(v) {
				return ""
			}
		}
		return "time must be a date or time such as 2026-12-03 13:05, 15:01 or 2026年12月3日 15:01"
	case "number":
		if !numberRE.MatchString(v) || countDigits(v) > 32 {
			return "number is at most 32 digits with an optional decimal point"
		}
	case "amount":
		m := amountRE.FindStringSubmatch(v)
		if m == nil || len(m[1]) > 10 {
			return "amount is at most 10 digits with an optional currency sign and unit"
		}
	case "phrase":
		if n > 5 || !all(func(r rune) bool { return unicode.Is(unicode.Han, r) }) {
			return "phrase is at most 5 Chinese characters"
		}
	case "car_number":
		if n > 8 || !all(func(r rune) bool { return unicode.IsLetter(r) || unicode.IsDigit(r) }) {
			return "car_number is at most 8 letters, digits or Chinese characters"
		}
	case "phone_number":
		if n > 17 || !phoneRE.MatchString(v) {
			return "phone_number is at most 17 digits, + or -"
		}
	case "const":
		// A const keyword's value is fixed when the template is chosen: it must be the example's.
		if want, ok := exampleValue(t, key); ok && v != want {
			return fmt.Sprintf("const value is fixed to %q", want)
		}
	case "first", "keyword", "remark":
		if n > 200 {
			return typ + " is at most 200 characters"
		}
	default:
		if n > 20 {
			return "at most 20 characters"
		}
	}
	return ""
}

func countDigits(s string) int {
	d := 0
	for _, r := range s {
		if r >= '0' && r <= '9' {
			d++
		}
	}
	return d
}

// exampleValue finds the key's value in the template's example, matching its content line.
func exampleValue(t Template, key string) (string, bool) {
	cl, el := strings.Split(t.Content, "\n"), strings.Split(t.Example, "\n")
	for i, line := range cl {
		if strings.Contains(line, "{{"+key+".DATA}}") && i < len(el) {
			prefix := line[:strings.Index(line, "{{")]
			return strings.TrimPrefix(el[i], prefix), true
		}
	}
	return "", false
}

// validateData is /cgi-bin/message/template/send's check of data against the template: exactly
// the declared keys, each value within its type's rule. It returns "" or the 47003 errmsg.
func validateData(t Template, data map[string]TemplateValue) string {
	keys := t.Keys()
	declared := map[string]bool{}
	for _, k := range keys {
		declared[k] = true
		if _, ok := data[k]; !ok {
			return fmt.Sprintf("argument invalid! data.%s.value is missing", k)
		}
	}
	for k := range data {
		if !declared[k] {
			return fmt.Sprintf("argument invalid! data.%s is not a keyword of template %s", k, t.ID)
		}
	}
	for _, k := range keys {
		if why := checkValue(k, data[k].Value, t); why != "" {
			return fmt.Sprintf("argument invalid! data.%s.value invalid: %s", k, why)
		}
	}
	return ""
}
