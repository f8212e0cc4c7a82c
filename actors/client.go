package actors

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/remote"

	"github.com/sprout-iot/sprout/messages/actorpb"
)

// ErrTimedOut is a grain that gave no answer before the caller's deadline (a busy member, a
// member that left, a message lost in a membership change). It is a kind of ErrUnavailable:
// errors.Is(err, ErrUnavailable) holds, and the caller should try again later.
var ErrTimedOut error = timedOut{}

type timedOut struct{}

func (timedOut) Error() string        { return "no answer from the grain in time" }
func (timedOut) Is(target error) bool { return target == ErrUnavailable }

// ClientOptions configures a DeviceClient. Zero fields take the defaults documented on each.
type ClientOptions struct {
	// Timeout bounds a call whose context has no deadline (default 5 s): no call waits forever.
	Timeout time.Duration
	// Concurrency bounds the requests one States call has in flight at once (default 16).
	Concurrency int
}

// DefaultClientTimeout is ClientOptions.Timeout's default.
const DefaultClientTimeout = 5 * time.Second

// DeviceClient is the one typed client for device grains: every edge that asks a device grain
// something (the API, the console, the pages) goes through it. Each call takes a context whose
// deadline bounds the request, and answers with the grain's reply or one of the taxonomy's
// sentinel errors (ErrUnknownDevice, ErrUnavailable or ErrTimedOut, ErrNotBound, ErrRevoked,
// ErrInvalid, ErrNotOwner), wrapped with the device id; errors never cross as strings.
type DeviceClient struct {
	cluster *cluster.Cluster
	opts    ClientOptions
}

// NewDeviceClient returns a client for the device grains of c.
func NewDeviceClient(c *cluster.Cluster, o ClientOptions) *DeviceClient {
	if o.Timeout <= 0 {
		o.Timeout = DefaultClientTimeout
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 16
	}
	return &DeviceClient{cluster: c, opts: o}
}

// request sends msg to device id's grain and waits for the reply until ctx's deadline (or the
// client's Timeout when ctx has none), or until ctx is cancelled.
func (c *DeviceClient) request(ctx context.Context, id string, msg any) (any, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.opts.Timeout)
		defer cancel()
	}
	dl, _ := ctx.Deadline()
	ttl := time.Until(dl)
	if ttl <= 0 || ctx.Err() != nil {
		return nil, fmt.Errorf("device %s: %w", id, ErrTimedOut)
	}
	type answer struct {
		res any
		err error
	}
	ch := make(chan answer, 1) // the request finishes on its own (at ttl at the latest) if ctx is cancelled
	go func() {
		res, err := c.cluster.Request(id, DeviceKind, msg, cluster.WithTimeout(ttl))
		ch <- answer{res, err}
	}()
	select {
	case a := <-ch:
		switch {
		case a.res != nil:
			return a.res, nil
		case a.err == nil, errors.Is(a.err, context.DeadlineExceeded), errors.Is(a.err, actor.ErrTimeout),
			errors.Is(a.err, remote.ErrTimeout):
			return nil, fmt.Errorf("device %s: %w", id, ErrTimedOut)
		default:
			return nil, fmt.Errorf("device %s: %w: %w", id, ErrUnavailable, a.err)
		}
	case <-ctx.Done():
		return nil, fmt.Errorf("device %s: %w (%w)", id, ErrTimedOut, ctx.Err())
	}
}

func unexpected(id string, res any) error {
	return fmt.Errorf("device %s: %w: unexpected reply %T", id, ErrUnavailable, res)
}

// State is the device's full state (the operator's view). A revoked device answers with its
// state (Revoked set); ErrUnknownDevice if there is no such device, ErrUnavailable if its grain
// could not load its state, ErrTimedOut if it did not answer in time.
func (c *DeviceClient) State(ctx context.Context, id string) (*actorpb.DeviceState, error) {
	return c.state(ctx, id, "")
}

// UserState is the device's state as WeChat user openID may see it: ErrNotBound unless the
// device's grain has openID bound (also for an unknown device: a user cannot probe for ids).
func (c *DeviceClient) UserState(ctx context.Context, id, openID string) (*actorpb.DeviceState, error) {
	if openID == "" {
		return nil, fmt.Errorf("device %s: %w: no user", id, ErrInvalid)
	}
	return c.state(ctx, id, openID)
}

func (c *DeviceClient) state(ctx context.Context, id, openID string) (*actorpb.DeviceState, error) {
	res, err := c.request(ctx, id, &actorpb.GetState{OpenId: openID})
	if err != nil {
		return nil, err
	}
	st, ok := res.(*actorpb.DeviceState)
	switch {
	case !ok:
		return nil, unexpected(id, res)
	case st.Error != actorpb.ErrorCode_ERROR_CODE_UNSPECIFIED:
		return nil, fmt.Errorf("device %s: %w", id, ErrorOf(st.Error))
	case openID != "" && st.Denied:
		return nil, fmt.Errorf("device %s: %w", id, ErrNotBound)
	case !st.Known:
		return nil, fmt.Errorf("device %s: %w", id, ErrUnknownDevice)
	}
	return st, nil
}

// StateAnswer is one device's answer to States: its state, or why there is none (Err is
// ErrUnknownDevice, ErrUnavailable, ErrTimedOut or, for UserStates, ErrNotBound).
type StateAnswer struct {
	ID    string
	State *actorpb.DeviceState
	Err   error
}

// States asks every device in ids for its state at once (at most Concurrency requests in flight)
// under ctx's one deadline, and returns one answer per id in the order of ids: a grain that is
// slow or unavailable costs its own row, never the others'.
func (c *DeviceClient) States(ctx context.Context, ids []string) []StateAnswer {
	return c.states(ctx, ids, "")
}

