package bridge_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/edge/edgetest"
	"github.com/sprout-iot/sprout/edge/wechat"
	"github.com/sprout-iot/sprout/edge/wechat/api"
	"github.com/sprout-iot/sprout/edge/wechat/bridge"
	"github.com/sprout-iot/sprout/store/memory"
)

// wxCall is one message API call WeChat received.
type wxCall struct {
	Path       string
	ToUser     string                       `json:"touser"`
	Text       struct{ Content string }     `json:"text"`
	TemplateID string                       `json:"template_id"`
	URL        string                       `json:"url"`
	Data       map[string]map[string]string `json:"data"`
	Code       int                          // what it answered
}

// msgAPI is WeChat's message API as far as the pusher uses it: the account's templates, and
// template sends refused (47003) unless their keys are exactly the declared ones; refusals are
// injected per path in order.
type msgAPI struct {
	mu        sync.Mutex
	calls     []wxCall
	fail      map[string][]int
	templates map[string]string // id -> content
	msgID     int64
}

func (a *msgAPI) failNext(path string, codes ...int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.fail[path] = append(a.fail[path], codes...)
}

func (a *msgAPI) sent() []wxCall {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.calls)
}

func newMsgAPI(t *testing.T) (*msgAPI, *api.Client) {
	t.Helper()
	a := &msgAPI{fail: map[string][]int{}, templates: map[string]string{
		"tmpl_alert_raised":    "设备名称：{{thing1.DATA}}\n告警内容：{{thing2.DATA}}\n当前数值：{{character_string3.DATA}}\n告警时间：{{time4.DATA}}",
		"tmpl_alert_cleared":   "设备名称：{{thing1.DATA}}\n恢复内容：{{thing2.DATA}}\n恢复时间：{{time3.DATA}}",
		"tmpl_command_outcome": "设备名称：{{thing1.DATA}}\n操作：{{thing2.DATA}}\n结果：{{phrase3.DATA}}\n完成时间：{{time4.DATA}}",
	}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		defer a.mu.Unlock()
		if r.URL.Path == "/cgi-bin/template/get_all_private_template" {
			var list []map[string]string
			for id, c := range a.templates {
				list = append(list, map[string]string{"template_id": id, "title": id, "content": c})
			}
			_ = json.NewEncoder(w).Encode(map[string]any{"template_list": list})
			return
		}
		body, _ := io.ReadAll(r.Body)
		c := wxCall{Path: r.URL.Path}
		_ = json.Unmarshal(body, &c)
		if q := a.fail[r.URL.Path]; len(q) > 0 {
			c.Code, a.fail[r.URL.Path] = q[0], q[1:]
		} else if r.URL.Path == "/cgi-bin/message/template/send" {
			content, ok := a.templates[c.TemplateID]
			if !ok {
				c.Code = 40037
			} else {
				var want, got []string
				for _, k := range bridge.ParseTemplateContent(content) {
					want = append(want, k.Key)
				}
				for k := range c.Data {
					got = append(got, k)
				}
				slices.Sort(want)
				slices.Sort(got)
				if !slices.Equal(want, got) {
					c.Code = 47003
				}
			}
		}
		a.calls = append(a.calls, c)
		if c.Code != 0 {
			fmt.Fprintf(w, `{"errcode":%d,"errmsg":"refused"}`, c.Code)
			return
		}
		a.msgID++
		fmt.Fprintf(w, `{"errcode":0,"errmsg":"ok","msgid":%d}`, a.msgID)
	}))
	t.Cleanup(srv.Close)
	c, err := api.New(api.Options{BaseURL: srv.URL, Tokens: staticTokens{}})
	if err != nil {
		t.Fatal(err)
	}
	return a, c
}

// pushWorld is one pusher over a memory outbox against msgAPI, driven one drain at a time.
type pushWorld struct {
	st   *memory.Store
	wx   *msgAPI
	p    *bridge.Pusher
	tpl  *bridge.Templates
	clk  *clock
	done chan actors.Push
	ctx  context.Context
}

