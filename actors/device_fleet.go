package actors

import (
	"context"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/sprout-iot/sprout/messages/actorpb"
)

// The device grain's shell for queued commands and desired configuration (device_queue.go,
// device_config.go hold the decisions).

// cancelQueued cancels a queued command that has not been sent yet.
func (g *deviceGrain) cancelQueued(ctx actor.Context, m *actorpb.QueuedCancel) {
	switch {
	case !g.ready(ctx):
		ctx.Respond(&actorpb.QueuedCancelResult{Error: actorpb.ErrorCode_ERROR_CODE_UNAVAILABLE, Detail: "storage unavailable"})
		return
	case !g.core.known:
		ctx.Respond(&actorpb.QueuedCancelResult{Error: actorpb.ErrorCode_ERROR_CODE_UNKNOWN_DEVICE, Detail: "unknown device"})
		return
	}
	next := g.core.next()
	res, fx := next.cancelQueued(m, g.now())
	if err := g.persist(next, fx); err != nil {
		ctx.Respond(&actorpb.QueuedCancelResult{Error: actorpb.ErrorCode_ERROR_CODE_UNAVAILABLE, Detail: "storage unavailable; the command is still queued"})
		return
	}
	g.core = next
	ctx.Respond(res)
	g.perform(ctx, fx)
}

// loadDesired reads the device's effective desired config into next (a step on a loading core):
// its effects are appended to fx.
func (g *deviceGrain) loadDesired(c context.Context, next *deviceCore, fx *effects) error {
	ds, ok := g.opts.Store.(DesiredStore)
	if !ok || !next.known {
		return nil
	}
	prod, dev, err := ds.DesiredConfigs(c, next.product, next.id)
	if err != nil {
		return err
	}
	cfg, source, err := EffectiveDesired(prod, dev)
	if err != nil {
		return err
	}
	if cfg == nil && next.desired == nil {
		return nil
	}
	more := next.setDesired(cfg, source, g.now())
	fx.merge(more)
	return nil
}

// reloadDesired answers DesiredReload: the desired config is read again and, when it changed,
// stored and pushed to the pot if it is online.
func (g *deviceGrain) reloadDesired(ctx actor.Context) {
	switch {
	case !g.ready(ctx):
		ctx.Respond(&actorpb.DesiredReloadResult{Error: actorpb.ErrorCode_ERROR_CODE_UNAVAILABLE})
		return
	case !g.core.known:
		ctx.Respond(&actorpb.DesiredReloadResult{Error: actorpb.ErrorCode_ERROR_CODE_UNKNOWN_DEVICE})
		return
	}
	c, cancel := context.WithTimeout(context.Background(), loadTimeout)
	defer cancel()
	next := g.core.next()
	var fx effects
	if err := g.loadDesired(c, next, &fx); err != nil {
		g.logger().Warn("reloading the desired config failed", "err", err)
		ctx.Respond(&actorpb.DesiredReloadResult{Error: CodeOf(err)})
		return
	}
	if err := g.persist(next, fx); err != nil {
		ctx.Respond(&actorpb.DesiredReloadResult{Error: actorpb.ErrorCode_ERROR_CODE_UNAVAILABLE})
		return
	}
	g.core = next
	ctx.Respond(&actorpb.DesiredReloadResult{State: g.core.desired})
	g.perform(ctx, fx)
}

// reportConfig stores what the grain knows of its pot's configuration, for the fleet's drift
// view. Best effort: the snapshot holds the truth, and the next change or activation writes again.
func (g *deviceGrain) reportConfig() {
	ds, ok := g.opts.Store.(DesiredStore)
	if !ok {
		return
	}
	c, cancel := context.WithTimeout(context.Background(), loadTimeout)
	defer cancel()
	if err := ds.ReportConfig(c, g.core.configReport(g.now())); err != nil {
		g.logger().Warn("storing the config report failed; the drift view may lag", "err", err)
	}
}

// merge appends b's effects to e's (of single-valued ones, b's wins when set).
func (e *effects) merge(b effects) {
	if b.closeConn != nil {
		e.closeConn, e.closeWhy, e.closeText = b.closeConn, b.closeWhy, b.closeText
	}
	if b.pressed != nil {
		e.pressed = b.pressed
	}
	e.join.notices = append(e.join.notices, b.join.notices...)
	e.join.compel = append(e.join.compel, b.join.compel...)
	e.join.arm = e.join.arm || b.join.arm
	e.readings = append(e.readings, b.readings...)
	e.events = append(e.events, b.events...)
	e.snapshot = e.snapshot || b.snapshot
	e.frames = append(e.frames, b.frames...)
	e.outcomes = append(e.outcomes, b.outcomes...)
	e.notices = append(e.notices, b.notices...)
	e.timers = append(e.timers, b.timers...)
	e.bindings = append(e.bindings, b.bindings...)
	e.configReport = e.configReport || b.configReport
}
