package actors

import (
	"fmt"
	"slices"
	"time"

	"github.com/sprout-iot/sprout/messages/actorpb"
)

// Who may join a pot (docs/wechat.md, "Who may join"): the first user to bind a pot becomes its
// owner. After that, a scan of the pot's label (anyone with a photo of it can scan) is only a
// request to join: it waits, without any access, until the owner approves it (one tap from the
// join_request push, or the pot's page), or until whoever holds the pot proves it by pressing the
// pot's button within JoinOptions.PressWindow of the request. The owner can refuse it; nobody
// deciding lets it expire after JoinOptions.RequestTTL. A long press takes the pot over: every
// binding ends and the requester becomes the only user, its owner (a pot given away).

// Join defaults.
const (
	DefaultPressWindow = 2 * time.Minute
	DefaultJoinTTL     = 24 * time.Hour
)

// RolePending is BindResult.role for a scan that became a request to join: the user is not bound
// and has no access until the request is approved.
const RolePending = "pending"

// Trusted ways of binding that add a member at once: the owner's own invitation (checked by the
// pages) and operators (the API, the console).
const (
	JoinViaInvite  = "invite"
	JoinViaAPI     = "api"
	JoinViaConsole = "console"
)

// ButtonLongPress is the detail of a BUTTON_PRESSED event for a long press: take the pot over.
const ButtonLongPress = "long"

// Event kinds of joining, in the device's event log.
const (
	EventKindJoinRequested = "join_requested" // body: actorpb.JoinRequest
	EventKindJoinDecided   = "join_decided"   // body: actorpb.JoinDecided (the requester and the outcome)
)

// JoinOptions configure who may join a pot, for device grains (DeviceOptions.Join) and user
// grains (UserOptions.Join). Zero fields take the defaults documented on each.
type JoinOptions struct {
	// PressWindow: a short press of the pot's button lets in the most recent request to join made
	// within this long before the press; a long press within it takes the pot over for that
	// requester (default 2 min, SPROUT_JOIN_PRESS_WINDOW).
	PressWindow time.Duration
	// RequestTTL: a request no one decided expires after this long, and the requester is told
	// (default 24 h, SPROUT_JOIN_TTL).
	RequestTTL time.Duration
	// CompelBind: WeChat's device APIs are enabled (SPROUT_WECHAT_DEVICE_API=true). Every binding
	// Sprout ends is ended in WeChat too (/device/compel_unbind), and a request approved binds the
	// new member there (/device/compel_bind), through the push outbox.
	CompelBind bool
	// ApproveURL makes the link of the owner's join_request push: the page where one tap approves
	// or refuses (the pages' /app/plants/{id}/requests/{request}). Nil: the push has no link.
	ApproveURL func(deviceID, requestID string) string
	// Pushed, if set, is called after a device grain enqueued pushes (wakes the node's pusher).
	Pushed func()
}

func (o *JoinOptions) defaults() {
	if o.PressWindow <= 0 {
		o.PressWindow = DefaultPressWindow
	}
	if o.RequestTTL <= 0 {
		o.RequestTTL = DefaultJoinTTL
	}
}

func trustedJoin(via string) bool {
	return via == JoinViaInvite || via == JoinViaAPI || via == JoinViaConsole
}

// trustedCaller reports whether by names an operator (not a WeChat user).
func trustedCaller(by string) bool { return by == JoinViaAPI || by == JoinViaConsole }

// joinEffects are what a step about joining asks the shell to do once it is stored.
type joinEffects struct {
	notices []userNoticeTo // join_request to the owner, join_result to requesters and users
	compel  []Push         // compel_bind / compel_unbind, when JoinOptions.CompelBind
	arm     bool           // re-arm the expiry timer (the requests changed)
}

type userNoticeTo struct {
	openID string
	msg    *actorpb.UserNotice
}

// joinIndex is the index of openID's pending request, or -1.
func (c *deviceCore) joinIndex(openID string) int {
	return slices.IndexFunc(c.joins, func(j *actorpb.JoinRequest) bool { return j.OpenId == openID })
}

// joinByID finds a pending request by id, or by requester when id is empty.
func (c *deviceCore) joinByID(id, openID string) *actorpb.JoinRequest {
	for _, j := range c.joins {
		if (id != "" && j.Id == id) || (id == "" && openID != "" && j.OpenId == openID) {
			return j
		}
	}
	return nil
}

