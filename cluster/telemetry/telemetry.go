// Package telemetry sets up a process's OpenTelemetry SDK: the trace exporter and sampler chosen
// by the standard OTEL_* variables (off by default), and the metrics exposed for Prometheus. It
// installs the result into cluster/observe, the thin API the rest of Sprout calls; only binaries
// (cmd/sprout) and tests that look at spans import this package, so that grains and stores do not
// depend on the SDK or its exporters.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/sprout-iot/sprout/cluster/observe"
)

// Options configure Setup.
type Options struct {
	// Node names this node in every metric (the `node` label) and trace (default: the host name).
	Node string
	// Getenv reads the OTEL_* variables (default os.Getenv).
	Getenv func(string) string
	// SpanExporter, if set, replaces the exporter OTEL_TRACES_EXPORTER would choose (tests:
	// tracetest.NewInMemoryExporter). It is used with a synchronous span processor.
	SpanExporter sdktrace.SpanExporter
	// Stdout is where OTEL_TRACES_EXPORTER=console writes (default os.Stdout).
	Stdout io.Writer
}

// Telemetry is what Setup installed; Shutdown flushes and removes it.
type Telemetry struct {
	tracer          *sdktrace.TracerProvider // nil: tracing off
	uninstallTracer func()
	uninstallMeter  func()
	meterM          metric.Meter
	meter           *sdkmetric.MeterProvider
	registry        *prometheus.Registry
	// Exporter names the trace exporter in use ("none", "otlp", "console", "custom").
	Exporter string
	// Sampler describes the sampler in use.
	Sampler string
}

// Setup installs the process's tracer and meter providers and the W3C propagator, and hands
// their tracer and meter to cluster/observe.
//
// Traces follow the OpenTelemetry SDK variables: OTEL_TRACES_EXPORTER (otlp, console or none; none
// and unset mean no tracer at all), OTEL_EXPORTER_OTLP_ENDPOINT and OTEL_EXPORTER_OTLP_PROTOCOL
// (grpc or http/protobuf, the default), OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG
// (parentbased_always_on by default), OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES.
func Setup(ctx context.Context, o Options) (*Telemetry, error) {
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	if o.Stdout == nil {
		o.Stdout = os.Stdout
	}
	if o.Node == "" {
		o.Node, _ = os.Hostname()
	}
	service := o.Getenv("OTEL_SERVICE_NAME")
	if service == "" {
		service = "sprout"
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(
		semconv.ServiceName(service), semconv.ServiceInstanceID(o.Node), attribute.String(observe.NodeKey, o.Node)))
	if err != nil {
		res = resource.NewSchemaless(semconv.ServiceName(service), attribute.String(observe.NodeKey, o.Node))
	}
	if attrs := o.Getenv("OTEL_RESOURCE_ATTRIBUTES"); attrs != "" {
		if env, err := resource.New(ctx, resource.WithFromEnv()); err == nil {
			if merged, err := resource.Merge(res, env); err == nil {
				res = merged
			}
		}
	}
	t := &Telemetry{registry: prometheus.NewRegistry()}

	exp, err := otelprom.New(otelprom.WithRegisterer(t.registry), otelprom.WithoutScopeInfo(),
		otelprom.WithResourceAsConstantLabels(attribute.NewAllowKeysFilter(observe.NodeKey)))
	if err != nil {
		return nil, fmt.Errorf("prometheus exporter: %w", err)
	}
	t.meter = sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp), sdkmetric.WithResource(res))
	t.meterM = t.meter.Meter(observe.TracerName)
	if t.uninstallMeter, err = observe.InstallMeter(t.meterM); err != nil {
		return nil, fmt.Errorf("metric instruments: %w", err)
	}

	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	sampler, ratio, desc, err := samplerFromEnv(o.Getenv)
	if err != nil {
		return nil, err
	}
	t.Sampler = desc
	var sp sdktrace.SpanProcessor
	switch name := strings.TrimSpace(o.Getenv("OTEL_TRACES_EXPORTER")); {
	case o.SpanExporter != nil:
		t.Exporter = "custom"
		sp = sdktrace.NewSimpleSpanProcessor(o.SpanExporter)
	case name == "" || name == "none":
		t.Exporter = "none"
	case name == "console":
		t.Exporter = name
		e, err := stdouttrace.New(stdouttrace.WithWriter(o.Stdout))
		if err != nil {
			return nil, fmt.Errorf("console span exporter: %w", err)
		}
		sp = sdktrace.NewSimpleSpanProcessor(e)
	case name == "otlp":
		t.Exporter = name
		e, err := otlpExporter(ctx, o.Getenv)
		if err != nil {
			return nil, err
		}
		sp = sdktrace.NewBatchSpanProcessor(e)
	default:
		return nil, fmt.Errorf("OTEL_TRACES_EXPORTER=%q: want otlp, console or none", name)
	}
	if sp == nil {
		t.uninstallTracer = observe.InstallTracer(nil, 0)
		return t, nil
	}
	t.tracer = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sp), sdktrace.WithResource(res),
		sdktrace.WithSampler(sampler))
	otel.SetTracerProvider(t.tracer)
	t.uninstallTracer = observe.InstallTracer(t.tracer.Tracer(observe.TracerName), ratio)
	return t, nil
}

