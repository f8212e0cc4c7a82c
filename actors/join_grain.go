package actors

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/sprout-iot/sprout/messages/actorpb"
)

// The device grain's side of joining (join.go has the decisions).

// joinExpiry is sent by the grain to itself when the earliest request to join expires.
type joinExpiry struct{}

// buttonPress is a press of the pot's button (an acknowledged BUTTON_PRESSED event), sent by the
// grain to itself once the event is stored: letting someone in needs the bindings store.
type buttonPress struct {
	long bool
	at   time.Time
}

func newJoinID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func joinDecided(code actorpb.ErrorCode) *actorpb.JoinDecided {
	return &actorpb.JoinDecided{Error: code}
}

// ask records a scan after the owner's as a request to join (snapshot), tells the owner, and
// answers the scan as pending.
func (g *deviceGrain) ask(ctx actor.Context, m *actorpb.BindDevice, res *actorpb.BindResult) {
	now := g.now()
	next := g.core.next()
	var fx effects
	next.ask(m.OpenId, m.Via, newJoinID(), now, &g.opts.Join, &fx)
	if err := g.persist(next, fx); err != nil {
		g.logger().Warn("recording a request to join failed", "err", err)
		ctx.Respond(bindUnavailable)
		return
	}
	g.core = next
	g.perform(ctx, fx)
	ctx.Respond(res)
}

// withdraw ends openID's pending request, if any, because they left (unbound in WeChat, or
// unbound in the pages while waiting); answered like an unbind.
func (g *deviceGrain) withdraw(ctx actor.Context, openID string) {
	j := g.core.joinByID("", openID)
	if j == nil {
		ctx.Respond(&actorpb.BindResult{Ok: true})
		return
	}
	next := g.core.next()
	var fx effects
	next.endJoin(j, actorpb.JoinOutcome_JOIN_OUTCOME_UNSPECIFIED, "", g.now(), &g.opts.Join, &fx)
	if err := g.persist(next, fx); err != nil {
		ctx.Respond(bindUnavailable)
		return
	}
	g.core = next
	g.perform(ctx, fx)
	ctx.Respond(&actorpb.BindResult{Ok: true})
}

// joinDecide is the owner (or an operator) approving or refusing a request.
func (g *deviceGrain) joinDecide(ctx actor.Context, m *actorpb.JoinDecide) {
	if !g.ready(ctx) || g.opts.Users == nil {
		ctx.Respond(joinDecided(actorpb.ErrorCode_ERROR_CODE_UNAVAILABLE))
		return
	}
	if !g.core.known {
		ctx.Respond(joinDecided(actorpb.ErrorCode_ERROR_CODE_UNKNOWN_DEVICE))
		return
	}
	if !trustedCaller(m.By) && (m.By == "" || m.By != g.core.owner()) {
		ctx.Respond(joinDecided(actorpb.ErrorCode_ERROR_CODE_NOT_OWNER))
		return
	}
	j := g.core.joinByID(m.RequestId, m.OpenId)
	if j == nil { // decided already, expired, or never asked
		ctx.Respond(joinDecided(actorpb.ErrorCode_ERROR_CODE_INVALID))
		return
	}
	now := g.now()
	if !m.Approve {
		next := g.core.next()
		var fx effects
		next.endJoin(j, actorpb.JoinOutcome_JOIN_OUTCOME_REFUSED, "", now, &g.opts.Join, &fx)
		if err := g.persist(next, fx); err != nil {
			ctx.Respond(joinDecided(actorpb.ErrorCode_ERROR_CODE_UNAVAILABLE))
			return
		}
		g.core = next
		g.perform(ctx, fx)
		ctx.Respond(&actorpb.JoinDecided{Outcome: actorpb.JoinOutcome_JOIN_OUTCOME_REFUSED, OpenId: j.OpenId})
		return
	}
	if err := g.letIn(ctx, j, actorpb.JoinOutcome_JOIN_OUTCOME_APPROVED); err != nil {
		ctx.Respond(joinDecided(CodeOf(err)))
		return
	}
	ctx.Respond(&actorpb.JoinDecided{Outcome: actorpb.JoinOutcome_JOIN_OUTCOME_APPROVED, OpenId: j.OpenId})
}

