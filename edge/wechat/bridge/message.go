package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/cluster/observe"
	"github.com/sprout-iot/sprout/edge/wechat/api"
)

// Push results of messages beyond observe's sent/failed/retried.
const pushSkipped = "skipped"

// message makes one attempt at a PushMessage: it chooses the channel from the user's contact
// state now (a customer-service text while their allowance lasts, consumed atomically in the
// store; else the kind's template), falls back to the template at once when WeChat refuses the
// text (45015, 45047), stops for a user who unfollowed (43004), and records what happened on the
// push (status, channel, errcode, msgid, reason). It returns the push to record.
func (p *Pusher) message(ctx context.Context, push actors.Push, pl actors.PushPayload) actors.Push {
	now := p.opts.Now()
	kind := pl.MessageKind
	push.Attempts++
	f := actors.MessageFields{}
	if pl.Fields != nil {
		f = *pl.Fields
	}
	done := func(status, reason string) actors.Push {
		push.Status, push.LastError = status, reason
		switch status {
		case actors.PushSent:
			push.SentAt = now
			observe.Pushed(observe.PushSent, kind)
		case actors.PushFailed:
			observe.Pushed(observe.PushFailed, kind)
			p.opts.Logger.WarnContext(ctx, "message failed for good", "push", push.ID, "kind", kind, "user", push.OpenID,
				"channel", push.Channel, "errcode", push.ErrCode, "reason", reason)
		case actors.PushSkipped:
			observe.Pushed(pushSkipped, kind)
			p.opts.Logger.InfoContext(ctx, "message not sent", "push", push.ID, "kind", kind, "reason", reason)
		}
		return push
	}
	retry := func(err error) actors.Push {
		if push.Attempts >= p.opts.MaxAttempts {
			return done(actors.PushFailed, err.Error())
		}
		observe.Pushed(observe.PushRetried, kind)
		wait := p.opts.MinBackoff << min(push.Attempts-1, 20)
		if ra, ok := api.RetryAfter(err); ok && ra > wait {
			wait = ra
		}
		wait = min(wait, p.opts.MaxBackoff)
		wait = wait/2 + rand.N(wait/2+1)
		push.LastError, push.NextAttemptAt = err.Error(), now.Add(wait)
		return push
	}
	c, cancel := context.WithTimeout(ctx, p.opts.SendTimeout)
	defer cancel()

	// Freshness: an old message is not worth sending; an alert that cleared before it went out
	// is not sent (its clearing says both).
	if ttl := p.opts.TTL[kind]; ttl > 0 && now.Sub(push.CreatedAt) > ttl {
		return done(actors.PushSkipped, fmt.Sprintf("expired: not sent within its time to live (%s)", ttl))
	}
	text := pl.Text
	if f.AlertKey != "" {
		switch kind {
		case actors.MsgAlertRaised:
			if p.clearedLater(c, push, f.AlertKey) {
				return done(actors.PushSkipped, "the alert cleared before it was sent; its clearing tells the user both")
			}
		case actors.MsgAlertCleared:
			if pl.Combined != "" && p.raisedUnsent(c, push, f.AlertKey) {
				text, f.Detail = pl.Combined, pl.Combined
				f.State = "已恢复"
			}
		}
	}

	contact, err := p.store.Contact(c, push.OpenID)
	if err != nil {
		return retry(fmt.Errorf("reading the user's contact state: %w", err))
	}
	if !contact.Follows() {
		push.ErrCode = 43004
		return done(actors.PushFailed, "the user does not follow the account (unsubscribed or WeChat answered 43004): nothing is sent until they follow again")
	}
	var csErr error
	triedCS := false
	took, err := p.store.TakeServiceSend(c, push.OpenID, now)
	if err != nil {
		p.opts.Logger.Warn("reading the user's customer-service allowance failed; using the template", "user", push.OpenID, "err", err)
	}
	if took {
		triedCS = true
		push.Channel = actors.ChannelCS
		csErr = p.callText(c, push, text)
		switch api.Classify(csErr) {
		case 0:
			push.ErrCode = 0
			return done(actors.PushSent, "")
		case api.ActionRetry:
			// WeChat did not take it (busy, a network failure): the send is given back to the
			// window it was taken from.
			push.ErrCode = api.Code(csErr)
			p.contactEvent(c, push.OpenID, actors.ContactUnused, contact.At)
			return retry(csErr)
		case api.ActionFallback:
			// 45015/45047: WeChat's count differs from ours (another sender, a clock): the window
			// is spent. The same message goes out through the template at once.
			push.ErrCode = api.Code(csErr)
			p.contactEvent(c, push.OpenID, actors.ContactClosed, now)
		case api.ActionStopUser:
			push.ErrCode = api.Code(csErr)
			return p.stopUser(c, push.OpenID, csErr, now, done)
		default:
			push.ErrCode = api.Code(csErr)
			p.operatorAlert(kind, push.ErrCode, csErr.Error())
			return done(actors.PushFailed, csErr.Error())
		}
	}

	if p.opts.Templates == nil {
		return done(actors.PushFailed, p.reason(csErr, "no templates are configured and the user's customer-service allowance is used up"))
	}
	id, data, err := p.opts.Templates.Fill(kind, f)
	if err != nil {
		return done(actors.PushFailed, p.reason(csErr, err.Error()+"; the user's customer-service allowance is used up"))
	}
	push.Channel = actors.ChannelTemplate
	url := ""
	if p.opts.PageURL != nil {
		url = p.opts.PageURL(pl.DeviceID)
	}
	msgID, err := p.callTemplate(c, push, api.TemplateMessage{ToUser: push.OpenID, TemplateID: id, URL: url, ClientMsgID: push.ID, Data: data})
	switch api.Classify(err) {
	case 0:
		if csErr == nil {
			push.ErrCode = 0
		}
		push.MsgID = fmt.Sprint(msgID)
		return done(actors.PushSent, "")
	case api.ActionRetry:
		push.ErrCode = api.Code(err)
		return retry(err)
	case api.ActionFallback:
		// 45009: the day's template quota is used up. Not held until midnight: a text if the
		// user's allowance allows one, else failed now, with the reason, for the console.
		push.ErrCode = api.Code(err)
		p.operatorAlert(kind, push.ErrCode, err.Error())
		if !triedCS {
			if ok, _ := p.store.TakeServiceSend(c, push.OpenID, now); ok {
				push.Channel = actors.ChannelCS
				if e := p.callText(c, push, text); e == nil {
					return done(actors.PushSent, "")
				} else {
					err = fmt.Errorf("%w; the customer-service text too: %v", err, e)
				}
			}
		}
		return done(actors.PushFailed, "the account's daily template quota is used up (45009) and the user's customer-service allowance too: "+err.Error())
	case api.ActionStopUser:
		push.ErrCode = api.Code(err)
		return p.stopUser(c, push.OpenID, err, now, done)
	default:
		push.ErrCode = api.Code(err)
		if errors.Is(err, api.ErrTemplate) {
			p.opts.Templates.MarkBroken(kind, fmt.Sprintf("WeChat refused template %s: %v (stopped until the templates are learned again)", id, err))
		}
		p.operatorAlert(kind, push.ErrCode, err.Error())
		return done(actors.PushFailed, err.Error())
	}
}

