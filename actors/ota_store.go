package actors

import (
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"
)

// FirmwareStore is what over-the-air updates need from persistence: firmware images (content
// addressed by SHA-256) and rollouts with each targeted pot's state. store/sqlite and
// store/postgres implement it (store/storetest.Firmware is its contract); docs/ota.md.
type FirmwareStore interface {
	// PutFirmware stores an image. ErrFirmwareExists if the product already has that version.
	PutFirmware(ctx context.Context, img FirmwareImage, data []byte) error
	// GetFirmware returns an image's metadata. ErrUnknownFirmware if there is none.
	GetFirmware(ctx context.Context, product, version string) (FirmwareImage, error)
	// ListFirmware returns a product's images (all products if product is empty), newest first.
	ListFirmware(ctx context.Context, product string) ([]FirmwareImage, error)
	// ReadFirmware returns at most n bytes of the image with this SHA-256 from offset off (fewer
	// at its end, none past it). ErrUnknownFirmware if there is no such image.
	ReadFirmware(ctx context.Context, sha256 []byte, off, n int) ([]byte, error)

	// CreateRollout stores a rollout and its targets (each with its stage). ErrRolloutExists if the id is taken.
	CreateRollout(ctx context.Context, r Rollout, targets []RolloutTarget) error
	// GetRollout returns a rollout. ErrUnknownRollout if there is none.
	GetRollout(ctx context.Context, id string) (Rollout, error)
	// ListRollouts returns every rollout, newest first.
	ListRollouts(ctx context.Context) ([]Rollout, error)
	// UpdateRollout sets a rollout's state, current stage and reason. ErrUnknownRollout if there is none.
	// It sets StageOpenedAt to at when the stage changes or the rollout goes from another state to
	// running (a resumed stage gets its whole StageTimeout again).
	UpdateRollout(ctx context.Context, id string, state RolloutState, stage int, reason string, at time.Time) error
	// RolloutTargets returns a rollout's targets ordered by stage, then device id.
	RolloutTargets(ctx context.Context, id string) ([]RolloutTarget, error)
	// DeviceRollout returns the target row of the newest rollout in state running or paused that
	// targets this device, with that rollout. ok is false if there is none.
	DeviceRollout(ctx context.Context, deviceID string) (r Rollout, t RolloutTarget, ok bool, err error)
	// GetTarget returns one target of a rollout. ErrUnknownRollout if the device is not one.
	GetTarget(ctx context.Context, rolloutID, deviceID string) (RolloutTarget, error)
	// SetTargetState records a target's state. ErrUnknownRollout if the device is not a target.
	SetTargetState(ctx context.Context, t RolloutTarget) error
}

// TagStore keeps operators' tags on devices (migration 00010), for targeting rollouts and for
// finding pots. store/sqlite and store/postgres implement it (store/storetest.Tags is its contract).
type TagStore interface {
	// SetDeviceTags replaces a device's tags (none: removes them). ErrUnknownDevice if there is
	// no such device; store.ErrInvalid for a tag that is not 1..MaxTagBytes of [a-z0-9._:-].
	SetDeviceTags(ctx context.Context, id string, tags []string) error
	// DeviceTags returns a device's tags, sorted.
	DeviceTags(ctx context.Context, id string) ([]string, error)
	// TaggedDevices returns the ids of the devices with this tag, sorted.
	TaggedDevices(ctx context.Context, tag string) ([]string, error)
}

// Tag limits.
const (
	MaxTagBytes      = 64
	MaxTagsPerDevice = 16
)

// ValidTag reports whether t can be a tag: 1..MaxTagBytes of lower-case letters, digits, '.',
// '_', ':' and '-' (so that a tag is safe in a URL, a flag and a CSV cell as it is).
func ValidTag(t string) error {
	if t == "" || len(t) > MaxTagBytes {
		return fmt.Errorf("%w: tag %q must be 1..%d bytes", ErrInvalid, t, MaxTagBytes)
	}
	for _, c := range t {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-') {
			return fmt.Errorf("%w: tag %q may hold only a-z, 0-9, '.', '_', ':' and '-'", ErrInvalid, t)
		}
	}
	return nil
}

