package wechatsim

import (
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Direction of an Entry.
const (
	In  = "in"  // the user did something (a callback to Sprout)
	Out = "out" // the user received something from Sprout
)

// Entry kinds.
const (
	KindTemplate     = "template"      // Out: /cgi-bin/message/template/send
	KindCustomText   = "custom_text"   // Out: /cgi-bin/message/custom/send (text)
	KindTransMsg     = "transmsg"      // Out: /device/transmsg with content
	KindDeviceStatus = "device_status" // Out: /device/transmsg with msg_type 2
	KindReply        = "reply"         // Out: a passive reply to one of the user's callbacks
	KindCallback     = "callback"      // In: a callback the user's action caused
	KindReceipt      = "receipt"       // In: TEMPLATESENDJOBFINISH posted to Sprout for a template
	KindRefused      = "refused"       // Out: a send the platform refused (Errcode, Attempted)
	KindScanText     = "scan_text"     // the user scanned content WeChat only shows as text
	KindPage         = "page"          // the user's in-WeChat browser opened a page (URL, Status)
)

// Entry is one line of a user's conversation with the account.
type Entry struct {
	Seq       int64     `json:"seq"`
	At        time.Time `json:"at"`
	OpenID    string    `json:"openid"`
	Direction string    `json:"direction"`
	Kind      string    `json:"kind"`

	Text string `json:"text,omitempty"` // custom text, user text, reply content

	TemplateID  string                   `json:"template_id,omitempty"`
	Title       string                   `json:"title,omitempty"`  // template: the template's title
	Fields      []TemplateField          `json:"fields,omitempty"` // template: the card's lines as rendered
	URL         string                   `json:"url,omitempty"`
	Data        map[string]TemplateValue `json:"data,omitempty"`
	ClientMsgID string                   `json:"client_msg_id,omitempty"`
	MsgID       int64                    `json:"msgid,omitempty"`

	DeviceType   string `json:"device_type,omitempty"`
	DeviceID     string `json:"device_id,omitempty"`
	Payload      []byte `json:"payload,omitempty"`       // transmsg bytes, device_text reply bytes
	DeviceStatus string `json:"device_status,omitempty"` // "0" / "1"

	MsgType string `json:"msg_type,omitempty"` // In: the callback's MsgType; Out/reply: the reply's
	Event   string `json:"event,omitempty"`
	Status  int    `json:"http_status,omitempty"` // In: Sprout's HTTP status (0 = no answer); page: the page's

	// Delivery is a template's delivery status (TEMPLATESENDJOBFINISH's Status: "success",
	// "failed:user block", "failed: system failed"); on a receipt, the status posted.
	Delivery string `json:"delivery,omitempty"`
	// Refused sends: WeChat's errcode and errmsg, and what was attempted (KindCustomText or
	// KindTemplate; Text or TemplateID/Data hold what would have been sent).
	Errcode   int    `json:"errcode,omitempty"`
	Errmsg    string `json:"errmsg,omitempty"`
	Attempted string `json:"attempted,omitempty"`
	Attempts  int    `json:"attempts,omitempty"` // In: how many times the callback was posted
}

// ErrWaitTimeout is returned by WaitFor when nothing matched in time.
var ErrWaitTimeout = errors.New("wechatsim: no matching message before the timeout")

// record must be called with p.mu held.
func (p *Platform) record(e Entry) {
	e.Seq = p.nextSeq()
	if e.At.IsZero() {
		e.At = p.now()
	}
	p.entries[e.OpenID] = append(p.entries[e.OpenID], e)
	close(p.changed)
	p.changed = make(chan struct{})
}

// Conversation returns everything recorded for a user, oldest first.
func (p *Platform) Conversation(openID string) []Entry {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Entry(nil), p.entries[openID]...)
}

// Received returns what reached the user (Direction Out), oldest first: not the sends WeChat
// refused (KindRefused) nor template cards whose delivery failed (Delivery other than success).
func (p *Platform) Received(openID string) []Entry {
	var out []Entry
	for _, e := range p.Conversation(openID) {
		if e.Direction != Out || e.Kind == KindRefused || (e.Kind == KindTemplate && e.Delivery != DeliverySuccess) {
			continue
		}
		out = append(out, e)
	}
	return out
}

// WaitFor returns the first entry of the user's conversation (already recorded or arriving within
// timeout) that match accepts, or ErrWaitTimeout.
func (p *Platform) WaitFor(openID string, timeout time.Duration, match func(Entry) bool) (Entry, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	seen := 0
	for {
		p.mu.Lock()
		es := append([]Entry(nil), p.entries[openID][seen:]...)
		changed := p.changed
		p.mu.Unlock()
		// match runs without the lock: it may look at the platform (Conversation, Window, ...).
		for _, e := range es {
			seen++
			if match(e) {
				return e, nil
			}
		}
		select {
		case <-changed:
		case <-deadline.C:
			return Entry{}, fmt.Errorf("%w (user %s, %s)", ErrWaitTimeout, openID, timeout)
		}
	}
}

func (p *Platform) handleDump(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if id := r.PathValue("openid"); id != "" {
		writeJSON(w, p.entries[id])
		return
	}
	writeJSON(w, p.entries)
}
