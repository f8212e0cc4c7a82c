package mqtt

import (
	"bytes"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"unicode/utf8"

	"github.com/asynkron/protoactor-go/actor"
	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/sprout-iot/sprout/edge/devicelink"
	"github.com/sprout-iot/sprout/messages"
	"github.com/sprout-iot/sprout/messages/actorpb"
	"github.com/sprout-iot/sprout/messages/devicepb"
	"github.com/sprout-iot/sprout/store"
)

// Close reasons the edge gives the grain (Detach) besides the ones the grain itself chose.
const (
	reasonShutdown = devicepb.CloseReason_CLOSE_REASON_SERVER_SHUTDOWN
	reasonIdle     = devicepb.CloseReason_CLOSE_REASON_IDLE_TIMEOUT
	reasonProtocol = devicepb.CloseReason_CLOSE_REASON_PROTOCOL_ERROR
	reasonUnavail  = devicepb.CloseReason_CLOSE_REASON_UNAVAILABLE
)

// Topic suffixes under sprout/<device id>/.
const (
	topicTelemetry = "telemetry"
	topicEvent     = "event"
	topicCommands  = "commands"
	topicResult    = "commands/result"
	topicWelcome   = "welcome"

	// Firmware updates over the air (ota.go, docs/ota.md).
	topicOTAOffer    = "ota/offer"    // -> device: UpdateOffer
	topicOTAChunk    = "ota/chunk"    // -> device: Chunk
	topicOTARequest  = "ota/request"  // device ->: ChunkRequest
	topicOTAProgress = "ota/progress" // device ->: UpdateProgress
)

func topic(id, suffix string) string { return "sprout/" + id + "/" + suffix }

// edgeConn is a device socket as the broker sees it. Its Close is the one place a session ends:
// the broker closes the socket on every way out of a connection.
type edgeConn struct {
	net.Conn
	s       *Server
	sess    atomic.Pointer[session]
	readErr atomic.Value // the error that ended reading (error)
	once    sync.Once
}

func (c *edgeConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if err != nil {
		c.readErr.CompareAndSwap(nil, err)
	}
	return n, err
}

func (c *edgeConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		if x := c.sess.Load(); x != nil {
			x.cleanup(c)
		}
	})
	return err
}

// session is one authenticated (or authenticating) MQTT connection of a device: the grain's
// connection, like a TCP edge conn.
type session struct {
	s       *Server
	cl      *mochi.Client
	device  string
	id      string     // session id given to the grain
	pid     *actor.PID // the connection actor
	grain   *actor.PID
	asked   bool
	ok      bool // the grain accepted it
	v5      bool
	welcome *devicepb.Welcome

	reason atomic.Int32 // the edge's reason for closing (0: the device left)
	code   atomic.Pointer[packets.Code]

	mu         sync.Mutex
	subscribed bool                // subscribed to its commands topic: commands go out at once
	held       []*devicepb.Command // commands waiting for that subscription
	enc        encoding

	firmware string        // the version the Username named ("": none, no updates over the air)
	done     chan struct{} // closed when the session ends
	ota      otaSession    // ota.go
}

