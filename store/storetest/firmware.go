package storetest

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"testing"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/store"
)

// firmwareTests are the contract of actors.FirmwareStore, run by Run on stores that implement it.
var firmwareTests = []struct {
	name string
	fn   func(*testing.T, actors.FirmwareStore)
}{
	{"FirmwareIsStoredByProductAndVersionAndReadByRange", testFirmwareImages},
	{"FirmwareThatDoesNotMatchItsBytesIsRefused", testFirmwareInvalid},
	{"RolloutTargetsKeepTheirStageAndState", testRollouts},
}

func runFirmwareTests(t *testing.T, open Opener) {
	for _, tt := range firmwareTests {
		t.Run(tt.name, func(t *testing.T) {
			fs, ok := open(t).(actors.FirmwareStore)
			if !ok {
				t.Skip("this store does not implement actors.FirmwareStore")
			}
			tt.fn(t, fs)
		})
	}
}

func image(product, version string, data []byte, sec int) actors.FirmwareImage {
	sum := sha256.Sum256(data)
	return actors.FirmwareImage{Product: product, Version: version, Size: len(data), SHA256: sum[:],
		Signature: bytes.Repeat([]byte{7}, 64), CreatedAt: at(sec)}
}

func testFirmwareImages(t *testing.T, fs actors.FirmwareStore) {
	ctx := ctxFor(t)
	data := make([]byte, 3000)
	for i := range data {
		data[i] = byte(i * 7)
	}
	a := image("pot", "1.1.0", data, 1)
	if err := fs.PutFirmware(ctx, a, data); err != nil {
		t.Fatal(err)
	}
	// The same bytes for another product share the blob; the same version again is refused.
	if err := fs.PutFirmware(ctx, image("vase", "1.1.0", data, 2), data); err != nil {
		t.Fatal(err)
	}
	if err := fs.PutFirmware(ctx, a, data); !errors.Is(err, actors.ErrFirmwareExists) {
		t.Fatalf("second put of pot 1.1.0: %v, want ErrFirmwareExists", err)
	}
	got, err := fs.GetFirmware(ctx, "pot", "1.1.0")
	if err != nil {
		t.Fatal(err)
	}
	if got.Size != a.Size || !bytes.Equal(got.SHA256, a.SHA256) || !bytes.Equal(got.Signature, a.Signature) || !got.CreatedAt.Equal(a.CreatedAt) {
		t.Fatalf("got %+v, want %+v", got, a)
	}
	if _, err := fs.GetFirmware(ctx, "pot", "9.9.9"); !errors.Is(err, actors.ErrUnknownFirmware) {
		t.Fatalf("unknown version: %v", err)
	}
	list, err := fs.ListFirmware(ctx, "pot")
	if err != nil || len(list) != 1 {
		t.Fatalf("ListFirmware(pot) = %d images, %v", len(list), err)
	}
	if list, _ = fs.ListFirmware(ctx, ""); len(list) != 2 || list[0].Product != "vase" {
		t.Fatalf("ListFirmware() = %+v, want vase then pot", list)
	}
	for _, c := range []struct{ off, n, want int }{{0, 512, 512}, {2900, 512, 100}, {3000, 512, 0}, {5000, 10, 0}} {
		b, err := fs.ReadFirmware(ctx, a.SHA256, c.off, c.n)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) != c.want || (c.want > 0 && !bytes.Equal(b, data[c.off:c.off+c.want])) {
			t.Fatalf("ReadFirmware(%d, %d) = %d bytes, want %d of the image", c.off, c.n, len(b), c.want)
		}
	}
	if _, err := fs.ReadFirmware(ctx, make([]byte, 32), 0, 1); !errors.Is(err, actors.ErrUnknownFirmware) {
		t.Fatalf("unknown image: %v", err)
	}
}

func testFirmwareInvalid(t *testing.T, fs actors.FirmwareStore) {
	ctx := ctxFor(t)
	data := []byte("image")
	bad := image("pot", "1", data, 1)
	bad.SHA256[0] ^= 1
	if err := fs.PutFirmware(ctx, bad, data); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("wrong sha256: %v, want ErrInvalid", err)
	}
	bad = image("pot", "1", data, 1)
	bad.Size = 4
	if err := fs.PutFirmware(ctx, bad, data); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("wrong size: %v, want ErrInvalid", err)
	}
	if _, err := fs.GetFirmware(ctx, "pot", "1"); !errors.Is(err, actors.ErrUnknownFirmware) {
		t.Fatalf("a refused image was stored: %v", err)
	}
}