func newPushWorld(t *testing.T, ids map[string]string) *pushWorld {
	t.Helper()
	wx, client := newMsgAPI(t)
	w := &pushWorld{st: memory.New(), wx: wx, clk: &clock{now: time.Date(2026, 12, 3, 5, 0, 0, 0, time.UTC)},
		done: make(chan actors.Push, 100), ctx: context.Background()}
	if ids == nil {
		ids = map[string]string{actors.MsgAlertRaised: "tmpl_alert_raised", actors.MsgAlertCleared: "tmpl_alert_cleared",
			actors.MsgCommandOutcome: "tmpl_command_outcome"}
	}
	w.tpl = bridge.NewTemplates(client, bridge.TemplateOptions{IDs: ids, Logger: edgetest.Quiet()})
	if err := w.tpl.Refresh(w.ctx); err != nil {
		t.Fatal(err)
	}
	w.p = bridge.NewPusher(w.st, client, bridge.PusherOptions{Owner: "node-a", Now: w.clk.Now, Logger: edgetest.Quiet(),
		Templates: w.tpl, PageURL: func(id string) string { return "https://sprout.example/app/plants/" + id },
		Sent: func(p actors.Push) { w.done <- p }})
	runCtx, stop := context.WithCancel(w.ctx)
	t.Cleanup(stop)
	go w.p.Run(runCtx)
	return w
}

var seq int

// enqueue adds a message push as the user grain makes them.
func (w *pushWorld) enqueue(t *testing.T, openID, kind, pot, text string, f actors.MessageFields) actors.Push {
	t.Helper()
	seq++
	f.Pot = pot
	if f.AtMs == 0 {
		f.AtMs = w.clk.Now().UnixMilli()
	}
	pl := actors.PushPayload{MessageKind: kind, Text: text, Fields: &f, DeviceID: pot}
	if kind == actors.MsgAlertCleared {
		pl.Combined = pot + " blip"
	}
	b, _ := json.Marshal(pl)
	p := actors.Push{ID: fmt.Sprintf("p%03d", seq), OpenID: openID, Kind: actors.PushMessage, Payload: b,
		CreatedAt: w.clk.Now().Add(time.Duration(seq) * time.Millisecond), OrderKey: openID + "|" + pot}
	if err := w.st.EnqueuePushes(w.ctx, []actors.Push{p}); err != nil {
		t.Fatal(err)
	}
	return p
}

// send enqueues and waits until the pusher is done with n pushes; it returns their records.
func (w *pushWorld) wait(t *testing.T, n int) []actors.Push {
	t.Helper()
	w.p.Wake()
	var out []actors.Push
	for len(out) < n {
		select {
		case p := <-w.done:
			out = append(out, p)
		case <-time.After(10 * time.Second):
			t.Fatalf("the pusher finished %d of %d pushes", len(out), n)
		}
	}
	return out
}

func (w *pushWorld) act(t *testing.T, openID, kind string) {
	t.Helper()
	if err := w.st.RecordContact(w.ctx, openID, actors.ContactEvent{Kind: kind, At: w.clk.Now()}); err != nil {
		t.Fatal(err)
	}
}

func alertFields() actors.MessageFields {
	return actors.MessageFields{What: "土壤太干", Value: "12.0", State: "告警", Detail: "pot-1 提醒：土壤太干", AlertKey: "pot-1|DRY"}
}

// TestMessageTakesTheCustomerServiceTextWhileAllowedAndTheTemplateAfter: a user who just wrote
// gets up to 5 texts, then templates with the declared keys filled, a link to the pot's page
// and the msgid recorded; a user Sprout never heard from gets templates at once.
func TestMessageTakesTheCustomerServiceTextWhileAllowedAndTheTemplateAfter(t *testing.T) {
	w := newPushWorld(t, nil)
	w.act(t, "oAlice", actors.ContactMessage)
	for range 6 {
		w.enqueue(t, "oAlice", actors.MsgCommandOutcome, "pot-1", "pot-1 浇水完成", actors.MessageFields{What: "浇水", State: "成功", Detail: "浇水完成"})
		w.wait(t, 1)
	}
	w.enqueue(t, "oStranger", actors.MsgAlertRaised, "pot-9", "pot-9 提醒", alertFields())
	w.wait(t, 1)
	calls := w.wx.sent()
	var paths []string
	for _, c := range calls {
		paths = append(paths, strings.TrimPrefix(c.Path, "/cgi-bin/message/"))
	}
	want := []string{"custom/send", "custom/send", "custom/send", "custom/send", "custom/send", "template/send", "template/send"}
	if !slices.Equal(paths, want) {
		t.Fatalf("calls = %v, want 5 texts then templates", paths)
	}
	out := calls[5]
	if out.TemplateID != "tmpl_command_outcome" || out.URL != "https://sprout.example/app/plants/pot-1" ||
		out.Data["thing1"]["value"] != "pot-1" || out.Data["thing2"]["value"] != "浇水" || out.Data["phrase3"]["value"] != "成功" ||
		out.Data["time4"]["value"] != "2026-12-03 13:00" {
		t.Fatalf("the outcome's template = %+v", out)
	}
	alert := calls[6]
	if alert.ToUser != "oStranger" || alert.Data["character_string3"]["value"] != "12.0" || alert.Data["thing2"]["value"] != "土壤太干" {
		t.Fatalf("the stranger's alert = %+v", alert)
	}
	ps, _ := w.st.UserPushes(w.ctx, "oAlice", 0)
	if ps[0].Channel != actors.ChannelTemplate || ps[0].MsgID == "" || ps[0].Status != actors.PushSent ||
		ps[1].Channel != actors.ChannelCS || ps[1].Status != actors.PushSent {
		t.Fatalf("recorded = %+v / %+v", ps[0], ps[1])
	}
}