// owner is the device's owner's OpenID ("" when it has no users).
func (c *deviceCore) owner() string {
	if len(c.users) == 0 {
		return ""
	}
	return c.users[0].OpenID
}

// ask records a request to join by openID (a user neither bound nor, yet, pending), or renews the
// time of one already pending (the press window counts from the latest scan). id is fresh and
// unguessable (the shell's). The owner hears of a new request once.
func (c *deviceCore) ask(openID, via, id string, now time.Time, o *JoinOptions, fx *effects) *actorpb.JoinRequest {
	c.joins = slices.Clone(c.joins)
	if i := c.joinIndex(openID); i >= 0 {
		j := cloneJoin(c.joins[i])
		j.AtMs = now.UnixMilli()
		c.joins[i] = j
		fx.snapshot = true
		return j
	}
	j := &actorpb.JoinRequest{Id: id, OpenId: openID, AtMs: now.UnixMilli(), ExpiresAtMs: now.Add(o.RequestTTL).UnixMilli(), Via: via}
	c.joins = append(c.joins, j)
	fx.event(now, EventKindJoinRequested, 0, j)
	fx.snapshot = true
	fx.join.arm = true
	if owner := c.owner(); owner != "" {
		fx.join.notices = append(fx.join.notices, userNoticeTo{openID: owner, msg: &actorpb.UserNotice{
			NoticeId: c.id + "/join/" + j.Id, DeviceId: c.id, AtMs: j.AtMs,
			Body: &actorpb.UserNotice_JoinRequest{JoinRequest: j}}})
	}
	return j
}

func cloneJoin(j *actorpb.JoinRequest) *actorpb.JoinRequest {
	return &actorpb.JoinRequest{Id: j.Id, OpenId: j.OpenId, AtMs: j.AtMs, ExpiresAtMs: j.ExpiresAtMs, Via: j.Via}
}

// endJoin removes a pending request with its outcome: logged, stored (snapshot), the requester
// told. A requester WeChat may have bound while they waited (they scanned WeChat's device QR) is
// unbound there too unless they are let in.
func (c *deviceCore) endJoin(j *actorpb.JoinRequest, out actorpb.JoinOutcome, role string, now time.Time, o *JoinOptions, fx *effects) {
	i := slices.IndexFunc(c.joins, func(x *actorpb.JoinRequest) bool { return x.Id == j.Id })
	if i < 0 {
		return
	}
	c.joins = slices.Delete(slices.Clone(c.joins), i, i+1)
	if len(c.joins) == 0 {
		c.joins = nil
	}
	fx.event(now, EventKindJoinDecided, 0, &actorpb.JoinDecided{Outcome: out, OpenId: j.OpenId})
	fx.snapshot = true
	fx.join.arm = true
	if out != actorpb.JoinOutcome_JOIN_OUTCOME_UNSPECIFIED { // unspecified: the requester withdrew
		c.tellJoin(j.OpenId, j.Id, out, role, now, fx)
	}
	let := out == actorpb.JoinOutcome_JOIN_OUTCOME_APPROVED || out == actorpb.JoinOutcome_JOIN_OUTCOME_PRESSED || out == actorpb.JoinOutcome_JOIN_OUTCOME_OWNER
	if !let && out != actorpb.JoinOutcome_JOIN_OUTCOME_UNSPECIFIED && j.Via == "wechat_qr" {
		c.compel(PushCompelUnbind, j.OpenId, now, o, fx)
	}
}

// tellJoin sends a user a join_result.
func (c *deviceCore) tellJoin(openID, requestID string, out actorpb.JoinOutcome, role string, now time.Time, fx *effects) {
	fx.join.notices = append(fx.join.notices, userNoticeTo{openID: openID, msg: &actorpb.UserNotice{
		NoticeId: fmt.Sprintf("%s/join-result/%s/%s/%d", c.id, openID, out, now.UnixMilli()), DeviceId: c.id, AtMs: now.UnixMilli(),
		Body: &actorpb.UserNotice_JoinResult{JoinResult: &actorpb.JoinResult{RequestId: requestID, Outcome: out, Role: role}}}})
}

