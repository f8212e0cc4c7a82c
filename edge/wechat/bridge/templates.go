package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/edge/wechat/api"
)

// Fields of a message a template key can be filled from (actors.MessageFields), the names the
// override file (SPROUT_WECHAT_TEMPLATE_MAP) uses.
const (
	FieldPot    = "pot"
	FieldWhat   = "what"
	FieldValue  = "value"
	FieldState  = "state"
	FieldWho    = "who"
	FieldDetail = "detail"
	FieldTime   = "time"
)

// kindFields are the fields each message kind always has.
var kindFields = map[string][]string{
	actors.MsgAlertRaised:    {FieldPot, FieldWhat, FieldValue, FieldState, FieldDetail, FieldTime},
	actors.MsgAlertCleared:   {FieldPot, FieldWhat, FieldValue, FieldState, FieldDetail, FieldTime},
	actors.MsgCommandOutcome: {FieldPot, FieldWhat, FieldState, FieldDetail, FieldTime},
	actors.MsgDeviceNotice:   {FieldPot, FieldWhat, FieldState, FieldDetail, FieldTime},
	actors.MsgJoinRequest:    {FieldPot, FieldWho, FieldWhat, FieldState, FieldDetail, FieldTime},
	actors.MsgJoinResult:     {FieldPot, FieldWho, FieldWhat, FieldState, FieldDetail, FieldTime},
	actors.MsgReplyLater:     {FieldPot, FieldWhat, FieldState, FieldDetail, FieldTime},
}

// TemplateKey is one placeholder of a template's content, {{thing1.DATA}}: its key, its type
// (thing, time, phrase, character_string, number, amount, keyword, first, remark, ...) and the
// label written before it ("设备名称").
type TemplateKey struct {
	Key, Type, Label string
	Field            string // the message field that fills it
}

var placeholder = regexp.MustCompile(`\{\{\s*([A-Za-z_]+?)(\d*)\.DATA\s*\}\}`)

// ParseTemplateContent reads a template's declared keys from its content, in order.
func ParseTemplateContent(content string) []TemplateKey {
	var keys []TemplateKey
	for _, line := range strings.Split(content, "\n") {
		last := 0
		for _, m := range placeholder.FindAllStringSubmatchIndex(line, -1) {
			typ, num := line[m[2]:m[3]], line[m[4]:m[5]]
			label := strings.TrimSpace(strings.TrimRight(strings.TrimSpace(line[last:m[0]]), "：:"))
			keys = append(keys, TemplateKey{Key: typ + num, Type: typ, Label: label})
			last = m[1]
		}
	}
	return keys
}

// labelFields: words of a key's label and the field they name, most specific first ("设备状态"
// is a state, "设备名称" a pot).
var labelFields = []struct {
	words []string
	field string
}{
	{[]string{"时间", "日期", "time", "date"}, FieldTime},
	{[]string{"状态", "结果", "status", "result"}, FieldState},
	{[]string{"数值", "读数", "湿度", "温度", "value", "reading"}, FieldValue},
	{[]string{"申请人", "用户", "成员", "昵称", "applicant", "user"}, FieldWho},
	{[]string{"说明", "备注", "详情", "原因", "detail", "note"}, FieldDetail},
	{[]string{"内容", "告警", "操作", "事项", "类型", "恢复", "content", "alert", "action"}, FieldWhat},
	{[]string{"设备", "名称", "花盆", "device", "name", "pot"}, FieldPot},
}

