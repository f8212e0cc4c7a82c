package bridge

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/edge/wechat/api"
	"github.com/sprout-iot/sprout/messages/actorpb"
)

// Reconciliation keeps WeChat's device bindings in step with Sprout's (docs/wechat.md, "Bindings
// in step"). Sprout is the source of truth: every pot's users on WeChat's device platform
// (/device/get_openid) are compared with its bindings in Sprout, and every bound user's devices
// on WeChat (/device/get_bind_device) with Sprout's registry. A user WeChat has and Sprout has
// not is unbound in WeChat (/device/compel_unbind), except a requester waiting for the owner
// (who keeps the WeChat binding their scan made); a binding Sprout has and WeChat lacks is made
// there (/device/compel_bind). Repairs go through the push outbox (durable, retried). One pass
// runs per interval in the whole cluster: the reconciler is a grain (one activation), poked by
// every node, that runs a pass only when the interval has passed since the last.

// ReconcileKind is the cluster kind of the reconciler grain; ReconcileIdentity its one identity.
const (
	ReconcileKind     = "wxreconcile"
	ReconcileIdentity = "wechat"
)

// DefaultReconcileInterval is ReconcileOptions.Interval's default.
const DefaultReconcileInterval = time.Hour

// WeChatBindings is what reconciliation asks WeChat (api.Client implements it).
type WeChatBindings interface {
	GetOpenID(ctx context.Context, deviceType, deviceID string) ([]string, error)
	GetBindDevice(ctx context.Context, openID string) ([]api.BoundDevice, error)
}

// ReconcileOptions configure the reconciler.
type ReconcileOptions struct {
	Store actors.Store
	Users actors.UserStore
	// WeChat returns the client of WeChat's device APIs (made once, on the grain's first pass).
	WeChat func(c *pcluster.Cluster) (WeChatBindings, error)
	// DeviceType is the account's device type (its gh_ id) for get_openid.
	DeviceType string
	// Interval between passes (default 1 h, SPROUT_WECHAT_RECONCILE_INTERVAL).
	Interval time.Duration
	// CallTimeout bounds each WeChat call (default 10 s).
	CallTimeout time.Duration
	// Pushed, if set, wakes the node's pusher after repairs were enqueued.
	Pushed func()
	// Report, if set, receives every pass's report (the console, tests).
	Report func(ReconcileReport)
	Now    func() time.Time
	Logger *slog.Logger
}

// ReconcileReport is what one pass found and did.
type ReconcileReport struct {
	Start, End  time.Time
	Devices     int      // pots compared
	Users       int      // users whose WeChat device list was compared
	Unbound     int      // compel_unbind enqueued (WeChat had a binding Sprout has not)
	Bound       int      // compel_bind enqueued (Sprout had a binding WeChat lacked)
	Kept        int      // WeChat bindings of requesters waiting for the owner, kept
	NotInWeChat int      // pots WeChat's device platform does not know (get_openid ret_code -1)
	Errors      int      // calls that failed (their pots or users are compared again next pass)
	Drift       []string // "unbind openid device" / "bind openid device", at most 100
}

var driftRepaired atomic.Int64
var lastReport atomic.Pointer[ReconcileReport]

// DriftRepaired is how many bindings reconciliation repaired in this process since it started.
func DriftRepaired() int64 { return driftRepaired.Load() }

// LastReconcile is the last pass this process ran (nil before the first).
func LastReconcile() *ReconcileReport { return lastReport.Load() }

type reconcileDone struct{ r ReconcileReport }

