package telemetry_test

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/sprout-iot/sprout/cluster/observe"
	"github.com/sprout-iot/sprout/cluster/telemetry"
)

func env(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }

func TestTracingIsOffByDefault(t *testing.T) {
	tel, err := telemetry.Setup(context.Background(), telemetry.Options{Node: "n1", Getenv: env(nil)})
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Shutdown(context.Background())
	if tel.Tracing() || observe.Tracing() || tel.Exporter != "none" {
		t.Fatalf("tracing on without OTEL_TRACES_EXPORTER: exporter %q", tel.Exporter)
	}
	_, span := observe.StartRoot(context.Background(), "edge.frame", trace.SpanKindServer)
	if span.IsRecording() {
		t.Fatal("a span was recorded with tracing off")
	}
}

func TestUnsampledFramesAllocateNothing(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tel, err := telemetry.Setup(context.Background(), telemetry.Options{Node: "n1", SpanExporter: exp,
		Getenv: env(map[string]string{"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0"})})
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Shutdown(context.Background())
	allocs := testing.AllocsPerRun(1000, func() {
		ctx, span := observe.StartRoot(context.Background(), "edge.frame", trace.SpanKindServer)
		if observe.Inject(ctx) != nil {
			t.Fatal("an unsampled frame carried a trace context")
		}
		span.End()
	})
	if allocs != 0 || len(exp.GetSpans()) != 0 {
		t.Fatalf("unsampled frames: %v allocations each, %d spans", allocs, len(exp.GetSpans()))
	}
}

func TestTraceContextCrossesAMessage(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tel, err := telemetry.Setup(context.Background(), telemetry.Options{Node: "n1", SpanExporter: exp, Getenv: env(nil)})
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Shutdown(context.Background())
	ctx, root := observe.StartRoot(context.Background(), "wechat.callback", trace.SpanKindServer)
	tc := observe.Inject(ctx)
	if tc == nil || len(tc.Traceparent) != 55 {
		t.Fatalf("traceparent %v", tc)
	}
	_, child := observe.Start(context.Background(), tc, "user.message", trace.SpanKindServer)
	child.End()
	root.End()
	spans := exp.GetSpans()
	if len(spans) != 2 || spans[0].SpanContext.TraceID() != spans[1].SpanContext.TraceID() ||
		spans[0].Parent.SpanID() != spans[1].SpanContext.SpanID() {
		t.Fatalf("child not joined to its parent across the message: %+v", spans)
	}
}

func TestBadSamplerIsRefused(t *testing.T) {
	_, err := telemetry.Setup(context.Background(), telemetry.Options{Getenv: env(map[string]string{
		"OTEL_TRACES_EXPORTER": "console", "OTEL_TRACES_SAMPLER": "sometimes"})})
	if err == nil {
		t.Fatal("an unknown sampler was accepted")
	}
}

// BenchmarkFrameTracing is the edge's and the grain's per-frame tracing work (a root decision,
// and for sampled frames three spans: edge.frame, device.report, store.append) with a batching
// exporter that discards, at the sampling ratios of the benchmark variants.
func BenchmarkFrameTracing(b *testing.B) {
	for _, ratio := range []string{"off", "0.01", "1"} {
		b.Run(ratio, func(b *testing.B) {
			o := telemetry.Options{Node: "n1", Getenv: env(nil)}
			if ratio != "off" {
				o.Getenv = env(map[string]string{"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": ratio})
				o.SpanExporter = tracetest.NewNoopExporter()
			}
			tel, err := telemetry.Setup(context.Background(), o)
			if err != nil {
				b.Fatal(err)
			}
			defer tel.Shutdown(context.Background())
			b.ReportAllocs()
			for b.Loop() {
				ctx, frame := observe.StartRoot(context.Background(), "edge.frame", trace.SpanKindServer)
				tc := observe.Inject(ctx)
				gctx, report := observe.Start(context.Background(), tc, "device.report", trace.SpanKindServer)
				_, appendSpan := observe.Child(gctx, "store.append")
				appendSpan.End()
				report.End()
				frame.End()
			}
		})
	}
}