func otlpExporter(ctx context.Context, getenv func(string) string) (sdktrace.SpanExporter, error) {
	proto := getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if proto == "" {
		proto = getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	switch proto {
	case "", "http/protobuf":
		e, err := otlptracehttp.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("OTLP/HTTP span exporter: %w", err)
		}
		return e, nil
	case "grpc":
		e, err := otlptracegrpc.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("OTLP/gRPC span exporter: %w", err)
		}
		return e, nil
	}
	return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL=%q: want grpc or http/protobuf", proto)
}

// samplerFromEnv reads OTEL_TRACES_SAMPLER(_ARG). Every sampler is wrapped so that StartRoot's own
// decision (made before any span exists) is final for new traces.
func samplerFromEnv(getenv func(string) string) (sdktrace.Sampler, float64, string, error) {
	name := strings.TrimSpace(getenv("OTEL_TRACES_SAMPLER"))
	if name == "" {
		name = "parentbased_always_on"
	}
	arg := 1.0
	if s := strings.TrimSpace(getenv("OTEL_TRACES_SAMPLER_ARG")); s != "" && strings.HasSuffix(name, "traceidratio") {
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || f < 0 || f > 1 {
			return nil, 0, "", fmt.Errorf("OTEL_TRACES_SAMPLER_ARG=%q: want a ratio in [0, 1]", s)
		}
		arg = f
	}
	var ratio float64
	switch strings.TrimPrefix(name, "parentbased_") {
	case "always_on":
		ratio = 1
	case "always_off":
		ratio = 0
	case "traceidratio":
		ratio = arg
	default:
		return nil, 0, "", fmt.Errorf("OTEL_TRACES_SAMPLER=%q: want always_on, always_off, traceidratio or their parentbased_ forms", name)
	}
	root := rootSampler{fallback: sdktrace.TraceIDRatioBased(ratio)}
	if strings.HasPrefix(name, "parentbased_") {
		return sdktrace.ParentBased(root), ratio, fmt.Sprintf("%s (%g)", name, ratio), nil
	}
	return root, ratio, fmt.Sprintf("%s (%g)", name, ratio), nil
}

// Handler serves the node's metrics in the Prometheus text format (GET /metrics).
func (t *Telemetry) Handler() http.Handler {
	return promhttp.HandlerFor(t.registry, promhttp.HandlerOpts{})
}

// Tracing reports whether spans are recorded and exported.
func (t *Telemetry) Tracing() bool { return t.tracer != nil }

// Meter is this node's meter, for observable instruments read at scrape time.
func (t *Telemetry) Meter() metric.Meter { return t.meterM }

// Shutdown flushes pending spans and stops the providers (bounded by ctx).
func (t *Telemetry) Shutdown(ctx context.Context) error {
	var errs []error
	t.uninstallMeter()
	t.uninstallTracer()
	if t.tracer != nil {
		errs = append(errs, t.tracer.Shutdown(ctx))
	}
	errs = append(errs, t.meter.Shutdown(ctx))
	return errors.Join(errs...)
}

// rootSampler makes StartRoot's decision final and defers to the configured ratio otherwise (a
// span started without StartRoot and without a parent).
type rootSampler struct{ fallback sdktrace.Sampler }

func (s rootSampler) ShouldSample(p sdktrace.SamplingParameters) sdktrace.SamplingResult {
	if observe.RootDecided(p.ParentContext) {
		return sdktrace.SamplingResult{Decision: sdktrace.RecordAndSample,
			Tracestate: trace.SpanContextFromContext(p.ParentContext).TraceState()}
	}
	return s.fallback.ShouldSample(p)
}

func (s rootSampler) Description() string { return "SproutRoot{" + s.fallback.Description() + "}" }