// connect authenticates a CONNECT with the device's grain. On refusal it writes the CONNACK
// itself (the broker only knows "bad user name or password") and returns an error, which makes
// the broker close the socket.
func (s *Server) connect(cl *mochi.Client, pk packets.Packet) error {
	ec, ok := cl.Net.Conn.(*edgeConn)
	if !ok {
		return packets.ErrImplementationSpecificError
	}
	v5 := cl.Properties.ProtocolVersion == 5
	refuse := func(v5code, v3code packets.Code, why string) error {
		s.refuse(RefusedAuth)
		s.opts.Logger.Info("mqtt connect refused", "client", cl.ID, "remote", cl.Net.Remote, "why", why)
		if v5 {
			_ = s.broker.SendConnack(cl, v5code, false, nil)
			return v5code
		}
		_ = s.broker.SendConnack(cl, v3code, false, nil)
		return v5code
	}
	if s.closing.Load() {
		return refuse(packets.ErrServerUnavailable, packets.Err3ServerUnavailable, "shutting down")
	}
	id := pk.Connect.ClientIdentifier
	if err := store.ValidID(id); err != nil {
		return refuse(packets.ErrClientIdentifierNotValid, packets.Err3ClientIdentifierNotValid, "client id is not a device id: "+err.Error())
	}
	user, pass := string(pk.Connect.Username), string(pk.Connect.Password)
	// "<device id>|<unix seconds>", or with "|<firmware version>" (updates over the air need it).
	uid, ts, ok := strings.Cut(user, "|")
	ts, firmware, named := strings.Cut(ts, "|")
	secs, err := strconv.ParseInt(ts, 10, 64)
	mac, herr := hex.DecodeString(pass)
	badVersion := named && (firmware == "" || len(firmware) > messages.MaxFirmwareBytes || !utf8.ValidString(firmware))
	if !ok || uid != id || err != nil || herr != nil || len(mac) != 32 || pass != strings.ToLower(pass) || badVersion {
		return refuse(packets.ErrBadUsernameOrPassword, packets.ErrMalformedUsernameOrPassword,
			"username must be <device id>|<unix seconds>[|<firmware version of 1..32 bytes>] and password 64 lowercase hex digits")
	}
	// A session with no keep-alive, or a longer one than allowed, gets the edge's: a pot that
	// vanishes without a FIN goes offline within 1.5 times it.
	if max := uint16(s.opts.MaxKeepAlive.Seconds()); cl.State.Keepalive == 0 || cl.State.Keepalive > max {
		cl.State.Keepalive = max
		cl.State.ServerKeepalive = true
	}
	if !s.handshakes.Enter() {
		s.refuse(RefusedBusy) // not logged one by one: a storm refuses thousands a second
		if v5 {
			_ = s.broker.SendConnack(cl, packets.ErrServerBusy, false, nil)
			return packets.ErrServerBusy
		}
		_ = s.broker.SendConnack(cl, packets.Err3ServerUnavailable, false, nil)
		return packets.ErrServerBusy
	}
	defer s.handshakes.Leave()
	sid := make([]byte, 16)
	_, _ = crand.Read(sid)
	x := &session{s: s, cl: cl, device: id, id: hex.EncodeToString(sid), v5: v5, firmware: firmware, done: make(chan struct{})}
	if e, ok := s.encodings.Load(id); ok {
		x.enc = e.(encoding)
	}
	root := s.cluster.ActorSystem.Root
	x.pid = root.Spawn(actor.PropsFromProducer(func() actor.Actor { return &connActor{x: x} }))
	ec.sess.Store(x) // from here the socket's Close undoes what follows
	var grain *actor.PID
	var ar *actorpb.AuthResult
	// The cluster request path is deep and grows a goroutine's stack; it runs on its own goroutine
	// so that the session's long-lived read goroutine (this one) keeps a small one: memory per pot.
	shown := firmware
	if shown == "" {
		shown = "mqtt" // what the console shows for a pot that did not say
	}
	onStack(func() {
		grain, ar, err = devicelink.Authenticate(s.cluster, &actorpb.Authenticate{
			DeviceId: id, Mac: mac, Mqtt: &actorpb.MqttAuth{UnixSeconds: secs, FirmwareVersion: firmware}, ProtocolVersion: messages.ProtocolVersion,
			RemoteAddr: cl.Net.Remote, FirmwareVersion: shown,
			Conn: &actorpb.ConnRef{Address: x.pid.Address, Id: x.pid.Id, SessionId: x.id, Edge: ec.LocalAddr().String()},
		}, s.opts.GrainTimeout, &x.asked)
	})
	x.grain = grain
	if err != nil {
		s.opts.Logger.Warn("mqtt connect: device grain unavailable", "device", id, "err", err)
		return refuse(packets.ErrServerUnavailable, packets.Err3ServerUnavailable, "device grain unavailable")
	}
	if !ar.Ok {
		switch ar.Reason {
		case devicepb.CloseReason_CLOSE_REASON_AUTH_FAILED:
			return refuse(packets.ErrBadUsernameOrPassword, packets.ErrMalformedUsernameOrPassword, ar.Detail)
		case devicepb.CloseReason_CLOSE_REASON_UNKNOWN_DEVICE, devicepb.CloseReason_CLOSE_REASON_DEVICE_REVOKED:
			return refuse(packets.ErrNotAuthorized, packets.Err3NotAuthorized, ar.Detail)
		default: // flapping, storage: come back later
			return refuse(packets.ErrServerBusy, packets.Err3ServerUnavailable, ar.Detail)
		}
	}
	x.welcome = ar.Welcome
	for _, f := range ar.AfterWelcome {
		if c := f.GetCommand(); c != nil {
			x.held = append(x.held, c)
		}
	}
	x.ok = true
	s.open.Add(1)
	s.mu.Lock()
	s.sessions[id] = x
	// Retained, so that the device gets it whenever it subscribes; only it may subscribe there.
	if b, err := encodeWelcome(x.welcome); err == nil {
		_ = s.broker.Publish(topic(id, topicWelcome), b, true, 1)
	}
	s.mu.Unlock()
	return nil
}

