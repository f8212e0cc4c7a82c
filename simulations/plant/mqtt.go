package plant

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"google.golang.org/protobuf/proto"

	"github.com/sprout-iot/sprout/messages"
	"github.com/sprout-iot/sprout/messages/deviceclient"
	"github.com/sprout-iot/sprout/messages/devicepb"
)

// Transports a plant can use (Config.Transport).
const (
	TransportTCP  = "tcp"  // Sprout's protobuf frames over TCP (docs/protocol.md)
	TransportMQTT = "mqtt" // MQTT 3.1.1 with a standard client library (docs/mqtt.md)
)

// link is what a session talks through: a deviceclient.Conn, or an MQTT session (mqttLink) that
// looks like one to the plant: it takes the frames the plant writes and gives back the server's.
type link interface {
	Read(f *devicepb.Frame) error
	Buffered() int
	SetReadDeadline(time.Time) error
	SetWriteDeadline(time.Time) error
	SendRaw(b []byte) error
	Close() error
}

// mqttLink is a pot on MQTT, written from docs/mqtt.md: ClientID is the device id, Username
// "<id>|<unix seconds>", Password the hex HMAC of it; it publishes protobuf Telemetry and Event with
// QoS 1 (the PUBACK is its Ack) and CommandResult, and reads its retained welcome and its commands.
type mqttLink struct {
	c      paho.Client
	id     string
	in     chan *devicepb.Frame
	done   chan struct{}
	once   sync.Once
	err    atomic.Value // error
	rdl    atomic.Int64 // read deadline, unix ns (0: none)
	closed atomic.Bool
}

// dialMQTT connects, subscribes to the welcome and the commands, and waits for the welcome.
func dialMQTT(addr string, cfg Config) (*mqttLink, *devicepb.Welcome, error) {
	l := &mqttLink{id: cfg.ID, in: make(chan *devicepb.Frame, 4*cfg.Window+64), done: make(chan struct{})}
	scheme := "tcp://"
	if cfg.TLS != nil {
		scheme = "ssl://"
	}
	now := time.Now().Unix()
	d := &net.Dialer{Timeout: cfg.DialTimeout}
	if cfg.LocalIP != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(cfg.LocalIP)}
	}
	welcome := make(chan []byte, 1)
	o := paho.NewClientOptions().AddBroker(scheme + addr).SetClientID(cfg.ID).
		SetUsername(messages.MQTTUsername(cfg.ID, now)).SetPassword(messages.MQTTPassword(cfg.Secret, cfg.ID, now)).
		SetProtocolVersion(4).SetCleanSession(true).SetAutoReconnect(false).SetConnectRetry(false).
		SetConnectTimeout(cfg.HandshakeTimeout).SetKeepAlive(30 * time.Second).SetTLSConfig(cfg.TLS).SetDialer(d).
		SetWriteTimeout(cfg.WriteTimeout).SetOrderMatters(false).
		SetConnectionLostHandler(func(_ paho.Client, err error) { l.fail(err) })
	l.c = paho.NewClient(o)
	tok := l.c.Connect()
	if !tok.WaitTimeout(cfg.HandshakeTimeout + cfg.DialTimeout) {
		l.c.Disconnect(0)
		return nil, nil, fmt.Errorf("%w %s: MQTT connect timed out", errDial, addr)
	}
	if err := tok.Error(); err != nil {
		return nil, nil, connackError(err)
	}
	subs := map[string]byte{"sprout/" + cfg.ID + "/welcome": 1, "sprout/" + cfg.ID + "/commands": 1}
	st := l.c.SubscribeMultiple(subs, func(_ paho.Client, m paho.Message) {
		switch m.Topic() {
		case "sprout/" + cfg.ID + "/welcome":
			select {
			case welcome <- m.Payload():
			default:
			}
		default:
			c := &devicepb.Command{}
			if err := proto.Unmarshal(m.Payload(), c); err != nil {
				l.fail(fmt.Errorf("undecodable command: %w", err))
				return
			}
			l.push(&devicepb.Frame{Body: &devicepb.Frame_Command{Command: c}})
		}
	})
	if !st.WaitTimeout(cfg.HandshakeTimeout) || st.Error() != nil {
		l.Close()
		return nil, nil, fmt.Errorf("%w with %s: subscribe: %v", errHandshake, addr, st.Error())
	}
	select {
	case b := <-welcome:
		w, err := parseWelcome(b)
		if err != nil {
			l.Close()
			return nil, nil, fmt.Errorf("%w with %s: %w", errHandshake, addr, err)
		}
		return l, w, nil
	case <-l.done:
		return nil, nil, fmt.Errorf("%w with %s: %v", errHandshake, addr, l.err.Load())
	case <-time.After(cfg.HandshakeTimeout):
		l.Close()
		return nil, nil, fmt.Errorf("%w with %s: no welcome", errHandshake, addr)
	}
}

// connackError turns a refused CONNACK into the Close a TCP edge would have sent, so that the
// plant backs off the same way.
func connackError(err error) error {
	s := err.Error()
	switch {
	case bytes.Contains([]byte(s), []byte("bad user name or password")):
		return &deviceclient.ErrClosed{Reason: devicepb.CloseReason_CLOSE_REASON_AUTH_FAILED, Detail: s}
	case bytes.Contains([]byte(s), []byte("not Authorized")):
		return &deviceclient.ErrClosed{Reason: devicepb.CloseReason_CLOSE_REASON_UNKNOWN_DEVICE, Detail: s}
	case bytes.Contains([]byte(s), []byte("Server Unavailable")):
		return &deviceclient.ErrClosed{Reason: devicepb.CloseReason_CLOSE_REASON_UNAVAILABLE, Detail: s}
	}
	return fmt.Errorf("%w: %w", errDial, err)
}

