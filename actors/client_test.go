package actors_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/cluster"
	"github.com/sprout-iot/sprout/messages/actorpb"
)

// scriptedGrain stands in for device grains on a real cluster member: its answers are chosen by
// the device id, so that the client's mapping of every reply (and of no reply) is tested
// without depending on how the device grain reaches those replies.
//
//	"slow-*"    never answers
//	"blip-*"    its state could not be loaded (error UNAVAILABLE)
//	"gone-*"    unknown (known false)
//	"retired-*" revoked
//	anything else: known, online, bound to "oAlice"
type scriptedGrain struct{ id string }

func (g *scriptedGrain) Receive(ctx actor.Context) {
	if _, ok := ctx.Message().(*actor.Started); ok {
		g.id = pcluster.GetClusterIdentity(ctx).Identity
		return
	}
	if strings.HasPrefix(g.id, "slow-") {
		return
	}
	var code actorpb.ErrorCode
	switch {
	case strings.HasPrefix(g.id, "blip-"):
		code = actorpb.ErrorCode_ERROR_CODE_UNAVAILABLE
	case strings.HasPrefix(g.id, "gone-"):
		code = actorpb.ErrorCode_ERROR_CODE_UNKNOWN_DEVICE
	case strings.HasPrefix(g.id, "retired-"):
		code = actorpb.ErrorCode_ERROR_CODE_REVOKED
	}
	switch m := ctx.Message().(type) {
	case *actorpb.GetState:
		st := &actorpb.DeviceState{DeviceId: g.id, Known: true, Online: true}
		switch code {
		case actorpb.ErrorCode_ERROR_CODE_UNAVAILABLE:
			st = &actorpb.DeviceState{DeviceId: g.id, Error: code}
		case actorpb.ErrorCode_ERROR_CODE_UNKNOWN_DEVICE:
			st = &actorpb.DeviceState{DeviceId: g.id, Denied: m.OpenId != ""}
		case actorpb.ErrorCode_ERROR_CODE_REVOKED:
			st.Online, st.Revoked = false, true
		}
		if m.OpenId != "" && m.OpenId != "oAlice" {
			st = &actorpb.DeviceState{DeviceId: g.id, Known: st.Known, Denied: true}
		}
		ctx.Respond(st)
	case *actorpb.SendCommand:
		out := &actorpb.CommandOutcome{DeviceId: g.id, CommandId: m.CommandId, Outcome: actorpb.Outcome_OUTCOME_DONE, Detail: "ok"}
		switch code {
		case actorpb.ErrorCode_ERROR_CODE_UNAVAILABLE:
			out.Outcome = actorpb.Outcome_OUTCOME_UNAVAILABLE
		case actorpb.ErrorCode_ERROR_CODE_UNKNOWN_DEVICE:
			out.Outcome = actorpb.Outcome_OUTCOME_UNKNOWN_DEVICE
		case actorpb.ErrorCode_ERROR_CODE_REVOKED:
			out.Outcome, out.Detail = actorpb.Outcome_OUTCOME_REVOKED, "revoked by api"
		}
		ctx.Respond(out)
	case *actorpb.BindDevice:
		if code != actorpb.ErrorCode_ERROR_CODE_UNSPECIFIED {
			ctx.Respond(&actorpb.BindResult{Code: code})
			return
		}
		ctx.Respond(&actorpb.BindResult{Ok: true, Role: "owner"})
	case *actorpb.UnbindDevice:
		if strings.HasPrefix(g.id, "old-") { // a grain of a build that sets only the error string
			ctx.Respond(&actorpb.BindResult{Error: "revoked"})
			return
		}
		ctx.Respond(&actorpb.BindResult{Ok: code == actorpb.ErrorCode_ERROR_CODE_UNSPECIFIED, Code: code})
	case *actorpb.RevokeDevice:
		ctx.Respond(&actorpb.RevokeResult{Error: code, RevokedAtMs: 1_700_000_000_000})
	}
}