// resolve picks the field of each key: the override, else the label's words, else the type's
// usual meaning (thing: the pot, then what happened, then the detail).
func resolve(keys []TemplateKey, override map[string]string) []TemplateKey {
	out := slices.Clone(keys)
	used := map[string]bool{}
	for i, k := range out {
		if f, ok := override[k.Key]; ok {
			out[i].Field = f
			used[f] = true
			continue
		}
		l := strings.ToLower(k.Label)
		for _, lf := range labelFields {
			if l == "" {
				break
			}
			if slices.ContainsFunc(lf.words, func(w string) bool { return strings.Contains(l, w) }) {
				out[i].Field = lf.field
				break
			}
		}
		if out[i].Field != "" {
			used[out[i].Field] = true
		}
	}
	next := func(fs ...string) string {
		for _, f := range fs {
			if !used[f] {
				used[f] = true
				return f
			}
		}
		return fs[len(fs)-1]
	}
	for i, k := range out {
		if out[i].Field != "" {
			continue
		}
		switch k.Type {
		case "thing", "keyword", "name":
			out[i].Field = next(FieldPot, FieldWhat, FieldDetail)
		case "time", "date":
			out[i].Field = FieldTime
		case "phrase":
			out[i].Field = FieldState
		case "character_string", "number", "amount":
			out[i].Field = next(FieldValue, FieldPot)
		case "first":
			out[i].Field = FieldWhat
		case "remark":
			out[i].Field = FieldDetail
		}
	}
	return out
}

// fillable says why a key cannot be filled for a kind, or "".
func fillable(kind string, k TemplateKey) string {
	switch k.Type {
	case "thing", "time", "date", "phrase", "character_string", "number", "amount", "keyword", "first", "remark", "name":
	default:
		return fmt.Sprintf("key %s: type %q is not one Sprout can fill", k.Key, k.Type)
	}
	if k.Field == "" {
		return fmt.Sprintf("key %s (%s): no message field fits it; map it in SPROUT_WECHAT_TEMPLATE_MAP", k.Key, k.Label)
	}
	if !slices.Contains(kindFields[kind], k.Field) {
		return fmt.Sprintf("key %s (%s) would take %q, which %s messages do not have", k.Key, k.Label, k.Field, kind)
	}
	if k.Type == "phrase" && k.Field != FieldState {
		return fmt.Sprintf("key %s is a phrase (up to 5 Chinese characters): only the state word fits it, not %q", k.Key, k.Field)
	}
	return ""
}

// TemplateOptions configures Templates.
type TemplateOptions struct {
	// IDs maps message kinds (actors.MessageKinds) to the account's template ids.
	IDs map[string]string
	// Overrides maps, per kind, template keys to message fields (FieldPot, ...), over what
	// Sprout infers from the template's content.
	Overrides map[string]map[string]string
	// Refresh is how often the templates are learned again (default 1 h); a failed learn is
	// retried after RetryEvery (default 1 min).
	Refresh, RetryEvery time.Duration
	Logger              *slog.Logger
}

// Templates knows, per message kind, the account's template and how to fill its keys. It learns
// the keys from WeChat (get_all_private_template) at start and every Refresh.
type Templates struct {
	opts   TemplateOptions
	client *api.Client

	mu       sync.RWMutex
	learned  bool
	failing  bool                     // the last learn failed
	keys     map[string][]TemplateKey // by kind, resolved
	titles   map[string]string        // by kind
	problems map[string]string        // by kind: why its template cannot be used
	broken   map[string]string        // by kind: WeChat refused the template (until the next learn)
}

// NewTemplates returns the template registry; call Refresh (or Run) before sending.
func NewTemplates(client *api.Client, o TemplateOptions) *Templates {
	if o.Refresh <= 0 {
		o.Refresh = time.Hour
	}
	if o.RetryEvery <= 0 {
		o.RetryEvery = time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &Templates{opts: o, client: client}
}

// LoadTemplateMap reads the override file: JSON {"kind": {"key": "field"}}.
func LoadTemplateMap(path string) (map[string]map[string]string, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("template map: %w", err)
	}
	var m map[string]map[string]string
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("template map %s: %w", path, err)
	}
	for kind, keys := range m {
		if _, ok := kindFields[kind]; !ok {
			return nil, fmt.Errorf("template map %s: unknown message kind %q (want one of %s)", path, kind, strings.Join(actors.MessageKinds, ", "))
		}
		for k, f := range keys {
			if !slices.Contains([]string{FieldPot, FieldWhat, FieldValue, FieldState, FieldWho, FieldDetail, FieldTime}, f) {
				return nil, fmt.Errorf("template map %s: %s.%s: unknown field %q", path, kind, k, f)
			}
		}
	}
	return m, nil
}

