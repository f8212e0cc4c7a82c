package actors

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/sprout-iot/sprout/messages/actorpb"
	"github.com/sprout-iot/sprout/messages/devicepb"
)

// Queued commands (docs/fleet.md): a command asked with SendCommand.queue is stored in the device
// grain's snapshot and delivered when the pot is online, after its Welcome, one at a time in the
// order asked, and only while no immediate command is open (the pot runs one command at a time).
// It ends with the pot's result, as timed_out when the pot does not answer within the command's
// timeout on the connection it was sent on, as expired when its ttl passes before it was sent (or
// while the pot was away after it was sent), or as cancelled. A command sent whose connection
// ended before the result is sent again with the same id on the next connection: the pot runs
// each id at most once and answers a repeated id with its first result.

// Queue limits: the defaults of DeviceOptions.MaxQueued, DefaultQueueTTL, MaxQueueTTL and
// QueueBusyRetry.
const (
	DefaultMaxQueued      = 32
	DefaultQueueTTL       = 24 * time.Hour
	DefaultMaxQueueTTL    = 7 * 24 * time.Hour
	DefaultQueueBusyRetry = 30 * time.Second
)

// EventKindCommandQueued is a queued command accepted (body: actorpb.SendCommand).
const EventKindCommandQueued = "command_queued"

// queueLimits are the DeviceOptions a core applies to queued commands.
type queueLimits struct {
	max                int
	defaultTTL, maxTTL time.Duration
	busyRetry          time.Duration
}

func (l queueLimits) withDefaults() queueLimits {
	if l.max <= 0 {
		l.max = DefaultMaxQueued
	}
	if l.defaultTTL <= 0 {
		l.defaultTTL = DefaultQueueTTL
	}
	if l.maxTTL <= 0 {
		l.maxTTL = DefaultMaxQueueTTL
	}
	if l.defaultTTL > l.maxTTL {
		l.defaultTTL = l.maxTTL
	}
	if l.busyRetry <= 0 {
		l.busyRetry = DefaultQueueBusyRetry
	}
	return l
}

func (c *deviceCore) queueIndex(id string) int {
	return slices.IndexFunc(c.queue, func(q *actorpb.QueuedCommand) bool { return q.Command.GetCommandId() == id })
}

// sentLive reports whether q was sent on the connection attached now (so its answer may come).
func (c *deviceCore) sentLive(q *actorpb.QueuedCommand) bool {
	return c.online && q.Sent && c.queueLive == q.Command.GetCommandId()
}

func answerTimeout(m *actorpb.SendCommand) time.Duration {
	if m.TimeoutMs != 0 {
		return time.Duration(m.TimeoutMs) * time.Millisecond
	}
	return DefaultCommandTimeout
}

// enqueue decides a queued SendCommand (already validated as a command, and allowed).
func (c *deviceCore) enqueue(m *actorpb.SendCommand, now time.Time) (commandDecision, *actorpb.CommandOutcome, effects) {
	var fx effects
	lim := c.qlimits.withDefaults()
	answer := func(o actorpb.Outcome, detail string) (commandDecision, *actorpb.CommandOutcome, effects) {
		return commandAnswered, &actorpb.CommandOutcome{DeviceId: c.id, CommandId: m.CommandId, Outcome: o, Detail: detail,
			AtMs: now.UnixMilli(), RequestedBy: m.RequestedBy, Kind: m.Kind, Queued: true}, fx
	}
	if i := c.queueIndex(m.CommandId); i >= 0 {
		q := c.queue[i]
		return answer(actorpb.Outcome_OUTCOME_QUEUED, fmt.Sprintf("already queued until %s", time.UnixMilli(q.ExpiresAtMs).UTC().Format(time.RFC3339)))
	}
	ttl := lim.defaultTTL
	if m.TtlS != 0 {
		ttl = time.Duration(m.TtlS) * time.Second
	}
	if ttl > lim.maxTTL {
		return answer(actorpb.Outcome_OUTCOME_INVALID, fmt.Sprintf("ttl_s must be 1..%d", int64(lim.maxTTL/time.Second)))
	}
	if len(c.queue) >= lim.max {
		return answer(actorpb.Outcome_OUTCOME_BUSY, fmt.Sprintf("%d commands already queued for this pot (the most it holds); cancel one or wait", len(c.queue)))
	}
	req := proto.Clone(m).(*actorpb.SendCommand)
	req.Trace = nil
	q := &actorpb.QueuedCommand{Command: req, QueuedAtMs: now.UnixMilli(), ExpiresAtMs: now.Add(ttl).UnixMilli()}
	c.queue = append(slices.Clip(c.queue), q)
	fx.event(now, EventKindCommandQueued, 0, req)
	fx.snapshot = true
	c.pumpQueue(&fx, now)
	return answer(actorpb.Outcome_OUTCOME_QUEUED, fmt.Sprintf("queued until %s", time.UnixMilli(q.ExpiresAtMs).UTC().Format(time.RFC3339)))
}

