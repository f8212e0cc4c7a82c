package wechat

import (
	"encoding/base64"
	"encoding/xml"
	"fmt"
	"strconv"
	"strings"

	"github.com/sprout-iot/sprout/edge/wechat/qr"
)

// MsgType values Sprout handles. Others (image, voice, location, …) still parse; the dispatcher
// decides what to do with them.
const (
	MsgTypeText        = "text"
	MsgTypeEvent       = "event"
	MsgTypeDeviceEvent = "device_event"
	MsgTypeDeviceText  = "device_text"
)

// Event values for MsgTypeEvent and MsgTypeDeviceEvent.
const (
	EventSubscribe             = "subscribe"
	EventUnsubscribe           = "unsubscribe"
	EventScan                  = "SCAN"
	EventClick                 = "CLICK"
	EventTemplateSendJobFinish = "TEMPLATESENDJOBFINISH"
	EventBind                  = "bind"               // device_event: the user scanned a device QR
	EventUnbind                = "unbind"             // device_event
	EventSubscribeStatus       = "subscribe_status"   // device_event: WiFi device status subscription
	EventUnsubscribeStatus     = "unsubscribe_status" // device_event
)

// OpType values of subscribe_status/unsubscribe_status.
const (
	// OpTypeUnknown is an OpType that was missing or not a number: never read as "unsubscribe".
	OpTypeUnknown     = -1 // present but not a number
	OpTypeUnsubscribe = 0
	OpTypeHeartbeat   = 1
	OpTypeSubscribe   = 2
)

// SceneKeyPrefix prefixes EventKey on a subscribe event caused by a parametric QR code; a SCAN
// event (user already following) carries the scene without it.
const SceneKeyPrefix = "qrscene_"

// Message is one inbound push, already verified and decrypted. Field names follow the XML.
// Identifiers are kept as strings so that a value WeChat formats unexpectedly never rejects a push,
// and the numeric fields (CreateTime, OpType) are read leniently for the same reason: WeChat sends
// them as text, sometimes inside CDATA, with spaces, or as "1.0"; see parseNumber.
type Message struct {
	ToUserName   string `xml:"ToUserName"`   // the account's original id (gh_…)
	FromUserName string `xml:"FromUserName"` // the user's OpenID
	CreateTime   int64  `xml:"CreateTime"`   // unix seconds
	MsgType      string `xml:"MsgType"`
	MsgId        string `xml:"MsgId"` // normal messages (text, …)
	Content      string `xml:"Content"`
	Event        string `xml:"Event"`
	EventKey     string `xml:"EventKey"` // CLICK key, or the parametric QR scene
	Ticket       string `xml:"Ticket"`   // parametric QR ticket
	DeviceType   string `xml:"DeviceType"`
	DeviceID     string `xml:"DeviceID"`
	SessionID    string `xml:"SessionID"`
	OpenID       string `xml:"OpenID"`
	OpType       int    `xml:"OpType"` // 0 when absent; OpTypeUnknown when not a number
	Status       string `xml:"Status"` // TEMPLATESENDJOBFINISH: "success", "failed:user block", …
	MsgID        string `xml:"MsgID"`  // device_text and TEMPLATESENDJOBFINISH (note the case)

	// ForeignScene is the scene of a subscribe or SCAN event from a parametric QR code that is
	// not Sprout's (set by the Handler, which then clears EventKey): the event is dispatched as a
	// plain subscribe or SCAN, never answered as an invalid code.
	ForeignScene string `xml:"-"`
}

// envelope is what arrives on the wire: the plaintext fields (plaintext and compatible modes) and
// the Encrypt field (compatible and safe modes).
type envelope struct {
	Message
	Encrypt string `xml:"Encrypt"`
}

// wireMessage is Message as it is decoded: the numeric fields as text, converted by parseNumber,
// so that a number WeChat formats unexpectedly never rejects the whole push.
type wireMessage struct {
	messageFields
	CreateTime string `xml:"CreateTime"`
	OpType     string `xml:"OpType"`
	Encrypt    string `xml:"Encrypt"`
}

// messageFields is Message without its methods (the shallower wireMessage fields shadow its
// numeric ones).
type messageFields Message