func scriptedClient(t *testing.T, o actors.ClientOptions) *actors.DeviceClient {
	t.Helper()
	kind := pcluster.NewKind(actors.DeviceKind, actor.PropsFromProducer(func() actor.Actor { return &scriptedGrain{} }))
	// The cluster logs every request that timed out: the slow grains' are expected here.
	m, err := cluster.Start(cluster.Options{Kinds: []*pcluster.Kind{kind}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Stop(true) })
	return actors.NewDeviceClient(m.Cluster, o)
}

func TestClientMapsEveryGrainAnswerToTheTaxonomy(t *testing.T) {
	c := scriptedClient(t, actors.ClientOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	if st, err := c.State(ctx, "pot-1"); err != nil || !st.Online {
		t.Errorf("State(pot-1) = %v, %v; want online", st, err)
	}
	if st, err := c.State(ctx, "retired-1"); err != nil || !st.Revoked {
		t.Errorf("State(retired-1) = %v, %v; want its state, revoked", st, err)
	}
	for id, want := range map[string]error{"gone-1": actors.ErrUnknownDevice, "blip-1": actors.ErrUnavailable} {
		if _, err := c.State(ctx, id); !errors.Is(err, want) {
			t.Errorf("State(%s) = %v, want %v", id, err, want)
		}
	}
	if _, err := c.State(ctx, "blip-2"); errors.Is(err, actors.ErrUnknownDevice) {
		t.Errorf("an unavailable grain reads as unknown: %v", err)
	}
	if _, err := c.UserState(ctx, "pot-1", "oAlice"); err != nil {
		t.Errorf("UserState(pot-1, oAlice) = %v", err)
	}
	for _, id := range []string{"pot-1", "gone-2"} { // an unknown id reads as not bound: no probing
		if _, err := c.UserState(ctx, id, "oMallory"); !errors.Is(err, actors.ErrNotBound) {
			t.Errorf("UserState(%s, oMallory) = %v, want ErrNotBound", id, err)
		}
	}

	for id, want := range map[string]error{"pot-2": nil, "gone-3": actors.ErrUnknownDevice,
		"blip-3": actors.ErrUnavailable, "retired-2": actors.ErrRevoked} {
		out, err := c.Command(ctx, id, &actorpb.SendCommand{CommandId: "c1"})
		if !errors.Is(err, want) || out == nil {
			t.Errorf("Command(%s) = %v, %v; want an outcome and %v", id, out, err, want)
		}
	}
	if out, _ := c.Command(ctx, "retired-3", &actorpb.SendCommand{CommandId: "c1"}); out.GetDetail() != "revoked by api" {
		t.Errorf("a refused command lost the grain's detail: %v", out)
	}

	if br, err := c.Bind(ctx, "pot-3", "oAlice", "test"); err != nil || br.Role != "owner" {
		t.Errorf("Bind(pot-3) = %v, %v", br, err)
	}
	for id, want := range map[string]error{"gone-4": actors.ErrUnknownDevice, "retired-4": actors.ErrRevoked, "blip-4": actors.ErrUnavailable} {
		if _, err := c.Bind(ctx, id, "oAlice", "test"); !errors.Is(err, want) {
			t.Errorf("Bind(%s) = %v, want %v", id, err, want)
		}
	}
	if err := c.Unbind(ctx, "pot-3", "oAlice"); err != nil {
		t.Errorf("Unbind(pot-3) = %v", err)
	}
	if err := c.Unbind(ctx, "old-1", "oAlice"); !errors.Is(err, actors.ErrRevoked) {
		t.Errorf("Unbind from a grain with only the error string = %v, want ErrRevoked", err)
	}

	if at, err := c.Revoke(ctx, "pot-4", "test", ""); err != nil || !at.Equal(time.UnixMilli(1_700_000_000_000)) {
		t.Errorf("Revoke(pot-4) = %v, %v", at, err)
	}
	if _, err := c.Revoke(ctx, "gone-5", "test", ""); !errors.Is(err, actors.ErrUnknownDevice) {
		t.Errorf("Revoke(gone-5) = %v, want ErrUnknownDevice", err)
	}
}

func TestClientNeverWaitsPastTheDeadline(t *testing.T) {
	c := scriptedClient(t, actors.ClientOptions{Timeout: 300 * time.Millisecond})
	// No deadline in the context: the client's Timeout bounds the call.
	start := time.Now()
	_, err := c.State(context.Background(), "slow-1")
	if !errors.Is(err, actors.ErrTimedOut) || !errors.Is(err, actors.ErrUnavailable) {
		t.Fatalf("State of a grain that never answers = %v, want ErrTimedOut (an ErrUnavailable)", err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("the call took %v with a 300ms timeout", took)
	}
	// A cancelled context ends the call at once.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Command(ctx, "slow-1", &actorpb.SendCommand{CommandId: "c"}); !errors.Is(err, actors.ErrTimedOut) {
		t.Fatalf("Command with a cancelled context = %v, want ErrTimedOut", err)
	}
}

func TestStatesAnswersEveryDeviceUnderOneDeadline(t *testing.T) {
	c := scriptedClient(t, actors.ClientOptions{Concurrency: 8})
	ids := []string{"pot-1", "slow-1", "gone-1", "slow-2", "blip-1", "pot-2", "slow-3", "slow-4", "slow-5", "slow-6", "pot-3"}
	const deadline = 500 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	start := time.Now()
	got := c.States(ctx, ids)
	took := time.Since(start)
	// Six silent grains: one after the other they would take 6 deadlines.
	if took > 2*deadline+time.Second {
		t.Errorf("States took %v under a %v deadline", took, deadline)
	}
	if len(got) != len(ids) {
		t.Fatalf("%d answers for %d ids", len(got), len(ids))
	}
	for i, a := range got {
		if a.ID != ids[i] {
			t.Fatalf("answer %d is for %s, want %s", i, a.ID, ids[i])
		}
		var want error
		switch {
		case strings.HasPrefix(a.ID, "slow-"):
			want = actors.ErrTimedOut
		case strings.HasPrefix(a.ID, "gone-"):
			want = actors.ErrUnknownDevice
		case strings.HasPrefix(a.ID, "blip-"):
			want = actors.ErrUnavailable
		}
		if want == nil && (a.Err != nil || a.State == nil || !a.State.Online) {
			t.Errorf("%s: %v, %v; want its state", a.ID, a.State, a.Err)
		}
		if want != nil && !errors.Is(a.Err, want) {
			t.Errorf("%s: %v, want %v", a.ID, a.Err, want)
		}
	}
	for _, a := range c.UserStates(context.Background(), "oMallory", []string{"pot-1", "gone-1"}) {
		if !errors.Is(a.Err, actors.ErrNotBound) {
			t.Errorf("UserStates(oMallory) %s: %v, want ErrNotBound", a.ID, a.Err)
		}
	}
}

func TestErrorTextsCoverTheTaxonomy(t *testing.T) {
	for _, lang := range []string{actors.LangZH, actors.LangEN} {
		seen := map[string]bool{}
		for _, err := range []error{actors.ErrUnknownDevice, actors.ErrUnavailable, actors.ErrTimedOut, actors.ErrNotBound,
			actors.ErrRevoked, actors.ErrInvalid, actors.ErrNotOwner} {
			s := actors.ErrorText(lang, errors.Join(errors.New("device pot-9"), err), "pot-9")
			if !strings.Contains(s, "pot-9") || strings.Contains(s, "%!") || seen[s] {
				t.Errorf("%s %v: %q (each error its own sentence, naming the pot)", lang, err, s)
			}
			seen[s] = true
		}
		if got, want := actors.ErrorText(lang, errors.New("disk on fire"), "p"), actors.ErrorText(lang, actors.ErrUnavailable, "p"); got != want {
			t.Errorf("%s: an unexplained error reads %q, want the unavailable text %q", lang, got, want)
		}
	}
}
