package actors

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"

	"github.com/sprout-iot/sprout/messages/actorpb"
)

// The user grain's side of joining (docs/wechat.md, "Who may join" and "Bindings in step"):
// the owner's join_request and the requester's join_result become pushes; a request to join is
// answered "waiting for the owner"; a WeChat bind Sprout refuses is undone in WeChat; a WeChat
// unbind whose store write failed is retried until it is stored; transmsg status pushes go only
// to users who opened the pot's status (subscribe_status).

func init() {
	for k, v := range map[string][2]string{
		"join_pending": {"已向 %s 的管理员申请加入，等待批准。你也可以在 %d 分钟内按一下花盆上的按钮直接加入。批准前你不能查看或控制它。",
			"Asked the owner of %s to let you join; waiting for approval. Or press the button on the pot within %d minutes to join now. Until then you cannot see or control it."},
		"join_pending_again": {"你加入 %s 的申请还在等待管理员批准（也可以在 %d 分钟内按一下花盆上的按钮）。",
			"Your request to join %s is still waiting for its owner (or press the button on the pot within %d minutes)."},
		"join_request": {"%s 申请加入你的花盆 %s（%s）。点击批准或拒绝：%s", "%s asks to join your pot %s (%s). Tap to approve or refuse: %s"},
		"join_request_nolink": {"%s 申请加入你的花盆 %s（%s）。请在「我的花盆」页面批准或拒绝。",
			"%s asks to join your pot %s (%s). Approve or refuse on the pot's page."},
		"join_approved": {"管理员已批准：你已加入 %s 的家庭成员。", "Approved: you joined %s as a family member."},
		"join_pressed":  {"已确认你按了花盆的按钮：你已加入 %s 的家庭成员。", "The pot's button was pressed: you joined %s as a family member."},
		"join_refused":  {"%s 的管理员拒绝了你的加入申请。", "The owner of %s refused your request to join."},
		"join_expired":  {"你加入 %s 的申请已过期（没有人批准）。需要的话请重新扫码。", "Your request to join %s expired (no one approved it). Scan the pot again if you still want to join."},
		"join_owner":    {"你已接管 %s，现在你是它唯一的管理员。", "You took %s over: you are now its only user, its owner."},
		"join_taken":    {"%s 已被持有它的人接管（长按了花盆的按钮），你已不再绑定它。", "%s was taken over by whoever holds it (a long press of its button); you are no longer bound to it."},
		"join_removed":  {"%s 的管理员已将你移出，你将不再收到它的消息。", "The owner of %s removed you; you will no longer hear from it."},
		"join_short":    {"加入申请", "request to join"},
	} {
		texts[LangZH][k], texts[LangEN][k] = v[0], v[1]
	}
}

// userJoin is the user grain's persisted joining state (part of userState).
type userJoin struct {
	// StatusSubs are the pots whose status page the user opened (device_event subscribe_status):
	// only they get transmsg status pushes, until unsubscribe_status.
	StatusSubs []string `json:"status_subs,omitempty"`
	// UnbindRetries are WeChat unbinds (device_event unbind) whose store write failed: tried again
	// until stored, so WeChat and Sprout agree.
	UnbindRetries []unbindRetry `json:"unbind_retries,omitempty"`
	// Joining are the user's requests to join, until they hear the result (or they expire).
	Joining []joining `json:"joining,omitempty"`
}

type joining struct {
	DeviceID string    `json:"device_id"`
	Until    time.Time `json:"until"`
}

type unbindRetry struct {
	DeviceID string    `json:"device_id"`
	Due      time.Time `json:"due"`
	Attempts int       `json:"attempts"`
}

func (j userJoin) clone() userJoin {
	return userJoin{StatusSubs: slices.Clone(j.StatusSubs), UnbindRetries: slices.Clone(j.UnbindRetries), Joining: slices.Clone(j.Joining)}
}