// TestRefusedTextGoesOutAsTheTemplateAtOnce: 45015 and 45047 are not final and not retried:
// the same push goes out through the template in the same attempt, and the window is spent.
func TestRefusedTextGoesOutAsTheTemplateAtOnce(t *testing.T) {
	for _, code := range []int{45015, 45047} {
		t.Run(fmt.Sprint(code), func(t *testing.T) {
			w := newPushWorld(t, nil)
			w.act(t, "oAlice", actors.ContactClick)
			w.wx.failNext("/cgi-bin/message/custom/send", code)
			w.enqueue(t, "oAlice", actors.MsgAlertRaised, "pot-1", "pot-1 提醒", alertFields())
			got := w.wait(t, 1)[0]
			if got.Status != actors.PushSent || got.Channel != actors.ChannelTemplate || got.ErrCode != code || got.Attempts != 1 {
				t.Fatalf("push = %+v; want sent by template in its first attempt, errcode %d kept", got, code)
			}
			if c, _ := w.st.Contact(w.ctx, "oAlice"); c.InWindow(w.clk.Now()) {
				t.Fatalf("after %d the window is still open: %+v", code, c)
			}
			w.enqueue(t, "oAlice", actors.MsgAlertRaised, "pot-2", "pot-2 提醒", alertFields())
			w.wait(t, 1)
			calls := w.wx.sent()
			if len(calls) != 3 || calls[2].Path != "/cgi-bin/message/template/send" {
				t.Fatalf("calls = %+v; want text (refused), template, template", calls)
			}
		})
	}
}

// TestUnfollowedUserGetsNothingUntilTheyFollowAgain: 43004 marks the user; their next messages
// fail at once, without calling WeChat, with the reason; once they follow again, messages flow.
func TestUnfollowedUserGetsNothingUntilTheyFollowAgain(t *testing.T) {
	w := newPushWorld(t, nil)
	w.wx.failNext("/cgi-bin/message/template/send", 43004)
	w.enqueue(t, "oGone", actors.MsgAlertRaised, "pot-1", "pot-1 提醒", alertFields())
	first := w.wait(t, 1)[0]
	if first.Status != actors.PushFailed || first.ErrCode != 43004 || !strings.Contains(first.LastError, "follow") {
		t.Fatalf("push = %+v; want failed, 43004, saying the user does not follow", first)
	}
	if c, _ := w.st.Contact(w.ctx, "oGone"); c.Follows() {
		t.Fatalf("contact after 43004 = %+v, want unfollowed", c)
	}
	w.enqueue(t, "oGone", actors.MsgCommandOutcome, "pot-1", "done", actors.MessageFields{What: "浇水", State: "成功"})
	if got := w.wait(t, 1)[0]; got.Status != actors.PushFailed || len(w.wx.sent()) != 1 {
		t.Fatalf("the next push = %+v after %d calls; want failed without calling WeChat", got, len(w.wx.sent()))
	}
	failed, _ := w.st.FailedPushes(w.ctx, 0)
	if len(failed) != 2 {
		t.Fatalf("failed pushes listed = %d, want 2", len(failed))
	}
	w.clk.Advance(time.Second)
	w.act(t, "oGone", actors.ContactSubscribe)
	if err := w.st.RetryPush(w.ctx, failed[0].ID, w.clk.Now()); err != nil {
		t.Fatal(err)
	}
	if got := w.wait(t, 1)[0]; got.Status != actors.PushSent || got.Channel != actors.ChannelCS {
		t.Fatalf("sent again after following = %+v; want sent (the follow opened a 1-minute window)", got)
	}
}

