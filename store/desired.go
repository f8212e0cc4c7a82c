package store

import (
	"encoding/json"
	"fmt"

	"github.com/sprout-iot/sprout/actors"
)

// ValidateDesired checks a desired configuration before SetDesiredConfig stores it: a known
// scope, a key that names a product or a device, and a JSON config.
func ValidateDesired(d actors.DesiredConfig) error {
	switch d.Scope {
	case actors.ScopeDevice:
		if err := ValidID(d.Key); err != nil {
			return err
		}
	case actors.ScopeProduct:
		if d.Key == "" {
			return fmt.Errorf("%w: empty product", ErrInvalid)
		}
		if err := validText("product", d.Key); err != nil {
			return err
		}
	default:
		return fmt.Errorf("%w: desired config scope %q (want %s or %s)", ErrInvalid, d.Scope, actors.ScopeProduct, actors.ScopeDevice)
	}
	if !json.Valid(d.Config) {
		return fmt.Errorf("%w: desired config of %s %q is not JSON", ErrInvalid, d.Scope, d.Key)
	}
	if d.UpdatedAt.IsZero() {
		return fmt.Errorf("%w: desired config of %s %q has no UpdatedAt", ErrInvalid, d.Scope, d.Key)
	}
	return validText("updated by", d.By)
}

// ValidateReport checks a ConfigReport before ReportConfig stores it.
func ValidateReport(r actors.ConfigReport) error {
	if err := ValidID(r.DeviceID); err != nil {
		return err
	}
	if err := validText("product", r.Product); err != nil {
		return err
	}
	for _, b := range [][]byte{r.Desired, r.Applied} {
		if b != nil && !json.Valid(b) {
			return fmt.Errorf("%w: config report of %q holds a config that is not JSON", ErrInvalid, r.DeviceID)
		}
	}
	if r.UpdatedAt.IsZero() {
		return fmt.Errorf("%w: config report of %q has no UpdatedAt", ErrInvalid, r.DeviceID)
	}
	return nil
}

// NullText is b as a nullable SQL text value.
func NullText(b []byte) *string {
	if b == nil {
		return nil
	}
	s := string(b)
	return &s
}

// TextBytes is the inverse of NullText.
func TextBytes(s *string) []byte {
	if s == nil {
		return nil
	}
	return []byte(*s)
}
