package actors

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/sprout-iot/sprout/messages/actorpb"
)

// WeChat requesters are named "wechat:<openid>" in SendCommand.requested_by; other requesters
// (the API, the console, the simulator) are trusted callers behind their own authentication.
const wechatRequester = "wechat:"

// WeChatRequester names a WeChat user as a command's requester.
func WeChatRequester(openID string) string { return wechatRequester + openID }

// bound reports whether a WeChat user may see and control the device.
func (c *deviceCore) bound(openID string) bool {
	for _, b := range c.users {
		if b.OpenID == openID {
			return true
		}
	}
	return false
}

// mayCommand checks a command's requester: WeChat users must be bound.
func (c *deviceCore) mayCommand(requestedBy string) bool {
	openID, ok := strings.CutPrefix(requestedBy, wechatRequester)
	return !ok || c.bound(openID)
}

// bind decides a binding: unknown and revoked devices refuse, the first binder becomes the owner,
// binding again changes nothing. After the owner, a trusted way (the owner's invite, an operator)
// adds a member at once; any other (a scan) is a request to join (ask true): it waits for the
// owner or a press of the pot's button (join.go).
func (c *deviceCore) bind(openID, via string, now time.Time) (res *actorpb.BindResult, b *Binding, ask bool) {
	switch {
	case !c.known:
		return &actorpb.BindResult{Error: "unknown_device", Code: actorpb.ErrorCode_ERROR_CODE_UNKNOWN_DEVICE}, nil, false
	case c.revoked:
		return &actorpb.BindResult{Error: "revoked", Code: actorpb.ErrorCode_ERROR_CODE_REVOKED}, nil, false
	case openID == "":
		return &actorpb.BindResult{Error: "no_user", Code: actorpb.ErrorCode_ERROR_CODE_INVALID}, nil, false
	}
	for _, b := range c.users {
		if b.OpenID == openID {
			return &actorpb.BindResult{Ok: true, Role: b.Role, Already: true}, nil, false
		}
	}
	role := RoleMember
	switch {
	case len(c.users) == 0:
		role = RoleOwner
	case !trustedJoin(via):
		return &actorpb.BindResult{Ok: true, Role: RolePending, Already: c.joinIndex(openID) >= 0}, nil, true
	}
	b = &Binding{DeviceID: c.id, OpenID: openID, Role: role, BoundAt: now}
	return &actorpb.BindResult{Ok: true, Role: role}, b, false
}

// addUser and removeUser apply a stored binding change and tell the users concerned. When the
// owner leaves, the oldest remaining member becomes the owner (and is told).
func (c *deviceCore) addUser(b Binding, fx *effects) {
	c.users = append(c.users, b)
	fx.bindings = append(fx.bindings, &bindingChange{openID: b.OpenID,
		msg: &actorpb.BindingChanged{DeviceId: c.id, Bound: true, Role: b.Role, AtMs: b.BoundAt.UnixMilli()}})
}

func (c *deviceCore) removeUser(openID string, now time.Time, fx *effects) bool {
	for i, b := range c.users {
		if b.OpenID == openID {
			c.users = slices.Delete(slices.Clone(c.users), i, i+1) // a copy: the held state shares the array
			fx.bindings = append(fx.bindings, &bindingChange{openID: openID,
				msg: &actorpb.BindingChanged{DeviceId: c.id, AtMs: now.UnixMilli()}})
			if len(c.users) > 0 && b.Role == RoleOwner {
				c.users[0].Role = RoleOwner
				fx.bindings = append(fx.bindings, &bindingChange{openID: c.users[0].OpenID,
					msg: &actorpb.BindingChanged{DeviceId: c.id, Bound: true, Role: RoleOwner, AtMs: now.UnixMilli()}})
			}
			return true
		}
	}
	return false
}

// withOwner returns a device's stored bindings (oldest first) with an owner: when the owner left,
// the oldest remaining member was promoted in memory, but the store keeps each binding's first
// role, so a reloaded grain promotes the same member again.
func withOwner(users []Binding) []Binding {
	if len(users) == 0 || slices.ContainsFunc(users, func(b Binding) bool { return b.Role == RoleOwner }) {
		return users
	}
	users = slices.Clone(users)
	users[0].Role = RoleOwner
	return users
}

func (c *deviceCore) userIDs() []string {
	out := make([]string, len(c.users))
	for i, b := range c.users {
		out[i] = b.OpenID
	}
	return out
}

// userNotice turns a device notice into what each bound user hears: alerts, presence changes, and
// a pot held off for reconnecting in a loop.
// Command outcomes go only to their requester (as the reply to SendCommand).
func (c *deviceCore) userNotice(n *actorpb.DeviceNotice) *actorpb.UserNotice {
	u := &actorpb.UserNotice{DeviceId: c.id, AtMs: n.AtMs, Latest: c.latest, Trace: n.Trace}
	switch b := n.Body.(type) {
	case *actorpb.DeviceNotice_Alert:
		u.Body = &actorpb.UserNotice_Alert{Alert: b.Alert}
		u.NoticeId = fmt.Sprintf("%s/alert/%d/%v/%d", c.id, b.Alert.Kind, b.Alert.Active, b.Alert.SinceMs)
	case *actorpb.DeviceNotice_Presence:
		u.Body = &actorpb.UserNotice_Presence{Presence: b.Presence}
		u.NoticeId = fmt.Sprintf("%s/presence/%v/%d", c.id, b.Presence.Online, n.AtMs)
	case *actorpb.DeviceNotice_Flapping:
		u.Body = &actorpb.UserNotice_Flapping{Flapping: b.Flapping}
		u.NoticeId = fmt.Sprintf("%s/flapping/%d", c.id, b.Flapping.UntilMs)
	default:
		return nil
	}
	return u
}
