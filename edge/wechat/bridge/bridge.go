// Package bridge connects the WeChat protocol layer (edge/wechat) to the grains: the Dispatcher
// hands each verified callback to its user's grain, the token grain is the cluster's one owner of
// the access token, and the Pusher drains the persisted push outbox into WeChat's API.
package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/cluster/observe"
	"github.com/sprout-iot/sprout/edge/wechat"
	"github.com/sprout-iot/sprout/edge/wechat/api"
	"github.com/sprout-iot/sprout/messages/actorpb"
)

// StillWorking is the passive reply when a user's grain has not answered within WeChat's time. It
// does not say that nothing was done: the grain may still act (a watering may be under way), and
// it pushes its answer when it is in (UserMessage.reply_within_ms).
const StillWorking = "还在处理，结果稍后通知你。Still working on it; you will hear the result."

// Dispatcher implements wechat.Dispatcher: each callback goes to the sender's user grain, which
// dedupes WeChat's retries cluster-wide and answers within the budget.
type Dispatcher struct {
	Cluster *pcluster.Cluster
	Logger  *slog.Logger
	// Receipts, if set, records template delivery receipts (TEMPLATESENDJOBFINISH) on their
	// pushes; they are not the user's action and never reach the user grain.
	Receipts actors.UserStore
}

// EventTemplateFinished is the template delivery receipt event.
const EventTemplateFinished = "TEMPLATESENDJOBFINISH"

// Dispatch hands m to its user grain and turns the grain's answer into the passive reply.
func (d *Dispatcher) Dispatch(ctx context.Context, m *wechat.Message) (*wechat.Reply, error) {
	if m.FromUserName == "" {
		return wechat.Success(), nil
	}
	if m.MsgType == wechat.MsgTypeEvent && m.Event == EventTemplateFinished {
		if d.Receipts != nil {
			found, err := d.recordReceipt(ctx, m.MsgID, m.Status)
			if err != nil {
				return nil, fmt.Errorf("recording the receipt of template message %s: %w", m.MsgID, err)
			}
			if !found && d.Logger != nil {
				d.Logger.Info("a template receipt for a message Sprout has no record of", "msgid", m.MsgID, "status", m.Status)
			}
		}
		return wechat.Success(), nil
	}
	um := &actorpb.UserMessage{DedupKey: m.DedupKey(), MsgType: m.MsgType, Event: m.Event, EventKey: m.Scene(),
		Content: m.Content, DeviceType: m.DeviceType, DeviceId: m.DeviceID, SessionId: m.SessionID,
		OpType: int32(m.OpType), CreateTime: m.CreateTime}
	if um.EventKey == "" {
		um.EventKey = m.EventKey
	}
	if m.MsgType == wechat.MsgTypeDeviceText || m.MsgType == wechat.MsgTypeDeviceEvent {
		um.Content = ""
		if b, err := m.DeviceData(); err == nil {
			um.DeviceData = b
		}
	}
	timeout := 3 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl) - 50*time.Millisecond
	}
	if timeout <= 0 {
		return wechat.Success(), nil
	}
	ctx, span := observe.StartRoot(ctx, "wechat.callback", trace.SpanKindServer)
	defer span.End()
	span.SetAttributes(attribute.String("wechat.msg_type", m.MsgType), attribute.String("wechat.event", m.Event))
	um.Trace = observe.Inject(ctx)
	um.ReplyWithinMs = uint32(timeout / time.Millisecond)
	res, err := d.request(m.FromUserName, um, timeout)
	if err != nil {
		observe.Fail(span, err)
		// The user's grain did not answer in time: it may still be asking the pot, or about to
		// send a command. The user hears that honestly, at once; the grain pushes its answer when
		// it has one (ReplyWithinMs), and a second tap for the same pot joins the first command.
		if d.Logger != nil {
			d.Logger.Warn("user grain did not answer in time; told the user the answer follows", "user", m.FromUserName, "err", err)
		}
		if m.MsgType == wechat.MsgTypeText || m.MsgType == wechat.MsgTypeEvent {
			return wechat.TextReply(StillWorking), nil
		}
		return nil, fmt.Errorf("user grain %s: %w", m.FromUserName, err)
	}
	r, ok := res.(*actorpb.UserReply)
	if !ok {
		return nil, fmt.Errorf("user grain %s: unexpected reply %T", m.FromUserName, res)
	}
	switch r.Kind {
	case actorpb.UserReply_KIND_TEXT:
		return wechat.TextReply(r.Text), nil
	case actorpb.UserReply_KIND_DEVICE_TEXT:
		return wechat.DeviceTextReply(m, r.DeviceData), nil
	case actorpb.UserReply_KIND_DEVICE_STATUS:
		return wechat.DeviceStatusReply(m, r.Connected), nil
	}
	return wechat.Success(), nil
}