// subscribedStatus reports whether the user opened the pot's status (transmsg goes only to them).
func (j *userJoin) subscribedStatus(deviceID string) bool {
	return slices.Contains(j.StatusSubs, deviceID)
}

// setStatusSub records subscribe_status / unsubscribe_status for a pot the user is bound to.
func (j *userJoin) setStatusSub(m *actorpb.UserMessage, a answer) {
	i := slices.Index(j.StatusSubs, m.DeviceId)
	switch {
	case m.Event == "subscribe_status" && a.err == nil && i < 0:
		j.StatusSubs = append(j.StatusSubs, m.DeviceId)
	case m.Event == "unsubscribe_status" && i >= 0:
		j.StatusSubs = slices.Delete(j.StatusSubs, i, i+1)
	}
}

// unbindLater remembers a WeChat unbind the pot's grain could not store (busy, not answering):
// tried again until it is.
func (j *userJoin) unbindLater(deviceID string, a answer, now time.Time) {
	if a.err == nil || errors.Is(a.err, ErrUnknownDevice) || errors.Is(a.err, ErrRevoked) || errors.Is(a.err, ErrInvalid) {
		return
	}
	if slices.ContainsFunc(j.UnbindRetries, func(r unbindRetry) bool { return r.DeviceID == deviceID }) {
		return
	}
	j.UnbindRetries = append(j.UnbindRetries, unbindRetry{DeviceID: deviceID, Due: now.Add(unbindRetryWait(0))})
}

func unbindRetryWait(attempts int) time.Duration {
	return min(2*time.Second<<min(attempts, 10), 5*time.Minute)
}

// fromWeChat is o for an unbind WeChat made itself (device_event unbind): not sent back to
// WeChat (no compel_unbind).
func fromWeChat(o *UserOptions) *UserOptions {
	c := *o
	c.CompelBind = false
	return &c
}

// joinReply answers a scan that became a request to join (or renewed one), and remembers it.
func (c *userCore) joinReply(deviceID string, br *actorpb.BindResult, now time.Time, o *UserOptions) *actorpb.UserReply {
	c.st.Joining = slices.DeleteFunc(c.st.Joining, func(j joining) bool { return j.DeviceID == deviceID || !now.Before(j.Until) })
	c.st.Joining = append(c.st.Joining, joining{DeviceID: deviceID, Until: now.Add(o.Join.RequestTTL)})
	mins := int(max(o.Join.PressWindow, time.Minute) / time.Minute)
	if br.Already {
		return text(say(c.st.Lang, "join_pending_again", deviceID, mins))
	}
	return text(say(c.st.Lang, "join_pending", deviceID, mins))
}

// waitingReply answers a user with no pot whose request to join waits: asking for the status,
// the list or watering tells them it waits for the owner (not "you have no pots").
func (c *userCore) waitingReply(in intent, now time.Time, o *UserOptions) *actorpb.UserReply {
	if len(c.devices) > 0 || (in.kind != "water" && in.kind != "status" && in.kind != "list") {
		return nil
	}
	for _, j := range c.st.Joining {
		if now.Before(j.Until) {
			return text(say(c.st.Lang, "join_pending_again", j.DeviceID, int(max(o.Join.PressWindow, time.Minute)/time.Minute)))
		}
	}
	return nil
}

// undoWeChatBind: a WeChat bind (device_event bind) Sprout refuses (an unknown or revoked pot) is
// undone in WeChat, so the pot does not sit in the user's WeChat device list doing nothing.
func (c *userCore) undoWeChatBind(deviceID string, a answer, now time.Time, o *UserOptions, fx *userEffects) {
	if !o.CompelBind || !(errors.Is(a.err, ErrUnknownDevice) || errors.Is(a.err, ErrRevoked)) {
		return
	}
	fx.pushes = append(fx.pushes, Push{ID: pushID("compel_unbind", c.openID, deviceID, now.String()), Kind: PushCompelUnbind,
		Payload: mustJSON(PushPayload{DeviceID: deviceID})})
}