// established runs once the CONNACK is out: a session that inherited its subscription (MQTT 3.1.1
// without clean session on the same node) gets its held commands now.
func (x *session) established() {
	if _, ok := x.cl.State.Subscriptions.Get(topic(x.device, topicCommands)); ok {
		x.markSubscribed()
	}
	go x.otaWelcomed()
}

func (x *session) markSubscribed() {
	x.mu.Lock()
	x.subscribed = true
	held := x.held
	x.held = nil
	x.mu.Unlock()
	for _, c := range held {
		x.publishCommand(c)
	}
}

// command sends a command from the grain, or holds it until the device subscribes.
func (x *session) command(c *devicepb.Command) {
	x.mu.Lock()
	if !x.subscribed {
		x.held = append(x.held, c)
		over := len(x.held) > x.s.opts.MaxHeldCommands
		x.mu.Unlock()
		if over {
			x.closeWith(packets.ErrQuotaExceeded, devicepb.CloseReason_CLOSE_REASON_SLOW_CONSUMER)
		}
		return
	}
	x.mu.Unlock()
	x.publishCommand(c)
}

func (x *session) publishCommand(c *devicepb.Command) {
	x.mu.Lock()
	enc := x.enc
	x.mu.Unlock()
	b, err := encodeCommand(c, enc)
	if err != nil {
		x.s.opts.Logger.Error("encoding a command failed", "device", x.device, "err", err)
		return
	}
	if err := x.s.broker.Publish(topic(x.device, topicCommands), b, false, 1); err == nil {
		x.s.commands.Add(1)
	}
}

// closeWith ends the session: MQTT 5 clients get a DISCONNECT with code; the grain hears reason.
func (x *session) closeWith(code packets.Code, reason devicepb.CloseReason) {
	x.reason.CompareAndSwap(0, int32(reason))
	if x.v5 {
		_ = x.s.broker.DisconnectClient(x.cl, code)
		return
	}
	x.cl.Stop(code)
}

// closeAfter marks the session to be closed once the broker has finished the packet in hand
// (its SUBACK or PUBACK written first).
func (x *session) closeAfter(code packets.Code, reason devicepb.CloseReason) {
	x.reason.CompareAndSwap(0, int32(reason))
	x.code.CompareAndSwap(nil, &code)
}

// cleanup is the session's one ending: the grain is told (Detach; it also watches the
// connection actor), the actor stopped, the retained welcome dropped if no newer session of the
// device holds this node.
func (x *session) cleanup(ec *edgeConn) {
	s := x.s
	close(x.done)
	reason := devicepb.CloseReason(x.reason.Load())
	if reason == 0 {
		if err, _ := ec.readErr.Load().(error); err != nil && isTimeout(err) {
			reason = reasonIdle
		} else if s.closing.Load() {
			reason = reasonShutdown
		}
	}
	root := s.cluster.ActorSystem.Root
	if x.grain != nil && x.asked {
		root.Send(x.grain, &actorpb.Detach{SessionId: x.id, Reason: reason})
	}
	if x.pid != nil {
		root.Stop(x.pid)
	}
	if !x.ok {
		return
	}
	s.open.Add(-1)
	s.mu.Lock()
	if s.sessions[x.device] == x {
		delete(s.sessions, x.device)
		if !s.closing.Load() {
			// An empty retained payload deletes the retained message (MQTT 3.3.1.3). Under s.mu:
			// a newer session's welcome (published under it too) is never wiped by this.
			_ = s.broker.Publish(topic(x.device, topicWelcome), nil, true, 0)
		}
	}
	s.mu.Unlock()
	s.opts.Logger.Debug("mqtt session ended", "device", x.device, "session", x.id, "reason", reason.String())
}

