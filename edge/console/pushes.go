package console

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sort"

	"github.com/go-chi/chi/v5"

	"github.com/sprout-iot/sprout/actors"
)

// PushHealth is what the console shows about reaching WeChat users beside the failed pushes:
// each message kind's template problem, and refusals only the operator can fix.
type PushHealth struct {
	TemplateProblems map[string]string // by message kind
	OperatorAlerts   []OperatorAlert
}

// OperatorAlert is WeChat's latest refusal of one kind and errcode that needs the operator.
type OperatorAlert struct {
	Kind, Last string
	ErrCode    int
	Count      int64
}

// pushesView is the pushes page: messages that failed for good, with why, each with "send again".
type pushesView struct {
	Failed   []failedPush
	Problems []kindProblem
	Alerts   []OperatorAlert
}

type failedPush struct {
	actors.Push
	MessageKind, Text string
}

type kindProblem struct{ Kind, Problem string }

// pushStore is the outbox, when the console's store keeps one.
func (h *Handler) pushStore() actors.UserStore {
	us, _ := h.opts.Store.(actors.UserStore)
	return us
}

func (h *Handler) loadPushes(ctx context.Context) (*pushesView, error) {
	v := &pushesView{}
	if h.opts.PushHealth != nil {
		ph := h.opts.PushHealth()
		for k, p := range ph.TemplateProblems {
			v.Problems = append(v.Problems, kindProblem{k, p})
		}
		sort.Slice(v.Problems, func(i, j int) bool { return v.Problems[i].Kind < v.Problems[j].Kind })
		v.Alerts = ph.OperatorAlerts
	}
	us := h.pushStore()
	if us == nil {
		return v, nil
	}
	ps, err := us.FailedPushes(ctx, 200)
	if err != nil {
		return nil, err
	}
	for _, p := range ps {
		var pl actors.PushPayload
		_ = json.Unmarshal(p.Payload, &pl)
		kind := pl.MessageKind
		if kind == "" {
			kind = p.Kind
		}
		v.Failed = append(v.Failed, failedPush{Push: p, MessageKind: kind, Text: pl.Text})
	}
	return v, nil
}

func (h *Handler) showPushes(w http.ResponseWriter, r *http.Request, status int, msg string, good bool) {
	ctx, cancel := context.WithTimeout(r.Context(), h.opts.GrainTimeout)
	defer cancel()
	v, err := h.loadPushes(ctx)
	if err != nil {
		h.opts.Logger.Error("console: listing failed pushes", "err", err)
		h.messagePage(w, r, http.StatusServiceUnavailable, "unavailable")
		return
	}
	p := h.newPage(r)
	p.Pushes, p.Message, p.Good = v, msg, good
	h.render(w, status, "pushes.html", p)
}

// pushes lists the messages that failed for good, the templates' problems and the refusals that
// need the operator.
func (h *Handler) pushes(w http.ResponseWriter, r *http.Request) {
	h.showPushes(w, r, http.StatusOK, "", false)
}

// retryPush sends a failed message again: it goes back in the outbox, due now, and the pusher
// chooses its channel afresh (a user who followed again, a template fixed meanwhile).
func (h *Handler) retryPush(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	us := h.pushStore()
	if us == nil {
		h.messagePage(w, r, http.StatusNotFound, "unknown_push", id)
		return
	}
	err := us.RetryPush(r.Context(), id, h.opts.Now())
	switch {
	case errors.Is(err, actors.ErrNotFailed):
		h.showPushes(w, r, http.StatusConflict, tr(langOf(r), "push_not_failed")+" "+id, false)
	case err != nil:
		h.opts.Logger.Error("console: retrying a push", "push", id, "err", err)
		h.messagePage(w, r, http.StatusServiceUnavailable, "unavailable")
	default:
		h.opts.Logger.Info("console: push sent again", "push", id)
		if h.opts.PushWake != nil {
			h.opts.PushWake()
		}
		h.showPushes(w, r, http.StatusOK, tr(langOf(r), "push_retried")+" "+id, true)
	}
}

// The pushes page's texts, added to the console's (i18n.go).
func init() {
	for k, v := range map[string]string{
		"pushes":          "微信消息",
		"push_templates":  "模板问题",
		"push_operator":   "需要运营处理的微信拒绝",
		"push_failed":     "发送失败的消息",
		"push_none":       "没有发送失败的消息。",
		"push_when":       "时间",
		"push_user":       "用户",
		"push_kind":       "类型",
		"push_channel":    "渠道",
		"push_reason":     "原因",
		"push_count":      "次数",
		"push_retry":      "重新发送",
		"push_retried":    "已重新排队发送",
		"push_not_failed": "这条消息不是发送失败状态",
		"unknown_push":    "没有这条消息",
	} {
		textsZH[k] = v
	}
	for k, v := range map[string]string{
		"pushes":          "WeChat messages",
		"push_templates":  "Template problems",
		"push_operator":   "WeChat refusals the operator must fix",
		"push_failed":     "Messages that failed",
		"push_none":       "No message failed.",
		"push_when":       "When",
		"push_user":       "User",
		"push_kind":       "Kind",
		"push_channel":    "Channel",
		"push_reason":     "Reason",
		"push_count":      "Count",
		"push_retry":      "Send again",
		"push_retried":    "Queued to be sent again",
		"push_not_failed": "This message has not failed",
		"unknown_push":    "No such message",
	} {
		textsEN[k] = v
	}
}
