package device

import (
	"sync"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/messages/actorpb"
	"github.com/sprout-iot/sprout/messages/devicepb"
)

// The connection is its own actor.Process, registered in the actor system's process registry: its
// PID (valid across cluster members) is where the grain sends Deliver and the answers to the
// connection's reports. A message is handled on the sender's goroutine, without a mailbox or a
// goroutine of its own: each handler only queues frames (outq, which never blocks) or starts
// closing. The grain watches the PID; ending the connection sends Terminated to its watchers, as a
// stopped actor would, so presence stays right wherever the grain lives.

// procState is the process's registry side: who watches it, and whether it has ended.
type procState struct {
	mu       sync.Mutex
	watchers []*actor.PID
	dead     bool
}

// register adds the connection to the process registry and sets c.pid.
func (c *conn) register() {
	reg := c.s.cluster.ActorSystem.ProcessRegistry
	c.pid, _ = reg.Add(c, reg.NextId())
}

// SendUserMessage handles a message to the connection (actor.Process).
func (c *conn) SendUserMessage(pid *actor.PID, message any) {
	m := actor.UnwrapEnvelopeMessage(message)
	c.proc.mu.Lock()
	dead := c.proc.dead
	c.proc.mu.Unlock()
	if dead {
		c.s.cluster.ActorSystem.DeadLetter.SendUserMessage(pid, message)
		return
	}
	switch m := m.(type) {
	case *actorpb.ReportAck:
		c.acked([]*actorpb.ReportAck{m})
	case *actorpb.ReportAcks:
		c.acked(m.Acks)
	case *actor.DeadLetterResponse:
		// The grain this connection reports to is gone (its member left): the device reconnects
		// and reaches the grain's new activation.
		c.s.cluster.PidCache.Remove(c.device, actors.DeviceKind)
		c.close(devicepb.CloseReason_CLOSE_REASON_UNAVAILABLE, "device grain moved; reconnect", 0)
	case *actorpb.Deliver:
		if m.SessionId != c.session {
			return
		}
		if len(m.Frames) > 0 {
			span := c.deliverSpan(m)
			c.deliver(m.Frames)
			span.End()
		}
		if m.Close != nil {
			c.close(m.Close.Reason, m.Close.Detail, m.Close.ReconnectAfterMs)
		}
	}
}

// acked handles the grain's answers to reports, in the reports' order: their slots are freed, the
// acks queued, and an answer that closes the session is acted on after the acks before it (the
// reports before it were stored).
func (c *conn) acked(acks []*actorpb.ReportAck) {
	c.answered(int32(len(acks)))
	for i, a := range acks {
		if a.Close != devicepb.CloseReason_CLOSE_REASON_UNSPECIFIED {
			c.sendAcks(acks[:i])
			c.close(a.Close, a.Detail, 0)
			return
		}
	}
	c.sendAcks(acks)
}

// SendSystemMessage handles Watch and Unwatch (actor.Process). A Watch that reaches an ended
// connection is answered with Terminated at once, as protoactor does for a stopped actor.
func (c *conn) SendSystemMessage(pid *actor.PID, message any) {
	switch m := message.(type) {
	case *actor.Watch:
		c.proc.mu.Lock()
		if c.proc.dead {
			c.proc.mu.Unlock()
			c.tell(m.Watcher, &actor.Terminated{Who: pid, Why: actor.TerminatedReason_Stopped})
			return
		}
		for _, w := range c.proc.watchers {
			if w.Equal(m.Watcher) {
				c.proc.mu.Unlock()
				return
			}
		}
		c.proc.watchers = append(c.proc.watchers, m.Watcher)
		c.proc.mu.Unlock()
	case *actor.Unwatch:
		c.proc.mu.Lock()
		for i, w := range c.proc.watchers {
			if w.Equal(m.Watcher) {
				c.proc.watchers = append(c.proc.watchers[:i], c.proc.watchers[i+1:]...)
				break
			}
		}
		c.proc.mu.Unlock()
	case *actor.Stop:
		c.terminate()
	}
}

// Stop ends the process (actor.Process); the socket is the connection's cleanup's to close.
func (c *conn) Stop(*actor.PID) { c.terminate() }

// terminate removes the process from the registry and tells its watchers, once.
func (c *conn) terminate() {
	c.proc.mu.Lock()
	if c.proc.dead {
		c.proc.mu.Unlock()
		return
	}
	c.proc.dead = true
	ws := c.proc.watchers
	c.proc.watchers = nil
	c.proc.mu.Unlock()
	if c.pid == nil {
		return
	}
	c.s.cluster.ActorSystem.ProcessRegistry.Remove(c.pid)
	for _, w := range ws {
		c.tell(w, &actor.Terminated{Who: c.pid, Why: actor.TerminatedReason_Stopped})
	}
}

func (c *conn) tell(to *actor.PID, m any) {
	p, _ := c.s.cluster.ActorSystem.ProcessRegistry.Get(to)
	p.SendSystemMessage(to, m)
}