// onStack runs f on a goroutine of its own and waits for it (see connect).
func onStack(f func()) {
	done := make(chan struct{})
	go func() { f(); close(done) }()
	<-done
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded)
}

func isFDLimit(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}

// publish handles one PUBLISH from the device. It returns what the broker should do: CodeSuccessIgnore
// to acknowledge (PUBACK) without relaying, ErrRejectPacket to send nothing, or (MQTT 5, QoS 1)
// a reason code to refuse with in the PUBACK.
func (x *session) publish(pk packets.Packet) error {
	s := x.s
	suffix, _ := strings.CutPrefix(pk.TopicName, "sprout/"+x.device+"/")
	refuse := func(counted string, v5code packets.Code, reason devicepb.CloseReason) error {
		s.refuse(counted)
		if pk.FixedHeader.Qos == 0 {
			return packets.ErrRejectPacket // QoS 0 has no answer: dropped and counted
		}
		if x.v5 {
			return v5code // PUBACK with the reason; the session goes on
		}
		// MQTT 3.1.1 has no negative PUBACK: the session is closed and the message not acked.
		x.closeAfter(v5code, reason)
		return packets.ErrRejectPacket
	}
	if len(pk.Payload) > s.opts.MaxPayloadBytes {
		return refuse(RefusedTooLarge, packets.ErrPacketTooLarge, devicepb.CloseReason_CLOSE_REASON_FRAME_TOO_LARGE)
	}
	enc := detect(pk)
	var report *actorpb.Report
	switch suffix {
	case topicTelemetry:
		t, err := decodeTelemetry(pk.Payload, enc)
		if err != nil {
			return refuse(RefusedBadPayload, packets.ErrPayloadFormatInvalid, reasonProtocol)
		}
		report = &actorpb.Report{SessionId: x.id, Body: &actorpb.Report_Telemetry{Telemetry: t}}
	case topicEvent:
		e, err := decodeEvent(pk.Payload, enc)
		if err != nil || len(e.Detail) > messages.MaxDetailBytes {
			return refuse(RefusedBadPayload, packets.ErrPayloadFormatInvalid, reasonProtocol)
		}
		report = &actorpb.Report{SessionId: x.id, Body: &actorpb.Report_Event{Event: e}}
	case topicResult:
		r, err := decodeResult(pk.Payload, enc)
		if err != nil || len(r.Detail) > messages.MaxDetailBytes || len(r.CommandId) > messages.MaxCommandIDBytes {
			return refuse(RefusedBadPayload, packets.ErrPayloadFormatInvalid, reasonProtocol)
		}
		x.remember(enc)
		s.cluster.ActorSystem.Root.Send(x.grain, &actorpb.DeliverResult{SessionId: x.id, Result: r})
		return packets.CodeSuccessIgnore
	case topicOTARequest:
		req, err := decodeChunkRequest(pk.Payload, enc)
		if err != nil {
			return refuse(RefusedBadPayload, packets.ErrPayloadFormatInvalid, reasonProtocol)
		}
		x.remember(enc)
		if !x.chunkRequest(req) {
			s.refuse(RefusedOTARange)
			s.opts.Logger.Info("mqtt chunk request out of range; closing", "device", x.device, "offset", req.Offset, "length", req.Length)
			x.closeAfter(packets.ErrProtocolViolation, reasonProtocol)
			return packets.ErrRejectPacket
		}
		return packets.CodeSuccessIgnore
	case topicOTAProgress:
		p, err := decodeProgress(pk.Payload, enc)
		if err != nil || len(p.Reason) > messages.MaxDetailBytes || len(p.Version) > messages.MaxFirmwareBytes {
			return refuse(RefusedBadPayload, packets.ErrPayloadFormatInvalid, reasonProtocol)
		}
		x.remember(enc)
		onStack(func() { x.progress(p) })
		return packets.CodeSuccessIgnore
	default: // the ACL lets only the topics above through
		return refuse(RefusedForeignTopic, packets.ErrTopicNameInvalid, reasonProtocol)
	}
	x.remember(enc)
	// The PUBACK waits for the grain's answer, which comes once the reading is durably stored
	// (the TCP edge's Ack). The broker reads this device's next packet only after it.
	var res any
	var err error
	onStack(func() {
		res, err = s.cluster.ActorSystem.Root.RequestFuture(x.grain, report, s.opts.GrainTimeout).Result()
	})
	if err != nil {
		devicelink.Forget(s.cluster, x.device)
		s.refuse(RefusedUnavailable)
		s.opts.Logger.Warn("mqtt report not stored in time; closing without PUBACK", "device", x.device, "err", err)
		x.closeAfter(packets.ErrServerBusy, reasonUnavail)
		return packets.ErrRejectPacket
	}
	ack, _ := res.(*actorpb.ReportAck)
	if ack == nil || ack.Close != devicepb.CloseReason_CLOSE_REASON_UNSPECIFIED {
		s.refuse(RefusedUnavailable)
		r := reasonUnavail
		if ack != nil {
			r = ack.Close
		}
		x.closeAfter(disconnectCode(r), r)
		return packets.ErrRejectPacket
	}
	s.reports.Add(1)
	return packets.CodeSuccessIgnore
}