// receiptWait is how long a receipt waits for its push's msgid to be recorded: WeChat may post
// TEMPLATESENDJOBFINISH before the pusher has written the answer of the send it belongs to.
const receiptWait = 2 * time.Second

// recordReceipt records a receipt on its push, waiting up to receiptWait for the push's msgid.
func (d *Dispatcher) recordReceipt(ctx context.Context, msgID, status string) (bool, error) {
	deadline := time.Now().Add(receiptWait)
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		found, err := d.Receipts.RecordReceipt(ctx, msgID, status)
		if found || err != nil || msgID == "" || time.Now().After(deadline) {
			return found, err
		}
		select {
		case <-ctx.Done():
			return false, nil
		case <-t.C:
		}
	}
}

// request asks the user's grain and gives up after timeout. The deadline is kept here: the
// cluster's own request timeout does not bound finding the grain's activation.
func (d *Dispatcher) request(openID string, um *actorpb.UserMessage, timeout time.Duration) (any, error) {
	type result struct {
		res any
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := d.Cluster.Request(openID, actors.UserKind, um, pcluster.WithTimeout(timeout))
		done <- result{res, err}
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case r := <-done:
		return r.res, r.err
	case <-t.C:
		return nil, errors.New("no answer in time")
	}
}

// TokenKind is the cluster kind of the token grain; the identity is the AppID.
const TokenKind = "wxtoken"

// NewTokenKind returns the token grain's kind. fetch gets a new token from WeChat; only the one
// activation of the grain in the cluster calls it, so fetches cannot revoke each other.
func NewTokenKind(fetch api.FetchFunc, opts api.CacheOptions) *pcluster.Kind {
	return pcluster.NewKind(TokenKind, actor.PropsFromProducer(func() actor.Actor {
		return &tokenGrain{cache: api.NewTokenCache(fetch, opts)}
	}))
}

type tokenGrain struct{ cache *api.TokenCache }

func (g *tokenGrain) Receive(ctx actor.Context) {
	m, ok := ctx.Message().(*actorpb.TokenRequest)
	if !ok {
		return
	}
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if m.Invalidate != "" {
		g.cache.Invalidate(c, m.Invalidate)
	}
	tok, err := g.cache.Token(c)
	if err != nil {
		ctx.Respond(&actorpb.TokenReply{Error: err.Error()})
		return
	}
	ctx.Respond(&actorpb.TokenReply{Token: tok})
}

// GrainTokens is an api.TokenSource backed by the token grain, usable on every node.
type GrainTokens struct {
	Cluster *pcluster.Cluster
	AppID   string
}

func (t *GrainTokens) request(ctx context.Context, m *actorpb.TokenRequest) (string, error) {
	timeout := 12 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	res, err := t.Cluster.Request(t.AppID, TokenKind, m, pcluster.WithTimeout(timeout))
	if err != nil {
		return "", fmt.Errorf("token grain: %w", err)
	}
	r, _ := res.(*actorpb.TokenReply)
	if r == nil {
		return "", errors.New("token grain: no reply")
	}
	if r.Error != "" {
		return "", errors.New(r.Error)
	}
	return r.Token, nil
}

