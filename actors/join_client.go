package actors

import (
	"context"
	"fmt"

	"github.com/sprout-iot/sprout/messages/actorpb"
)

// DecideJoin approves or refuses a pending request to join the device (requestID, or when empty
// the requester's openID). by is the deciding owner's OpenID (the grain checks it is the owner:
// ErrNotOwner otherwise) or JoinViaAPI / JoinViaConsole. ErrInvalid when no such request is
// pending (decided already, expired), ErrUnknownDevice, ErrRevoked or ErrUnavailable.
func (c *DeviceClient) DecideJoin(ctx context.Context, id, requestID, openID string, approve bool, by string) (*actorpb.JoinDecided, error) {
	res, err := c.request(ctx, id, &actorpb.JoinDecide{RequestId: requestID, OpenId: openID, Approve: approve, By: by})
	if err != nil {
		return nil, err
	}
	d, ok := res.(*actorpb.JoinDecided)
	switch {
	case !ok:
		return nil, unexpected(id, res)
	case d.Error != actorpb.ErrorCode_ERROR_CODE_UNSPECIFIED:
		return d, fmt.Errorf("device %s: %w", id, ErrorOf(d.Error))
	}
	return d, nil
}

// RemoveUser ends openID's binding to the device, or their pending request, on behalf of by: the
// user themself, the owner (ErrNotOwner for anyone else who is not an operator) or JoinViaAPI /
// JoinViaConsole. The user is told (unless they left themselves), and, with WeChat's device APIs,
// unbound in WeChat unless wechatUnbound says WeChat did it already. Nil if there was nothing.
func (c *DeviceClient) RemoveUser(ctx context.Context, id, openID, by string, wechatUnbound bool) error {
	res, err := c.request(ctx, id, &actorpb.JoinUnbind{OpenId: openID, By: by, WechatUnbound: wechatUnbound})
	if err != nil {
		return err
	}
	_, err = bindResult(id, res)
	return err
}

// JoinPending is openID's pending request to join the device: nil (and a nil error) when they are
// bound; ErrNotBound when they are neither bound nor waiting.
func (c *DeviceClient) JoinPending(ctx context.Context, id, openID string) (*actorpb.JoinRequest, error) {
	if openID == "" {
		return nil, fmt.Errorf("device %s: %w: no user", id, ErrInvalid)
	}
	res, err := c.request(ctx, id, &actorpb.GetState{OpenId: openID})
	if err != nil {
		return nil, err
	}
	st, ok := res.(*actorpb.DeviceState)
	switch {
	case !ok:
		return nil, unexpected(id, res)
	case st.JoinPending != nil:
		return st.JoinPending, nil
	case st.Error == actorpb.ErrorCode_ERROR_CODE_NOT_BOUND || st.Denied:
		return nil, fmt.Errorf("device %s: %w", id, ErrNotBound)
	case st.Error != actorpb.ErrorCode_ERROR_CODE_UNSPECIFIED:
		return nil, fmt.Errorf("device %s: %w", id, ErrorOf(st.Error))
	}
	return nil, nil
}