// pumpQueue expires what waited too long, sends the head when the pot can take it, and arms each
// queued command's next timer (its answer deadline when sent on this connection, else its ttl, or
// the end of a BUSY pause for the head). Every command step runs it last.
func (c *deviceCore) pumpQueue(fx *effects, now time.Time) {
	if len(c.queue) == 0 {
		return
	}
	var keep []*actorpb.QueuedCommand
	for _, q := range c.queue {
		if !c.sentLive(q) && now.UnixMilli() >= q.ExpiresAtMs {
			c.endQueued(fx, q, actorpb.Outcome_OUTCOME_EXPIRED,
				fmt.Sprintf("not delivered before its ttl ended at %s", time.UnixMilli(q.ExpiresAtMs).UTC().Format(time.RFC3339)), 0, now)
			continue
		}
		keep = append(keep, q)
	}
	c.queue = keep
	if len(c.queue) > 0 && c.online && len(c.open) == 0 && !c.revoked {
		h := c.queue[0]
		if !c.sentLive(h) && now.UnixMilli() >= h.NotBeforeMs {
			h = proto.Clone(h).(*actorpb.QueuedCommand)
			h.Sent, h.SentAtMs, h.NotBeforeMs = true, now.UnixMilli(), 0
			h.Sends++
			c.queue = slices.Clone(c.queue)
			c.queue[0] = h
			c.queueLive = h.Command.CommandId
			oc := &openCommand{req: h.Command, deadline: now.Add(answerTimeout(h.Command))}
			fx.frames = append(fx.frames, commandFrame(oc, now))
			fx.event(now, EventKindCommandSent, 0, h.Command)
			fx.snapshot = true
		}
	}
	for i, q := range c.queue {
		at := time.UnixMilli(q.ExpiresAtMs)
		switch {
		case c.sentLive(q):
			at = time.UnixMilli(q.SentAtMs).Add(answerTimeout(q.Command))
		case i == 0 && q.NotBeforeMs > now.UnixMilli() && q.NotBeforeMs < q.ExpiresAtMs:
			at = time.UnixMilli(q.NotBeforeMs)
		}
		fx.timers = append(fx.timers, timer{commandID: q.Command.CommandId, at: at})
	}
}

// queueTimer handles a queued command's timer: its answer deadline, its ttl, or a BUSY pause.
func (c *deviceCore) queueTimer(id string, now time.Time, fx *effects) {
	if i := c.queueIndex(id); i >= 0 {
		q := c.queue[i]
		if c.sentLive(q) && !now.Before(time.UnixMilli(q.SentAtMs).Add(answerTimeout(q.Command))) {
			c.endQueued(fx, q, actorpb.Outcome_OUTCOME_TIMED_OUT, "sent, but no result before the deadline", 0, now)
		}
	}
	c.pumpQueue(fx, now)
}

