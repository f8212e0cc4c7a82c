package actors

import (
	"context"
	"errors"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/sprout-iot/sprout/cluster/observe"
	"github.com/sprout-iot/sprout/messages/actorpb"
	"github.com/sprout-iot/sprout/messages/devicepb"
)

// Readings are stored while the grain goes on.
//
// A report whose only effect is a reading (no alert raised or cleared, no device event) is handed
// to storage without the grain waiting for it: the grain applies it (sequence, latest reading)
// and handles its next message at once, and the report's Ack leaves only once the reading is
// durable. So a pot's READ_NOW reading, sent just before its command result, does not hold the
// result back (the outcome's write joins the reading's transaction or the next), and a pot's
// window of frames in flight shares transactions instead of paying one each.
//
// The one thing this gives up is "memory never runs ahead of storage" for those readings. What
// that could break is deduplication: a reading whose write failed must be stored when the pot
// sends it again. So a failed write (1) answers its report, and every report answered after it
// that is still waiting, with CLOSE_REASON_UNAVAILABLE (the pot reconnects and resends what was
// not acked), and (2) makes the grain reload its sequence and latest reading from storage once no
// write is in flight, refusing reports until it has: a resent reading is then new again. Answers
// always leave in the order the reports came.

// reportStored is sent to the grain by the goroutine that stored a report's readings.
type reportStored struct {
	id  uint64
	err error
}

// pendingAck is one report's answer waiting for its turn.
type pendingAck struct {
	id     uint64 // the write it waits for (0: none, it waits only for the answers before it)
	to     *actor.PID
	ack    *actorpb.ReportAck
	stored bool
	err    error
}

// reportQueue exists while answers wait or the grain must resync (nil otherwise: memory per device).
type reportQueue struct {
	acks   []*pendingAck
	seq    uint64
	resync bool // a write failed: the sequence and latest reading may be ahead of storage
}

var reportUnavailable = &actorpb.ReportAck{Close: devicepb.CloseReason_CLOSE_REASON_UNAVAILABLE, Detail: "storage unavailable"}

// readingsOnly reports whether a step's only effects are readings to store.
func (e *effects) readingsOnly() bool {
	return len(e.readings) > 0 && len(e.events) == 0 && !e.snapshot && len(e.frames) == 0 && e.closeConn == nil &&
		len(e.outcomes) == 0 && len(e.notices) == 0 && len(e.bindings) == 0 && len(e.timers) == 0 && e.pressed == nil &&
		!e.configReport && !e.urgent
}

func (g *deviceGrain) report(ctx actor.Context, m *actorpb.Report) {
	if !g.ready(ctx) || !g.resynced(ctx) {
		g.answerReport(ctx, reportUnavailable)
		return
	}
	next := g.core.next()
	ack, fx := next.report(m, g.now())
	if fx.readingsOnly() {
		g.core = next
		g.storeReadings(ctx, next, fx, ack)
		return
	}
	if err := g.persist(next, fx); err != nil {
		g.answerReport(ctx, reportUnavailable)
		return
	}
	g.core = next
	g.answerReport(ctx, ack)
	g.perform(ctx, fx)
}

// answerReport answers the current report, after the answers still waiting.
func (g *deviceGrain) answerReport(ctx actor.Context, ack *actorpb.ReportAck) {
	if g.reports == nil || len(g.reports.acks) == 0 {
		ctx.Respond(ack)
		return
	}
	g.reports.acks = append(g.reports.acks, &pendingAck{to: ctx.Sender(), ack: ack, stored: true})
}

// storeReadings hands a readings-only step to storage; its answer leaves once it is stored.
func (g *deviceGrain) storeReadings(ctx actor.Context, next *deviceCore, fx effects, ack *actorpb.ReportAck) {
	if g.reports == nil {
		g.reports = &reportQueue{}
	}
	q := g.reports
	q.seq++
	q.acks = append(q.acks, &pendingAck{id: q.seq, to: ctx.Sender(), ack: ack})
	b := Batch{Readings: fx.readings, Epoch: g.epoch, Claim: !g.claimed}
	actx, span := g.appendSpan()
	st, id, dev, root, self := g.opts.Store, q.seq, next.id, g.root, g.self
	go func() {
		err := st.Append(actx, dev, b)
		observe.End(span, err)
		root.Send(self, &reportStored{id: id, err: err})
	}()
}

// reportStored handles a finished write: answers leave in order, a failure starts a resync.
func (g *deviceGrain) reportStored(ctx actor.Context, m *reportStored) {
	q := g.reports
	if q == nil {
		return
	}
	for _, p := range q.acks {
		if p.id == m.id {
			p.stored, p.err = true, m.err
			break
		}
	}
	if m.err != nil {
		if errors.Is(m.err, ErrFenced) {
			g.fenced = true
		}
		q.resync = true
		g.logger().Warn("storing a reading failed; its report is refused and the grain reloads its sequence", "err", m.err)
	}
	for len(q.acks) > 0 && q.acks[0].stored {
		p := q.acks[0]
		q.acks[0] = nil
		q.acks = q.acks[1:]
		ack := p.ack
		if q.resync {
			ack = reportUnavailable // resent after the resync, and stored then unless it is
		}
		if p.to != nil {
			ctx.Send(p.to, ack)
		}
	}
	if len(q.acks) == 0 {
		q.acks = nil
		if !q.resynced(g) {
			return
		}
		g.reports = nil
	}
}

// resynced reports whether the grain's sequence agrees with storage, reloading it from storage if
// a reading's write failed and no write is in flight any more.
func (g *deviceGrain) resynced(actor.Context) bool {
	if g.reports == nil || !g.reports.resync {
		return true
	}
	if len(g.reports.acks) > 0 || !g.reports.resynced(g) {
		return false
	}
	g.reports = nil
	return true
}

func (q *reportQueue) resynced(g *deviceGrain) bool {
	if !q.resync {
		return true
	}
	c, cancel := context.WithTimeout(context.Background(), loadTimeout)
	defer cancel()
	r, err := g.opts.Store.LoadDevice(c, g.core.id)
	if err != nil {
		g.logger().Warn("reloading the sequence after a failed write failed; reports are refused until it works", "err", err)
		return false
	}
	g.core.lastSeq = r.LastSeq
	g.core.latest, g.core.latestAt = nil, time.Time{}
	if r.Latest != nil {
		g.core.latest, g.core.latestAt = readingToTelemetry(*r.Latest), r.Latest.ReceivedAt
	}
	q.resync = false
	return true
}
