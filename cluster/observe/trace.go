package observe

import (
	"context"
	"math"
	"math/rand/v2"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/sprout-iot/sprout/messages/actorpb"
)

// TracerName is the instrumentation scope of Sprout's spans.
const TracerName = "github.com/sprout-iot/sprout"

var (
	tracer   atomicTracer
	noopSpan = trace.SpanFromContext(context.Background())
	w3c      = propagation.TraceContext{}
)

func setRatio(r float64) { rootRatio.Store(math.Float64bits(r)) }

// Tracing reports whether this process records spans at all (a tracer is installed and samples
// something). Callers use it to skip building span attributes.
func Tracing() bool { return tracer.installed() }

// forceKey marks a context whose new trace StartRoot already decided to sample (RootDecided).
type forceKey struct{}

// StartRoot starts the span of a new unit of work (a device frame, a WeChat callback), or a child
// if ctx already carries a span. The sampling decision comes first: an unsampled frame costs one
// random number and allocates nothing. The returned span is a no-op when nothing was sampled.
func StartRoot(ctx context.Context, name string, kind trace.SpanKind) (context.Context, trace.Span) {
	if trace.SpanContextFromContext(ctx).IsValid() {
		return tracer.get().Start(ctx, name, trace.WithSpanKind(kind))
	}
	r := math.Float64frombits(rootRatio.Load())
	if r <= 0 || (r < 1 && rand.Float64() >= r) {
		return ctx, noopSpan
	}
	return tracer.get().Start(context.WithValue(ctx, forceKey{}, true), name, trace.WithSpanKind(kind), trace.WithNewRoot())
}

// Start continues the trace a message carries: a span named name whose parent is tc. Without a
// sampled tc it starts nothing and returns ctx and a no-op span, so untraced messages cost a nil
// check.
func Start(ctx context.Context, tc *actorpb.TraceContext, name string, kind trace.SpanKind) (context.Context, trace.Span) {
	if tc == nil || tc.Traceparent == "" {
		return ctx, noopSpan
	}
	sc := Extract(tc)
	if !sc.IsSampled() {
		return ctx, noopSpan
	}
	return tracer.get().Start(trace.ContextWithRemoteSpanContext(ctx, sc), name, trace.WithSpanKind(kind))
}

// Child starts a span under the span in ctx, only if that span is recording.
func Child(ctx context.Context, name string) (context.Context, trace.Span) {
	if !trace.SpanFromContext(ctx).IsRecording() {
		return ctx, noopSpan
	}
	return tracer.get().Start(ctx, name)
}

// End ends span, recording err (if any) as its status.
func End(span trace.Span, err error) {
	Fail(span, err)
	span.End()
}

// Fail records err (if any) as span's status without ending it.
func Fail(span trace.Span, err error) {
	if err != nil && span.IsRecording() {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
}

// Inject returns the W3C trace context of ctx's span for an actor message, or nil when that span
// is not sampled (receivers then start nothing).
func Inject(ctx context.Context) *actorpb.TraceContext {
	if !trace.SpanContextFromContext(ctx).IsSampled() {
		return nil
	}
	tc := &actorpb.TraceContext{}
	w3c.Inject(ctx, carrier{tc})
	return tc
}

// Extract reads a message's trace context (invalid when tc is nil or malformed).
func Extract(tc *actorpb.TraceContext) trace.SpanContext {
	if tc == nil || tc.Traceparent == "" {
		return trace.SpanContext{}
	}
	return trace.SpanContextFromContext(w3c.Extract(context.Background(), carrier{tc}))
}

// Link returns a link to the span tc names, for a span that continues one trace while caused by
// another (a command result frame belongs to the command's trace).
func Link(tc *actorpb.TraceContext) (trace.Link, bool) {
	sc := Extract(tc)
	return trace.Link{SpanContext: sc}, sc.IsValid()
}

// carrier adapts actorpb.TraceContext to the W3C propagator.
type carrier struct{ tc *actorpb.TraceContext }

func (c carrier) Get(key string) string {
	switch key {
	case "traceparent":
		return c.tc.Traceparent
	case "tracestate":
		return c.tc.Tracestate
	}
	return ""
}

func (c carrier) Set(key, value string) {
	switch key {
	case "traceparent":
		c.tc.Traceparent = value
	case "tracestate":
		c.tc.Tracestate = value
	}
}

func (c carrier) Keys() []string { return []string{"traceparent", "tracestate"} }

// atomicTracer is the installed tracer (a no-op one until InstallTracer). Sprout does
// not use the global delegating tracer: a second setup in one process (tests) must take effect.
type atomicTracer struct{ p atomicPointer[tracerBox] }

type tracerBox struct {
	t    trace.Tracer
	real bool
}

var noopTracer = noop.NewTracerProvider().Tracer(TracerName)

func (a *atomicTracer) get() trace.Tracer {
	if b := a.p.Load(); b != nil {
		return b.t
	}
	return noopTracer
}

func (a *atomicTracer) installed() bool {
	b := a.p.Load()
	return b != nil && b.real
}