func decodeWire(body []byte) (*wireMessage, error) {
	var w wireMessage
	if err := xml.Unmarshal(body, &w); err != nil {
		return nil, fmt.Errorf("wechat: parsing message XML: %w", err)
	}
	return &w, nil
}

func (w *wireMessage) message() Message {
	m := Message(w.messageFields)
	m.CreateTime, _ = parseNumber(w.CreateTime)
	if strings.TrimSpace(w.OpType) != "" { // absent (every message but status events): 0, as before
		m.OpType = OpTypeUnknown
		if n, ok := parseNumber(w.OpType); ok && n >= 0 && n <= 1<<16 {
			m.OpType = int(n)
		}
	}
	m.trim()
	return m
}

// parseNumber reads a number WeChat sent as text: surrounding spaces (any Unicode space), a
// leading '+', and a fractional part of zeros ("1.0") are accepted; anything else is not a
// number (ok false, and the caller keeps its "unknown" value instead of rejecting the push).
func parseNumber(s string) (int64, bool) {
	s = strings.TrimPrefix(strings.TrimSpace(s), "+")
	if i := strings.IndexByte(s, '.'); i >= 0 && strings.Trim(s[i+1:], "0") == "" {
		s = s[:i]
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

// ParseMessage decodes a plaintext message body (<xml>…</xml>).
func ParseMessage(body []byte) (*Message, error) {
	w, err := decodeWire(body)
	if err != nil {
		return nil, err
	}
	m := w.message()
	return &m, nil
}

func parseEnvelope(body []byte) (*envelope, error) {
	w, err := decodeWire(body)
	if err != nil {
		return nil, err
	}
	return &envelope{Message: w.message(), Encrypt: strings.TrimSpace(w.Encrypt)}, nil
}

func (m *Message) trim() {
	for _, p := range []*string{&m.ToUserName, &m.FromUserName, &m.MsgType, &m.MsgId, &m.Event,
		&m.EventKey, &m.Ticket, &m.DeviceType, &m.DeviceID, &m.SessionID, &m.OpenID, &m.Status, &m.MsgID} {
		*p = strings.TrimSpace(*p)
	}
}

// DedupKey names this push for deduplication across WeChat's retries (up to three, same content).
// It is the MsgId when present; otherwise sender, creation time, type, event and whatever
// identifies the event's object. The dedupe itself belongs to the user grain, cluster-wide.
func (m *Message) DedupKey() string {
	if m.MsgId != "" {
		return "id:" + m.MsgId
	}
	var b strings.Builder
	b.WriteString("ev:")
	b.WriteString(m.FromUserName)
	b.WriteByte('|')
	b.WriteString(strconv.FormatInt(m.CreateTime, 10))
	for _, s := range []string{m.MsgType, m.Event, m.EventKey, m.DeviceID, m.MsgID} {
		b.WriteByte('|')
		b.WriteString(s)
	}
	return b.String()
}

// DeviceData decodes Content as the base64 device payload of device_text and device_event/bind
// (on bind it is the data appended to the device QR after '#').
func (m *Message) DeviceData() ([]byte, error) {
	s := strings.TrimSpace(m.Content)
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		b, err = base64.RawStdEncoding.DecodeString(strings.TrimRight(s, "="))
	}
	if err != nil {
		return nil, fmt.Errorf("wechat: device Content is not base64: %w", err)
	}
	return b, nil
}

// dropForeignScene moves a scene that is not a Sprout code out of EventKey (see ForeignScene)
// and reports whether it did.
func (m *Message) dropForeignScene() bool {
	sc := m.Scene()
	if sc == "" || qr.IsCode(sc) {
		return false
	}
	m.ForeignScene, m.EventKey = sc, ""
	return true
}

// Scene returns the parametric-QR scene of a subscribe or SCAN event ("" for other messages):
// EventKey without the "qrscene_" prefix WeChat adds on subscribe.
func (m *Message) Scene() string {
	switch {
	case m.MsgType != MsgTypeEvent:
		return ""
	case m.Event == EventSubscribe:
		return strings.TrimPrefix(m.EventKey, SceneKeyPrefix)
	case m.Event == EventScan:
		return m.EventKey
	}
	return ""
}
