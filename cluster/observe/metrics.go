package observe

import (
	"context"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

type atomicPointer[T any] = atomic.Pointer[T]

// Metric names, as OpenTelemetry instruments. The Prometheus exporter turns dots into underscores
// and adds _total to counters and _seconds to durations (docs/observability.md lists the result).
const (
	MetricHandshakeFailures = "sprout.device.handshake.failures"
	MetricCommands          = "sprout.commands"
	MetricCommandDuration   = "sprout.command.duration"
	MetricAlerts            = "sprout.alerts"
	MetricPushes            = "sprout.pushes"
	MetricBatchRows         = "sprout.store.batch.rows"
	MetricCommitDuration    = "sprout.store.commit.duration"
	MetricActivations       = "sprout.grain.activations"
)

// instruments are the synchronous instruments hot paths record into; nil until InstallMeter.
type instruments struct {
	handshakeFailures metric.Int64Counter
	commands          metric.Int64Counter
	commandDuration   metric.Float64Histogram
	alerts            metric.Int64Counter
	pushes            metric.Int64Counter
	batchRows         metric.Int64Histogram
	commitDuration    metric.Float64Histogram
	activations       metric.Int64Counter
	meter             metric.Meter
}

var inst atomic.Pointer[instruments]

// latency buckets in seconds: a command waits for a pot over WiFi (up to its deadline, 300 s at
// most); a commit is milliseconds.
var (
	commandBuckets = []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300}
	commitBuckets  = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5}
	rowBuckets     = []float64{1, 2, 5, 10, 25, 50, 100, 250, 500, 1000}
)

func newInstruments(m metric.Meter) (*instruments, error) {
	i := &instruments{meter: m}
	var err error
	if i.handshakeFailures, err = m.Int64Counter(MetricHandshakeFailures, metric.WithUnit("{handshake}"),
		metric.WithDescription("Device handshakes that failed, by close reason.")); err != nil {
		return nil, err
	}
	if i.commands, err = m.Int64Counter(MetricCommands, metric.WithUnit("{command}"),
		metric.WithDescription("Command outcomes decided by device grains, by outcome.")); err != nil {
		return nil, err
	}
	if i.commandDuration, err = m.Float64Histogram(MetricCommandDuration, metric.WithUnit("s"),
		metric.WithDescription("From a command's acceptance by its device grain to its outcome."),
		metric.WithExplicitBucketBoundaries(commandBuckets...)); err != nil {
		return nil, err
	}
	if i.alerts, err = m.Int64Counter(MetricAlerts, metric.WithUnit("{alert}"),
		metric.WithDescription("Alerts raised and cleared by device grains, by kind and state.")); err != nil {
		return nil, err
	}
	if i.pushes, err = m.Int64Counter(MetricPushes, metric.WithUnit("{push}"),
		metric.WithDescription("Outbox pushes attempted by this node's pusher, by result (sent, failed, retried) and kind.")); err != nil {
		return nil, err
	}
	if i.batchRows, err = m.Int64Histogram(MetricBatchRows, metric.WithUnit("{row}"),
		metric.WithDescription("Rows per committed storage transaction (group commit)."),
		metric.WithExplicitBucketBoundaries(rowBuckets...)); err != nil {
		return nil, err
	}
	if i.commitDuration, err = m.Float64Histogram(MetricCommitDuration, metric.WithUnit("s"),
		metric.WithDescription("Time to write and commit one storage transaction."),
		metric.WithExplicitBucketBoundaries(commitBuckets...)); err != nil {
		return nil, err
	}
	if i.activations, err = m.Int64Counter(MetricActivations, metric.WithUnit("{activation}"),
		metric.WithDescription("Grain activations on this node, by kind.")); err != nil {
		return nil, err
	}
	return i, nil
}

// Meter is the installed meter (for a node's observable instruments), or nil before
// InstallMeter.
func Meter() metric.Meter {
	if i := inst.Load(); i != nil {
		return i.meter
	}
	return nil
}

func attrs(kv ...attribute.KeyValue) metric.MeasurementOption {
	return metric.WithAttributeSet(attribute.NewSet(kv...))
}

// HandshakeFailed counts a failed device handshake.
func HandshakeFailed(reason string) {
	if i := inst.Load(); i != nil {
		i.handshakeFailures.Add(context.Background(), 1, attrs(attribute.String("reason", reason)))
	}
}

// CommandFinished counts a command's outcome; took is its age (zero: answered at once, not timed).
func CommandFinished(outcome string, took time.Duration) {
	if i := inst.Load(); i != nil {
		a := attrs(attribute.String("outcome", outcome))
		i.commands.Add(context.Background(), 1, a)
		if took > 0 {
			i.commandDuration.Record(context.Background(), took.Seconds(), a)
		}
	}
}

// Alert counts an alert raised or cleared.
func Alert(kind string, raised bool) {
	if i := inst.Load(); i != nil {
		state := "cleared"
		if raised {
			state = "raised"
		}
		i.alerts.Add(context.Background(), 1, attrs(attribute.String("kind", kind), attribute.String("state", state)))
	}
}

// Push results.
const (
	PushSent    = "sent"
	PushFailed  = "failed"
	PushRetried = "retried"
)

// Pushed counts one push attempt's result.
func Pushed(result, kind string) {
	if i := inst.Load(); i != nil {
		i.pushes.Add(context.Background(), 1, attrs(attribute.String("result", result), attribute.String("kind", kind)))
	}
}

// Committed records one committed storage transaction.
func Committed(rows int, took time.Duration) {
	if i := inst.Load(); i != nil {
		i.batchRows.Record(context.Background(), int64(rows))
		i.commitDuration.Record(context.Background(), took.Seconds())
	}
}

// Activated counts a grain activation.
func Activated(kind string) {
	if i := inst.Load(); i != nil {
		i.activations.Add(context.Background(), 1, attrs(attribute.String("kind", kind)))
	}
}
