package actors

import (
	"context"
	"errors"
	"time"
)

// ErrLeaseLost is returned by RenewPush and CompletePush to a pusher that no longer holds the
// push's lease: another pusher claimed it after the lease ran out, or its fate is already
// recorded. The stale pusher must neither send the push nor record anything about it.
var ErrLeaseLost = errors.New("push lease lost to another pusher")

// UserStore is what binding, user grains and the push outbox need from persistence. Every Store
// backend implements it too (store/storetest checks both).
type UserStore interface {
	// Bind records that a WeChat user may see and control a device. Binding an existing pair
	// again keeps its first role and time.
	Bind(ctx context.Context, b Binding) error
	// Unbind removes a binding; removing a missing one is not an error.
	Unbind(ctx context.Context, deviceID, openID string) error
	// DeviceBindings lists a device's users, oldest first (the first is the owner).
	DeviceBindings(ctx context.Context, deviceID string) ([]Binding, error)
	// UserBindings lists a user's devices, oldest first.
	UserBindings(ctx context.Context, openID string) ([]Binding, error)

	// LoadUser returns a user grain's snapshot (nil if none); SaveUser replaces it.
	LoadUser(ctx context.Context, openID string) ([]byte, error)
	SaveUser(ctx context.Context, openID string, snapshot []byte) error

	// EnqueuePushes durably adds pushes to the outbox; a push whose ID is already there is ignored
	// (IDs are the client_msg_id WeChat dedupes on).
	EnqueuePushes(ctx context.Context, ps []Push) error
	// ClaimPushes leases up to limit pending pushes due at now to owner for lease; a push whose
	// lease expired (its owner died, or is too slow) can be claimed again. Each claimed push
	// carries its Lease, a token naming this one claim, which fences RenewPush and CompletePush.
	ClaimPushes(ctx context.Context, owner string, now time.Time, lease time.Duration, limit int) ([]Push, error)
	// RenewPush extends the lease p.Lease names to now+lease; the pusher calls it right before
	// sending, so that a push it claimed long ago is still its own. It returns ErrLeaseLost if
	// another claim took the push or its fate is recorded: then the push must not be sent.
	RenewPush(ctx context.Context, p Push, now time.Time, lease time.Duration) error
	// CompletePush records a push's fate (sent, failed for good, or to be retried at
	// NextAttemptAt) and ends its lease; a push left pending with its NextAttemptAt unchanged is
	// thereby released to any pusher. It returns ErrLeaseLost, recording nothing, unless p.Lease
	// still holds the push.
	CompletePush(ctx context.Context, p Push) error
	// UserPushes lists a user's pushes, newest first (operators and tests).
	UserPushes(ctx context.Context, openID string, limit int) ([]Push, error)

	// RecordContact applies one event to a user's reachability (ApplyContact), atomically.
	RecordContact(ctx context.Context, openID string, ev ContactEvent) error
	// Contact returns what Sprout knows of a user's reachability; a user with no record is
	// the zero Contact (outside any window, not known to have unfollowed).
	Contact(ctx context.Context, openID string) (Contact, error)
	// TakeServiceSend consumes one customer-service send of the user's open window, atomically
	// across nodes: false when the window is closed, used up, or the user unfollowed.
	TakeServiceSend(ctx context.Context, openID string, now time.Time) (bool, error)
	// RecordReceipt records WeChat's delivery receipt (TEMPLATESENDJOBFINISH) on the push sent
	// with msgID; an unknown msgID is not an error (it reports false).
	RecordReceipt(ctx context.Context, msgID, status string) (bool, error)
	// FailedPushes lists pushes failed for good, newest first (the console).
	FailedPushes(ctx context.Context, limit int) ([]Push, error)
	// RetryPush puts a push that failed for good (or was skipped) back in the queue, due at now,
	// with its attempts and error cleared; ErrNotFailed if it is not failed.
	RetryPush(ctx context.Context, id string, now time.Time) error
}

// ErrNotFailed is RetryPush's answer for a push that is unknown, pending or sent.
var ErrNotFailed = errors.New("push is not failed")

// Kinds of ContactEvent: the user's own actions that open a customer-service window, and the
// events that close it.
const (
	ContactMessage     = "message"     // text, image, voice, video, shortvideo, location message, link: 48 h, 5 sends
	ContactClick       = "click"       // a menu CLICK: 1 min, 3 sends
	ContactSubscribe   = "subscribe"   // following (also with a QR scene): 1 min, 3 sends
	ContactScan        = "scan"        // SCAN of a parametric QR by a follower: 1 min, 3 sends
	ContactUnsubscribe = "unsubscribe" // unfollowing: nothing is sent until they follow again
	ContactRefused     = "refused"     // WeChat answered 43004 (not following) to a send at At
	ContactClosed      = "closed"      // WeChat answered 45015/45047 to a send at At: the window is spent
	ContactUnused      = "unused"      // a send taken from the window opened at At did not go out (WeChat busy): give it back
)

