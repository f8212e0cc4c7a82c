package actors

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/sprout-iot/sprout/messages/actorpb"
)

// Menu keys of the official account's menu (CLICK events).
const (
	MenuWater     = "WATER"
	MenuStatus    = "STATUS"
	MenuMyDevices = "MY_DEVICES"
	MenuUnbind    = "UNBIND"
	MenuHelp      = "HELP"
)

// intent is what a user's message asks for.
type intent struct {
	kind string // water, status, list, unbind, help, bind_qr, bind_wechat, unbind_wechat, status_sub, device_text, none
	arg  string // a device number or id; the QR scene; the device id
}

// parseIntent reads a WeChat callback. It is pure: the grain decides what to do with the intent.
func parseIntent(m *actorpb.UserMessage) intent {
	switch m.MsgType {
	case "text":
		return parseText(m.Content)
	case "event":
		switch m.Event {
		case "subscribe", "SCAN":
			if scene := strings.TrimPrefix(m.EventKey, "qrscene_"); scene != "" {
				return intent{kind: "bind_qr", arg: scene}
			}
			return intent{kind: "help"}
		case "CLICK":
			switch m.EventKey {
			case MenuWater:
				return intent{kind: "water"}
			case MenuStatus:
				return intent{kind: "status"}
			case MenuMyDevices:
				return intent{kind: "list"}
			case MenuUnbind:
				return intent{kind: "unbind"}
			}
			return intent{kind: "help"}
		}
		return intent{kind: "none"}
	case "device_event":
		switch m.Event {
		case "bind":
			return intent{kind: "bind_wechat", arg: m.DeviceId}
		case "unbind":
			return intent{kind: "unbind_wechat", arg: m.DeviceId}
		case "subscribe_status", "unsubscribe_status":
			return intent{kind: "status_sub", arg: m.DeviceId}
		}
		return intent{kind: "none"}
	case "device_text":
		return intent{kind: "device_text", arg: m.DeviceId}
	}
	return intent{kind: "none"}
}

func parseText(s string) intent {
	t := strings.TrimSpace(strings.ToLower(s))
	for _, w := range []struct{ prefix, kind string }{
		{"water", "water"}, {"浇水", "water"},
		{"status", "status"}, {"状态", "status"},
		{"my devices", "list"}, {"devices", "list"}, {"我的设备", "list"}, {"我的花盆", "list"},
		{"unbind", "unbind"}, {"解绑", "unbind"},
	} {
		if rest, ok := strings.CutPrefix(t, w.prefix); ok {
			return intent{kind: w.kind, arg: strings.TrimSpace(rest)}
		}
	}
	return intent{kind: "help"}
}

// pickDevice chooses the device a command is for: the only one, the Nth (1-based), or by id.
// ok false with a text to reply when the choice is ambiguous or wrong.
func pickDevice(lang string, devices []Binding, arg string) (string, string, bool) {
	switch {
	case len(devices) == 0:
		return "", say(lang, "no_devices"), false
	case arg == "" && len(devices) == 1:
		return devices[0].DeviceID, "", true
	case arg == "":
		return "", say(lang, "pick_device", deviceList(lang, devices)), false
	}
	if n, err := strconv.Atoi(arg); err == nil && n >= 1 && n <= len(devices) {
		return devices[n-1].DeviceID, "", true
	}
	for _, d := range devices {
		if strings.EqualFold(d.DeviceID, arg) {
			return d.DeviceID, "", true
		}
	}
	return "", say(lang, "not_yours", arg), false
}

func deviceList(lang string, devices []Binding) string {
	var b strings.Builder
	for i, d := range devices {
		fmt.Fprintf(&b, "%d. %s (%s)\n", i+1, d.DeviceID, say(lang, "role_"+d.Role))
	}
	return strings.TrimRight(b.String(), "\n")
}

// commandIDFor derives a command id from the callback that asked for it, so that WeChat's retries
// of one tap name the same command and the device grain runs it once.
func commandIDFor(openID, dedupKey string) string {
	h := sha256.Sum256([]byte(openID + "\x00" + dedupKey))
	return "wx-" + hex.EncodeToString(h[:12])
}

// pushID derives a push's client_msg_id from what decided it, so re-deciding after a crash
// enqueues the same push, which the outbox and WeChat both dedupe.
func pushID(parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return hex.EncodeToString(h[:16])
}

// userState is the persisted part of a user grain.
type userState struct {
	Lang            string        `json:"lang"`
	LastInteraction time.Time     `json:"last_interaction"`
	Replies         []cachedReply `json:"replies"` // for WeChat's retries of one callback
	Notices         []string      `json:"notices"` // notice ids already pushed
	AlertPushes     []time.Time   `json:"alert_pushes"`
	Summary         []string      `json:"summary"` // alert lines held back by the rate limit
}

type cachedReply struct {
	Key   string          `json:"key"`
	Reply json.RawMessage `json:"reply"`
}

const (
	maxCachedReplies = 32
	maxSeenNotices   = 128
)

func (s *userState) reply(key string) ([]byte, bool) {
	for _, r := range s.Replies {
		if r.Key == key {
			return r.Reply, true
		}
	}
	return nil, false
}

func (s *userState) remember(key string, reply []byte) {
	s.Replies = append(s.Replies, cachedReply{Key: key, Reply: reply})
	if len(s.Replies) > maxCachedReplies {
		s.Replies = s.Replies[len(s.Replies)-maxCachedReplies:]
	}
}

func (s *userState) seen(id string) bool {
	for _, n := range s.Notices {
		if n == id {
			return true
		}
	}
	s.Notices = append(s.Notices, id)
	if len(s.Notices) > maxSeenNotices {
		s.Notices = s.Notices[len(s.Notices)-maxSeenNotices:]
	}
	return false
}

// allowAlert applies the alert rate limit: at most max alert pushes in any window; the rest wait
// for one summary.
func (s *userState) allowAlert(now time.Time, window time.Duration, max int) bool {
	keep := s.AlertPushes[:0]
	for _, t := range s.AlertPushes {
		if now.Sub(t) < window {
			keep = append(keep, t)
		}
	}
	s.AlertPushes = keep
	if len(keep) >= max {
		return false
	}
	s.AlertPushes = append(s.AlertPushes, now)
	return true
}