// letIn binds a requester as a member (the owner, if everyone left meanwhile): stored in the
// bindings first, then the request ends in the snapshot (a failed snapshot leaves a request whose
// requester is bound, which the next load drops).
func (g *deviceGrain) letIn(ctx actor.Context, j *actorpb.JoinRequest, out actorpb.JoinOutcome) error {
	if g.core.revoked {
		return ErrRevoked
	}
	now := g.now()
	role := RoleMember
	if len(g.core.users) == 0 {
		role = RoleOwner
	}
	b := Binding{DeviceID: g.core.id, OpenID: j.OpenId, Role: role, BoundAt: now}
	c, cancel := context.WithTimeout(context.Background(), loadTimeout)
	defer cancel()
	if err := g.opts.Users.Bind(c, b); err != nil {
		g.logger().Warn("letting a requester in failed", "err", err)
		return ErrUnavailable
	}
	next := g.core.next()
	fx := effectsWithEvent(now, EventKindBound, &actorpb.BindDevice{OpenId: j.OpenId, Via: j.Via})
	next.admit(j, b, out, now, &g.opts.Join, &fx)
	g.keepStored(ctx, next, fx, "joining")
	return nil
}

// joinUnbind removes a user or their pending request: the user themself, the owner (anyone
// else), or an operator.
func (g *deviceGrain) joinUnbind(ctx actor.Context, m *actorpb.JoinUnbind) {
	if !g.ready(ctx) || g.opts.Users == nil {
		ctx.Respond(bindUnavailable)
		return
	}
	self := m.By == m.OpenId
	if !self && !trustedCaller(m.By) && (m.By == "" || m.By != g.core.owner()) {
		ctx.Respond(&actorpb.BindResult{Error: "not_owner", Code: actorpb.ErrorCode_ERROR_CODE_NOT_OWNER})
		return
	}
	now := g.now()
	if !g.core.bound(m.OpenId) {
		if self {
			g.withdraw(ctx, m.OpenId)
			return
		}
		j := g.core.joinByID("", m.OpenId)
		if j == nil {
			ctx.Respond(&actorpb.BindResult{Ok: true})
			return
		}
		next := g.core.next()
		var fx effects
		next.endJoin(j, actorpb.JoinOutcome_JOIN_OUTCOME_REFUSED, "", now, &g.opts.Join, &fx)
		if err := g.persist(next, fx); err != nil {
			ctx.Respond(bindUnavailable)
			return
		}
		g.core = next
		g.perform(ctx, fx)
		ctx.Respond(&actorpb.BindResult{Ok: true})
		return
	}
	c, cancel := context.WithTimeout(context.Background(), loadTimeout)
	defer cancel()
	if err := g.opts.Users.Unbind(c, g.core.id, m.OpenId); err != nil {
		g.logger().Warn("unbinding failed", "err", err)
		ctx.Respond(bindUnavailable)
		return
	}
	out := actorpb.JoinOutcome_JOIN_OUTCOME_REMOVED
	if self {
		out = actorpb.JoinOutcome_JOIN_OUTCOME_UNSPECIFIED
	}
	next := g.core.next()
	var fx effects
	next.dropUser(m.OpenId, out, m.WechatUnbound, now, &g.opts.Join, &fx)
	g.keepStored(ctx, next, fx, "unbinding")
	ctx.Respond(&actorpb.BindResult{Ok: true})
}

// pressed lets in the request a press of the button is for (a short press), or hands the pot to
// its requester (a long press). A press no request is waiting for changes nothing. A press whose
// store writes fail is tried again (its time is the press's, so the window is the same).
func (g *deviceGrain) pressed(ctx actor.Context, m *buttonPress, attempt int) {
	if !g.ready(ctx) || g.opts.Users == nil {
		g.retry(m, attempt, ErrUnavailable)
		return
	}
	j := g.core.pressedFor(m.at, &g.opts.Join)
	if j == nil {
		g.logger().Info("the pot's button was pressed; no request to join within the window", "long", m.long, "window", g.opts.Join.PressWindow)
		return
	}
	var err error
	if m.long {
		err = g.takeOver(ctx, j)
	} else {
		err = g.letIn(ctx, j, actorpb.JoinOutcome_JOIN_OUTCOME_PRESSED)
	}
	if err != nil && err != ErrRevoked {
		g.retry(m, attempt, err)
	}
}

