package actors

import (
	"context"
	"errors"
	"time"
)

// Store is what the grains need from persistence. Implementations live in store/ (embedded SQLite,
// Postgres) and all pass the same contract suite in store/storetest.
//
// Every method is safe for concurrent use. Append is the hot path: implementations batch appends
// from many grains into one transaction (group commit) and return only once the batch is durable.
type Store interface {
	// CreateDevice adds a device to the registry. ErrDeviceExists if the id is taken.
	CreateDevice(ctx context.Context, d Device) error
	// GetDevice returns a registered device. ErrUnknownDevice if there is none.
	GetDevice(ctx context.Context, id string) (Device, error)
	// ListDevices returns devices ordered by id, starting after q.AfterID, at most q.Limit (default 100, max 1000).
	ListDevices(ctx context.Context, q ListQuery) ([]Device, error)
	// RevokeDevice marks a device revoked: it can no longer connect or be bound. ErrUnknownDevice if there is none.
	RevokeDevice(ctx context.Context, id string, at time.Time) error

	// LoadDevice returns what a grain needs to rebuild its state on activation: the latest snapshot,
	// the highest stored seq, and the latest reading. A device with no history returns a zero Recovered.
	LoadDevice(ctx context.Context, id string) (Recovered, error)
	// Append durably stores one grain step atomically: readings (ignoring any (device, seq) already
	// stored), events, and optionally a new snapshot. It returns once the write is durable, or an error
	// (ErrUnavailable when the database cannot be reached or the write queue is full).
	Append(ctx context.Context, deviceID string, b Batch) error

	// Readings returns raw readings with from <= ReceivedAt < to, oldest first, at most limit (max 10000).
	Readings(ctx context.Context, deviceID string, from, to time.Time, limit int) ([]Reading, error)
	// Buckets returns per-bucket min/avg/max of each metric for from <= ReceivedAt < to, oldest first.
	Buckets(ctx context.Context, deviceID string, from, to time.Time, bucket time.Duration) ([]Bucket, error)
	// Events returns logged events with from <= At < to, oldest first, at most limit (max 10000).
	Events(ctx context.Context, deviceID string, from, to time.Time, limit int) ([]Event, error)

	// Close flushes pending appends and releases the store.
	Close() error
}

// Sentinel errors every Store returns for the outcomes callers branch on.
var (
	ErrUnknownDevice = errors.New("unknown device")
	ErrDeviceExists  = errors.New("device already exists")
	ErrUnavailable   = errors.New("storage unavailable")
	// ErrFenced refuses a write from a grain activation that another activation of the same device
	// has since claimed (a duplicate activation while the cluster's membership changed).
	ErrFenced = errors.New("device claimed by a newer grain activation")
)

// Device is a registry entry.
type Device struct {
	ID        string
	Product   string
	Secret    []byte // the HMAC key the device proves in its handshake; never logged
	CreatedAt time.Time
	RevokedAt time.Time // zero unless revoked
}

// Revoked reports whether the device has been revoked.
func (d Device) Revoked() bool { return !d.RevokedAt.IsZero() }

// ListQuery pages through the registry.
type ListQuery struct {
	AfterID string
	Limit   int
}

// Reading is one stored telemetry frame.
type Reading struct {
	Seq             uint64
	DeviceTime      time.Time // zero if the device did not know the time
	ReceivedAt      time.Time
	SoilMoisture    float32 // %
	Temperature     float32 // °C
	TankLevel       float32 // %
	SupplyMillivolt uint32
}

// Event is one entry of a device's event log.
type Event struct {
	At   time.Time
	Kind string // one of the EventKind* constants
	Seq  uint64 // for device events (which share the telemetry sequence); 0 otherwise
	Body []byte // JSON (protojson of the message the kind names)
}

// Event kinds in the per-device event log.
const (
	EventKindDevice         = "device_event"    // an Event frame from the device (body: devicepb.Event)
	EventKindAlertRaised    = "alert_raised"    // body: actorpb.Alert
	EventKindAlertCleared   = "alert_cleared"   // body: actorpb.Alert
	EventKindCommandSent    = "command_sent"    // body: actorpb.SendCommand
	EventKindCommandOutcome = "command_outcome" // body: actorpb.CommandOutcome
	EventKindOnline         = "online"          // body: actorpb.ConnRef
	EventKindOffline        = "offline"         // body: actorpb.Presence
	EventKindFlapping       = "flapping"        // body: actorpb.Flapping; connects refused until its until_ms
	EventKindBound          = "bound"           // body: actorpb.BindDevice
	EventKindUnbound        = "unbound"         // body: actorpb.UnbindDevice
	EventKindRevoked        = "revoked"         // body: actorpb.RevokeDevice; its bindings end with it
)

// Batch is one grain step's writes.
type Batch struct {
	Readings []Reading
	Events   []Event
	Snapshot []byte // nil: keep the previous snapshot
	// Epoch fences duplicate activations. Each activation of a device grain picks a random nonzero
	// epoch and claims the device with it on its first write (Claim); every later write with that
	// epoch is refused with ErrFenced once another activation has claimed the device. Zero: no fencing.
	Epoch uint64
	Claim bool
}

// Recovered is the persisted state of a device grain.
type Recovered struct {
	Snapshot []byte   // nil if never written
	LastSeq  uint64   // highest seq among stored readings and device events
	Latest   *Reading // nil if no reading yet
}

// Bucket aggregates the readings of one time bucket.
type Bucket struct {
	Start                                 time.Time
	Count                                 int
	MoistureMin, MoistureAvg, MoistureMax float32
	TempMin, TempAvg, TempMax             float32
	TankMin, TankAvg, TankMax             float32
}
