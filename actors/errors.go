package actors

import (
	"errors"

	"github.com/sprout-iot/sprout/messages/actorpb"
)

// The outcomes a caller of a grain must branch on, beside ErrUnknownDevice and ErrUnavailable
// (store.go). They cross the actor boundary as actorpb.ErrorCode (CodeOf, ErrorOf) and are mapped
// once to HTTP status codes and once to WeChat texts.
var (
	ErrNotBound = errors.New("not bound to this device")
	ErrRevoked  = errors.New("device revoked")
	ErrInvalid  = errors.New("invalid request")
	ErrNotOwner = errors.New("only the device's owner may do this")
)

// CodeOf is the wire code of err (ERROR_CODE_UNSPECIFIED for nil; UNAVAILABLE for any error that
// is none of the sentinels: an unexplained failure is worth retrying, never a definitive answer).
func CodeOf(err error) actorpb.ErrorCode {
	switch {
	case err == nil:
		return actorpb.ErrorCode_ERROR_CODE_UNSPECIFIED
	case errors.Is(err, ErrUnknownDevice):
		return actorpb.ErrorCode_ERROR_CODE_UNKNOWN_DEVICE
	case errors.Is(err, ErrNotBound):
		return actorpb.ErrorCode_ERROR_CODE_NOT_BOUND
	case errors.Is(err, ErrRevoked):
		return actorpb.ErrorCode_ERROR_CODE_REVOKED
	case errors.Is(err, ErrInvalid):
		return actorpb.ErrorCode_ERROR_CODE_INVALID
	case errors.Is(err, ErrNotOwner):
		return actorpb.ErrorCode_ERROR_CODE_NOT_OWNER
	default:
		return actorpb.ErrorCode_ERROR_CODE_UNAVAILABLE
	}
}

// ErrorOf is the sentinel error of a wire code (nil for ERROR_CODE_UNSPECIFIED; ErrUnavailable
// for a code this build does not know).
func ErrorOf(c actorpb.ErrorCode) error {
	switch c {
	case actorpb.ErrorCode_ERROR_CODE_UNSPECIFIED:
		return nil
	case actorpb.ErrorCode_ERROR_CODE_UNKNOWN_DEVICE:
		return ErrUnknownDevice
	case actorpb.ErrorCode_ERROR_CODE_NOT_BOUND:
		return ErrNotBound
	case actorpb.ErrorCode_ERROR_CODE_REVOKED:
		return ErrRevoked
	case actorpb.ErrorCode_ERROR_CODE_INVALID:
		return ErrInvalid
	case actorpb.ErrorCode_ERROR_CODE_NOT_OWNER:
		return ErrNotOwner
	default:
		return ErrUnavailable
	}
}
