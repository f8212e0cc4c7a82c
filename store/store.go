// Package store holds what Sprout's storage backends share: the group committer that turns
// thousands of concurrent Append calls into a few durable transactions, the limits it runs under
// (CommitOptions), and the input rules every backend enforces identically (Validate*).
//
// The backends live beside it: store/sqlite (embedded, the default, one process per data
// directory) and store/postgres (a cluster of nodes sharing one database). Both implement
// actors.Store and pass the one contract suite in store/storetest. This package does no I/O of its
// own and knows no SQL; see README.md for the schema.
package store

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/sprout-iot/sprout/actors"
)

// ErrInvalid marks input no backend will store: an empty or malformed device id, an event body that
// is not JSON, a seq beyond what SQL integers hold. Retrying the same input fails the same way.
var ErrInvalid = errors.New("invalid input")

// Limits of the actors.Store interface, the same for every backend.
const (
	// MaxDeviceIDBytes matches the wire protocol (devicepb.Hello.device_id is 1..64 bytes).
	MaxDeviceIDBytes = 64
	// MaxTextBytes bounds a product name or an event kind.
	MaxTextBytes = 256
	// DefaultListLimit and MaxListLimit apply to ListDevices.
	DefaultListLimit = 100
	MaxListLimit     = 1000
	// MaxQueryLimit applies to Readings and Events; a limit <= 0 means MaxQueryLimit.
	MaxQueryLimit = 10000
	// MaxBuckets bounds (to-from)/bucket in Buckets, so a typo cannot ask for a million rows.
	MaxBuckets = 100000
	// MaxSeq is the highest seq SQL's signed 64-bit integers can hold.
	MaxSeq = math.MaxInt64
)

// Unavailable wraps err so that errors.Is(result, actors.ErrUnavailable) holds and the cause is kept.
func Unavailable(err error) error {
	if err == nil || errors.Is(err, actors.ErrUnavailable) {
		return err
	}
	return fmt.Errorf("%w: %w", actors.ErrUnavailable, err)
}

// ValidID is the one rule for device ids, applied by the device edge (Hello), the API, the
// console, `sprout device add` and every store: 1..MaxDeviceIDBytes bytes of UTF-8 with no
// whitespace, no '/' (an id is a path segment of the API and the pages) and no control
// characters: C0, DEL and C1 (U+0080..U+009F: U+009B is a terminal's CSI, so an id could rewrite
// an operator's screen). NUL is among them, which Postgres text cannot hold anyway.
func ValidID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%w: empty device id", ErrInvalid)
	case len(id) > MaxDeviceIDBytes:
		return fmt.Errorf("%w: device id is %d bytes, more than %d", ErrInvalid, len(id), MaxDeviceIDBytes)
	case !utf8.ValidString(id):
		return fmt.Errorf("%w: device id %q is not valid UTF-8", ErrInvalid, id)
	}
	for _, r := range id {
		switch {
		case unicode.IsControl(r):
			return fmt.Errorf("%w: device id %q contains the control character %U", ErrInvalid, id, r)
		case unicode.IsSpace(r):
			return fmt.Errorf("%w: device id %q contains the space %U", ErrInvalid, id, r)
		case r == '/':
			return fmt.Errorf("%w: device id %q contains a slash", ErrInvalid, id)
		}
	}
	return nil
}

// ValidCursor checks ListQuery.AfterID: empty, or text a database can compare (UTF-8, no NUL).
func ValidCursor(after string) error {
	if after == "" {
		return nil
	}
	return validText("AfterID", after)
}

func validText(what, s string) error {
	switch {
	case len(s) > MaxTextBytes:
		return fmt.Errorf("%w: %s is %d bytes, more than %d", ErrInvalid, what, len(s), MaxTextBytes)
	case !utf8.ValidString(s):
		return fmt.Errorf("%w: %s %q is not valid UTF-8", ErrInvalid, what, s)
	case strings.IndexByte(s, 0) >= 0:
		return fmt.Errorf("%w: %s %q contains a NUL byte", ErrInvalid, what, s)
	}
	return nil
}

// ValidateDevice checks a registry entry before CreateDevice stores it.
func ValidateDevice(d actors.Device) error {
	if err := ValidID(d.ID); err != nil {
		return err
	}
	if err := validText("product", d.Product); err != nil {
		return err
	}
	if d.CreatedAt.IsZero() {
		return fmt.Errorf("%w: device %q has no CreatedAt", ErrInvalid, d.ID)
	}
	return nil
}

// ValidateBatch checks one Append before it is queued, so that a bad step fails at once and alone.
func ValidateBatch(deviceID string, b actors.Batch) error {
	if err := ValidID(deviceID); err != nil {
		return err
	}
	for i := range b.Readings {
		r := &b.Readings[i]
		if r.Seq > MaxSeq {
			return fmt.Errorf("%w: reading seq %d is beyond %d", ErrInvalid, r.Seq, uint64(MaxSeq))
		}
		if r.ReceivedAt.IsZero() {
			return fmt.Errorf("%w: reading seq %d has no ReceivedAt", ErrInvalid, r.Seq)
		}
	}
	for i := range b.Events {
		e := &b.Events[i]
		if e.Seq > MaxSeq {
			return fmt.Errorf("%w: event seq %d is beyond %d", ErrInvalid, e.Seq, uint64(MaxSeq))
		}
		if e.At.IsZero() {
			return fmt.Errorf("%w: %s event has no At", ErrInvalid, e.Kind)
		}
		if e.Kind == "" {
			return fmt.Errorf("%w: event at %s has no kind", ErrInvalid, e.At.Format(time.RFC3339Nano))
		}
		if err := validText("event kind", e.Kind); err != nil {
			return err
		}
		if e.Body != nil && (!utf8.Valid(e.Body) || !json.Valid(e.Body)) {
			return fmt.Errorf("%w: %s event body is not valid JSON", ErrInvalid, e.Kind)
		}
	}
	return nil
}