// NewReconcileKind returns the reconciler grain's kind.
func NewReconcileKind(o ReconcileOptions) *pcluster.Kind {
	if o.Interval <= 0 {
		o.Interval = DefaultReconcileInterval
	}
	if o.CallTimeout <= 0 {
		o.CallTimeout = 10 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return pcluster.NewKind(ReconcileKind, actor.PropsFromProducer(func() actor.Actor { return &reconciler{opts: &o} }))
}

// PokeReconciler sends the reconciler grain a tick every interval until ctx ends (every node
// runs it, so the grain comes back on another node if its node dies).
func PokeReconciler(ctx context.Context, c *pcluster.Cluster, interval time.Duration) {
	if interval <= 0 {
		interval = DefaultReconcileInterval
	}
	poke := func() {
		if pid := c.Get(ReconcileIdentity, ReconcileKind); pid != nil {
			c.ActorSystem.Root.Send(pid, &actorpb.JoinReconcileTick{})
		}
	}
	poke()
	t := time.NewTicker(min(interval/4, 5*time.Minute))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			poke()
		}
	}
}

type reconciler struct {
	opts    *ReconcileOptions
	client  WeChatBindings
	last    time.Time
	running bool
	cancel  context.CancelFunc
}

func (r *reconciler) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Stopping:
		if r.cancel != nil {
			r.cancel()
		}
	case *actorpb.JoinReconcileTick:
		r.tick(ctx)
		if ctx.Sender() != nil {
			st := &actorpb.JoinReconcileState{Running: r.running}
			if !r.last.IsZero() {
				st.LastStartMs = r.last.UnixMilli()
			}
			ctx.Respond(st)
		}
	case *reconcileDone:
		r.running = false
		r.cancel()
		rep := m.r
		lastReport.Store(&rep)
		driftRepaired.Add(int64(rep.Unbound + rep.Bound))
		lvl := slog.LevelInfo
		if rep.Unbound+rep.Bound > 0 || rep.Errors > 0 {
			lvl = slog.LevelWarn
		}
		r.opts.Logger.Log(context.Background(), lvl, "wechat reconciliation", "devices", rep.Devices, "users", rep.Users,
			"unbound_in_wechat", rep.Unbound, "bound_in_wechat", rep.Bound, "pending_kept", rep.Kept, "not_in_wechat", rep.NotInWeChat, "errors", rep.Errors,
			"took", rep.End.Sub(rep.Start).Round(time.Millisecond), "drift", rep.Drift)
		if r.opts.Report != nil {
			r.opts.Report(rep)
		}
	}
}

// tick starts a pass when none runs and the interval has passed since the last.
func (r *reconciler) tick(ctx actor.Context) {
	if r.running || (!r.last.IsZero() && r.opts.Now().Sub(r.last) < r.opts.Interval) {
		return
	}
	if r.client == nil {
		c, err := r.opts.WeChat(pcluster.GetCluster(ctx.ActorSystem()))
		if err != nil {
			r.opts.Logger.Warn("wechat reconciliation: no WeChat client", "err", err)
			return
		}
		r.client = c
	}
	r.running, r.last = true, r.opts.Now()
	pctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	root, self, cl := ctx.ActorSystem().Root, ctx.Self(), pcluster.GetCluster(ctx.ActorSystem())
	go func() {
		rep := Reconcile(pctx, cl, r.client, r.opts)
		root.Send(self, &reconcileDone{r: rep})
	}()
}