// Token implements api.TokenSource.
func (t *GrainTokens) Token(ctx context.Context) (string, error) {
	return t.request(ctx, &actorpb.TokenRequest{})
}

// Invalidate implements api.TokenSource.
func (t *GrainTokens) Invalidate(ctx context.Context, bad string) {
	_, _ = t.request(ctx, &actorpb.TokenRequest{Invalidate: bad})
}

// PusherOptions are the outbox worker's limits.
type PusherOptions struct {
	// Owner names this node in push leases.
	Owner string
	// Poll is how often the outbox is read when nothing wakes the pusher (default 1 s).
	Poll time.Duration
	// Lease is how long a claimed push is this node's before another may take it (default 15 s,
	// three times SendTimeout). The pusher renews a push's lease right before sending it, so
	// the lease must cover one send and the write of its fate, not a whole batch; a push whose
	// lease another node took meanwhile (this node's batch was slower than the lease) is not
	// sent.
	Lease time.Duration
	// Batch is how many pushes one claim takes (default 100); Workers send them concurrently (default 16).
	Batch, Workers int
	// MaxAttempts before a push that keeps failing is recorded as failed for good (default 8);
	// retries back off from MinBackoff (1 s) doubling to MaxBackoff (5 min), with jitter.
	MaxAttempts            int
	MinBackoff, MaxBackoff time.Duration
	// SendTimeout bounds one API call (default 5 s). Stopping the pusher waits for the calls in
	// flight, so it also bounds how long a stop takes.
	SendTimeout time.Duration
	Now         func() time.Time
	Logger      *slog.Logger
	// Sent, if set, is called once for each push this pusher claimed, when it is done with it
	// (metrics, tests): after its fate is recorded, or with the push as claimed (pending) when it
	// was not sent (its lease was lost, or it was released because the pusher stopped).
	Sent func(actors.Push)
	// Templates fills each message kind's template (nil: messages go out as customer-service
	// texts only, while the user's allowance lasts).
	Templates *Templates
	// PageURL is the link a template opens for a pot ("" for none; PublicURL + /app/plants/<id>
	// in sprout serve); called with "" for messages about no one pot.
	PageURL func(deviceID string) string
	// TTL is how long a message of each kind is worth sending (DefaultTTL for kinds not set); an
	// older one is recorded skipped ("expired") instead of being sent late.
	TTL map[string]time.Duration
}

// DefaultTTL is each message kind's time to live.
var DefaultTTL = map[string]time.Duration{
	actors.MsgAlertRaised:    6 * time.Hour,
	actors.MsgAlertCleared:   6 * time.Hour,
	actors.MsgCommandOutcome: time.Hour,
	actors.MsgDeviceNotice:   2 * time.Hour,
	actors.MsgJoinRequest:    24 * time.Hour,
	actors.MsgJoinResult:     24 * time.Hour,
	actors.MsgReplyLater:     10 * time.Minute,
}

// Pusher sends the outbox's pushes: at least once (leases survive a dead node), deduplicated by
// client_msg_id where WeChat supports it, retried with backoff, permanent failures recorded.
// A push is sent only under a lease this pusher holds (renewed right before the send), so a
// slow node does not send what another node has taken over.
type Pusher struct {
	opts   PusherOptions
	store  actors.UserStore
	client *api.Client
	wake   chan struct{}
}

