package wechatsim

import "time"

// The customer-service allowance (客服消息下发额度), from the customer-service message docs and the
// 2023-06 change: the user's latest own action opens a window with a fresh count.
//
//   - a message from the user (text, image, voice, video, shortvideo, location, link):
//     CustomerAllowance sends (5) within CustomerWindow (48 h);
//   - a menu CLICK, a subscribe (with or without a scene) or a SCAN: EventAllowance sends (3)
//     within EventWindow (1 min).
//
// VIEW, TEMPLATESENDJOBFINISH, the LOCATION event, device status subscriptions
// (subscribe_status/unsubscribe_status), unsubscribe and device_event bind/unbind open nothing
// (bind/unbind is not covered by public docs; the conservative reading is taken).

// Window kinds.
const (
	WindowMessage = "message" // opened by a message from the user
	WindowEvent   = "event"   // opened by a click, a subscribe or a scan
)

// windowFor classifies a callback the user caused; "" = it opens no window.
func windowFor(msgType, event string) string {
	switch msgType {
	case "text", "image", "voice", "video", "shortvideo", "location", "link":
		return WindowMessage
	case "event":
		switch event {
		case "CLICK", "subscribe", "SCAN":
			return WindowEvent
		}
	}
	return ""
}

// open starts the window the action opens. Must be called with p.mu held.
func (p *Platform) open(st *userState, kind string) {
	if kind == "" {
		return
	}
	now := p.now()
	st.windowKind, st.windowStart = kind, now
	if kind == WindowMessage {
		st.windowEnd, st.windowLeft = now.Add(p.opts.CustomerWindow), p.opts.CustomerAllowance
	} else {
		st.windowEnd, st.windowLeft = now.Add(p.opts.EventWindow), p.opts.EventAllowance
	}
}

// csAllowed decides one customer-service send: 0 (and the count taken), 40003, 43004, 45015 or
// 45047. Must be called with p.mu held.
func (p *Platform) csAllowed(st *userState) int {
	switch {
	case st == nil:
		return 40003
	case !st.subscribed:
		return 43004
	case st.windowKind == "" || !p.now().Before(st.windowEnd):
		return 45015
	case st.windowLeft <= 0:
		return 45047
	}
	st.windowLeft--
	return 0
}

// Window is a user's current customer-service allowance, for tests.
type Window struct {
	Kind  string    // WindowMessage, WindowEvent, or "" when none was ever opened
	Start time.Time // when the action that opened it happened
	End   time.Time
	Left  int  // sends left
	Open  bool // End is in the future and the user follows
}

// Window returns the user's customer-service allowance as the platform sees it now.
func (p *Platform) Window(openID string) Window {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.users[openID]
	if st == nil {
		return Window{}
	}
	return Window{Kind: st.windowKind, Start: st.windowStart, End: st.windowEnd, Left: st.windowLeft,
		Open: st.subscribed && st.windowKind != "" && p.now().Before(st.windowEnd)}
}
