package actors

import (
	"cmp"
	"crypto/hmac"
	"fmt"
	"maps"
	"math"
	"slices"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/sprout-iot/sprout/messages"
	"github.com/sprout-iot/sprout/messages/actorpb"
	"github.com/sprout-iot/sprout/messages/devicepb"
)

// Command deadlines: the default, and the range a caller may ask for.
const (
	DefaultCommandTimeout = 10 * time.Second
	MinCommandTimeout     = 1 * time.Second
	MaxCommandTimeout     = 300 * time.Second
	// MaxOpenCommands bounds the commands open on one device at once; past it a new command is
	// answered BUSY at once. A pot runs one command at a time, and every open command is resent
	// with the Welcome after a reconnect, so this also keeps a reconnect's frames well inside the
	// edge's outbound queue (device.DefaultMaxPendingFrames, 64).
	MaxOpenCommands = 16
	// recentOutcomes bounds how many finished commands a device remembers, to answer a repeated
	// SendCommand with its first outcome and to recognise results that arrive after the deadline.
	recentOutcomes = 64
)

// DefaultConfig is the configuration a device gets until someone changes it.
func DefaultConfig() *devicepb.Config {
	return &devicepb.Config{
		ReportIntervalS:    60,
		HeartbeatIntervalS: 30,
		MaxWaterMs:         30000,
		MinWaterIntervalS:  60,
		Thresholds: &devicepb.Thresholds{
			SoilMoistureMinPct: 20,
			TemperatureMaxC:    35,
			TankEmptyPct:       5,
			HysteresisPct:      5,
			HysteresisC:        2,
		},
	}
}

// deviceCore is the device grain's state and decision logic: plain values in, effects out. It never
// does I/O and never reads a clock; the shell (device_grain.go) performs the effects.
//
// A step never changes the state the shell holds: the shell runs it on next() (a copy) and keeps
// the copy only once the step's effects are durable, so memory never runs ahead of storage.
type deviceCore struct {
	id        string
	known     bool
	revoked   bool
	revokedAt time.Time // when it was revoked (the first time)
	config    *devicepb.Config
	firmware  string

	online   bool
	conn     *actorpb.ConnRef
	lastSeen time.Time

	lastSeq  uint64
	latest   *devicepb.Telemetry
	latestAt time.Time

	// The maps are nil while empty (next copies only what is there); write through setAlert and
	// setOpen.
	alerts map[actorpb.AlertKind]*actorpb.Alert // active alerts only

	open      map[string]*openCommand // commands sent (or waiting to be resent) without an outcome
	lastOrder uint64                  // the last openCommand.order given
	recent    []*actorpb.CommandOutcome

	users []Binding              // bound WeChat users, owner first
	joins []*actorpb.JoinRequest // requests to join waiting for the owner, oldest first (join.go)

	// Queued commands and desired configuration (device_queue.go, device_config.go).
	queue     []*actorpb.QueuedCommand // in delivery order; replaced, never changed in place
	queueLive string                   // the queued command sent on the attached connection
	qlimits   queueLimits
	desired   *actorpb.DesiredConfigState // nil: nothing desired yet; replaced, never changed in place
	product   string

	flap        flapLimit
	connects    []time.Time // recent authenticated connects, within flap.window
	bannedUntil time.Time   // refused until then: it reconnected too often
}

// flapLimit: more than connects authenticated connects within window bans the device for ban
// (DeviceOptions.FlapConnects); connects <= 0 is off.
type flapLimit struct {
	connects    int
	window, ban time.Duration
}

type openCommand struct {
	req      *actorpb.SendCommand
	sentAt   time.Time
	deadline time.Time
	order    uint64 // the order commands were asked in: snapshots keep it, resends follow it
}

// effects is what one step asks the shell to do, in order: persist, then everything else.
type effects struct {
	readings []Reading
	events   []Event
	snapshot bool // persist a new snapshot of the core

	frames    []*devicepb.Frame // to the attached connection
	closeConn *actorpb.ConnRef  // a connection to close, with closeWhy and closeText
	closeWhy  devicepb.CloseReason
	closeText string
	bindings  []*bindingChange          // binding changes to tell the users concerned
	outcomes  []*actorpb.CommandOutcome // to whoever waits for these commands, and published
	notices   []*actorpb.DeviceNotice   // published to subscribers
	timers    []timer                   // command deadlines to arm
	join      joinEffects               // join notices and WeChat binding calls (join.go)
	pressed   *buttonPress              // the pot's button was pressed: let a request in (join_grain.go)
	// configReport: the desired configuration or what the pot applied changed; the shell stores
	// the core's configReport (best effort: the snapshot holds the truth).
	configReport bool
}

type timer struct {
	commandID string
	at        time.Time
}

func (e *effects) persists() bool {
	return len(e.readings) > 0 || len(e.events) > 0 || e.snapshot
}