// ContactEvent is one change of a user's reachability.
type ContactEvent struct {
	Kind string
	At   time.Time
}

// Customer-service windows WeChat documents (since 2023-06).
const (
	MessageWindow = 48 * time.Hour // after a message from the user
	MessageSends  = 5
	ActionWindow  = time.Minute // after a menu click, a subscribe or a QR scan
	ActionSends   = 3
)

// Contact is a user's reachability: whether they follow the account, their last own action and
// the customer-service allowance it left.
type Contact struct {
	Unfollowed bool      // they unsubscribed, or WeChat answered 43004
	Kind       string    // the last own action (ContactMessage, ...), "" if none known
	At         time.Time // when it happened (or when the state last changed)
	Until      time.Time // the window's end
	SendsLeft  int
}

// Follows reports whether pushes may go to the user at all.
func (c Contact) Follows() bool { return !c.Unfollowed }

// InWindow reports whether a customer-service send is allowed at now.
func (c Contact) InWindow(now time.Time) bool {
	return !c.Unfollowed && c.SendsLeft > 0 && now.Before(c.Until)
}

// ApplyContact is the one rule for a contact event; the stores apply it inside a transaction.
// An event older than what the contact already knows changes nothing (a late 43004 does not
// undo a later follow).
func ApplyContact(c Contact, ev ContactEvent) Contact {
	if ev.At.Before(c.At) {
		return c
	}
	switch ev.Kind {
	case ContactMessage:
		return Contact{Kind: ev.Kind, At: ev.At, Until: ev.At.Add(MessageWindow), SendsLeft: MessageSends}
	case ContactClick, ContactSubscribe, ContactScan:
		return Contact{Kind: ev.Kind, At: ev.At, Until: ev.At.Add(ActionWindow), SendsLeft: ActionSends}
	case ContactUnsubscribe, ContactRefused:
		c.Unfollowed, c.SendsLeft, c.At = true, 0, ev.At
	case ContactClosed:
		c.SendsLeft = 0
	case ContactUnused:
		if ev.At.Equal(c.At) && !c.Unfollowed {
			max := ActionSends
			if c.Kind == ContactMessage {
				max = MessageSends
			}
			c.SendsLeft = min(c.SendsLeft+1, max)
		}
	}
	return c
}

// Binding roles.
const (
	RoleOwner  = "owner"  // the first binder: may invite and remove others, change thresholds
	RoleMember = "member" // family: sees and controls
)

// Binding links a WeChat user to a device.
type Binding struct {
	DeviceID string
	OpenID   string
	Role     string
	BoundAt  time.Time
}

// Push states.
const (
	PushPending = "pending"
	PushSent    = "sent"
	PushFailed  = "failed"  // permanently: recorded, not retried (the console can send it again)
	PushSkipped = "skipped" // not sent on purpose: expired, or an alert that cleared before it went out
)

// Push kinds.
const (
	PushMessage      = "message"     // a message to the user; the pusher chooses the channel when it sends it
	PushTemplate     = "template"    // a template message with fixed data (older pushes)
	PushText         = "text"        // a customer-service text (older pushes)
	PushStatus       = "status"      // transmsg device status
	PushCompelBind   = "compel_bind" // tell WeChat's device platform about a binding made by Sprout's QR
	PushCompelUnbind = "compel_unbind"
)

// Push is one message (or platform call) in the outbox.
type Push struct {
	ID            string // client_msg_id; unique
	OpenID        string
	Kind          string
	Payload       []byte // JSON, by kind
	CreatedAt     time.Time
	Status        string
	Attempts      int
	NextAttemptAt time.Time
	LastError     string
	SentAt        time.Time
	// Lease is the token of the claim that handed out this push (set by ClaimPushes): only its
	// holder may renew or complete the push. Empty when the push is not claimed.
	Lease string
	// OrderKey orders a user's pushes about one pot: a push is not claimed while an older
	// pending push with the same key waits ("raised" is heard before "cleared"). Empty: no order.
	OrderKey string
	// Channel is how it went out (or was last tried): "cs" (customer-service text), "template",
	// or "" (not a message). ErrCode is WeChat's last refusal (0 none); MsgID the template's
	// msgid; Receipt the TEMPLATESENDJOBFINISH status ("success", "failed:user block", ...).
	Channel string
	ErrCode int
	MsgID   string
	Receipt string
}

// Channels of PushMessage.
const (
	ChannelCS       = "cs"
	ChannelTemplate = "template"
)