// reason prefixes a failure with the customer-service refusal that led to the template.
func (p *Pusher) reason(csErr error, why string) string {
	if csErr != nil {
		return fmt.Sprintf("customer-service text refused (%v); %s", csErr, why)
	}
	return why
}

// stopUser records that the user cannot be reached (43004: unfollowed) and fails the push.
func (p *Pusher) stopUser(ctx context.Context, openID string, err error, now time.Time, done func(string, string) actors.Push) actors.Push {
	if errors.Is(err, api.ErrNotFollowing) {
		p.contactEvent(ctx, openID, actors.ContactRefused, now)
		return done(actors.PushFailed, "the user does not follow the account (43004): nothing is sent until they follow again")
	}
	return done(actors.PushFailed, err.Error())
}

func (p *Pusher) contactEvent(ctx context.Context, openID, kind string, at time.Time) {
	if err := p.store.RecordContact(ctx, openID, actors.ContactEvent{Kind: kind, At: at}); err != nil {
		p.opts.Logger.Warn("recording the user's contact state failed", "user", openID, "event", kind, "err", err)
	}
}

func (p *Pusher) callText(ctx context.Context, push actors.Push, text string) (err error) {
	ctx, span := observe.Child(ctx, "wechat.api text")
	defer func() { observe.End(span, err) }()
	return p.client.SendText(ctx, push.OpenID, text)
}