func (e *effects) event(at time.Time, kind string, seq uint64, body proto.Message) {
	b, err := protojson.Marshal(body)
	if err != nil {
		b = []byte(fmt.Sprintf(`{"error":%q}`, err.Error()))
	}
	e.events = append(e.events, Event{At: at, Kind: kind, Seq: seq, Body: b})
}

// bindingChange is one user's binding changed by a step, to be told to their user grain.
type bindingChange struct {
	openID string
	msg    *actorpb.BindingChanged
}

func newDeviceCore(id string) *deviceCore {
	return &deviceCore{id: id, config: DefaultConfig()}
}

// next is a copy of the state for one step to change: the shell keeps it only once the step's
// effects are durable. The values a step replaces but never changes in place (messages, alerts,
// open commands) are shared; the maps and slices a step changes are copied (the maps only when
// they hold something: on the telemetry hot path they are empty).
func (c *deviceCore) next() *deviceCore {
	n := *c
	if len(c.alerts) > 0 {
		n.alerts = maps.Clone(c.alerts)
	} else {
		n.alerts = nil
	}
	if len(c.open) > 0 {
		n.open = maps.Clone(c.open)
	} else {
		n.open = nil
	}
	n.recent = slices.Clip(c.recent)
	n.queue = slices.Clip(c.queue)
	n.users = slices.Clip(c.users)
	n.joins = slices.Clip(c.joins)
	n.connects = slices.Clone(c.connects)
	return &n
}

func (c *deviceCore) setAlert(k actorpb.AlertKind, a *actorpb.Alert) {
	if c.alerts == nil {
		c.alerts = map[actorpb.AlertKind]*actorpb.Alert{}
	}
	c.alerts[k] = a
}

func (c *deviceCore) setOpen(oc *openCommand) {
	if c.open == nil {
		c.open = map[string]*openCommand{}
	}
	if oc.order == 0 {
		c.lastOrder++
		oc.order = c.lastOrder
	}
	c.open[oc.req.CommandId] = oc
}

// recover rebuilds the core from storage (presence is never recovered: a device is offline until it
// connects to this activation).
func (c *deviceCore) recover(d Device, r Recovered, now time.Time) (effects, error) {
	var fx effects
	c.known = true
	c.revoked, c.revokedAt = d.Revoked(), d.RevokedAt
	c.product = d.Product
	c.lastSeq = r.LastSeq
	if r.Latest != nil {
		c.latest = readingToTelemetry(*r.Latest)
		c.latestAt = r.Latest.ReceivedAt
		c.lastSeen = r.Latest.ReceivedAt
	}
	if r.Snapshot != nil {
		snap := &actorpb.DeviceState{}
		if err := proto.Unmarshal(r.Snapshot, snap); err != nil {
			return fx, fmt.Errorf("device %s: corrupt snapshot: %w", c.id, err)
		}
		if snap.Config != nil {
			c.config = snap.Config
		}
		for _, a := range snap.Alerts {
			c.setAlert(a.Kind, a)
		}
		c.recent = snap.RecentOutcomes
		c.joins = snap.JoinRequests // pruned once the bindings are loaded
		c.queue, c.desired = snap.QueuedCommands, snap.Desired
		for _, o := range snap.OpenCommands {
			oc := &openCommand{req: o.Command, deadline: time.UnixMilli(o.AtMs)}
			if oc.req == nil || oc.req.CommandId != o.CommandId {
				// Written before snapshots kept the command itself: what the command was is lost, so
				// it is never resent (a WATER without water_ms would be refused by the pot, a
				// SET_CONFIG without its config is not what was asked). It ends now, honestly.
				oc.req = &actorpb.SendCommand{CommandId: o.CommandId, Kind: o.Kind, RequestedBy: o.RequestedBy}
				c.finish(&fx, oc, actorpb.Outcome_OUTCOME_FAILED, "the command was lost in a restart (its content was not kept); it was not resent", 0, now)
				continue
			}
			c.setOpen(oc)
		}
	}
	// Commands whose deadline passed while no activation watched them end now, loudly.
	for id, oc := range c.open {
		if !now.Before(oc.deadline) {
			c.finish(&fx, oc, actorpb.Outcome_OUTCOME_TIMED_OUT, "no result before the deadline", 0, now)
			continue
		}
		fx.timers = append(fx.timers, timer{commandID: id, at: oc.deadline})
	}
	c.pumpQueue(&fx, now) // expires what waited past its ttl while no activation watched
	return fx, nil
}

