package actors

import (
	"errors"
	"fmt"
	"testing"

	"github.com/sprout-iot/sprout/messages/actorpb"
)

func TestErrorCodesRoundTrip(t *testing.T) {
	for _, err := range []error{nil, ErrUnknownDevice, ErrUnavailable, ErrNotBound, ErrRevoked, ErrInvalid, ErrNotOwner} {
		wrapped := err
		if err != nil {
			wrapped = fmt.Errorf("device pot-1: %w", err)
		}
		if got := ErrorOf(CodeOf(wrapped)); !errors.Is(got, err) && !(err == nil && got == nil) {
			t.Errorf("%v: round trip gave %v", err, got)
		}
	}
	if CodeOf(errors.New("disk on fire")) != actorpb.ErrorCode_ERROR_CODE_UNAVAILABLE {
		t.Error("an unexplained error must map to UNAVAILABLE (retry), never to a definitive answer")
	}
}