// Reconcile runs one pass: every pot in the registry, then every user bound in Sprout.
func Reconcile(ctx context.Context, c *pcluster.Cluster, wx WeChatBindings, o *ReconcileOptions) ReconcileReport {
	rep := ReconcileReport{Start: o.Now()}
	stamp := rep.Start.UTC().Format(time.RFC3339)
	devices := actors.NewDeviceClient(c, actors.ClientOptions{})
	var pushes []actors.Push
	repair := func(kind, openID, deviceID string) {
		payload, _ := json.Marshal(actors.PushPayload{DeviceID: deviceID})
		id := sha256.Sum256(fmt.Appendf(nil, "reconcile|%s|%s|%s|%s", kind, openID, deviceID, stamp))
		pushes = append(pushes, actors.Push{ID: hex.EncodeToString(id[:16]),
			OpenID: openID, Kind: kind, Payload: payload,
			CreatedAt: o.Now(), Status: actors.PushPending})
		verb := "unbind"
		if kind == actors.PushCompelBind {
			verb, rep.Bound = "bind", rep.Bound+1
		} else {
			rep.Unbound++
		}
		if len(rep.Drift) < 100 {
			rep.Drift = append(rep.Drift, verb+" "+openID+" "+deviceID)
		}
	}
	call := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, o.CallTimeout) }
	users := map[string]bool{}
	after := ""
	for ctx.Err() == nil {
		cctx, cancel := call()
		page, err := o.Store.ListDevices(cctx, actors.ListQuery{AfterID: after, Limit: 500})
		cancel()
		if err != nil {
			rep.Errors++
			o.Logger.Warn("wechat reconciliation: listing devices failed", "err", err)
			break
		}
		for _, d := range page {
			rep.Devices++
			cctx, cancel := call()
			sprout, err := o.Users.DeviceBindings(cctx, d.ID)
			var inWeChat []string
			if err == nil {
				inWeChat, err = wx.GetOpenID(cctx, o.DeviceType, d.ID)
			}
			cancel()
			var apiErr *api.Error
			if errors.As(err, &apiErr) && apiErr.Code == -1 && apiErr.API == "/device/get_openid" {
				rep.NotInWeChat++ // not a device of WeChat's platform (resp_msg ret_code -1): nothing to keep in step
				continue
			}
			if err != nil {
				rep.Errors++
				o.Logger.Warn("wechat reconciliation: comparing a pot failed", "device", d.ID, "err", err)
				continue
			}
			bound := map[string]bool{}
			for _, b := range sprout {
				bound[b.OpenID], users[b.OpenID] = true, true
				if !slices.Contains(inWeChat, b.OpenID) {
					repair(actors.PushCompelBind, b.OpenID, d.ID)
				}
			}
			for _, openID := range inWeChat {
				if bound[openID] {
					continue
				}
				cctx, cancel := call()
				j, err := devices.JoinPending(cctx, d.ID, openID)
				cancel()
				switch {
				case err == nil && j != nil:
					rep.Kept++ // waiting for the owner: their WeChat binding stays (docs/wechat.md)
				case err == nil || errors.Is(err, actors.ErrNotBound) || errors.Is(err, actors.ErrUnknownDevice) || errors.Is(err, actors.ErrRevoked):
					repair(actors.PushCompelUnbind, openID, d.ID)
				default:
					rep.Errors++
				}
			}
		}
		if len(page) < 500 {
			break
		}
		after = page[len(page)-1].ID
	}
	// Devices WeChat lists for Sprout's users that Sprout does not know at all.
	for openID := range users {
		if ctx.Err() != nil {
			break
		}
		rep.Users++
		cctx, cancel := call()
		list, err := wx.GetBindDevice(cctx, openID)
		cancel()
		if err != nil {
			rep.Errors++
			continue
		}
		for _, d := range list {
			if o.DeviceType != "" && d.DeviceType != "" && d.DeviceType != o.DeviceType {
				continue // another account's device type
			}
			cctx, cancel := call()
			_, err := o.Store.GetDevice(cctx, d.DeviceID)
			cancel()
			if errors.Is(err, actors.ErrUnknownDevice) {
				repair(actors.PushCompelUnbind, openID, d.DeviceID)
			}
		}
	}
	if len(pushes) > 0 {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), o.CallTimeout)
		err := o.Users.EnqueuePushes(cctx, pushes)
		cancel()
		if err != nil {
			rep.Errors++
			o.Logger.Error("wechat reconciliation: enqueuing repairs failed; the next pass finds them again", "count", len(pushes), "err", err)
		} else if o.Pushed != nil {
			o.Pushed()
		}
	}
	rep.End = o.Now()
	return rep
}