// snapshot serialises what recovery needs.
func (c *deviceCore) snapshot() []byte {
	s := &actorpb.DeviceState{DeviceId: c.id, Config: c.config, RecentOutcomes: c.recent, JoinRequests: c.joins,
		QueuedCommands: c.queue, Desired: c.desired}
	for _, k := range alertOrder {
		if a := c.alerts[k]; a != nil {
			s.Alerts = append(s.Alerts, a)
		}
	}
	for _, oc := range c.openInOrder() { // asked order: a recovery resends in it
		s.OpenCommands = append(s.OpenCommands, &actorpb.CommandOutcome{
			DeviceId: c.id, CommandId: oc.req.CommandId, Outcome: actorpb.Outcome_OUTCOME_PENDING,
			AtMs: oc.deadline.UnixMilli(), RequestedBy: oc.req.RequestedBy, Kind: oc.req.Kind,
			Command: oc.req,
		})
	}
	b, _ := proto.Marshal(s)
	return b
}

// state answers GetState.
func (c *deviceCore) state() *actorpb.DeviceState {
	s := &actorpb.DeviceState{
		DeviceId: c.id, Known: c.known, Revoked: c.revoked, Online: c.online, FirmwareVersion: c.firmware,
		LastSeq: c.lastSeq, Latest: c.latest, Config: c.config, Conn: c.conn,
		QueuedCommands: c.queue, QueuedOutcomes: c.queuedOutcomes(), Desired: c.desired,
	}
	if !c.lastSeen.IsZero() {
		s.LastSeenMs = c.lastSeen.UnixMilli()
	}
	if !c.latestAt.IsZero() {
		s.LatestAtMs = c.latestAt.UnixMilli()
	}
	for _, k := range alertOrder {
		if a := c.alerts[k]; a != nil {
			s.Alerts = append(s.Alerts, a)
		}
	}
	for id, oc := range c.open {
		s.OpenCommands = append(s.OpenCommands, &actorpb.CommandOutcome{
			DeviceId: c.id, CommandId: id, Outcome: actorpb.Outcome_OUTCOME_PENDING,
			AtMs: oc.deadline.UnixMilli(), RequestedBy: oc.req.RequestedBy, Kind: oc.req.Kind,
		})
	}
	return s
}

// authenticate checks a handshake. secret is the device's registry secret.
func (c *deviceCore) authenticate(m *actorpb.Authenticate, secret []byte, sessionID string, now time.Time) (*actorpb.AuthResult, effects) {
	var fx effects
	fail := func(r devicepb.CloseReason, detail string) (*actorpb.AuthResult, effects) {
		return &actorpb.AuthResult{Reason: r, Detail: detail}, fx
	}
	switch {
	case !c.known:
		return fail(devicepb.CloseReason_CLOSE_REASON_UNKNOWN_DEVICE, "unknown device")
	case c.revoked:
		return fail(devicepb.CloseReason_CLOSE_REASON_DEVICE_REVOKED, "device revoked")
	case m.ProtocolVersion != messages.ProtocolVersion:
		return fail(devicepb.CloseReason_CLOSE_REASON_UNSUPPORTED_VERSION, fmt.Sprintf("protocol %d not supported (want %d)", m.ProtocolVersion, messages.ProtocolVersion))
	case m.Mqtt != nil:
		// The MQTT edge's proof: the device signed a time, which must be recent either way.
		signed := time.Unix(m.Mqtt.UnixSeconds, 0)
		if d := now.Sub(signed); d > messages.MQTTMaxClockSkew || d < -messages.MQTTMaxClockSkew {
			return fail(devicepb.CloseReason_CLOSE_REASON_AUTH_FAILED, "signed time more than 5 minutes from the server's clock")
		}
		if !macEqual(messages.MQTTMACFirmware(secret, m.DeviceId, m.Mqtt.UnixSeconds, m.Mqtt.FirmwareVersion), m.Mac) {
			return fail(devicepb.CloseReason_CLOSE_REASON_AUTH_FAILED, "authentication failed")
		}
	case len(m.DeviceNonce) != messages.NonceBytes || len(m.ServerNonce) != messages.NonceBytes:
		return fail(devicepb.CloseReason_CLOSE_REASON_PROTOCOL_ERROR, "nonces must be 16 bytes")
	case !macEqual(messages.MAC(secret, m.DeviceNonce, m.ServerNonce, m.DeviceId), m.Mac):
		return fail(devicepb.CloseReason_CLOSE_REASON_AUTH_FAILED, "authentication failed")
	}
	if res, banned := c.flapping(now, &fx); banned {
		return res, fx
	}
	if c.online && c.conn != nil && c.conn.SessionId != m.Conn.GetSessionId() {
		fx.closeConn, fx.closeWhy, fx.closeText = c.conn, devicepb.CloseReason_CLOSE_REASON_REPLACED, "replaced by a newer connection"
	}
	c.online = true
	c.conn = m.Conn
	c.firmware = m.FirmwareVersion
	c.lastSeen = now
	fx.event(now, EventKindOnline, 0, m.Conn)
	fx.notices = append(fx.notices, c.notice(now, &actorpb.DeviceNotice{Body: &actorpb.DeviceNotice_Presence{Presence: &actorpb.Presence{Online: true}}}))
	// Commands still open go to the new connection; the device runs each id at most once.
	for _, oc := range c.openByDeadline() {
		fx.frames = append(fx.frames, commandFrame(oc, now))
	}
	// Then the desired config while the pot has not confirmed it, then the head of the queue.
	c.queueLive = ""
	c.pushDesired(&fx, now)
	c.pumpQueue(&fx, now)
	return &actorpb.AuthResult{Ok: true, Welcome: &devicepb.Welcome{
		SessionId: sessionID, ServerTimeMs: now.UnixMilli(), Config: c.welcomeConfig(), LastSeq: c.lastSeq,
		ServerProof: messages.ServerProof(secret, m.DeviceNonce, m.ServerNonce),
	}}, fx
}

