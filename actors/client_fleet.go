package actors

import (
	"context"
	"fmt"

	"github.com/sprout-iot/sprout/messages/actorpb"
)

// CancelQueued cancels a queued command that has not been sent to the pot. It returns the
// command's outcome (CANCELLED); ErrInvalid (with the grain's reason) when there is no such
// queued command or it was already sent or ended, ErrUnknownDevice, ErrUnavailable.
func (c *DeviceClient) CancelQueued(ctx context.Context, id, commandID, by string) (*actorpb.CommandOutcome, error) {
	res, err := c.request(ctx, id, &actorpb.QueuedCancel{CommandId: commandID, By: by})
	if err != nil {
		return nil, err
	}
	r, ok := res.(*actorpb.QueuedCancelResult)
	switch {
	case !ok:
		return nil, unexpected(id, res)
	case r.Error != actorpb.ErrorCode_ERROR_CODE_UNSPECIFIED:
		return r.Outcome, fmt.Errorf("device %s: %w: %s", id, ErrorOf(r.Error), r.Detail)
	}
	return r.Outcome, nil
}

// ReloadDesired tells the device's grain that its desired configuration changed in the store: it
// reads it again, stores the change and pushes it to the pot if it is online. It returns the
// grain's desired configuration state.
func (c *DeviceClient) ReloadDesired(ctx context.Context, id string) (*actorpb.DesiredConfigState, error) {
	res, err := c.request(ctx, id, &actorpb.DesiredReload{})
	if err != nil {
		return nil, err
	}
	r, ok := res.(*actorpb.DesiredReloadResult)
	switch {
	case !ok:
		return nil, unexpected(id, res)
	case r.Error != actorpb.ErrorCode_ERROR_CODE_UNSPECIFIED:
		return nil, fmt.Errorf("device %s: %w", id, ErrorOf(r.Error))
	}
	return r.State, nil
}