func (p *Pusher) callTemplate(ctx context.Context, push actors.Push, m api.TemplateMessage) (id int64, err error) {
	ctx, span := observe.Child(ctx, "wechat.api template")
	defer func() { observe.End(span, err) }()
	return p.client.SendTemplate(ctx, m)
}

// clearedLater reports whether a newer alert_cleared of the same alert waits for the user.
func (p *Pusher) clearedLater(ctx context.Context, push actors.Push, key string) bool {
	return p.findAlert(ctx, push, key, func(q actors.Push, kind string) bool {
		return kind == actors.MsgAlertCleared && q.Status == actors.PushPending && q.CreatedAt.After(push.CreatedAt)
	})
}

// raisedUnsent reports whether this clearing's alert was never heard: the latest older
// alert_raised of the same alert was skipped or failed.
func (p *Pusher) raisedUnsent(ctx context.Context, push actors.Push, key string) bool {
	ps, err := p.store.UserPushes(ctx, push.OpenID, 200)
	if err != nil {
		return false
	}
	for _, q := range ps { // newest first
		if q.ID == push.ID || !q.CreatedAt.Before(push.CreatedAt) || q.Kind != actors.PushMessage {
			continue
		}
		kind, k := payloadAlert(q)
		if k != key {
			continue
		}
		if kind == actors.MsgAlertRaised {
			return q.Status == actors.PushSkipped || q.Status == actors.PushFailed
		}
		if kind == actors.MsgAlertCleared {
			return false
		}
	}
	return false
}

func (p *Pusher) findAlert(ctx context.Context, push actors.Push, key string, match func(actors.Push, string) bool) bool {
	ps, err := p.store.UserPushes(ctx, push.OpenID, 200)
	if err != nil {
		return false
	}
	for _, q := range ps {
		if q.ID == push.ID || q.Kind != actors.PushMessage {
			continue
		}
		if kind, k := payloadAlert(q); k == key && match(q, kind) {
			return true
		}
	}
	return false
}

func payloadAlert(q actors.Push) (kind, key string) {
	if !strings.Contains(string(q.Payload), `"alert_key"`) {
		return "", ""
	}
	var pl actors.PushPayload
	if err := json.Unmarshal(q.Payload, &pl); err != nil || pl.Fields == nil {
		return "", ""
	}
	return pl.MessageKind, pl.Fields.AlertKey
}

// Operator alerts: refusals that need the operator (a template WeChat refuses, a permission,
// the IP whitelist, the daily quota): logged as errors, counted by kind and errcode, shown in the
// console and on /metrics (sprout_wechat_operator_alerts_total).
var (
	opMu      sync.Mutex
	opAlerts  = map[string]*OperatorAlert{}
	opCounter atomic.Pointer[metric.Int64Counter]
)

// OperatorAlert is the latest refusal of one kind and errcode that needs the operator.
type OperatorAlert struct {
	Kind    string
	ErrCode int
	Count   int64
	Last    string
	At      time.Time
}

// OperatorAlerts lists the refusals needing the operator since this process started.
func OperatorAlerts() []OperatorAlert {
	opMu.Lock()
	defer opMu.Unlock()
	out := make([]OperatorAlert, 0, len(opAlerts))
	for _, k := range sortedKeys(opAlerts) {
		out = append(out, *opAlerts[k])
	}
	return out
}

func (p *Pusher) operatorAlert(kind string, code int, msg string) {
	p.opts.Logger.Error("WeChat refused a message in a way only the operator can fix", "kind", kind, "errcode", code, "err", msg)
	opMu.Lock()
	k := fmt.Sprintf("%s/%d", kind, code)
	a := opAlerts[k]
	if a == nil {
		a = &OperatorAlert{Kind: kind, ErrCode: code}
		opAlerts[k] = a
	}
	a.Count++
	a.Last, a.At = msg, p.opts.Now()
	if opCounter.Load() == nil {
		if m := observe.Meter(); m != nil {
			if c, err := m.Int64Counter("sprout.wechat.operator.alerts", metric.WithUnit("{refusal}"),
				metric.WithDescription("WeChat refusals of messages that need the operator, by message kind and errcode.")); err == nil {
				opCounter.Store(&c)
			}
		}
	}
	opMu.Unlock()
	if c := opCounter.Load(); c != nil {
		(*c).Add(context.Background(), 1, metric.WithAttributes(attribute.String("kind", kind), attribute.Int("errcode", code)))
	}
}
