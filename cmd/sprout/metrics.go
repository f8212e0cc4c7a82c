package main

import (
	"context"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/sprout-iot/sprout/cluster/telemetry"
	"github.com/sprout-iot/sprout/store"
)

// outboxCounter is a store that can count its pending pushes cheaply (every backend can).
type outboxCounter interface {
	PendingPushes(ctx context.Context) (int64, error)
}

// registerNodeMetrics exposes the node's own counters (the edge's, the committer's, the outbox
// depth, the cluster's size) as observable instruments, read only when /metrics is scraped.
func registerNodeMetrics(t *telemetry.Telemetry, n *node) error {
	m := t.Meter()
	connected, err1 := m.Int64ObservableGauge("sprout.devices.connected", metric.WithUnit("{device}"),
		metric.WithDescription("Devices connected to this node's edge (past the handshake)."))
	accepted, err2 := m.Int64ObservableCounter("sprout.device.connections", metric.WithUnit("{connection}"),
		metric.WithDescription("Device sockets accepted by this node's edge."))
	framesIn, err3 := m.Int64ObservableCounter("sprout.device.frames.in", metric.WithUnit("{frame}"),
		metric.WithDescription("Frames read from devices after the handshake."))
	framesOut, err4 := m.Int64ObservableCounter("sprout.device.frames.out", metric.WithUnit("{frame}"),
		metric.WithDescription("Frames written to devices."))
	closes, err5 := m.Int64ObservableCounter("sprout.device.closes", metric.WithUnit("{connection}"),
		metric.WithDescription("Device connections closed, by close reason."))
	pending, err6 := m.Int64ObservableGauge("sprout.outbox.pending", metric.WithUnit("{push}"),
		metric.WithDescription("Pushes waiting in the outbox (cluster-wide: the outbox is shared)."))
	members, err7 := m.Int64ObservableGauge("sprout.cluster.members", metric.WithUnit("{member}"),
		metric.WithDescription("Cluster members this node sees."))
	appendFailures, err8 := m.Int64ObservableCounter("sprout.store.append.failures", metric.WithUnit("{append}"),
		metric.WithDescription("Storage appends that failed, by reason (timed_out, queue_full, refused)."))
	retries, err9 := m.Int64ObservableCounter("sprout.store.retries", metric.WithUnit("{batch}"),
		metric.WithDescription("Storage batches retried because the database was unreachable."))
	for _, err := range []error{err1, err2, err3, err4, err5, err6, err7, err8, err9} {
		if err != nil {
			return fmt.Errorf("node metrics: %w", err)
		}
	}
	outbox, _ := n.store.(outboxCounter)
	committer, _ := n.store.(interface{ Stats() store.CommitStats })
	_, err := m.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		st := n.edge.Stats()
		o.ObserveInt64(connected, st.Connected)
		o.ObserveInt64(accepted, st.Accepted)
		o.ObserveInt64(framesIn, st.FramesIn)
		o.ObserveInt64(framesOut, st.FramesOut)
		for reason, v := range st.Closed {
			o.ObserveInt64(closes, v, metric.WithAttributes(attribute.String("reason", reason)))
		}
		o.ObserveInt64(members, int64(n.member.Cluster.MemberList.Length()))
		if committer != nil {
			cs := committer.Stats()
			o.ObserveInt64(appendFailures, int64(cs.TimedOut), metric.WithAttributes(attribute.String("reason", "timed_out")))
			o.ObserveInt64(appendFailures, int64(cs.QueueFull), metric.WithAttributes(attribute.String("reason", "queue_full")))
			o.ObserveInt64(appendFailures, int64(cs.Refused), metric.WithAttributes(attribute.String("reason", "refused")))
			o.ObserveInt64(retries, int64(cs.Retries))
		}
		if outbox != nil {
			c, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			if v, err := outbox.PendingPushes(c); err == nil {
				o.ObserveInt64(pending, v)
			}
		}
		return nil
	}, connected, accepted, framesIn, framesOut, closes, pending, members, appendFailures, retries)
	if err != nil {
		return fmt.Errorf("node metrics: %w", err)
	}
	return nil
}