// flapping counts an authenticated connect and reports whether the device must be refused: it is
// banned, or this connect is one too many within the window (which starts a ban, recorded once).
func (c *deviceCore) flapping(now time.Time, fx *effects) (*actorpb.AuthResult, bool) {
	refuse := func() (*actorpb.AuthResult, bool) {
		left := c.bannedUntil.Sub(now)
		return &actorpb.AuthResult{Reason: devicepb.CloseReason_CLOSE_REASON_UNAVAILABLE,
			Detail:       fmt.Sprintf("reconnecting too often; retry in %s", left.Round(time.Second)),
			RetryAfterMs: uint32(min(left.Milliseconds()+1, math.MaxUint32))}, true
	}
	if now.Before(c.bannedUntil) {
		return refuse()
	}
	if c.flap.connects <= 0 {
		return nil, false
	}
	keep := c.connects[:0]
	for _, t := range c.connects {
		if now.Sub(t) < c.flap.window {
			keep = append(keep, t)
		}
	}
	c.connects = append(keep, now)
	if len(c.connects) <= c.flap.connects {
		return nil, false
	}
	c.connects = nil
	c.bannedUntil = now.Add(c.flap.ban)
	f := &actorpb.Flapping{UntilMs: c.bannedUntil.UnixMilli(), Connects: uint32(c.flap.connects),
		WindowS: uint32(c.flap.window / time.Second)}
	fx.event(now, EventKindFlapping, 0, f)
	fx.notices = append(fx.notices, c.notice(now, &actorpb.DeviceNotice{Body: &actorpb.DeviceNotice_Flapping{Flapping: f}}))
	return refuse()
}

// detach handles the end of a connection; a stale session (already replaced) changes nothing.
func (c *deviceCore) detach(sessionID string, reason devicepb.CloseReason, now time.Time) effects {
	var fx effects
	if !c.online || c.conn.GetSessionId() != sessionID {
		return fx
	}
	c.online = false
	c.conn = nil
	c.queueLive = ""
	p := &actorpb.Presence{Online: false, Reason: reason}
	fx.event(now, EventKindOffline, 0, p)
	fx.notices = append(fx.notices, c.notice(now, &actorpb.DeviceNotice{Body: &actorpb.DeviceNotice_Presence{Presence: p}}))
	c.pumpQueue(&fx, now) // a command sent on it waits for the next connection, under its ttl again
	return fx
}

// report handles a Telemetry or Event frame. The reply says what to ack.
func (c *deviceCore) report(m *actorpb.Report, now time.Time) (*actorpb.ReportAck, effects) {
	var fx effects
	if c.revoked {
		// A session that outlived the revocation (its Close still on the way).
		return &actorpb.ReportAck{Close: devicepb.CloseReason_CLOSE_REASON_DEVICE_REVOKED, Detail: "device revoked"}, fx
	}
	if !c.online || c.conn.GetSessionId() != m.SessionId {
		return &actorpb.ReportAck{Close: devicepb.CloseReason_CLOSE_REASON_REPLACED, Detail: "session is not attached"}, fx
	}
	c.lastSeen = now
	switch b := m.Body.(type) {
	case *actorpb.Report_Telemetry:
		t := b.Telemetry
		if t.Seq <= c.lastSeq {
			return &actorpb.ReportAck{Seq: t.Seq, Duplicate: true}, fx
		}
		c.lastSeq = t.Seq
		c.latest, c.latestAt = t, now
		fx.readings = append(fx.readings, telemetryToReading(t, now))
		c.checkThresholds(&fx, t, now)
		return &actorpb.ReportAck{Seq: t.Seq}, fx
	case *actorpb.Report_Event:
		e := b.Event
		if e.Seq <= c.lastSeq {
			return &actorpb.ReportAck{Seq: e.Seq, Duplicate: true}, fx
		}
		c.lastSeq = e.Seq
		fx.event(now, EventKindDevice, e.Seq, e)
		switch e.Kind {
		case devicepb.EventKind_EVENT_KIND_TANK_EMPTY:
			c.raise(&fx, actorpb.AlertKind_ALERT_KIND_TANK_EMPTY, c.tankLevel(), c.config.GetThresholds().GetTankEmptyPct(), now)
		case devicepb.EventKind_EVENT_KIND_TANK_REFILLED:
			c.clear(&fx, actorpb.AlertKind_ALERT_KIND_TANK_EMPTY, c.tankLevel(), c.config.GetThresholds().GetTankEmptyPct(), now)
		case devicepb.EventKind_EVENT_KIND_PUMP_FAULT:
			c.raise(&fx, actorpb.AlertKind_ALERT_KIND_PUMP_FAULT, 0, 0, now)
		case devicepb.EventKind_EVENT_KIND_BUTTON_PRESSED:
			fx.pressed = &buttonPress{long: e.Detail == ButtonLongPress, at: now}
		}
		return &actorpb.ReportAck{Seq: e.Seq}, fx
	}
	return &actorpb.ReportAck{Close: devicepb.CloseReason_CLOSE_REASON_PROTOCOL_ERROR, Detail: "empty report"}, fx
}

