package store

import (
	"crypto/sha256"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/sprout-iot/sprout/actors"
)

// MaxReasonBytes bounds a rollout's or a target's reason as stored.
const MaxReasonBytes = 256

// ValidateFirmware checks an image before PutFirmware stores it: its SHA-256 and size match data.
func ValidateFirmware(img actors.FirmwareImage, data []byte) error {
	if err := validText("product", img.Product); err != nil {
		return err
	}
	if err := validText("version", img.Version); err != nil {
		return err
	}
	sum := sha256.Sum256(data)
	switch {
	case img.Product == "" || img.Version == "":
		return fmt.Errorf("%w: firmware needs a product and a version", ErrInvalid)
	case len(data) == 0 || img.Size != len(data):
		return fmt.Errorf("%w: firmware size %d does not match its %d bytes", ErrInvalid, img.Size, len(data))
	case string(img.SHA256) != string(sum[:]):
		return fmt.Errorf("%w: firmware sha256 does not match its bytes", ErrInvalid)
	case len(img.Signature) != 64:
		return fmt.Errorf("%w: firmware signature is %d bytes, not 64", ErrInvalid, len(img.Signature))
	case img.CreatedAt.IsZero():
		return fmt.Errorf("%w: firmware has no CreatedAt", ErrInvalid)
	}
	return nil
}

// ValidateRollout checks a rollout and its targets before CreateRollout stores them.
func ValidateRollout(r actors.Rollout, targets []actors.RolloutTarget) error {
	if err := validText("rollout id", r.ID); err != nil {
		return err
	}
	switch {
	case r.ID == "" || r.Product == "" || r.Version == "":
		return fmt.Errorf("%w: a rollout needs an id, a product and a version", ErrInvalid)
	case len(r.Stages) == 0 || r.Stage < 0 || r.Stage >= len(r.Stages):
		return fmt.Errorf("%w: rollout %q has no stage %d", ErrInvalid, r.ID, r.Stage)
	case r.CreatedAt.IsZero():
		return fmt.Errorf("%w: rollout %q has no CreatedAt", ErrInvalid, r.ID)
	}
	for _, t := range targets {
		if err := ValidID(t.DeviceID); err != nil {
			return err
		}
		if t.Stage < 0 || t.Stage >= len(r.Stages) {
			return fmt.Errorf("%w: target %s has no stage %d", ErrInvalid, t.DeviceID, t.Stage)
		}
	}
	return nil
}

// FormatStages and ParseStages store a rollout's stages as "1,10,100".
func FormatStages(st []int) string {
	s := make([]string, len(st))
	for i, p := range st {
		s[i] = strconv.Itoa(p)
	}
	return strings.Join(s, ",")
}

// ParseStages is the inverse of FormatStages.
func ParseStages(s string) []int {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if p, err := strconv.Atoi(f); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// Cut shortens a reason to MaxReasonBytes on a rune boundary.
func Cut(s string) string {
	if len(s) <= MaxReasonBytes {
		return s
	}
	n := MaxReasonBytes
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