// queuedResult handles the pot's result for a queued command it was sent; false when id is no
// queued command that was sent.
func (c *deviceCore) queuedResult(r *devicepb.CommandResult, now time.Time, fx *effects) bool {
	i := c.queueIndex(r.GetCommandId())
	if i < 0 || !c.queue[i].Sent {
		return false
	}
	q := c.queue[i]
	o := outcomeOf(r.Status)
	if o == actorpb.Outcome_OUTCOME_BUSY {
		// The pot is running something else: the command keeps its place and goes again later.
		q = proto.Clone(q).(*actorpb.QueuedCommand)
		q.Sent, q.NotBeforeMs = false, now.Add(c.qlimits.withDefaults().busyRetry).UnixMilli()
		c.queue = slices.Clone(c.queue)
		c.queue[i] = q
		if c.queueLive == q.Command.CommandId {
			c.queueLive = ""
		}
		fx.snapshot = true
		c.pumpQueue(fx, now)
		return true
	}
	c.endQueued(fx, q, o, r.Detail, r.WateredMl, now)
	c.applied(fx, q.Command, o, r.Detail, now)
	c.pumpQueue(fx, now)
	return true
}

// cancelQueued cancels a queued command that has not been sent.
func (c *deviceCore) cancelQueued(m *actorpb.QueuedCancel, now time.Time) (*actorpb.QueuedCancelResult, effects) {
	var fx effects
	if i := c.queueIndex(m.CommandId); i >= 0 {
		q := c.queue[i]
		if q.Sent {
			return &actorpb.QueuedCancelResult{Error: actorpb.ErrorCode_ERROR_CODE_INVALID,
				Detail: "already sent to the pot, which may be running it; it cannot be cancelled",
				Outcome: &actorpb.CommandOutcome{DeviceId: c.id, CommandId: m.CommandId, Outcome: actorpb.Outcome_OUTCOME_PENDING,
					AtMs: q.SentAtMs, RequestedBy: q.Command.RequestedBy, Kind: q.Command.Kind, Queued: true}}, fx
		}
		out := c.endQueued(&fx, q, actorpb.Outcome_OUTCOME_CANCELLED, "cancelled by "+m.By, 0, now)
		c.pumpQueue(&fx, now)
		return &actorpb.QueuedCancelResult{Outcome: out}, fx
	}
	for _, r := range c.recent {
		if r.CommandId == m.CommandId && r.Queued {
			return &actorpb.QueuedCancelResult{Outcome: r, Error: actorpb.ErrorCode_ERROR_CODE_INVALID,
				Detail: "the command already ended: " + queuedOutcomeName(r.Outcome)}, fx
		}
	}
	return &actorpb.QueuedCancelResult{Error: actorpb.ErrorCode_ERROR_CODE_INVALID, Detail: "no such queued command"}, fx
}

// queuedOutcomeName is an outcome's lower-case name ("done", "expired", ...).
func queuedOutcomeName(o actorpb.Outcome) string {
	return strings.ToLower(strings.TrimPrefix(o.String(), "OUTCOME_"))
}

// endQueued removes q from the queue with its outcome, remembered, logged and told.
func (c *deviceCore) endQueued(fx *effects, q *actorpb.QueuedCommand, o actorpb.Outcome, detail string, ml uint32, now time.Time) *actorpb.CommandOutcome {
	id := q.Command.GetCommandId()
	if i := c.queueIndex(id); i >= 0 {
		c.queue = slices.Delete(slices.Clone(c.queue), i, i+1)
	}
	if c.queueLive == id {
		c.queueLive = ""
	}
	out := &actorpb.CommandOutcome{DeviceId: c.id, CommandId: id, Outcome: o, Detail: detail, WateredMl: ml,
		AtMs: now.UnixMilli(), RequestedBy: q.Command.GetRequestedBy(), Kind: q.Command.GetKind(), Queued: true}
	c.remember(out)
	fx.event(now, EventKindCommandOutcome, 0, out)
	fx.snapshot = true
	fx.outcomes = append(fx.outcomes, out)
	return out
}

// queuedOutcomes are the finished queued commands the core remembers, oldest first.
func (c *deviceCore) queuedOutcomes() []*actorpb.CommandOutcome {
	var out []*actorpb.CommandOutcome
	for _, r := range c.recent {
		if r.Queued {
			out = append(out, r)
		}
	}
	return out
}