func (c *deviceCore) tankLevel() float32 {
	if c.latest == nil {
		return 0
	}
	return c.latest.TankLevelPct
}

// alertOrder fixes the order alerts appear in state and snapshots.
var alertOrder = []actorpb.AlertKind{
	actorpb.AlertKind_ALERT_KIND_SOIL_DRY, actorpb.AlertKind_ALERT_KIND_TOO_HOT,
	actorpb.AlertKind_ALERT_KIND_TANK_EMPTY, actorpb.AlertKind_ALERT_KIND_PUMP_FAULT,
}

// checkThresholds raises an alert when a value leaves its range and clears it only once the value
// is back inside by the hysteresis margin, so a value flapping around the threshold alerts once.
func (c *deviceCore) checkThresholds(fx *effects, t *devicepb.Telemetry, now time.Time) {
	th := c.config.GetThresholds()
	if th == nil {
		return
	}
	// A non-finite reading is a sensor with no value (JSON null): it neither raises nor clears.
	// Soil too dry: below the minimum.
	switch {
	case !finite(t.SoilMoisturePct):
	case t.SoilMoisturePct < th.SoilMoistureMinPct:
		c.raise(fx, actorpb.AlertKind_ALERT_KIND_SOIL_DRY, t.SoilMoisturePct, th.SoilMoistureMinPct, now)
	case t.SoilMoisturePct >= th.SoilMoistureMinPct+th.HysteresisPct:
		c.clear(fx, actorpb.AlertKind_ALERT_KIND_SOIL_DRY, t.SoilMoisturePct, th.SoilMoistureMinPct, now)
	}
	// Too hot: above the maximum.
	switch {
	case !finite(t.TemperatureC):
	case t.TemperatureC > th.TemperatureMaxC:
		c.raise(fx, actorpb.AlertKind_ALERT_KIND_TOO_HOT, t.TemperatureC, th.TemperatureMaxC, now)
	case t.TemperatureC <= th.TemperatureMaxC-th.HysteresisC:
		c.clear(fx, actorpb.AlertKind_ALERT_KIND_TOO_HOT, t.TemperatureC, th.TemperatureMaxC, now)
	}
	// Tank empty: at or below the empty level.
	switch {
	case !finite(t.TankLevelPct):
	case t.TankLevelPct <= th.TankEmptyPct:
		c.raise(fx, actorpb.AlertKind_ALERT_KIND_TANK_EMPTY, t.TankLevelPct, th.TankEmptyPct, now)
	case t.TankLevelPct >= th.TankEmptyPct+th.HysteresisPct:
		c.clear(fx, actorpb.AlertKind_ALERT_KIND_TANK_EMPTY, t.TankLevelPct, th.TankEmptyPct, now)
	}
}

// finite reports whether v is a value (not NaN, not ±Inf).
func finite(v float32) bool { return !math.IsNaN(float64(v)) && !math.IsInf(float64(v), 0) }

func (c *deviceCore) raise(fx *effects, k actorpb.AlertKind, value, threshold float32, now time.Time) {
	if c.alerts[k] != nil {
		return // already raised: no storm
	}
	a := &actorpb.Alert{Kind: k, Active: true, Value: value, Threshold: threshold, SinceMs: now.UnixMilli()}
	c.setAlert(k, a)
	fx.event(now, EventKindAlertRaised, 0, a)
	fx.snapshot = true
	fx.notices = append(fx.notices, c.notice(now, &actorpb.DeviceNotice{Body: &actorpb.DeviceNotice_Alert{Alert: a}}))
}