func (x *session) remember(enc encoding) {
	x.mu.Lock()
	changed := x.enc != enc
	x.enc = enc
	x.mu.Unlock()
	if changed {
		x.s.encodings.Store(x.device, enc)
	}
}

// allowed is the ACL: a device may publish its telemetry, events, command results, chunk
// requests and update progress, and subscribe only under its own prefix.
func (x *session) allowed(t string, write bool) bool {
	suffix, ok := strings.CutPrefix(t, "sprout/"+x.device+"/")
	if !ok {
		return false
	}
	if write {
		return suffix == topicTelemetry || suffix == topicEvent || suffix == topicResult ||
			suffix == topicOTARequest || suffix == topicOTAProgress
	}
	return true
}

// disconnectCode is the MQTT 5 DISCONNECT reason for a grain's close reason.
func disconnectCode(r devicepb.CloseReason) packets.Code {
	switch r {
	case devicepb.CloseReason_CLOSE_REASON_REPLACED:
		return packets.ErrSessionTakenOver
	case devicepb.CloseReason_CLOSE_REASON_SERVER_SHUTDOWN:
		return packets.ErrServerShuttingDown
	case devicepb.CloseReason_CLOSE_REASON_DEVICE_REVOKED, devicepb.CloseReason_CLOSE_REASON_UNKNOWN_DEVICE:
		return packets.ErrNotAuthorized
	case devicepb.CloseReason_CLOSE_REASON_SLOW_CONSUMER:
		return packets.ErrQuotaExceeded
	case devicepb.CloseReason_CLOSE_REASON_UNAVAILABLE:
		return packets.ErrServerBusy
	default:
		return packets.ErrUnspecifiedError
	}
}

// connActor is the session's address in the cluster: the grain sends it Deliver (commands, a close).
type connActor struct{ x *session }

func (a *connActor) Receive(ctx actor.Context) {
	m, ok := ctx.Message().(*actorpb.Deliver)
	if !ok || m.SessionId != a.x.id {
		return
	}
	for _, f := range m.Frames {
		if c := f.GetCommand(); c != nil {
			a.x.command(c)
		}
	}
	if m.Close != nil {
		a.x.closeWith(disconnectCode(m.Close.Reason), m.Close.Reason)
	}
}