func testRollouts(t *testing.T, fs actors.FirmwareStore) {
	ctx := ctxFor(t)
	r := actors.Rollout{ID: "r1", Product: "pot", Version: "2", Stages: []int{10, 100}, FailureThreshold: 0.25,
		State: actors.RolloutRunning, CreatedAt: at(1), UpdatedAt: at(1)}
	var targets []actors.RolloutTarget
	for i := range 5 {
		targets = append(targets, actors.RolloutTarget{RolloutID: "r1", DeviceID: fmt.Sprintf("pot-%d", i),
			Stage: min(i, 1), State: actors.TargetPending, UpdatedAt: at(1)})
	}
	if err := fs.CreateRollout(ctx, r, targets); err != nil {
		t.Fatal(err)
	}
	if err := fs.CreateRollout(ctx, r, nil); !errors.Is(err, actors.ErrRolloutExists) {
		t.Fatalf("second create: %v, want ErrRolloutExists", err)
	}
	got, err := fs.GetRollout(ctx, "r1")
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got.Stages) != "[10 100]" || got.FailureThreshold != 0.25 || got.State != actors.RolloutRunning || !got.CreatedAt.Equal(at(1)) {
		t.Fatalf("got %+v", got)
	}
	if err := fs.UpdateRollout(ctx, "r1", actors.RolloutPaused, 1, "too many failures", at(2)); err != nil {
		t.Fatal(err)
	}
	if err := fs.UpdateRollout(ctx, "nope", actors.RolloutPaused, 1, "", at(2)); !errors.Is(err, actors.ErrUnknownRollout) {
		t.Fatalf("update unknown: %v", err)
	}
	tg := targets[3]
	tg.State, tg.Percent, tg.Reason, tg.UpdatedAt = actors.TargetFailed, 40, "bad signature", at(3)
	if err := fs.SetTargetState(ctx, tg); err != nil {
		t.Fatal(err)
	}
	if got, err := fs.GetTarget(ctx, "r1", "pot-3"); err != nil || got.State != actors.TargetFailed || got.Reason != "bad signature" {
		t.Fatalf("GetTarget = %+v, %v", got, err)
	}
	if _, err := fs.GetTarget(ctx, "r1", "pot-99"); !errors.Is(err, actors.ErrUnknownRollout) {
		t.Fatalf("GetTarget of a non-target: %v", err)
	}
	gr, gt, ok, err := fs.DeviceRollout(ctx, "pot-3")
	if err != nil || !ok {
		t.Fatalf("DeviceRollout: %v %v", ok, err)
	}
	if gr.State != actors.RolloutPaused || gr.Stage != 1 || gr.Reason != "too many failures" ||
		gt.State != actors.TargetFailed || gt.Percent != 40 || gt.Reason != "bad signature" || gt.Stage != 1 || !gt.UpdatedAt.Equal(at(3)) {
		t.Fatalf("DeviceRollout = %+v %+v", gr, gt)
	}
	ts, err := fs.RolloutTargets(ctx, "r1")
	if err != nil || len(ts) != 5 || ts[0].DeviceID != "pot-0" || ts[0].Stage != 0 || ts[1].Stage != 1 {
		t.Fatalf("RolloutTargets = %+v, %v", ts, err)
	}
	// A finished rollout no longer claims its pots.
	if err := fs.UpdateRollout(ctx, "r1", actors.RolloutAborted, 1, "", at(4)); err != nil {
		t.Fatal(err)
	}
	if _, _, ok, err := fs.DeviceRollout(ctx, "pot-3"); ok || err != nil {
		t.Fatalf("DeviceRollout after abort: %v %v", ok, err)
	}
	if _, _, ok, _ := fs.DeviceRollout(ctx, "pot-99"); ok {
		t.Fatal("a pot no rollout targets has one")
	}
	if err := fs.SetTargetState(ctx, actors.RolloutTarget{RolloutID: "r1", DeviceID: "pot-99", State: "running", UpdatedAt: at(5)}); !errors.Is(err, actors.ErrUnknownRollout) {
		t.Fatalf("set state of a non-target: %v", err)
	}
	list, err := fs.ListRollouts(ctx)
	if err != nil || len(list) != 1 {
		t.Fatalf("ListRollouts = %v, %v", list, err)
	}
}