func (c *deviceCore) clear(fx *effects, k actorpb.AlertKind, value, threshold float32, now time.Time) {
	if c.alerts[k] == nil {
		return
	}
	delete(c.alerts, k)
	a := &actorpb.Alert{Kind: k, Active: false, Value: value, Threshold: threshold, SinceMs: now.UnixMilli()}
	fx.event(now, EventKindAlertCleared, 0, a)
	fx.snapshot = true
	fx.notices = append(fx.notices, c.notice(now, &actorpb.DeviceNotice{Body: &actorpb.DeviceNotice_Alert{Alert: a}}))
}

func (c *deviceCore) notice(now time.Time, n *actorpb.DeviceNotice) *actorpb.DeviceNotice {
	n.DeviceId = c.id
	n.AtMs = now.UnixMilli()
	return n
}

// commandDecision is what sendCommand decided about a request.
type commandDecision int

const (
	commandAnswered commandDecision = iota // the outcome is in effects.outcomes (or a recent one was returned)
	commandStarted                         // sent (or queued for the next connection); wait for its outcome
	commandJoined                          // a repeat of an open command: wait for the same outcome
)

// sendCommand decides what to do with a command request.
func (c *deviceCore) sendCommand(m *actorpb.SendCommand, now time.Time) (commandDecision, *actorpb.CommandOutcome, effects) {
	var fx effects
	answer := func(o actorpb.Outcome, detail string) (commandDecision, *actorpb.CommandOutcome, effects) {
		out := &actorpb.CommandOutcome{DeviceId: c.id, CommandId: m.CommandId, Outcome: o, Detail: detail,
			AtMs: now.UnixMilli(), RequestedBy: m.RequestedBy, Kind: m.Kind}
		return commandAnswered, out, fx
	}
	if err := validateCommand(m); err != nil {
		return answer(actorpb.Outcome_OUTCOME_INVALID, err.Error())
	}
	if _, ok := c.open[m.CommandId]; ok && m.Queue {
		return answer(actorpb.Outcome_OUTCOME_INVALID, "a command with this id is already running")
	} else if ok {
		return commandJoined, nil, fx
	}
	if !m.Queue && c.queueIndex(m.CommandId) >= 0 {
		return answer(actorpb.Outcome_OUTCOME_INVALID, "a queued command has this id")
	}
	for _, r := range c.recent {
		if r.CommandId == m.CommandId {
			return commandAnswered, r, fx
		}
	}
	switch {
	case !c.known:
		return answer(actorpb.Outcome_OUTCOME_UNKNOWN_DEVICE, "unknown device")
	case c.revoked:
		return answer(actorpb.Outcome_OUTCOME_REVOKED, "device revoked")
	case !c.mayCommand(m.RequestedBy):
		return answer(actorpb.Outcome_OUTCOME_NOT_BOUND, "not bound to this device")
	case m.Queue:
		return c.enqueue(m, now)
	case !c.online:
		d, out, _ := answer(actorpb.Outcome_OUTCOME_OFFLINE, "device offline")
		c.remember(out)
		fx.event(now, EventKindCommandOutcome, 0, out)
		fx.snapshot = true
		fx.outcomes = append(fx.outcomes, out)
		return d, out, fx
	}
	if len(c.open) >= MaxOpenCommands {
		return answer(actorpb.Outcome_OUTCOME_BUSY, fmt.Sprintf("%d commands already waiting for this device; try again when one has finished", len(c.open)))
	}
	timeout := DefaultCommandTimeout
	if m.TimeoutMs != 0 {
		timeout = time.Duration(m.TimeoutMs) * time.Millisecond
	}
	// The command is kept as asked (its trace is not part of it), so a resend after a restart
	// is the same command.
	req := m
	if m.Trace != nil {
		req = proto.Clone(m).(*actorpb.SendCommand)
		req.Trace = nil
	}
	oc := &openCommand{req: req, sentAt: now, deadline: now.Add(timeout)}
	c.setOpen(oc)
	fx.event(now, EventKindCommandSent, 0, m)
	fx.snapshot = true
	fx.frames = append(fx.frames, commandFrame(oc, now))
	fx.timers = append(fx.timers, timer{commandID: m.CommandId, at: oc.deadline})
	return commandStarted, nil, fx
}

func validateCommand(m *actorpb.SendCommand) error {
	switch {
	case m.CommandId == "" || len(m.CommandId) > messages.MaxCommandIDBytes || !utf8.ValidString(m.CommandId):
		return fmt.Errorf("command_id must be 1..%d bytes of UTF-8", messages.MaxCommandIDBytes)
	case m.TtlS != 0 && !m.Queue:
		return fmt.Errorf("ttl_s applies only to a queued command (queue: true)")
	case m.TimeoutMs != 0 && (time.Duration(m.TimeoutMs)*time.Millisecond < MinCommandTimeout || time.Duration(m.TimeoutMs)*time.Millisecond > MaxCommandTimeout):
		return fmt.Errorf("timeout must be between %v and %v", MinCommandTimeout, MaxCommandTimeout)
	}
	switch m.Kind {
	case devicepb.CommandKind_COMMAND_KIND_WATER:
		if m.WaterMs == 0 || m.WaterMs > 300000 {
			return fmt.Errorf("water_ms must be 1..300000")
		}
	case devicepb.CommandKind_COMMAND_KIND_SET_CONFIG:
		if err := ValidateConfig(m.Config); err != nil {
			return err
		}
	case devicepb.CommandKind_COMMAND_KIND_READ_NOW, devicepb.CommandKind_COMMAND_KIND_REBOOT:
	default:
		return fmt.Errorf("unknown command kind %d", m.Kind)
	}
	return nil
}

