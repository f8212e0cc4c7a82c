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
	PushFailed  = "failed" // permanently: recorded, not retried
)

// Push kinds.
const (
	PushTemplate     = "template"    // a template message (alerts, command outcomes)
	PushText         = "text"        // a customer-service text (only inside the 48 h window)
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
}