// Refresh learns the account's templates and checks each configured kind's; problems are logged
// (error) and kept for Problems.
func (t *Templates) Refresh(ctx context.Context) error {
	if len(t.opts.IDs) == 0 {
		t.mu.Lock()
		t.learned, t.problems = true, map[string]string{}
		t.mu.Unlock()
		return nil
	}
	list, err := t.client.PrivateTemplates(ctx)
	if err != nil {
		t.mu.Lock()
		t.failing = true
		if !t.learned {
			t.problems = map[string]string{"*": "the account's templates could not be read: " + err.Error()}
		}
		t.mu.Unlock()
		return fmt.Errorf("learning the account's templates: %w", err)
	}
	byID := map[string]api.PrivateTemplate{}
	for _, pt := range list {
		byID[pt.TemplateID] = pt
	}
	keys, titles, problems := map[string][]TemplateKey{}, map[string]string{}, map[string]string{}
	for kind, id := range t.opts.IDs {
		if id == "" {
			continue
		}
		pt, ok := byID[id]
		if !ok {
			problems[kind] = fmt.Sprintf("template %s is not one of the account's templates", id)
			continue
		}
		ks := resolve(ParseTemplateContent(pt.Content), t.opts.Overrides[kind])
		var why []string
		for _, k := range ks {
			if w := fillable(kind, k); w != "" {
				why = append(why, w)
			}
		}
		if len(ks) == 0 {
			why = append(why, "its content declares no {{key.DATA}}")
		}
		if len(why) > 0 {
			problems[kind] = fmt.Sprintf("template %s (%s): %s", id, pt.Title, strings.Join(why, "; "))
			continue
		}
		keys[kind], titles[kind] = ks, pt.Title
	}
	t.mu.Lock()
	t.learned, t.failing, t.keys, t.titles, t.problems, t.broken = true, false, keys, titles, problems, nil
	t.mu.Unlock()
	for _, kind := range sortedKeys(problems) {
		t.opts.Logger.Error("a message kind's template cannot be used; its messages go out as customer-service texts only while the user's allowance lasts",
			"kind", kind, "problem", problems[kind])
	}
	return nil
}

// Run learns the templates again every Refresh until ctx ends (call Refresh first, at start);
// while the last learn failed, it retries every RetryEvery.
func (t *Templates) Run(ctx context.Context) {
	for {
		t.mu.RLock()
		failing := t.failing
		t.mu.RUnlock()
		wait := t.opts.Refresh
		if failing {
			wait = t.opts.RetryEvery
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		c, cancel := context.WithTimeout(ctx, 30*time.Second)
		if err := t.Refresh(c); err != nil && ctx.Err() == nil {
			t.opts.Logger.Warn("learning the account's templates failed; retrying", "err", err, "in", t.opts.RetryEvery)
		}
		cancel()
	}
}

// Problems returns, by message kind, why its template cannot be used (configured but unknown to
// the account, keys Sprout cannot fill, refused by WeChat since the last learn). Kinds without a
// template id are listed too ("no template configured").
func (t *Templates) Problems() map[string]string {
	t.mu.RLock()
	defer t.mu.RUnlock()
	out := map[string]string{}
	for _, kind := range actors.MessageKinds {
		if t.opts.IDs[kind] == "" {
			out[kind] = "no template configured: outside the customer-service allowance these messages cannot be sent"
		}
	}
	for k, v := range t.problems {
		out[k] = v
	}
	for k, v := range t.broken {
		out[k] = v
	}
	return out
}

// Describe is a kind's template for operators: its id, title and keys with the fields filling them.
func (t *Templates) Describe(kind string) (id, title string, keys []TemplateKey) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.opts.IDs[kind], t.titles[kind], slices.Clone(t.keys[kind])
}

// MarkBroken stops a kind's template until the next learn (WeChat refused its id or data).
func (t *Templates) MarkBroken(kind, reason string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.broken == nil {
		t.broken = map[string]string{}
	}
	t.broken[kind] = reason
}

// errNoTemplate: the kind has no usable template (Problems says why).
var errNoTemplate = errors.New("no usable template")