// ValidateConfig checks a configuration before it is sent to a device.
func ValidateConfig(c *devicepb.Config) error {
	switch {
	case c == nil:
		return fmt.Errorf("config is required")
	case c.ReportIntervalS < 5 || c.ReportIntervalS > 86400:
		return fmt.Errorf("report_interval_s must be 5..86400")
	case c.HeartbeatIntervalS < 5 || c.HeartbeatIntervalS > 600:
		return fmt.Errorf("heartbeat_interval_s must be 5..600")
	case c.MaxWaterMs == 0 || c.MaxWaterMs > 300000:
		return fmt.Errorf("max_water_ms must be 1..300000")
	case c.Thresholds == nil:
		return fmt.Errorf("thresholds are required")
	case c.Thresholds.HysteresisPct < 0 || c.Thresholds.HysteresisC < 0:
		return fmt.Errorf("hysteresis must not be negative")
	}
	return nil
}

func commandFrame(oc *openCommand, now time.Time) *devicepb.Frame {
	left := oc.deadline.Sub(now)
	if left < 0 {
		left = 0
	}
	return &devicepb.Frame{Body: &devicepb.Frame_Command{Command: &devicepb.Command{
		CommandId: oc.req.CommandId, Kind: oc.req.Kind, WaterMs: oc.req.WaterMs, Config: oc.req.Config,
		DeadlineMs: uint32(left / time.Millisecond),
	}}}
}

func (c *deviceCore) openByDeadline() []*openCommand {
	out := make([]*openCommand, 0, len(c.open))
	for _, oc := range c.open {
		if oc.req.Kind != 0 {
			out = append(out, oc)
		}
	}
	// Equal deadlines (two commands asked within a millisecond with the same timeout) keep the
	// order they were asked in.
	slices.SortFunc(out, func(a, b *openCommand) int {
		if d := a.deadline.Compare(b.deadline); d != 0 {
			return d
		}
		return cmp.Compare(a.order, b.order)
	})
	return out
}

// openInOrder is the open commands in the order they were asked.
func (c *deviceCore) openInOrder() []*openCommand {
	out := slices.Collect(maps.Values(c.open))
	slices.SortFunc(out, func(a, b *openCommand) int { return cmp.Compare(a.order, b.order) })
	return out
}

// result handles a device's CommandResult. A result for a command that already ended (timed out)
// is logged but not delivered again.
func (c *deviceCore) result(m *actorpb.DeliverResult, now time.Time) effects {
	var fx effects
	r := m.Result
	if r != nil && c.queuedResult(r, now, &fx) {
		return fx
	}
	oc, ok := c.open[r.GetCommandId()]
	if !ok {
		fx.event(now, EventKindCommandOutcome, 0, &actorpb.CommandOutcome{
			DeviceId: c.id, CommandId: r.GetCommandId(), Outcome: outcomeOf(r.GetStatus()),
			Detail: "late or unknown result: " + r.GetDetail(), WateredMl: r.GetWateredMl(), AtMs: now.UnixMilli(),
		})
		return fx
	}
	o := outcomeOf(r.Status)
	c.finish(&fx, oc, o, r.Detail, r.WateredMl, now)
	c.applied(&fx, oc.req, o, r.Detail, now)
	if oc.req.Kind == devicepb.CommandKind_COMMAND_KIND_WATER && o == actorpb.Outcome_OUTCOME_DONE {
		c.clear(&fx, actorpb.AlertKind_ALERT_KIND_PUMP_FAULT, 0, 0, now)
	}
	c.pumpQueue(&fx, now) // the pot is free: the queue's head may go
	return fx
}

// expire ends a command whose deadline passed.
func (c *deviceCore) expire(commandID string, now time.Time) effects {
	var fx effects
	oc, ok := c.open[commandID]
	if !ok {
		c.queueTimer(commandID, now, &fx)
		return fx
	}
	if now.Before(oc.deadline) {
		return fx
	}
	c.finish(&fx, oc, actorpb.Outcome_OUTCOME_TIMED_OUT, "no result before the deadline", 0, now)
	c.pumpQueue(&fx, now)
	return fx
}