// takeOver hands the pot to j's requester (a long press: they hold the pot): every binding ends
// (each old user told, and unbound in WeChat), every other request is answered, and the requester
// becomes the only user, its owner. Stored in the bindings first; a failure midway is tried again
// by the press's retry (unbinding twice is harmless).
func (g *deviceGrain) takeOver(ctx actor.Context, j *actorpb.JoinRequest) error {
	if g.core.revoked {
		return ErrRevoked
	}
	now := g.now()
	c, cancel := context.WithTimeout(context.Background(), loadTimeout)
	defer cancel()
	for _, b := range g.core.users {
		if err := g.opts.Users.Unbind(c, g.core.id, b.OpenID); err != nil {
			g.logger().Warn("taking the pot over: unbinding an old user failed", "err", err)
			return ErrUnavailable
		}
	}
	nb := Binding{DeviceID: g.core.id, OpenID: j.OpenId, Role: RoleOwner, BoundAt: now}
	if err := g.opts.Users.Bind(c, nb); err != nil {
		g.logger().Warn("taking the pot over: binding the new owner failed", "err", err)
		return ErrUnavailable
	}
	o := &g.opts.Join
	next := g.core.next()
	var fx effects
	for _, b := range g.core.users {
		fx.event(now, EventKindUnbound, 0, &actorpb.UnbindDevice{OpenId: b.OpenID})
		fx.bindings = append(fx.bindings, &bindingChange{openID: b.OpenID, msg: &actorpb.BindingChanged{DeviceId: next.id, AtMs: now.UnixMilli()}})
		next.tellJoin(b.OpenID, "", actorpb.JoinOutcome_JOIN_OUTCOME_TAKEN_OVER, "", now, &fx)
		next.compel(PushCompelUnbind, b.OpenID, now, o, &fx)
	}
	next.users = nil
	for _, other := range next.joins {
		if other.Id != j.Id {
			next.endJoin(other, actorpb.JoinOutcome_JOIN_OUTCOME_TAKEN_OVER, "", now, o, &fx)
		}
	}
	next.admit(j, nb, actorpb.JoinOutcome_JOIN_OUTCOME_OWNER, now, o, &fx)
	g.logger().Info("the pot was taken over by a long press of its button", "users_removed", len(g.core.users))
	g.keepStored(ctx, next, fx, "take-over")
	return nil
}

// performJoin carries out a stored step's joining effects: notices to user grains, WeChat
// binding calls into the outbox, a press to handle, the expiry timer.
func (g *deviceGrain) performJoin(ctx actor.Context, fx effects) {
	if len(fx.join.notices) > 0 {
		c := g.kind.courierOf(ctx.ActorSystem())
		for _, n := range fx.join.notices {
			c.Send(n.openID, UserKind, n.msg)
		}
	}
	if len(fx.join.compel) > 0 && g.opts.Users != nil {
		now := g.now()
		for i := range fx.join.compel {
			fx.join.compel[i].CreatedAt, fx.join.compel[i].Status = now, PushPending
		}
		c, cancel := context.WithTimeout(context.Background(), loadTimeout)
		err := g.opts.Users.EnqueuePushes(c, fx.join.compel)
		cancel()
		if err != nil {
			// The periodic reconciliation with WeChat repairs what this leaves (bridge/reconcile.go).
			g.logger().Error("enqueuing WeChat binding calls failed; reconciliation repairs them", "count", len(fx.join.compel), "err", err)
		} else if g.opts.Join.Pushed != nil {
			g.opts.Join.Pushed()
		}
	}
	if fx.pressed != nil && g.self != nil {
		ctx.Send(g.self, fx.pressed)
	}
	if fx.join.arm {
		g.armJoin()
	}
}

// armJoin holds a timer for the earliest pending request's expiry, exactly while there is one.
func (g *deviceGrain) armJoin() {
	if g.joinTimer != nil {
		g.joinTimer.Stop()
		g.joinTimer = nil
	}
	at := g.core.nextExpiry()
	if at.IsZero() || g.stopping || g.self == nil {
		return
	}
	g.joinTimer = g.after(max(at.Sub(g.now()), time.Millisecond), joinExpiry{})
}