// NewPusher returns a pusher; call Run.
func NewPusher(st actors.UserStore, client *api.Client, o PusherOptions) *Pusher {
	if o.Poll == 0 {
		o.Poll = time.Second
	}
	if o.SendTimeout == 0 {
		o.SendTimeout = 5 * time.Second
	}
	if o.Lease == 0 {
		o.Lease = 3 * o.SendTimeout
	}
	if o.Batch == 0 {
		o.Batch = 100
	}
	if o.Workers == 0 {
		o.Workers = 16
	}
	if o.MaxAttempts == 0 {
		o.MaxAttempts = 8
	}
	if o.MinBackoff == 0 {
		o.MinBackoff = time.Second
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = 5 * time.Minute
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Owner == "" {
		o.Owner = fmt.Sprintf("node-%d", rand.Uint32())
	}
	ttl := map[string]time.Duration{}
	for k, v := range DefaultTTL {
		ttl[k] = v
	}
	for k, v := range o.TTL {
		ttl[k] = v
	}
	o.TTL = ttl
	return &Pusher{opts: o, store: st, client: client, wake: make(chan struct{}, 1)}
}

// Wake makes the pusher read the outbox now (a grain just enqueued something).
func (p *Pusher) Wake() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Run sends pushes until ctx ends. It then claims nothing more, lets the sends in flight finish
// and records their fate (each bounded by SendTimeout), releases the claimed pushes it has not
// begun to send (another node may take them at once), and only then returns: a node that waits
// for Run on shutdown leaves no push half-done.
func (p *Pusher) Run(ctx context.Context) {
	t := time.NewTicker(p.opts.Poll)
	defer t.Stop()
	for {
		for ctx.Err() == nil && p.drain(ctx) {
		}
		select {
		case <-ctx.Done():
			return
		case <-p.wake:
		case <-t.C:
		}
	}
}

// drain sends one claimed batch; it reports whether the batch was full (more may wait).
func (p *Pusher) drain(ctx context.Context) bool {
	c, cancel := context.WithTimeout(ctx, 5*time.Second)
	ps, err := p.store.ClaimPushes(c, p.opts.Owner, p.opts.Now(), p.opts.Lease, p.opts.Batch)
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			p.opts.Logger.Warn("claiming pushes failed", "err", err)
		}
		return false
	}
	sem := make(chan struct{}, p.opts.Workers)
	var wg sync.WaitGroup
	for _, push := range ps {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			p.handle(ctx, push)
		})
	}
	wg.Wait()
	return len(ps) == p.opts.Batch
}

// handle sends one claimed push, unless the pusher is stopping (then it releases the push) or no
// longer holds its lease (then another pusher has it).
func (p *Pusher) handle(ctx context.Context, push actors.Push) {
	done := push
	defer func() {
		if p.opts.Sent != nil {
			p.opts.Sent(done)
		}
	}()
	c, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if ctx.Err() != nil {
		if err := p.store.CompletePush(c, push); err != nil && !errors.Is(err, actors.ErrLeaseLost) {
			p.opts.Logger.Warn("releasing a push at shutdown failed (it is sent after its lease)", "push", push.ID, "err", err)
		}
		return
	}
	if err := p.store.RenewPush(c, push, p.opts.Now(), p.opts.Lease); err != nil {
		if errors.Is(err, actors.ErrLeaseLost) {
			p.opts.Logger.Debug("push taken over by another pusher; not sending it", "push", push.ID)
		} else {
			p.opts.Logger.Warn("renewing a push's lease failed; not sending it now (it is sent after its lease)", "push", push.ID, "err", err)
		}
		return
	}
	// The send and its record run to the end even if the pusher is stopping: cutting a call to
	// WeChat short leaves unknown whether the message went out.
	done = p.send(context.WithoutCancel(ctx), push)
}

