package device

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/sprout-iot/sprout/cluster/observe"
	"github.com/sprout-iot/sprout/messages/actorpb"
)

// frameSpan starts the trace of one report frame when it is sampled, and puts its context in the
// report for the grain. An unsampled frame costs a random number: no span, no context.
func (c *conn) frameSpan(report *actorpb.Report) trace.Span {
	ctx, span := observe.StartRoot(context.Background(), "edge.frame", trace.SpanKindServer)
	if !span.IsRecording() {
		return span
	}
	kind := "telemetry"
	if report.GetEvent() != nil {
		kind = "event"
	}
	span.SetAttributes(attribute.String("device.id", c.device), attribute.String("frame.kind", kind))
	report.Trace = observe.Inject(ctx)
	return span
}

// deliverSpan traces writing a traced command to the device, and remembers the command's trace
// so that the device's result continues it.
func (c *conn) deliverSpan(m *actorpb.Deliver) trace.Span {
	ctx, span := observe.Start(context.Background(), m.Trace, "edge.deliver", trace.SpanKindProducer)
	if !span.IsRecording() {
		return span
	}
	span.SetAttributes(attribute.String("device.id", c.device), attribute.Int("frames", len(m.Frames)))
	tc := observe.Inject(ctx)
	for _, f := range m.Frames {
		if cmd := f.GetCommand(); cmd != nil {
			c.cmdTraces.Store(cmd.CommandId, tc)
		}
	}
	return span
}

// resultTrace traces a command result frame as part of its command's trace, when that command
// was traced.
func (c *conn) resultTrace(commandID string) *actorpb.TraceContext {
	v, ok := c.cmdTraces.LoadAndDelete(commandID)
	if !ok {
		return nil
	}
	ctx, span := observe.Start(context.Background(), v.(*actorpb.TraceContext), "edge.result", trace.SpanKindConsumer)
	defer span.End()
	span.SetAttributes(attribute.String("device.id", c.device), attribute.String("command.id", commandID))
	return observe.Inject(ctx)
}