// TestDailyTemplateQuotaFailsAtOnceWithTheReason: 45009 does not hold an alert until midnight;
// without customer-service allowance it fails at once, saying why, and the operator is told.
func TestDailyTemplateQuotaFailsAtOnceWithTheReason(t *testing.T) {
	w := newPushWorld(t, nil)
	w.wx.failNext("/cgi-bin/message/template/send", 45009)
	w.enqueue(t, "oAlice", actors.MsgAlertRaised, "pot-1", "pot-1 提醒", alertFields())
	got := w.wait(t, 1)[0]
	if got.Status != actors.PushFailed || got.ErrCode != 45009 || !strings.Contains(got.LastError, "daily template quota") || !got.NextAttemptAt.IsZero() {
		t.Fatalf("push = %+v; want failed at once with the quota named", got)
	}
	if !slices.ContainsFunc(bridge.OperatorAlerts(), func(a bridge.OperatorAlert) bool { return a.ErrCode == 45009 }) {
		t.Fatalf("operator alerts = %+v, want 45009", bridge.OperatorAlerts())
	}
}

// TestRefusedTemplateStopsItsKindAndIsReported: 40037/47003 fail the push, stop that kind's
// template until it is learned again, and show in Problems and the operator alerts.
func TestRefusedTemplateStopsItsKindAndIsReported(t *testing.T) {
	w := newPushWorld(t, nil)
	w.wx.failNext("/cgi-bin/message/template/send", 40037)
	w.enqueue(t, "oAlice", actors.MsgAlertCleared, "pot-1", "cleared", alertFields())
	if got := w.wait(t, 1)[0]; got.Status != actors.PushFailed || got.ErrCode != 40037 {
		t.Fatalf("push = %+v", got)
	}
	if p := w.tpl.Problems()[actors.MsgAlertCleared]; !strings.Contains(p, "40037") {
		t.Fatalf("problems = %v", w.tpl.Problems())
	}
	w.enqueue(t, "oBob", actors.MsgAlertCleared, "pot-1", "cleared", alertFields())
	if got := w.wait(t, 1)[0]; got.Status != actors.PushFailed || len(w.wx.sent()) != 1 {
		t.Fatalf("next push of the kind = %+v after %d calls; want failed without a call", got, len(w.wx.sent()))
	}
	// Other kinds are not affected; learning again clears it.
	w.enqueue(t, "oBob", actors.MsgAlertRaised, "pot-2", "raised", alertFields())
	if got := w.wait(t, 1)[0]; got.Status != actors.PushSent {
		t.Fatalf("another kind = %+v", got)
	}
	if err := w.tpl.Refresh(w.ctx); err != nil {
		t.Fatal(err)
	}
	if p, ok := w.tpl.Problems()[actors.MsgAlertCleared]; ok {
		t.Fatalf("after learning again: %s", p)
	}
}

// TestStaleAndClearedAlertsAreNotSentLate: a message past its time to live is skipped; an alert
// that cleared before it went out is skipped, and its clearing says both, after it.
func TestStaleAndClearedAlertsAreNotSentLate(t *testing.T) {
	w := newPushWorld(t, nil)
	w.enqueue(t, "oAlice", actors.MsgCommandOutcome, "pot-3", "old", actors.MessageFields{What: "浇水", State: "成功"})
	w.clk.Advance(2 * time.Hour)
	if got := w.wait(t, 1)[0]; got.Status != actors.PushSkipped || !strings.Contains(got.LastError, "expired") {
		t.Fatalf("an outcome two hours old = %+v, want skipped as expired", got)
	}
	w.enqueue(t, "oAlice", actors.MsgAlertRaised, "pot-1", "raised", alertFields())
	w.enqueue(t, "oAlice", actors.MsgAlertCleared, "pot-1", "cleared", alertFields())
	got := w.wait(t, 2)
	if got[0].Status != actors.PushSkipped || got[1].Status != actors.PushSent {
		t.Fatalf("raised, cleared = %+v / %+v; want raised skipped, cleared sent", got[0], got[1])
	}
	calls := w.wx.sent()
	if len(calls) != 1 || calls[0].TemplateID != "tmpl_alert_cleared" {
		t.Fatalf("calls = %+v, want the clearing only", calls)
	}
}