// send makes one attempt at push and records its fate; it returns the push as recorded.
func (p *Pusher) send(ctx context.Context, push actors.Push) actors.Push {
	var pl actors.PushPayload
	err := json.Unmarshal(push.Payload, &pl)
	ctx, span := p.span(ctx, push, pl)
	defer span.End()
	if err == nil && push.Kind == actors.PushMessage {
		push = p.message(ctx, push, pl)
		if push.Status == actors.PushFailed {
			observe.Fail(span, errors.New(push.LastError))
		}
		p.record(ctx, push)
		return push
	}
	if err == nil {
		c, cancel := context.WithTimeout(ctx, p.opts.SendTimeout)
		err = p.call(c, push, pl)
		cancel()
	} else {
		err = fmt.Errorf("%w: bad payload: %v", api.ErrPermanent, err)
	}
	push.Attempts++
	now := p.opts.Now()
	switch {
	case err == nil:
		push.Status, push.SentAt, push.LastError = actors.PushSent, now, ""
		observe.Pushed(observe.PushSent, push.Kind)
	case errors.Is(err, api.ErrPermanent) || api.Classify(err) != api.ActionRetry || push.Attempts >= p.opts.MaxAttempts:
		push.Status, push.LastError = actors.PushFailed, err.Error()
		observe.Pushed(observe.PushFailed, push.Kind)
		observe.Fail(span, err)
		p.opts.Logger.WarnContext(ctx, "push failed for good", "push", push.ID, "kind", push.Kind, "attempts", push.Attempts, "err", err)
	default:
		observe.Pushed(observe.PushRetried, push.Kind)
		observe.Fail(span, err)
		wait := p.opts.MinBackoff << min(push.Attempts-1, 20)
		if ra, ok := api.RetryAfter(err); ok && ra > wait {
			wait = ra
		}
		wait = min(wait, p.opts.MaxBackoff)
		wait = wait/2 + rand.N(wait/2+1)
		push.LastError, push.NextAttemptAt = err.Error(), now.Add(wait)
	}
	p.record(ctx, push)
	return push
}

// record writes a push's fate under its lease.
func (p *Pusher) record(ctx context.Context, push actors.Push) {
	c, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := p.store.CompletePush(c, push); errors.Is(err, actors.ErrLeaseLost) {
		// The send outlasted the renewed lease and another pusher took the push: it may be sent
		// twice (at least once is the promise). Its new holder records the fate.
		p.opts.Logger.Warn("a push's lease ran out while it was being sent; another pusher has it", "push", push.ID, "lease", p.opts.Lease)
	} else if err != nil {
		p.opts.Logger.Warn("recording a push failed (it will be sent again after its lease)", "push", push.ID, "err", err)
	}
}

// span traces one push attempt under the trace its payload carries (the action that caused it);
// the API call is a child span.
func (p *Pusher) span(ctx context.Context, push actors.Push, pl actors.PushPayload) (context.Context, trace.Span) {
	if pl.Trace == "" {
		return ctx, trace.SpanFromContext(ctx)
	}
	ctx, span := observe.Start(ctx, &actorpb.TraceContext{Traceparent: pl.Trace}, "outbox.push", trace.SpanKindProducer)
	span.SetAttributes(attribute.String("push.id", push.ID), attribute.String("push.kind", push.Kind),
		attribute.Int("push.attempt", push.Attempts+1))
	return ctx, span
}

func (p *Pusher) call(ctx context.Context, push actors.Push, pl actors.PushPayload) (err error) {
	ctx, span := observe.Child(ctx, "wechat.api "+push.Kind)
	defer func() { observe.End(span, err) }()
	switch push.Kind {
	case actors.PushText:
		return p.client.SendText(ctx, push.OpenID, pl.Text)
	case actors.PushTemplate:
		data := map[string]api.TemplateValue{}
		for k, v := range pl.Data {
			data[k] = api.TemplateValue{Value: v}
		}
		_, err := p.client.SendTemplate(ctx, api.TemplateMessage{ToUser: push.OpenID, TemplateID: pl.TemplateID,
			ClientMsgID: push.ID, Data: data})
		return err
	case actors.PushStatus:
		return p.client.TransStatus(ctx, pl.DeviceType, pl.DeviceID, push.OpenID, pl.Connected)
	case actors.PushCompelBind:
		return p.client.CompelBind(ctx, pl.DeviceID, push.OpenID)
	case actors.PushCompelUnbind:
		return p.client.CompelUnbind(ctx, pl.DeviceID, push.OpenID)
	}
	return fmt.Errorf("%w: unknown push kind %q", api.ErrPermanent, push.Kind)
}
