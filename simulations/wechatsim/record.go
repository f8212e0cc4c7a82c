package wechatsim

import (
	"errors"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"sort"
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
	Status  int    `json:"http_status,omitempty"` // In: Sprout's HTTP status (0 = no answer)
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

// Received returns what a user received (Direction Out), oldest first.
func (p *Platform) Received(openID string) []Entry {
	var out []Entry
	for _, e := range p.Conversation(openID) {
		if e.Direction == Out {
			out = append(out, e)
		}
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
		es := p.entries[openID]
		changed := p.changed
		for ; seen < len(es); seen++ {
			if match(es[seen]) {
				e := es[seen]
				p.mu.Unlock()
				return e, nil
			}
		}
		p.mu.Unlock()
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

func (p *Platform) handleIndex(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	ids := make([]string, 0, len(p.entries))
	for id := range p.entries {
		ids = append(ids, id)
	}
	p.mu.Unlock()
	sort.Strings(ids)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	fmt.Fprintf(w, "<!doctype html><title>wechatsim</title><h1>Simulated WeChat account %s</h1>", html.EscapeString(p.opts.AccountID))
	fmt.Fprint(w, `<p>JSON: <a href="/_sim/conversations">/_sim/conversations</a></p><ul>`)
	for _, id := range ids {
		fmt.Fprintf(w, `<li><a href="/_sim/conversations/%s">%s</a></li>`, url.PathEscape(id), html.EscapeString(id))
	}
	fmt.Fprint(w, "</ul>")
}