// TestRaisedIsHeardBeforeCleared: a raised alert that WeChat is busy for is retried, and its
// clearing waits for it, across the pusher's retries.
func TestRaisedIsHeardBeforeCleared(t *testing.T) {
	w := newPushWorld(t, nil)
	w.wx.failNext("/cgi-bin/message/template/send", -1)
	w.enqueue(t, "oAlice", actors.MsgAlertRaised, "pot-1", "raised", alertFields())
	f := alertFields()
	f.AlertKey = "pot-1|HOT" // another alert of the same pot: not a clearing of the first
	w.enqueue(t, "oAlice", actors.MsgAlertCleared, "pot-1", "cleared", f)
	if got := w.wait(t, 1)[0]; got.Status != actors.PushPending || got.ErrCode != -1 {
		t.Fatalf("first attempt = %+v, want pending (busy)", got)
	}
	w.clk.Advance(5 * time.Minute)
	got := w.wait(t, 2)
	calls := w.wx.sent()
	if len(calls) != 3 || calls[1].TemplateID != "tmpl_alert_raised" || calls[2].TemplateID != "tmpl_alert_cleared" {
		t.Fatalf("calls = %+v; want raised (busy), raised, cleared", calls)
	}
	_ = got
}

// TestTemplateReceiptIsRecordedOnItsPush: TEMPLATESENDJOBFINISH is recorded against the push sent
// with its msgid, and never reaches the user grain (no cluster is needed to answer it).
func TestTemplateReceiptIsRecordedOnItsPush(t *testing.T) {
	w := newPushWorld(t, nil)
	w.enqueue(t, "oAlice", actors.MsgAlertRaised, "pot-1", "raised", alertFields())
	sent := w.wait(t, 1)[0]
	if sent.MsgID == "" {
		t.Fatalf("push = %+v, want a msgid", sent)
	}
	d := &bridge.Dispatcher{Receipts: w.st, Logger: edgetest.Quiet()}
	r, err := d.Dispatch(w.ctx, &wechat.Message{FromUserName: "oAlice", MsgType: wechat.MsgTypeEvent,
		Event: bridge.EventTemplateFinished, MsgID: sent.MsgID, Status: "failed:user block"})
	if err != nil || r != nil {
		t.Fatalf("dispatch = %v, %v; want success", r, err)
	}
	ps, _ := w.st.UserPushes(w.ctx, "oAlice", 0)
	if ps[0].Receipt != "failed:user block" {
		t.Fatalf("push after its receipt = %+v", ps[0])
	}
	if _, err := d.Dispatch(w.ctx, &wechat.Message{FromUserName: "oAlice", MsgType: wechat.MsgTypeEvent,
		Event: bridge.EventTemplateFinished, MsgID: "999", Status: "success"}); err != nil {
		t.Fatalf("a receipt for an unknown msgid: %v", err)
	}
}

// TestUnusableTemplatesAreReportedWhenLearned: at start-up (Refresh) a configured id the account
// does not have, a template with a key Sprout cannot fill and a kind without a template are each
// reported with what is wrong; such a kind's messages fail with that reason once the user's
// allowance is used up, and the others are sent.
func TestUnusableTemplatesAreReportedWhenLearned(t *testing.T) {
	w := newPushWorld(t, map[string]string{actors.MsgAlertRaised: "tmpl_gone", actors.MsgCommandOutcome: "tmpl_car",
		actors.MsgAlertCleared: "tmpl_alert_cleared"})
	w.wx.mu.Lock()
	w.wx.templates["tmpl_car"] = "设备名称：{{thing1.DATA}}\n车牌：{{car_number2.DATA}}"
	w.wx.mu.Unlock()
	if err := w.tpl.Refresh(w.ctx); err != nil {
		t.Fatal(err)
	}
	p := w.tpl.Problems()
	for kind, want := range map[string]string{actors.MsgAlertRaised: "not one of the account's templates",
		actors.MsgCommandOutcome: "car_number", actors.MsgJoinRequest: "no template configured"} {
		if !strings.Contains(p[kind], want) {
			t.Errorf("problem of %s = %q, want it to say %q", kind, p[kind], want)
		}
	}
	if _, ok := p[actors.MsgAlertCleared]; ok {
		t.Errorf("a usable template reported: %q", p[actors.MsgAlertCleared])
	}
	w.enqueue(t, "oAlice", actors.MsgAlertRaised, "pot-1", "raised", alertFields())
	if got := w.wait(t, 1)[0]; got.Status != actors.PushFailed || !strings.Contains(got.LastError, "not one of the account's templates") {
		t.Fatalf("a message of a kind whose template is unusable = %+v", got)
	}
	if n := len(w.wx.sent()); n != 0 {
		t.Fatalf("%d calls to WeChat for it", n)
	}
}