// ListLimit applies ListDevices' default and maximum.
func ListLimit(n int) int {
	switch {
	case n <= 0:
		return DefaultListLimit
	case n > MaxListLimit:
		return MaxListLimit
	}
	return n
}

// QueryLimit applies the maximum of Readings and Events; n <= 0 means the maximum.
func QueryLimit(n int) int {
	if n <= 0 || n > MaxQueryLimit {
		return MaxQueryLimit
	}
	return n
}

// BucketWidth checks a Buckets request and returns the bucket width in microseconds, the
// resolution both backends store times at.
func BucketWidth(from, to time.Time, bucket time.Duration) (int64, error) {
	us := bucket.Microseconds()
	if us <= 0 {
		return 0, fmt.Errorf("%w: bucket %s is shorter than 1µs", ErrInvalid, bucket)
	}
	if to.After(from) && to.Sub(from)/bucket > MaxBuckets {
		return 0, fmt.Errorf("%w: %s in buckets of %s is more than %d buckets", ErrInvalid, to.Sub(from), bucket, MaxBuckets)
	}
	return us, nil
}

// Micros converts a time to what both backends store: microseconds since the Unix epoch, UTC.
func Micros(t time.Time) int64 { return t.UnixMicro() }

// FromMicros is the inverse of Micros; times come back in UTC.
func FromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }

// Metric and MetricValue map a float32 reading to a nullable SQL value: NaN (a sensor that gave no
// value) is stored as NULL, so aggregates skip it, and comes back as NaN.
func Metric(f float32) *float64 {
	if f != f {
		return nil
	}
	v := float64(f)
	return &v
}

// MetricValue is the inverse of Metric.
func MetricValue(v *float64) float32 {
	if v == nil {
		return float32(math.NaN())
	}
	return float32(*v)
}

// ValidateBinding checks a binding before Bind stores it.
func ValidateBinding(b actors.Binding) error {
	if err := ValidID(b.DeviceID); err != nil {
		return err
	}
	if err := ValidOpenID(b.OpenID); err != nil {
		return err
	}
	if b.Role == "" {
		return fmt.Errorf("%w: binding of %q to %q has no role", ErrInvalid, b.OpenID, b.DeviceID)
	}
	if err := validText("role", b.Role); err != nil {
		return err
	}
	if b.BoundAt.IsZero() {
		return fmt.Errorf("%w: binding of %q to %q has no BoundAt", ErrInvalid, b.OpenID, b.DeviceID)
	}
	return nil
}

// ValidOpenID checks a WeChat OpenID (or any user id): 1..MaxTextBytes of UTF-8 without NUL.
func ValidOpenID(id string) error {
	if id == "" {
		return fmt.Errorf("%w: empty OpenID", ErrInvalid)
	}
	return validText("OpenID", id)
}

// ValidatePush checks a push before EnqueuePushes stores it.
func ValidatePush(p actors.Push) error {
	if p.ID == "" {
		return fmt.Errorf("%w: push has no ID", ErrInvalid)
	}
	if err := validText("push ID", p.ID); err != nil {
		return err
	}
	if err := ValidOpenID(p.OpenID); err != nil {
		return err
	}
	if p.Kind == "" {
		return fmt.Errorf("%w: push %q has no kind", ErrInvalid, p.ID)
	}
	if err := validText("push kind", p.Kind); err != nil {
		return err
	}
	if err := validText("push status", p.Status); err != nil {
		return err
	}
	if p.CreatedAt.IsZero() {
		return fmt.Errorf("%w: push %q has no CreatedAt", ErrInvalid, p.ID)
	}
	return nil
}

// CleanText makes free text (an error message from a remote API) storable everywhere: invalid
// UTF-8 becomes U+FFFD and NUL bytes are dropped, rather than failing the write that carries it.
func CleanText(s string) string {
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "")
}

// ValidateCompletion checks a CompletePush or a RenewPush: a push without an ID or a lease is
// held by no lease (actors.ErrLeaseLost).
func ValidateCompletion(p actors.Push) error {
	if p.ID == "" || validText("push ID", p.ID) != nil || p.Lease == "" {
		return fmt.Errorf("push %q with lease %q: %w", p.ID, p.Lease, actors.ErrLeaseLost)
	}
	return nil
}

// ValidateStatus checks the fate CompletePush records.
func ValidateStatus(p actors.Push) error {
	if p.Status == "" {
		return fmt.Errorf("%w: push %q completed without a status", ErrInvalid, p.ID)
	}
	return validText("push status", p.Status)
}

// LeaseToken names one claim of pushes by owner (actors.Push.Lease): the owner, for operators
// reading the outbox, and a random suffix, so that the same owner's later claim of the same push
// is another lease, and a completion from the earlier one is refused.
func LeaseToken(owner string) string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return owner + "#" + hex.EncodeToString(b[:])
}
