package actors

import (
	"fmt"
	"strconv"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/sprout-iot/sprout/messages/actorpb"
	"github.com/sprout-iot/sprout/messages/devicepb"
)

// Desired configuration (docs/fleet.md): the operator sets a desired devicepb.Config per product
// and per pot (the pot's wins). The device grain sends the effective one in the Welcome and, while
// it differs from what the pot last confirmed, as a SET_CONFIG command (after the Welcome, and at
// once when it changes while the pot is online). The pot's DONE answer to that command is its
// report of what it applied; until then the pot is in drift, since the moment they started to
// differ.

// Event kinds of desired configuration.
const (
	EventKindConfigDesired = "config_desired" // body: actorpb.DesiredConfigState (the new desired state)
)

// desiredRequester is SendCommand.requested_by of the SET_CONFIG commands the grain sends itself.
const desiredRequester = "desired-config"

// ParseConfig reads a devicepb.Config from JSON (protojson: report_interval_s or reportIntervalS)
// and checks it against the platform's limits (ValidateConfig).
func ParseConfig(b []byte) (*devicepb.Config, error) {
	c := &devicepb.Config{}
	if err := (protojson.UnmarshalOptions{}).Unmarshal(b, c); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if err := ValidateConfig(c); err != nil {
		return nil, err
	}
	return c, nil
}

// ConfigJSON is c as stored and shown: protojson with the proto field names, every field present.
func ConfigJSON(c *devicepb.Config) []byte {
	if c == nil {
		return nil
	}
	b, _ := protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}.Marshal(c)
	return b
}

// EffectiveDesired picks the pot's override, else the product's default; nil when neither is set.
// A stored config that no longer parses (written by a newer release, or by hand) is an error.
func EffectiveDesired(prod, dev *DesiredConfig) (*devicepb.Config, string, error) {
	for _, d := range []*DesiredConfig{dev, prod} {
		if d == nil {
			continue
		}
		c, err := ParseConfig(d.Config)
		if err != nil {
			return nil, "", fmt.Errorf("desired config of %s %q: %w", d.Scope, d.Key, err)
		}
		return c, d.Scope, nil
	}
	return nil, "", nil
}

// drifting reports whether d's desired config differs from what the pot applied.
func drifting(d *actorpb.DesiredConfigState) bool {
	return d != nil && d.Desired != nil && !proto.Equal(d.Desired, d.Applied)
}

// withDrift sets d's drift_since: kept while it drifts, now when it starts, zero when in sync.
func withDrift(d *actorpb.DesiredConfigState, now time.Time) {
	switch {
	case !drifting(d):
		d.DriftSinceMs = 0
	case d.DriftSinceMs == 0:
		d.DriftSinceMs = now.UnixMilli()
	}
}

// setDesired makes cfg (from source) the effective desired config. A change is stored, and
// pushed to the pot if it is online and differs from what it applied.
func (c *deviceCore) setDesired(cfg *devicepb.Config, source string, now time.Time) effects {
	var fx effects
	old := c.desired
	if proto.Equal(old.GetDesired(), cfg) && old.GetSource() == source {
		return fx
	}
	d := &actorpb.DesiredConfigState{}
	if old != nil {
		d = proto.Clone(old).(*actorpb.DesiredConfigState)
	}
	d.Desired, d.Source, d.DesiredAtMs, d.LastError = cfg, source, now.UnixMilli(), ""
	withDrift(d, now)
	c.desired = d
	fx.event(now, EventKindConfigDesired, 0, d)
	fx.snapshot = true
	fx.configReport = true
	c.pushDesired(&fx, now)
	return fx
}

// pushDesired sends the desired config as SET_CONFIG when the pot is online, drifts, and no push
// is open already.
func (c *deviceCore) pushDesired(fx *effects, now time.Time) {
	if !c.online || c.revoked || !drifting(c.desired) || len(c.open) >= MaxOpenCommands {
		return
	}
	for _, oc := range c.open {
		if oc.req.RequestedBy == desiredRequester {
			if proto.Equal(oc.req.Config, c.desired.Desired) {
				return // already on its way
			}
		}
	}
	id := "cfg-" + strconv.FormatInt(now.UnixMilli(), 36) + "-" + strconv.FormatUint(c.lastOrder+1, 36)
	req := &actorpb.SendCommand{CommandId: id, Kind: devicepb.CommandKind_COMMAND_KIND_SET_CONFIG,
		Config: c.desired.Desired, RequestedBy: desiredRequester}
	oc := &openCommand{req: req, sentAt: now, deadline: now.Add(DefaultCommandTimeout)}
	c.setOpen(oc)
	fx.event(now, EventKindCommandSent, 0, req)
	fx.snapshot = true
	fx.frames = append(fx.frames, commandFrame(oc, now))
	fx.timers = append(fx.timers, timer{commandID: id, at: oc.deadline})
}

// applied records the pot's answer to a SET_CONFIG (any: the desired push, a queued one, an
// operator's): DONE is its report of the config it now runs.
func (c *deviceCore) applied(fx *effects, req *actorpb.SendCommand, o actorpb.Outcome, detail string, now time.Time) {
	if req.GetKind() != devicepb.CommandKind_COMMAND_KIND_SET_CONFIG {
		return
	}
	if o == actorpb.Outcome_OUTCOME_DONE {
		c.config = req.Config
	}
	if c.desired == nil {
		return
	}
	d := proto.Clone(c.desired).(*actorpb.DesiredConfigState)
	switch o {
	case actorpb.Outcome_OUTCOME_DONE:
		d.Applied, d.AppliedAtMs, d.LastError = req.Config, now.UnixMilli(), ""
	case actorpb.Outcome_OUTCOME_REJECTED, actorpb.Outcome_OUTCOME_FAILED:
		if req.RequestedBy != desiredRequester {
			return
		}
		d.LastError = detail
	default:
		return
	}
	withDrift(d, now)
	c.desired = d
	fx.snapshot = true
	fx.configReport = true
}

// configReport is what the grain stores of its pot's configuration (DesiredStore.ReportConfig).
func (c *deviceCore) configReport(now time.Time) ConfigReport {
	r := ConfigReport{DeviceID: c.id, Product: c.product, UpdatedAt: now}
	if d := c.desired; d != nil {
		r.Desired, r.Applied, r.LastError = ConfigJSON(d.Desired), ConfigJSON(d.Applied), d.LastError
		if d.DriftSinceMs != 0 {
			r.DriftSince = time.UnixMilli(d.DriftSinceMs)
		}
	}
	return r
}

// welcomeConfig is the config the Welcome carries: the desired one when there is one.
func (c *deviceCore) welcomeConfig() *devicepb.Config {
	if d := c.desired.GetDesired(); d != nil {
		return d
	}
	return c.config
}
