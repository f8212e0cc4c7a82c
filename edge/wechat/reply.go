package wechat

import (
	"encoding/base64"
	"encoding/xml"
	"fmt"
	"strconv"
	"time"
)

// Reply is a passive reply: the body of the HTTP answer to a push. A nil *Reply (or one with an
// empty MsgType) means "nothing to say", answered as the plain string "success", which WeChat
// accepts in every mode. Addressing (ToUserName, FromUserName) is filled in from the message being
// answered, so dispatchers only say what to reply.
type Reply struct {
	MsgType      string // MsgTypeText, MsgTypeDeviceText, ReplyDeviceStatus, or "" for success
	Content      string // text, or base64 device bytes for device_text
	DeviceType   string
	DeviceID     string
	SessionID    string
	DeviceStatus int // device_status: 0 = not connected, 1 = connected
}

// ReplyDeviceStatus is the MsgType of the answer to subscribe_status / unsubscribe_status.
const ReplyDeviceStatus = "device_status"

// TextReply answers with a text message shown in the user's chat.
func TextReply(text string) *Reply { return &Reply{MsgType: MsgTypeText, Content: text} }

// DeviceTextReply sends bytes back to the device through the user's WeChat client, answering
// a device_text (or device_event) push m.
func DeviceTextReply(m *Message, data []byte) *Reply {
	return &Reply{MsgType: MsgTypeDeviceText, Content: base64.StdEncoding.EncodeToString(data),
		DeviceType: m.DeviceType, DeviceID: m.DeviceID, SessionID: m.SessionID}
}

// DeviceStatusReply answers a subscribe_status push m with the device's connection state.
func DeviceStatusReply(m *Message, connected bool) *Reply {
	r := &Reply{MsgType: ReplyDeviceStatus, DeviceType: m.DeviceType, DeviceID: m.DeviceID}
	if connected {
		r.DeviceStatus = 1
	}
	return r
}

// Success is the empty reply: WeChat receives the plain string "success".
func Success() *Reply { return nil }

// IsEmpty reports whether r is answered as "success".
func (r *Reply) IsEmpty() bool { return r == nil || r.MsgType == "" }

type cdata struct {
	Text string `xml:",cdata"`
}

type replyXML struct {
	XMLName      xml.Name `xml:"xml"`
	ToUserName   cdata    `xml:"ToUserName"`
	FromUserName cdata    `xml:"FromUserName"`
	CreateTime   int64    `xml:"CreateTime"`
	MsgType      cdata    `xml:"MsgType"`
	DeviceType   *cdata   `xml:"DeviceType,omitempty"`
	DeviceID     *cdata   `xml:"DeviceID,omitempty"`
	SessionID    *cdata   `xml:"SessionID,omitempty"`
	Content      *cdata   `xml:"Content,omitempty"`
	DeviceStatus *int     `xml:"DeviceStatus,omitempty"`
}

// MarshalReply renders r as the plaintext reply XML to message m at time now.
func MarshalReply(r *Reply, m *Message, now time.Time) ([]byte, error) {
	if r.IsEmpty() {
		return []byte("success"), nil
	}
	x := replyXML{
		ToUserName:   cdata{m.FromUserName},
		FromUserName: cdata{m.ToUserName},
		CreateTime:   now.Unix(),
		MsgType:      cdata{r.MsgType},
	}
	switch r.MsgType {
	case MsgTypeText:
		x.Content = &cdata{r.Content}
	case MsgTypeDeviceText:
		x.DeviceType, x.DeviceID = &cdata{r.DeviceType}, &cdata{r.DeviceID}
		x.SessionID, x.Content = &cdata{r.SessionID}, &cdata{r.Content}
	case ReplyDeviceStatus:
		st := r.DeviceStatus
		x.DeviceType, x.DeviceID, x.DeviceStatus = &cdata{r.DeviceType}, &cdata{r.DeviceID}, &st
	default:
		return nil, fmt.Errorf("wechat: unsupported reply MsgType %q", r.MsgType)
	}
	return xml.Marshal(x)
}

// EncryptedReply is the safe-mode reply envelope.
type EncryptedReply struct {
	XMLName      xml.Name `xml:"xml"`
	Encrypt      cdata    `xml:"Encrypt"`
	MsgSignature cdata    `xml:"MsgSignature"`
	TimeStamp    int64    `xml:"TimeStamp"`
	Nonce        cdata    `xml:"Nonce"`
}

// SealReply encrypts a plaintext reply and signs it: MsgSignature = sha1(sort(token, TimeStamp,
// Nonce, Encrypt)).
func SealReply(c *Cipher, token string, plain []byte, now time.Time, nonce string) ([]byte, error) {
	enc, err := c.Encrypt(plain)
	if err != nil {
		return nil, err
	}
	ts := now.Unix()
	return xml.Marshal(EncryptedReply{
		Encrypt:      cdata{enc},
		MsgSignature: cdata{MsgSignature(token, strconv.FormatInt(ts, 10), nonce, enc)},
		TimeStamp:    ts,
		Nonce:        cdata{nonce},
	})
}

// OpenReply verifies and decrypts a safe-mode reply envelope, returning the plaintext reply XML.
// It is what WeChat does with Sprout's answer; the simulator and tests use it.
func OpenReply(c *Cipher, token string, body []byte) ([]byte, error) {
	var e struct {
		Encrypt      string `xml:"Encrypt"`
		MsgSignature string `xml:"MsgSignature"`
		TimeStamp    string `xml:"TimeStamp"`
		Nonce        string `xml:"Nonce"`
	}
	if err := xml.Unmarshal(body, &e); err != nil {
		return nil, fmt.Errorf("wechat: parsing encrypted reply: %w", err)
	}
	if !VerifySignature(e.MsgSignature, token, e.TimeStamp, e.Nonce, e.Encrypt) {
		return nil, ErrBadSignature
	}
	return c.Decrypt(e.Encrypt)
}