// compel asks WeChat's device platform to follow a binding change (when its APIs are enabled).
func (c *deviceCore) compel(kind, openID string, now time.Time, o *JoinOptions, fx *effects) {
	if !o.CompelBind {
		return
	}
	fx.join.compel = append(fx.join.compel, Push{ID: pushID(kind, openID, c.id, now.UTC().Format(time.RFC3339Nano)),
		OpenID: openID, Kind: kind, Payload: mustJSON(PushPayload{DeviceID: c.id})})
}

// expireJoins ends the requests whose time is over.
func (c *deviceCore) expireJoins(now time.Time, o *JoinOptions) effects {
	var fx effects
	for _, j := range slices.Clone(c.joins) {
		if now.UnixMilli() >= j.ExpiresAtMs {
			c.endJoin(j, actorpb.JoinOutcome_JOIN_OUTCOME_EXPIRED, "", now, o, &fx)
		}
	}
	return fx
}

// nextExpiry is when the earliest pending request expires (zero: none).
func (c *deviceCore) nextExpiry() time.Time {
	var at int64
	for _, j := range c.joins {
		if at == 0 || j.ExpiresAtMs < at {
			at = j.ExpiresAtMs
		}
	}
	if at == 0 {
		return time.Time{}
	}
	return time.UnixMilli(at)
}

// pressedFor is the request a press of the button at now lets in: the most recent request made
// within the window before the press. Older requests in the window stay pending (the owner
// decides them, or another press after their requester scans again).
func (c *deviceCore) pressedFor(now time.Time, o *JoinOptions) *actorpb.JoinRequest {
	var best *actorpb.JoinRequest
	for _, j := range c.joins {
		at := time.UnixMilli(j.AtMs)
		if at.After(now) || now.Sub(at) > o.PressWindow {
			continue
		}
		if best == nil || j.AtMs >= best.AtMs {
			best = j
		}
	}
	return best
}

// admit makes a stored member binding of a pending request part of the state: the request ends
// with out, the requester is told and (with WeChat's device APIs) bound in WeChat.
func (c *deviceCore) admit(j *actorpb.JoinRequest, b Binding, out actorpb.JoinOutcome, now time.Time, o *JoinOptions, fx *effects) {
	c.endJoin(j, out, b.Role, now, o, fx)
	if !c.bound(b.OpenID) {
		c.addUser(b, fx)
	}
	c.compel(PushCompelBind, b.OpenID, now, o, fx)
}

// dropUser removes a bound user whose binding was removed from the store, tells them why (out,
// unless they left themselves) and unbinds them in WeChat unless WeChat did it already.
func (c *deviceCore) dropUser(openID string, out actorpb.JoinOutcome, wechatUnbound bool, now time.Time, o *JoinOptions, fx *effects) {
	if !c.removeUser(openID, now, fx) {
		return
	}
	fx.event(now, EventKindUnbound, 0, &actorpb.UnbindDevice{OpenId: openID})
	if out != actorpb.JoinOutcome_JOIN_OUTCOME_UNSPECIFIED {
		c.tellJoin(openID, "", out, "", now, fx)
	}
	if !wechatUnbound {
		c.compel(PushCompelUnbind, openID, now, o, fx)
	}
}

// pruneJoins drops, once the bindings are loaded, the recovered requests whose requester is
// bound by now (approved, then the snapshot write failed).
func (c *deviceCore) pruneJoins() {
	c.joins = slices.DeleteFunc(slices.Clone(c.joins), func(j *actorpb.JoinRequest) bool { return j.OpenId == "" || c.bound(j.OpenId) })
	if len(c.joins) == 0 {
		c.joins = nil
	}
}

// revokeJoins ends what revocation ends besides the bindings: WeChat's side of each binding
// removed (unbound), and every request to join (refused: nobody may join a revoked pot).
func (c *deviceCore) revokeJoins(unbound []string, now time.Time, o *JoinOptions, fx *effects) {
	for _, openID := range unbound {
		c.compel(PushCompelUnbind, openID, now, o, fx)
	}
	for _, j := range slices.Clone(c.joins) {
		c.endJoin(j, actorpb.JoinOutcome_JOIN_OUTCOME_REFUSED, "", now, o, fx)
	}
}
