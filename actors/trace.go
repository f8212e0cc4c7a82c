package actors

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"

	"github.com/sprout-iot/sprout/cluster/observe"
	"github.com/sprout-iot/sprout/messages/actorpb"
)

// grainTrace is the span of the message a grain is handling: the trace the message carried in its
// TraceContext, continued on this member. Untraced messages leave it empty (tctx is Background),
// so the shells pass tctx to storage and inject it into what they send without checking.
type grainTrace struct {
	tctx context.Context
	span trace.Span
}

// begin starts the message's span when tc is a sampled trace context.
func (t *grainTrace) begin(ctx actor.Context, tc *actorpb.TraceContext, name, idKey, id string) {
	t.tctx, t.span = context.Background(), nil
	if tc == nil {
		return
	}
	c, span := observe.Start(context.Background(), tc, name, trace.SpanKindServer)
	if !span.IsRecording() {
		return
	}
	span.SetAttributes(attribute.String(idKey, id), attribute.String("sprout.member", ctx.ActorSystem().Address()))
	t.tctx, t.span = c, span
}

// endSpan ends the message's span (deferred by Receive).
func (t *grainTrace) endSpan() {
	if t.span != nil {
		t.span.End()
		t.span = nil
	}
	t.tctx = context.Background()
}

// deviceTrace is the device grain's telemetry state: the current span, and for each command this
// activation started, when it started and the trace it belongs to, so that its result and outcome
// join the action that asked for it and its latency is measured.
type deviceTrace struct {
	grainTrace
	cmds map[string]commandTrace
}

type commandTrace struct {
	start time.Time
	tc    *actorpb.TraceContext
}

func (g *deviceGrain) beginSpan(ctx actor.Context) {
	var tc *actorpb.TraceContext
	var name string
	switch m := ctx.Message().(type) {
	case *actor.Started:
		observe.Activated(DeviceKind)
	case *actorpb.Report:
		tc, name = m.Trace, "device.report"
	case *actorpb.Reports:
		// A command's trace (its result is in the batch) before a sampled frame's.
		if res := m.Result; res != nil {
			tc, name = res.Trace, "device.result"
			if tc == nil {
				tc = g.cmds[res.Result.GetCommandId()].tc
			}
		}
		if tc == nil {
			name = "device.report"
			for _, r := range m.Reports {
				if r.Trace != nil {
					tc = r.Trace
					break
				}
			}
		}
	case *actorpb.Authenticate:
		tc, name = m.Trace, "device.authenticate"
	case *actorpb.SendCommand:
		tc, name = m.Trace, "device.command"
	case *actorpb.DeliverResult:
		tc, name = m.Trace, "device.result"
		if tc == nil {
			tc = g.cmds[m.Result.GetCommandId()].tc
		}
	case *commandDeadline:
		tc, name = g.cmds[m.commandID].tc, "device.command.deadline"
	}
	id := ""
	if g.core != nil {
		id = g.core.id
	}
	g.begin(ctx, tc, name, "device.id", id)
}

// startCommand remembers a command this activation sent.
func (g *deviceGrain) startCommand(m *actorpb.SendCommand) {
	if g.cmds == nil {
		g.cmds = map[string]commandTrace{}
	}
	g.cmds[m.CommandId] = commandTrace{start: g.now(), tc: observe.Inject(g.tctx)}
}

// finishCommand counts an outcome and, for a command this activation started, its latency.
func (g *deviceGrain) finishCommand(out *actorpb.CommandOutcome) {
	var took time.Duration
	if ct, ok := g.cmds[out.CommandId]; ok {
		took = g.now().Sub(ct.start)
		delete(g.cmds, out.CommandId)
	}
	observe.CommandFinished(strings.ToLower(strings.TrimPrefix(out.Outcome.String(), "OUTCOME_")), took)
}

// traced returns out carrying the current trace (a copy: out itself is kept in the snapshot).
func (g *deviceGrain) traced(out *actorpb.CommandOutcome) *actorpb.CommandOutcome {
	tc := observe.Inject(g.tctx)
	if tc == nil {
		return out
	}
	c := proto.Clone(out).(*actorpb.CommandOutcome)
	c.Trace = tc
	return c
}

// noticeSpan counts an alert notice and gives the alert decision its own span, under which the
// bound users' notices travel on.
func (g *deviceGrain) noticeSpan(n *actorpb.DeviceNotice) (context.Context, trace.Span) {
	a := n.GetAlert()
	if a == nil {
		return g.tctx, trace.SpanFromContext(context.Background())
	}
	observe.Alert(strings.ToLower(strings.TrimPrefix(a.Kind.String(), "ALERT_KIND_")), a.Active)
	c, span := observe.Child(g.tctx, "device.alert")
	if span.IsRecording() {
		span.SetAttributes(attribute.String("alert.kind", a.Kind.String()), attribute.Bool("alert.active", a.Active))
	}
	return c, span
}

// appendSpan is the span around one storage Append of the current step.
func (g *deviceGrain) appendSpan() (context.Context, trace.Span) {
	if g.tctx == nil {
		return observe.Child(context.Background(), "store.append")
	}
	return observe.Child(g.tctx, "store.append")
}

func (g *userGrain) beginSpan(ctx actor.Context) {
	var tc *actorpb.TraceContext
	var name string
	switch m := ctx.Message().(type) {
	case *actor.Started:
		observe.Activated(UserKind)
	case *actorpb.UserMessage:
		tc, name = m.Trace, "user.message"
	case *actorpb.CommandOutcome:
		tc, name = m.Trace, "user.outcome"
	case *actorpb.UserNotice:
		tc, name = m.Trace, "user.notice"
	}
	g.begin(ctx, tc, name, "user.id", g.core.openID)
}

// tracedPayload records the current trace in a push's payload, so that whichever node's pusher
// sends it continues the trace.
func tracedPayload(ctx context.Context, payload []byte) []byte {
	tc := observe.Inject(ctx)
	if tc == nil {
		return payload
	}
	var pl PushPayload
	if json.Unmarshal(payload, &pl) != nil {
		return payload
	}
	pl.Trace = tc.Traceparent
	return mustJSON(pl)
}