// joinNotice turns a join_request (to the owner) or join_result (to a requester or a user who
// lost the pot) into a push.
func joinNotice(n *userCore, nt *actorpb.UserNotice, now time.Time, o *UserOptions, fx *userEffects) {
	lang := n.st.Lang
	id := pushID("notice", n.openID, nt.NoticeId)
	switch b := nt.Body.(type) {
	case *actorpb.UserNotice_JoinRequest:
		r := b.JoinRequest
		who := maskOpenID(r.OpenId)
		at := time.UnixMilli(r.AtMs).In(chinaZone).Format("2006-01-02 15:04")
		msg := say(lang, "join_request_nolink", who, nt.DeviceId, at)
		link := ""
		if o.Join.ApproveURL != nil {
			link = o.Join.ApproveURL(nt.DeviceId, r.Id)
			msg = say(lang, "join_request", who, nt.DeviceId, at, link)
		}
		// The link is in the text; a template card links the pot's page, which lists the requests
		// with the same one-tap buttons.
		fx.pushes = append(fx.pushes, messagePush(n.openID, MsgJoinRequest, id, nt.DeviceId, msg,
			MessageFields{Pot: nt.DeviceId, Who: who, What: say(lang, "join_short"), State: "待批准", Detail: msg, AtMs: r.AtMs}))
	case *actorpb.UserNotice_JoinResult:
		r := b.JoinResult
		key := map[actorpb.JoinOutcome]string{
			actorpb.JoinOutcome_JOIN_OUTCOME_APPROVED: "join_approved", actorpb.JoinOutcome_JOIN_OUTCOME_PRESSED: "join_pressed",
			actorpb.JoinOutcome_JOIN_OUTCOME_REFUSED: "join_refused", actorpb.JoinOutcome_JOIN_OUTCOME_EXPIRED: "join_expired",
			actorpb.JoinOutcome_JOIN_OUTCOME_OWNER: "join_owner", actorpb.JoinOutcome_JOIN_OUTCOME_TAKEN_OVER: "join_taken",
			actorpb.JoinOutcome_JOIN_OUTCOME_REMOVED: "join_removed",
		}[r.Outcome]
		if key == "" {
			return
		}
		n.st.Joining = slices.DeleteFunc(n.st.Joining, func(j joining) bool { return j.DeviceID == nt.DeviceId })
		if r.Outcome == actorpb.JoinOutcome_JOIN_OUTCOME_TAKEN_OVER || r.Outcome == actorpb.JoinOutcome_JOIN_OUTCOME_REMOVED {
			n.setBinding(Binding{DeviceID: nt.DeviceId}, false)
		}
		msg := say(lang, key, nt.DeviceId)
		fx.pushes = append(fx.pushes, messagePush(n.openID, MsgJoinResult, id, nt.DeviceId, msg,
			MessageFields{Pot: nt.DeviceId, What: say(lang, "join_short"), State: joinStates[r.Outcome], Detail: msg, AtMs: now.UnixMilli()}))
	}
}

// joinStates are the short state words (a template's phrase: at most 5 Chinese characters) of
// each outcome of a request to join.
var joinStates = map[actorpb.JoinOutcome]string{
	actorpb.JoinOutcome_JOIN_OUTCOME_APPROVED: "已批准", actorpb.JoinOutcome_JOIN_OUTCOME_PRESSED: "已加入",
	actorpb.JoinOutcome_JOIN_OUTCOME_REFUSED: "已拒绝", actorpb.JoinOutcome_JOIN_OUTCOME_EXPIRED: "已过期",
	actorpb.JoinOutcome_JOIN_OUTCOME_OWNER: "已成为主人", actorpb.JoinOutcome_JOIN_OUTCOME_TAKEN_OVER: "已转让",
	actorpb.JoinOutcome_JOIN_OUTCOME_REMOVED: "已移除",
}

