package api_test

import (
	"context"
	"errors"
	"testing"

	"github.com/sprout-iot/sprout/edge/wechat/api"
	"github.com/sprout-iot/sprout/simulations/wechatsim"
)

// TestEveryDocumentedRefusalIsClassified sends a customer-service text and a template message
// through the simulated platform, which refuses each with one documented errcode, and checks
// what the client makes of it: the class the pusher acts on, and the sentinel callers match.
func TestEveryDocumentedRefusalIsClassified(t *testing.T) {
	f := setup(t, wechatsim.Options{})
	ctx := context.Background()
	u := f.follower(t, "oCLASSIFY")
	cases := []struct {
		code     int
		what     string
		want     api.Action
		sentinel error
	}{
		{-1, "system busy", api.ActionRetry, api.ErrRetryable},
		{45000, "system error (custom send)", api.ActionRetry, api.ErrRetryable},
		{45011, "minute quota", api.ActionRetry, api.ErrRetryable},
		{45009, "daily quota: not held until midnight", api.ActionFallback, api.ErrDailyQuota},
		{45015, "outside the customer-service window", api.ActionFallback, api.ErrWindowExpired},
		{45047, "over the customer-service allowance", api.ActionFallback, api.ErrOverAllowance},
		{43004, "user unfollowed", api.ActionStopUser, api.ErrNotFollowing},
		{40003, "not the account's user", api.ActionStopUser, api.ErrInvalidOpenID},
		{43101, "user refused the account's messages", api.ActionStopUser, api.ErrPermanent},
		{43019, "user blacklisted", api.ActionStopUser, api.ErrPermanent},
		{40037, "invalid template id", api.ActionStopKind, api.ErrTemplate},
		{40036, "invalid template id size", api.ActionStopKind, api.ErrTemplate},
		{47003, "template data refused", api.ActionStopKind, api.ErrTemplate},
		{48001, "API not authorised", api.ActionStopKind, api.ErrPermanent},
		{48004, "API banned", api.ActionStopKind, api.ErrPermanent},
		{40164, "IP not whitelisted", api.ActionStopKind, api.ErrPermanent},
		{44002, "empty post data (a Sprout bug)", api.ActionStopKind, nil},
		{12345, "undocumented", api.ActionStopKind, nil},
	}
	for _, tc := range cases {
		for _, call := range []struct {
			path string
			send func() error
		}{
			{"/cgi-bin/message/custom/send", func() error { return f.client.SendText(ctx, u.OpenID, "hi") }},
			{"/cgi-bin/message/template/send", func() error {
				_, err := f.client.SendTemplate(ctx, api.TemplateMessage{ToUser: u.OpenID, TemplateID: "t",
					Data: map[string]api.TemplateValue{"first": {Value: "x"}}})
				return err
			}},
		} {
			f.sim.FailNext(call.path, 1, tc.code)
			err := call.send()
			if got := api.Classify(err); got != tc.want {
				t.Errorf("%s %d (%s): class %v, want %v (err %v)", call.path, tc.code, tc.what, got, tc.want, err)
			}
			if api.Code(err) != tc.code {
				t.Errorf("%s %d: Code(err) = %d", call.path, tc.code, api.Code(err))
			}
			if tc.sentinel != nil && !errors.Is(err, tc.sentinel) {
				t.Errorf("%s %d (%s): %v is not %v", call.path, tc.code, tc.what, err, tc.sentinel)
			}
		}
	}
	// Token refusals are retried once with a fresh token by the client itself; refused again,
	// they are ActionRetry (the token grain may be mid-refresh).
	f.sim.FailNext("/cgi-bin/message/custom/send", 2, 40001)
	if err := f.client.SendText(ctx, u.OpenID, "hi"); api.Classify(err) != api.ActionRetry || !errors.Is(err, api.ErrTokenRejected) {
		t.Errorf("token refused twice: %v (class %v), want ErrTokenRejected, retry", err, api.Classify(err))
	}
	// A network failure is not WeChat's refusal: retry.
	if got := api.Classify(errors.New("connection reset")); got != api.ActionRetry {
		t.Errorf("network error: %v, want retry", got)
	}
	if got := api.Classify(nil); got != 0 {
		t.Errorf("nil: %v", got)
	}
}