// UserStates is States as WeChat user openID may see the devices (UserState for each).
func (c *DeviceClient) UserStates(ctx context.Context, openID string, ids []string) []StateAnswer {
	if openID == "" {
		out := make([]StateAnswer, len(ids))
		for i, id := range ids {
			out[i] = StateAnswer{ID: id, Err: fmt.Errorf("device %s: %w: no user", id, ErrInvalid)}
		}
		return out
	}
	return c.states(ctx, ids, openID)
}

func (c *DeviceClient) states(ctx context.Context, ids []string, openID string) []StateAnswer {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.opts.Timeout)
		defer cancel()
	}
	out := make([]StateAnswer, len(ids))
	sem := make(chan struct{}, c.opts.Concurrency)
	var wg sync.WaitGroup
	for i, id := range ids {
		out[i].ID = id
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			out[i].Err = fmt.Errorf("device %s: %w", id, ErrTimedOut)
			continue
		}
		wg.Go(func() {
			defer func() { <-sem }()
			out[i].State, out[i].Err = c.state(ctx, id, openID)
		})
	}
	wg.Wait()
	return out
}

// Command runs a command on the device and waits for its one outcome; ctx's deadline must leave
// room for the command's own (cmd.TimeoutMs, default DefaultCommandTimeout), or the call ends
// with ErrTimedOut while the grain still waits for the device. The outcome's taxonomy cases come
// back as errors beside the outcome (which carries the grain's detail): UNKNOWN_DEVICE as
// ErrUnknownDevice, NOT_BOUND as ErrNotBound, REVOKED as ErrRevoked, UNAVAILABLE as
// ErrUnavailable, INVALID as ErrInvalid. Every other outcome (done, failed, offline, timed out,
// ...) is an answer from the device or about it, with a nil error.
func (c *DeviceClient) Command(ctx context.Context, id string, cmd *actorpb.SendCommand) (*actorpb.CommandOutcome, error) {
	res, err := c.request(ctx, id, cmd)
	if err != nil {
		return nil, err
	}
	out, ok := res.(*actorpb.CommandOutcome)
	if !ok {
		return nil, unexpected(id, res)
	}
	if err := outcomeError(out.Outcome); err != nil {
		return out, fmt.Errorf("device %s: %w", id, err)
	}
	return out, nil
}

// outcomeError is the taxonomy's error for the outcomes that are errors rather than answers.
func outcomeError(o actorpb.Outcome) error {
	switch o {
	case actorpb.Outcome_OUTCOME_UNKNOWN_DEVICE:
		return ErrUnknownDevice
	case actorpb.Outcome_OUTCOME_NOT_BOUND:
		return ErrNotBound
	case actorpb.Outcome_OUTCOME_REVOKED:
		return ErrRevoked
	case actorpb.Outcome_OUTCOME_UNAVAILABLE:
		return ErrUnavailable
	case actorpb.Outcome_OUTCOME_INVALID:
		return ErrInvalid
	}
	return nil
}

// Bind binds WeChat user openID to the device (the first user becomes its owner); via says how
// ("wechat_qr", "sprout_qr", "invite") for the event log. ErrUnknownDevice, ErrRevoked or
// ErrUnavailable when it could not.
func (c *DeviceClient) Bind(ctx context.Context, id, openID, via string) (*actorpb.BindResult, error) {
	res, err := c.request(ctx, id, &actorpb.BindDevice{OpenId: openID, Via: via})
	if err != nil {
		return nil, err
	}
	return bindResult(id, res)
}

// Unbind removes openID's binding to the device (nil if there was none).
func (c *DeviceClient) Unbind(ctx context.Context, id, openID string) error {
	res, err := c.request(ctx, id, &actorpb.UnbindDevice{OpenId: openID})
	if err != nil {
		return err
	}
	_, err = bindResult(id, res)
	return err
}

func bindResult(id string, res any) (*actorpb.BindResult, error) {
	br, ok := res.(*actorpb.BindResult)
	switch {
	case !ok:
		return nil, unexpected(id, res)
	case br.Ok:
		return br, nil
	case br.Code != actorpb.ErrorCode_ERROR_CODE_UNSPECIFIED:
		return nil, fmt.Errorf("device %s: %w", id, ErrorOf(br.Code))
	}
	// A grain that sets only the old error string.
	switch br.Error {
	case "unknown_device":
		return nil, fmt.Errorf("device %s: %w", id, ErrUnknownDevice)
	case "revoked":
		return nil, fmt.Errorf("device %s: %w", id, ErrRevoked)
	default:
		return nil, fmt.Errorf("device %s: %w: %s", id, ErrUnavailable, br.Error)
	}
}

// Revoke revokes the device through its grain: stored, its connection closed with
// CLOSE_REASON_DEVICE_REVOKED, and handshakes, commands and binds refused from then on. by
// ("api", "console") and reason go to the event log. It returns when the device was revoked
// (the first time, for a device revoked before); ErrUnknownDevice or ErrUnavailable otherwise.
func (c *DeviceClient) Revoke(ctx context.Context, id, by, reason string) (time.Time, error) {
	res, err := c.request(ctx, id, &actorpb.RevokeDevice{By: by, Reason: reason})
	if err != nil {
		return time.Time{}, err
	}
	rr, ok := res.(*actorpb.RevokeResult)
	switch {
	case !ok:
		return time.Time{}, unexpected(id, res)
	case rr.Error != actorpb.ErrorCode_ERROR_CODE_UNSPECIFIED:
		return time.Time{}, fmt.Errorf("device %s: %w", id, ErrorOf(rr.Error))
	}
	return time.UnixMilli(rr.RevokedAtMs).UTC(), nil
}
