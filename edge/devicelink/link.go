// Package devicelink is what every device edge (the TCP edge in edge/device, the MQTT edge in
// edge/mqtt) does to link one connection to its device grain: find the grain and ask it to
// authenticate and attach the connection. The grain owns every decision (presence, dedupe,
// thresholds, commands, replacement, flapping); an edge only carries frames.
package devicelink

import (
	"errors"
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/messages/actorpb"
)

// ErrUnplaced is returned when the cluster cannot place the device's grain.
var ErrUnplaced = errors.New("the cluster cannot place the device's grain")

// Grain looks up the device's grain (activating it if need be); nil if the cluster cannot place it.
func Grain(c *pcluster.Cluster, id string) *actor.PID {
	if pid, ok := c.PidCache.Get(id, actors.DeviceKind); ok {
		return pid
	}
	pid := c.Get(id, actors.DeviceKind)
	if pid != nil {
		c.PidCache.Set(id, actors.DeviceKind, pid)
	}
	return pid
}

// Forget drops the cached PID of the device's grain (it moved or passivated).
func Forget(c *pcluster.Cluster, id string) { c.PidCache.Remove(id, actors.DeviceKind) }

// Authenticate asks the device's grain to authenticate m and attach its connection, within
// timeout. It looks the grain up once; a cached PID of a grain that has since passivated answers
// with a dead letter and is looked up again, once. *asked turns true as soon as the question is
// sent: from then on the grain may have attached the connection (even if its answer is lost),
// which the edge undoes with Detach when the connection ends. pid is the grain the connection
// then reports to.
func Authenticate(c *pcluster.Cluster, m *actorpb.Authenticate, timeout time.Duration, asked *bool) (pid *actor.PID, _ *actorpb.AuthResult, _ error) {
	for attempt := 0; ; attempt++ {
		pid = Grain(c, m.DeviceId)
		if pid == nil {
			return nil, nil, ErrUnplaced
		}
		*asked = true
		res, err := c.ActorSystem.Root.RequestFuture(pid, m, timeout).Result()
		if err == nil {
			ar, ok := res.(*actorpb.AuthResult)
			if !ok {
				return pid, nil, fmt.Errorf("device grain answered %T", res)
			}
			return pid, ar, nil
		}
		Forget(c, m.DeviceId)
		if attempt == 0 && errors.Is(err, actor.ErrDeadLetter) {
			continue
		}
		return pid, nil, err
	}
}