// revoke revokes the device at now (kept: the registry already says so) and ends the bindings in
// unbound (removed from storage by the shell). The open connection is closed with
// CLOSE_REASON_DEVICE_REVOKED and open commands end as revoked. Revoking again only ends the
// bindings still left.
func (c *deviceCore) revoke(m *actorpb.RevokeDevice, unbound []string, now time.Time) effects {
	var fx effects
	if !c.revoked {
		c.revoked, c.revokedAt = true, now
		fx.event(now, EventKindRevoked, 0, m)
		fx.snapshot = true
		if c.online {
			fx.closeConn, fx.closeWhy, fx.closeText = c.conn, devicepb.CloseReason_CLOSE_REASON_DEVICE_REVOKED, "device revoked"
			c.online, c.conn = false, nil
			p := &actorpb.Presence{Online: false, Reason: devicepb.CloseReason_CLOSE_REASON_DEVICE_REVOKED}
			fx.event(now, EventKindOffline, 0, p)
			fx.notices = append(fx.notices, c.notice(now, &actorpb.DeviceNotice{Body: &actorpb.DeviceNotice_Presence{Presence: p}}))
		}
		for _, oc := range c.openByDeadline() {
			c.finish(&fx, oc, actorpb.Outcome_OUTCOME_REVOKED, "device revoked", 0, now)
		}
		for _, q := range c.queue {
			c.endQueued(&fx, q, actorpb.Outcome_OUTCOME_REVOKED, "device revoked", 0, now)
		}
	}
	// No one is promoted to owner: a revoked device has none.
	for _, openID := range unbound {
		if i := slices.IndexFunc(c.users, func(b Binding) bool { return b.OpenID == openID }); i >= 0 {
			c.users = slices.Delete(slices.Clone(c.users), i, i+1)
			fx.event(now, EventKindUnbound, 0, &actorpb.UnbindDevice{OpenId: openID})
			fx.bindings = append(fx.bindings, &bindingChange{openID: openID,
				msg: &actorpb.BindingChanged{DeviceId: c.id, AtMs: now.UnixMilli()}})
		}
	}
	return fx
}

func (c *deviceCore) finish(fx *effects, oc *openCommand, o actorpb.Outcome, detail string, ml uint32, now time.Time) {
	delete(c.open, oc.req.CommandId)
	out := &actorpb.CommandOutcome{DeviceId: c.id, CommandId: oc.req.CommandId, Outcome: o, Detail: detail,
		WateredMl: ml, AtMs: now.UnixMilli(), RequestedBy: oc.req.RequestedBy, Kind: oc.req.Kind}
	c.remember(out)
	fx.event(now, EventKindCommandOutcome, 0, out)
	fx.snapshot = true
	fx.outcomes = append(fx.outcomes, out)
}

func (c *deviceCore) remember(out *actorpb.CommandOutcome) {
	c.recent = append(c.recent, out)
	if len(c.recent) > recentOutcomes {
		c.recent = append([]*actorpb.CommandOutcome(nil), c.recent[len(c.recent)-recentOutcomes:]...)
	}
}

func outcomeOf(s devicepb.CommandStatus) actorpb.Outcome {
	switch s {
	case devicepb.CommandStatus_COMMAND_STATUS_DONE:
		return actorpb.Outcome_OUTCOME_DONE
	case devicepb.CommandStatus_COMMAND_STATUS_REJECTED:
		return actorpb.Outcome_OUTCOME_REJECTED
	case devicepb.CommandStatus_COMMAND_STATUS_BUSY:
		return actorpb.Outcome_OUTCOME_BUSY
	default:
		return actorpb.Outcome_OUTCOME_FAILED
	}
}

func telemetryToReading(t *devicepb.Telemetry, now time.Time) Reading {
	r := Reading{Seq: t.Seq, ReceivedAt: now, SoilMoisture: t.SoilMoisturePct, Temperature: t.TemperatureC,
		TankLevel: t.TankLevelPct, SupplyMillivolt: t.SupplyMv}
	if t.DeviceTimeMs > 0 {
		r.DeviceTime = time.UnixMilli(t.DeviceTimeMs)
	}
	return r
}

func readingToTelemetry(r Reading) *devicepb.Telemetry {
	t := &devicepb.Telemetry{Seq: r.Seq, SoilMoisturePct: r.SoilMoisture, TemperatureC: r.Temperature,
		TankLevelPct: r.TankLevel, SupplyMv: r.SupplyMillivolt}
	if !r.DeviceTime.IsZero() {
		t.DeviceTimeMs = r.DeviceTime.UnixMilli()
	}
	return t
}

func macEqual(a, b []byte) bool { return hmac.Equal(a, b) }

func effectsWithEvent(now time.Time, kind string, body proto.Message) effects {
	var fx effects
	fx.event(now, kind, 0, body)
	return fx
}