type welcomeJSON struct {
	SessionID    string `json:"session_id"`
	ServerTimeMs int64  `json:"server_time_ms"`
	LastSeq      uint64 `json:"last_seq"`
	Config       *struct {
		ReportIntervalS    uint32 `json:"report_interval_s"`
		HeartbeatIntervalS uint32 `json:"heartbeat_interval_s"`
		MaxWaterMs         uint32 `json:"max_water_ms"`
		MinWaterIntervalS  uint32 `json:"min_water_interval_s"`
		Thresholds         *struct {
			SoilMoistureMinPct float32 `json:"soil_moisture_min_pct"`
			TemperatureMaxC    float32 `json:"temperature_max_c"`
			TankEmptyPct       float32 `json:"tank_empty_pct"`
			HysteresisPct      float32 `json:"hysteresis_pct"`
			HysteresisC        float32 `json:"hysteresis_c"`
		} `json:"thresholds"`
	} `json:"config"`
}

func parseWelcome(b []byte) (*devicepb.Welcome, error) {
	var j welcomeJSON
	if err := json.Unmarshal(b, &j); err != nil || j.SessionID == "" {
		return nil, fmt.Errorf("bad welcome %q: %v", b, err)
	}
	w := &devicepb.Welcome{SessionId: j.SessionID, ServerTimeMs: j.ServerTimeMs, LastSeq: j.LastSeq}
	if c := j.Config; c != nil {
		w.Config = &devicepb.Config{ReportIntervalS: c.ReportIntervalS, HeartbeatIntervalS: c.HeartbeatIntervalS,
			MaxWaterMs: c.MaxWaterMs, MinWaterIntervalS: c.MinWaterIntervalS}
		if t := c.Thresholds; t != nil {
			w.Config.Thresholds = &devicepb.Thresholds{SoilMoistureMinPct: t.SoilMoistureMinPct, TemperatureMaxC: t.TemperatureMaxC,
				TankEmptyPct: t.TankEmptyPct, HysteresisPct: t.HysteresisPct, HysteresisC: t.HysteresisC}
		}
	}
	return w, nil
}

func (l *mqttLink) fail(err error) {
	if err == nil {
		err = io.EOF
	}
	l.err.CompareAndSwap(nil, err)
	l.once.Do(func() { close(l.done) })
}

func (l *mqttLink) push(f *devicepb.Frame) {
	select {
	case l.in <- f:
	case <-l.done:
	}
}

// SendRaw takes the frames the plant wrote and publishes them.
func (l *mqttLink) SendRaw(b []byte) error {
	r := bufio.NewReader(bytes.NewReader(b))
	for {
		if _, err := r.Peek(1); err != nil {
			return nil
		}
		f := &devicepb.Frame{}
		if err := messages.ReadFrame(r, messages.DefaultMaxFrameBytes, f); err != nil {
			return err
		}
		if err, _ := l.err.Load().(error); err != nil {
			return err
		}
		switch x := f.Body.(type) {
		case *devicepb.Frame_Telemetry:
			l.report("telemetry", x.Telemetry.Seq, x.Telemetry)
		case *devicepb.Frame_Event:
			l.report("event", x.Event.Seq, x.Event)
		case *devicepb.Frame_CommandResult:
			p, _ := proto.Marshal(x.CommandResult)
			l.c.Publish("sprout/"+l.id+"/commands/result", 1, false, p)
		case *devicepb.Frame_Ping: // MQTT's keep-alive does this; answer as the edge would
			go l.push(&devicepb.Frame{Body: &devicepb.Frame_Pong{Pong: &devicepb.Pong{Nonce: x.Ping.Nonce}}})
		case *devicepb.Frame_Close:
			go l.Close()
		}
	}
}

// report publishes with QoS 1; the PUBACK comes back to the plant as Ack{seq}.
func (l *mqttLink) report(topic string, seq uint64, m proto.Message) {
	p, _ := proto.Marshal(m)
	tok := l.c.Publish("sprout/"+l.id+"/"+topic, 1, false, p)
	go func() {
		select {
		case <-tok.Done():
		case <-l.done:
			return
		}
		if tok.Error() == nil {
			l.push(&devicepb.Frame{Body: &devicepb.Frame_Ack{Ack: &devicepb.Ack{Seq: seq}}})
		}
	}()
}

func (l *mqttLink) Read(f *devicepb.Frame) error {
	var timeout <-chan time.Time
	if dl := l.rdl.Load(); dl != 0 {
		t := time.NewTimer(time.Until(time.Unix(0, dl)))
		defer t.Stop()
		timeout = t.C
	}
	select {
	case g := <-l.in:
		f.Body = g.Body
		return nil
	case <-l.done:
		select {
		case g := <-l.in:
			f.Body = g.Body
			return nil
		default:
		}
		err, _ := l.err.Load().(error)
		return err
	case <-timeout:
		return errors.New("mqtt: read deadline exceeded")
	}
}

func (l *mqttLink) Buffered() int                     { return len(l.in) }
func (l *mqttLink) SetReadDeadline(t time.Time) error { l.rdl.Store(t.UnixNano()); return nil }
func (l *mqttLink) SetWriteDeadline(time.Time) error  { return nil }
func (l *mqttLink) Close() error {
	if !l.closed.Swap(true) {
		l.c.Disconnect(50)
	}
	l.fail(io.EOF)
	return nil
}

var _ link = (*deviceclient.Conn)(nil)