// NormalizeTags checks tags, drops duplicates and sorts them.
func NormalizeTags(tags []string) ([]string, error) {
	out := make([]string, 0, len(tags))
	for _, t := range tags {
		if err := ValidTag(t); err != nil {
			return nil, err
		}
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	if len(out) > MaxTagsPerDevice {
		return nil, fmt.Errorf("%w: %d tags, at most %d per device", ErrInvalid, len(out), MaxTagsPerDevice)
	}
	slices.Sort(out)
	return out, nil
}

// Sentinel errors of FirmwareStore.
var (
	ErrUnknownFirmware = errors.New("unknown firmware image")
	ErrFirmwareExists  = errors.New("firmware version already exists for this product")
	ErrUnknownRollout  = errors.New("unknown rollout")
	ErrRolloutExists   = errors.New("rollout already exists")
)

// FirmwareImage is a stored image's metadata; the bytes are read with ReadFirmware.
type FirmwareImage struct {
	Product   string
	Version   string
	Size      int
	SHA256    []byte // 32 bytes
	Signature []byte // 64 bytes: Ed25519 over Manifest(Product, Version, Size, SHA256)
	CreatedAt time.Time
}

// RolloutState is a rollout's life: running -> (paused <-> running) -> completed | aborted.
type RolloutState string

const (
	RolloutRunning   RolloutState = "running"
	RolloutPaused    RolloutState = "paused"
	RolloutCompleted RolloutState = "completed"
	RolloutAborted   RolloutState = "aborted"
)

// Rollout offers one image to a product's pots in stages.
type Rollout struct {
	ID      string
	Product string
	Version string
	// Stages are cumulative percentages of the targets, ascending, the last 100 (for example 1, 10, 100).
	Stages []int
	// Stage is the index in Stages being rolled out now.
	Stage int
	// FailureThreshold pauses the rollout when failed / targets-in-open-stages reaches it (0..1).
	FailureThreshold float64
	State            RolloutState
	Reason           string // why it paused, aborted or completed
	CreatedAt        time.Time
	UpdatedAt        time.Time
	// Tag is the tag the targets were chosen by ("" : the whole product, or an id list).
	Tag string
	// StageTimeout pauses the rollout when its open stage has not finished this long after it
	// opened (or was resumed); 0: never.
	StageTimeout time.Duration
	// StageOpenedAt is when the open stage opened, or the rollout was last resumed.
	StageOpenedAt time.Time
}

// Target states of a pot in a rollout (what the console and API show).
const (
	TargetPending     = "pending"     // not yet offered (its stage has not opened, or it has not connected)
	TargetOffered     = "offered"     // the offer was sent
	TargetDownloading = "downloading" // Percent says how far
	TargetVerifying   = "verifying"
	TargetRebooting   = "rebooting"
	TargetRunning     = "running"     // runs the new version (success)
	TargetFailed      = "failed"      // Reason says why
	TargetRolledBack  = "rolled_back" // the new image did not come back
	TargetDeferred    = "deferred"    // the pot declined for now (power, WiFi)
)

// TargetDone reports whether a target state is final.
func TargetDone(state string) bool {
	return state == TargetRunning || state == TargetFailed || state == TargetRolledBack
}

// TargetFailedState reports whether a final state counts as a failure.
func TargetFailedState(state string) bool {
	return state == TargetFailed || state == TargetRolledBack
}

// RolloutTarget is one pot's row in a rollout.
type RolloutTarget struct {
	RolloutID string
	DeviceID  string
	Stage     int // the index in Rollout.Stages whose opening offers it the image
	State     string
	Percent   int
	Reason    string
	UpdatedAt time.Time
}

// ManifestMagic starts every signed manifest.
const ManifestMagic = "sprout-fw-v1"

// Manifest returns the bytes an image's Ed25519 signature covers (device.proto, docs/ota.md):
// "sprout-fw-v1" 0 product 0 version 0 size(8 bytes big-endian) sha256(32 bytes).
func Manifest(product, version string, size int, sha256 []byte) []byte {
	b := make([]byte, 0, len(ManifestMagic)+len(product)+len(version)+3+8+len(sha256))
	b = append(b, ManifestMagic...)
	b = append(b, 0)
	b = append(b, product...)
	b = append(b, 0)
	b = append(b, version...)
	b = append(b, 0)
	b = binary.BigEndian.AppendUint64(b, uint64(size))
	return append(b, sha256...)
}

// VerifyFirmware checks an image's signature with the product's public key.
func VerifyFirmware(pub ed25519.PublicKey, img FirmwareImage) bool {
	return len(pub) == ed25519.PublicKeySize && len(img.Signature) == ed25519.SignatureSize &&
		ed25519.Verify(pub, Manifest(img.Product, img.Version, img.Size, img.SHA256), img.Signature)
}
