package storetest

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/store"
)

// tagTests are the contract of actors.TagStore and of what migration 00010 added to rollouts
// (tag, stage timeout, when the open stage opened), run by Run on stores that implement them.
var tagTests = []struct {
	name string
	fn   func(*testing.T, actors.Store)
}{
	{"DeviceTagsAreReplacedWholeAndFoundByTag", testDeviceTags},
	{"RolloutKeepsItsTagAndStageTimeout", testRolloutTimeoutFields},
}

func runTagTests(t *testing.T, open Opener) {
	for _, tt := range tagTests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, open(t)) })
	}
}

func testDeviceTags(t *testing.T, s actors.Store) {
	ts, ok := s.(actors.TagStore)
	if !ok {
		t.Skip("this store does not implement actors.TagStore")
	}
	ctx := ctxFor(t)
	for _, id := range []string{"pot-1", "pot-2", "pot-3"} {
		mustCreate(t, s, device(id))
	}
	if err := ts.SetDeviceTags(ctx, "pot-1", []string{"beta", "shanghai", "beta"}); err != nil {
		t.Fatal(err)
	}
	if err := ts.SetDeviceTags(ctx, "pot-2", []string{"beta"}); err != nil {
		t.Fatal(err)
	}
	if got, err := ts.DeviceTags(ctx, "pot-1"); err != nil || fmt.Sprint(got) != "[beta shanghai]" {
		t.Fatalf("DeviceTags(pot-1) = %v, %v", got, err)
	}
	if got, err := ts.TaggedDevices(ctx, "beta"); err != nil || fmt.Sprint(got) != "[pot-1 pot-2]" {
		t.Fatalf("TaggedDevices(beta) = %v, %v", got, err)
	}
	// Replaced whole: pot-1 leaves beta.
	if err := ts.SetDeviceTags(ctx, "pot-1", []string{"shanghai"}); err != nil {
		t.Fatal(err)
	}
	if got, _ := ts.TaggedDevices(ctx, "beta"); fmt.Sprint(got) != "[pot-2]" {
		t.Fatalf("after replacing: TaggedDevices(beta) = %v", got)
	}
	if err := ts.SetDeviceTags(ctx, "pot-2", nil); err != nil {
		t.Fatal(err)
	}
	if got, err := ts.DeviceTags(ctx, "pot-2"); err != nil || len(got) != 0 {
		t.Fatalf("cleared tags = %v, %v", got, err)
	}
	if err := ts.SetDeviceTags(ctx, "pot-404", []string{"beta"}); !errors.Is(err, actors.ErrUnknownDevice) {
		t.Fatalf("tags of an unknown device: %v, want ErrUnknownDevice", err)
	}
	for _, bad := range [][]string{{"Beta"}, {""}, {"a b"}, {"x'; DROP TABLE devices; --"}} {
		if err := ts.SetDeviceTags(ctx, "pot-3", bad); !errors.Is(err, store.ErrInvalid) {
			t.Fatalf("tags %q: %v, want ErrInvalid", bad, err)
		}
	}
	many := make([]string, actors.MaxTagsPerDevice+1)
	for i := range many {
		many[i] = fmt.Sprintf("t%d", i)
	}
	if err := ts.SetDeviceTags(ctx, "pot-3", many); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("%d tags: %v, want ErrInvalid", len(many), err)
	}
	if got, _ := ts.DeviceTags(ctx, "pot-3"); len(got) != 0 {
		t.Fatalf("a refused set stored %v", got)
	}
}

func testRolloutTimeoutFields(t *testing.T, s actors.Store) {
	fs, ok := s.(actors.FirmwareStore)
	if !ok {
		t.Skip("this store does not implement actors.FirmwareStore")
	}
	ctx := ctxFor(t)
	r := actors.Rollout{ID: "r1", Product: "pot", Version: "2", Stages: []int{10, 100}, FailureThreshold: 0.25,
		State: actors.RolloutRunning, CreatedAt: at(1), UpdatedAt: at(1), Tag: "beta", StageTimeout: 90 * time.Minute}
	if err := fs.CreateRollout(ctx, r, []actors.RolloutTarget{{RolloutID: "r1", DeviceID: "pot-1", State: actors.TargetPending, UpdatedAt: at(1)}}); err != nil {
		t.Fatal(err)
	}
	get := func() actors.Rollout {
		t.Helper()
		got, err := fs.GetRollout(ctx, "r1")
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := get(); got.Tag != "beta" || got.StageTimeout != 90*time.Minute || !got.StageOpenedAt.Equal(at(1)) {
		t.Fatalf("created: %+v", got)
	}
	// A pause keeps when the stage opened; a resume restarts it; a new stage restarts it.
	steps := []struct {
		state  actors.RolloutState
		stage  int
		sec    int
		opened int
	}{{actors.RolloutPaused, 0, 10, 1}, {actors.RolloutRunning, 0, 20, 20}, {actors.RolloutRunning, 0, 30, 20}, {actors.RolloutRunning, 1, 40, 40}}
	for _, st := range steps {
		if err := fs.UpdateRollout(ctx, "r1", st.state, st.stage, "", at(st.sec)); err != nil {
			t.Fatal(err)
		}
		if got := get(); !got.StageOpenedAt.Equal(at(st.opened)) {
			t.Fatalf("after %s stage %d at %d s: stage opened at %v, want %v", st.state, st.stage, st.sec, got.StageOpenedAt, at(st.opened))
		}
	}
}