// chinaZone is how times are shown to WeChat users (UTC+8, no DST).
var chinaZone = time.FixedZone("CST", 8*3600)

// maskOpenID shows enough of an OpenID to tell people apart and no more.
func maskOpenID(openID string) string {
	if len(openID) >= 10 {
		return openID[:4] + "****" + openID[len(openID)-3:]
	}
	if len(openID) > 2 {
		return openID[:2] + "****"
	}
	return "****"
}

// Retrying WeChat unbinds (UnbindRetries): a timer at the earliest due retry; each retry asks the
// pot's grain off the receive and comes back as unbindRetried.

type unbindRetryDue struct{}

type unbindRetried struct {
	deviceID string
	err      error
}

// armUnbindRetry holds a timer for the earliest due retry.
func (g *userGrain) armUnbindRetry(ctx actor.Context) {
	if g.unbindTimer != nil {
		g.unbindTimer.Stop()
		g.unbindTimer = nil
	}
	rs := g.core.st.UnbindRetries
	if len(rs) == 0 {
		return
	}
	due := rs[0].Due
	for _, r := range rs[1:] {
		if r.Due.Before(due) {
			due = r.Due
		}
	}
	root, self := ctx.ActorSystem().Root, ctx.Self()
	g.unbindTimer = g.opts.Clock.AfterFunc(max(due.Sub(g.opts.Clock.Now()), 0), func() { root.Send(self, unbindRetryDue{}) })
}

// retryUnbinds asks the pots whose WeChat unbind is due again.
func (g *userGrain) retryUnbinds(ctx actor.Context) {
	g.unbindTimer = nil
	now := g.opts.Clock.Now()
	root, self, c, openID, timeout := ctx.ActorSystem().Root, ctx.Self(), g.cluster, g.core.openID, g.opts.RequestTimeout
	for _, r := range g.core.st.UnbindRetries {
		if now.Before(r.Due) {
			continue
		}
		go func() {
			res, err := c.Request(r.DeviceID, DeviceKind, &actorpb.JoinUnbind{OpenId: openID, By: openID, WechatUnbound: true}, cluster.WithTimeout(timeout))
			if err == nil {
				if br, ok := res.(*actorpb.BindResult); !ok || !br.Ok {
					err = fmt.Errorf("%w: %v", ErrUnavailable, res)
				}
			}
			root.Send(self, &unbindRetried{deviceID: r.DeviceID, err: err})
		}()
	}
	g.armUnbindRetry(ctx) // re-armed when the answers are in; meanwhile a later one may be due
}

// unbindDone records a retry's answer: stored (the retry ends, and the user's list follows), or
// failed again (tried later, backing off up to 5 min).
func (g *userGrain) unbindDone(ctx actor.Context, m *unbindRetried) {
	next := g.core.clone()
	now := g.opts.Clock.Now()
	i := slices.IndexFunc(next.st.UnbindRetries, func(r unbindRetry) bool { return r.DeviceID == m.deviceID })
	if i < 0 {
		return
	}
	if m.err == nil {
		next.st.UnbindRetries = slices.Delete(next.st.UnbindRetries, i, i+1)
		next.setBinding(Binding{DeviceID: m.deviceID}, false)
		g.log.Info("a WeChat unbind that had failed is stored now", "device", m.deviceID)
	} else {
		r := &next.st.UnbindRetries[i]
		r.Attempts++
		r.Due = now.Add(unbindRetryWait(r.Attempts))
		g.log.Warn("a WeChat unbind is still not stored; trying again", "device", m.deviceID, "attempts", r.Attempts, "err", m.err)
	}
	g.commit(ctx, next, userEffects{})
}

// keepUnbindRetries keeps the retries in memory when the state could not be stored: they are
// what must not be lost while the store is down (stored with the next successful write).
func (g *userGrain) keepUnbindRetries(next userCore) {
	g.core.st.UnbindRetries = next.st.UnbindRetries
}