// Fill returns the kind's template id and its data for f, every value within its type's rules.
func (t *Templates) Fill(kind string, f actors.MessageFields) (string, map[string]api.TemplateValue, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	id := t.opts.IDs[kind]
	switch {
	case id == "":
		return "", nil, fmt.Errorf("%w: no template configured for %s (SPROUT_WECHAT_TEMPLATE_%s)", errNoTemplate, kind, strings.ToUpper(kind))
	case t.broken[kind] != "":
		return "", nil, fmt.Errorf("%w for %s: %s", errNoTemplate, kind, t.broken[kind])
	case t.problems[kind] != "":
		return "", nil, fmt.Errorf("%w for %s: %s", errNoTemplate, kind, t.problems[kind])
	case !t.learned:
		return "", nil, fmt.Errorf("%w for %s: the account's templates are not learned yet", errNoTemplate, kind)
	case t.problems["*"] != "":
		return "", nil, fmt.Errorf("%w for %s: %s", errNoTemplate, kind, t.problems["*"])
	}
	data := map[string]api.TemplateValue{}
	for _, k := range t.keys[kind] {
		data[k.Key] = api.TemplateValue{Value: FormatValue(k.Type, field(f, k.Field))}
	}
	return id, data, nil
}

func field(f actors.MessageFields, name string) string {
	switch name {
	case FieldPot:
		return f.Pot
	case FieldWhat:
		return f.What
	case FieldValue:
		return f.Value
	case FieldState:
		return f.State
	case FieldWho:
		return f.Who
	case FieldDetail:
		return f.Detail
	case FieldTime:
		if f.AtMs == 0 {
			return ""
		}
		return time.UnixMilli(f.AtMs).In(chinaTime).Format("2006-01-02 15:04")
	}
	return ""
}

// chinaTime is UTC+8, the time zone of WeChat's users and of the time values Sprout fills.
var chinaTime = time.FixedZone("CST", 8*3600)

var numberRE = regexp.MustCompile(`\d+(\.\d+)?`)

// FormatValue fits a value to a template key type's rules (WeChat's template message docs):
// thing at most 20 characters of letters, digits, Chinese and common punctuation; phrase at most
// 5 Chinese characters; character_string at most 32 of letters, digits and symbols; number at
// most 32 digits; amount at most 10 digits; time a date and time; the older first, keywordN
// and remark at most 200 characters. Emoji and anything outside the BMP are dropped everywhere;
// cuts fall on character boundaries. An empty result is "-" (WeChat refuses empty values).
func FormatValue(typ, v string) string {
	v = stripEmoji(v)
	var out string
	switch typ {
	case "thing", "name":
		out = truncate(keep(v, func(r rune) bool {
			return unicode.IsLetter(r) || unicode.IsDigit(r) || r == ' ' || strings.ContainsRune(thingPunct, r)
		}), 20)
	case "phrase":
		out = truncate(keep(v, func(r rune) bool { return unicode.Is(unicode.Han, r) }), 5)
	case "character_string":
		out = truncate(keep(v, func(r rune) bool { return r > ' ' && r < 0x7f }), 32)
	case "number":
		out = truncate(numberRE.FindString(v), 32)
	case "amount":
		out = truncate(numberRE.FindString(v), 10)
	case "time", "date":
		out = v
	default: // first, keywordN, remark
		out = truncate(strings.TrimSpace(v), 200)
	}
	out = strings.TrimSpace(out)
	if out == "" {
		if typ == "number" || typ == "amount" {
			return "0"
		}
		return "-"
	}
	return out
}

const thingPunct = "-_.,:;!?()[]/#%+&'\"，。：；！？（）、《》“”‘’·—"

func keep(s string, ok func(rune) bool) string {
	var b strings.Builder
	for _, r := range s {
		if r == '\n' || r == '\t' {
			r = ' '
		}
		if ok(r) {
			b.WriteRune(r)
		}
	}
	return b.String()
}

func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n])
}

// stripEmoji drops emoji and every character outside the BMP, and the joiners and variation
// selectors that go with them; invalid UTF-8 is dropped too.
func stripEmoji(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == utf8.RuneError, r > 0xFFFF, r == 0x200D, r >= 0xFE00 && r <= 0xFE0F,
			r >= 0x2600 && r <= 0x27BF, r >= 0x2B00 && r <= 0x2BFF, r >= 0x2300 && r <= 0x23FF:
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
