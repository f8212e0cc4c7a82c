// Package observe is the thin telemetry API that edges, grains and stores call at their hops:
// spans (StartRoot, Start, Child, End), the trace context that rides inside actor messages
// across cluster members (Inject, Extract, Link), the metric instruments (HandshakeFailed,
// CommandFinished, Pushed, ...), and a slog handler that stamps log records with the active
// trace. It decides nothing about devices or users.
//
// It depends only on OpenTelemetry's API, never on its SDK or exporters: which exporter, which
// sampler and the Prometheus endpoint are chosen by cluster/telemetry, which a binary sets up
// once and which installs its tracer and meter here (InstallTracer, InstallMeter). Until then
// every call is a no-op costing one atomic load; several in-process members (tests) share one
// set of metrics.
package observe

import (
	"context"
	"sync/atomic"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// NodeKey is the resource attribute (and Prometheus label) naming the node: its cluster address.
const NodeKey = "node"

// rootRatio is the share of new traces that are sampled (0 when tracing is off). StartRoot checks
// it before creating anything, so unsampled device frames allocate no span.
var rootRatio atomic.Uint64 // math.Float64bits

// InstallTracer makes t the tracer of every span started here, and ratio (0..1) the share of new
// traces StartRoot samples; a nil t turns tracing off. The tracer's sampler must honour
// StartRoot's decision (see RootDecided). uninstall removes t, unless another tracer was
// installed since.
func InstallTracer(t trace.Tracer, ratio float64) (uninstall func()) {
	if t == nil {
		tracer.p.Store(nil)
		setRatio(0)
		return func() {}
	}
	box := &tracerBox{t: t, real: true}
	tracer.p.Store(box)
	setRatio(ratio)
	return func() {
		if tracer.p.CompareAndSwap(box, nil) {
			setRatio(0)
		}
	}
}

// InstallMeter creates the instruments on m and makes them the ones every metric call records
// into. uninstall removes them, unless others were installed since.
func InstallMeter(m metric.Meter) (uninstall func(), err error) {
	i, err := newInstruments(m)
	if err != nil {
		return nil, err
	}
	inst.Store(i)
	return func() { inst.CompareAndSwap(i, nil) }, nil
}

// RootDecided reports whether ctx is the parent context of a span StartRoot already decided to
// sample: a sampler must then record it (see InstallTracer).
func RootDecided(ctx context.Context) bool {
	return ctx != nil && ctx.Value(forceKey{}) != nil
}