// hook plugs the session into the broker's life cycle.
type hook struct {
	mochi.HookBase
	s *Server
}

func (h *hook) ID() string { return "sprout-device-edge" }

func (h *hook) Provides(b byte) bool {
	return bytes.Contains([]byte{mochi.OnConnect, mochi.OnConnectAuthenticate, mochi.OnACLCheck,
		mochi.OnSessionEstablished, mochi.OnSubscribed, mochi.OnPublish, mochi.OnPacketProcessed, mochi.OnWill}, []byte{b})
}

func sessionOf(cl *mochi.Client) *session {
	if ec, ok := cl.Net.Conn.(*edgeConn); ok {
		if x := ec.sess.Load(); x != nil && x.ok {
			return x
		}
	}
	return nil
}

func (h *hook) OnConnect(cl *mochi.Client, pk packets.Packet) error { return h.s.connect(cl, pk) }

func (h *hook) OnConnectAuthenticate(cl *mochi.Client, _ packets.Packet) bool {
	return sessionOf(cl) != nil
}

func (h *hook) OnSessionEstablished(cl *mochi.Client, _ packets.Packet) {
	if x := sessionOf(cl); x != nil {
		x.established()
	}
}

func (h *hook) OnACLCheck(cl *mochi.Client, t string, write bool) bool {
	if cl.Net.Inline {
		return true
	}
	x := sessionOf(cl)
	if x == nil {
		return false
	}
	if x.allowed(t, write) {
		return true
	}
	if strings.HasPrefix(t, "$SYS") && !write {
		return false // the broker's own status topics: not for devices, not worth a close
	}
	h.s.refuse(RefusedForeignTopic)
	h.s.opts.Logger.Info("mqtt topic outside the device's own; closing", "device", x.device, "topic", t, "write", write)
	x.closeAfter(packets.ErrNotAuthorized, reasonProtocol)
	return false
}

func (h *hook) OnSubscribed(cl *mochi.Client, pk packets.Packet, codes []byte) {
	x := sessionOf(cl)
	if x == nil {
		return
	}
	ota := false
	for i, f := range pk.Filters {
		if i < len(codes) && codes[i] < 0x80 && subscribes(f.Filter, topic(x.device, topicCommands)) {
			// The SUBACK is written after this hook returns; commands follow it.
			go x.markSubscribed()
		}
		if i < len(codes) && codes[i] < 0x80 && (subscribes(f.Filter, topic(x.device, topicOTAOffer)) || subscribes(f.Filter, topic(x.device, topicOTAChunk))) {
			ota = true
		}
	}
	if ota {
		go x.otaFlush() // the offer or chunk held for this subscription
	}
}

// subscribes reports whether filter matches the topic t (the filters a device may use: exact,
// or ending in # or +).
func subscribes(filter, t string) bool {
	if filter == t {
		return true
	}
	fl, tl := strings.Split(filter, "/"), strings.Split(t, "/")
	for i, f := range fl {
		if f == "#" {
			return true
		}
		if i >= len(tl) || (f != "+" && f != tl[i]) {
			return false
		}
	}
	return len(fl) == len(tl)
}

func (h *hook) OnPublish(cl *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline {
		return pk, nil // the edge's own welcome and commands
	}
	x := sessionOf(cl)
	if x == nil {
		return pk, packets.ErrRejectPacket
	}
	return pk, x.publish(pk)
}

func (h *hook) OnPacketProcessed(cl *mochi.Client, _ packets.Packet, _ error) {
	x := sessionOf(cl)
	if x == nil {
		return
	}
	if c := x.code.Load(); c != nil {
		x.closeWith(*c, devicepb.CloseReason(x.reason.Load()))
	}
}

// OnWill lets a will through only on the device's own topics; either way the device goes
// offline when its socket ends, will or not.
func (h *hook) OnWill(cl *mochi.Client, will mochi.Will) (mochi.Will, error) {
	if x := sessionOf(cl); x == nil || !strings.HasPrefix(will.TopicName, "sprout/"+x.device+"/") {
		return mochi.Will{}, nil // dropped
	}
	return will, nil
}
