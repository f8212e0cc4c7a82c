package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/store"
)

// desiredTests are the contract of actors.DesiredStore, run by Run on stores that implement it.
var desiredTests = []struct {
	name string
	fn   func(*testing.T, actors.DesiredStore)
}{
	{"DesiredConfigsAreReplacedPerScopeAndKey", testDesiredConfigs},
	{"InvalidDesiredConfigIsRefused", testInvalidDesired},
	{"ConfigDriftListsOnlyDriftingPots", testConfigDrift},
}

func runDesiredTests(t *testing.T, open Opener) {
	for _, tt := range desiredTests {
		t.Run(tt.name, func(t *testing.T) {
			ds, ok := open(t).(actors.DesiredStore)
			if !ok {
				t.Skip("this store does not implement actors.DesiredStore")
			}
			tt.fn(t, ds)
		})
	}
}

func testDesiredConfigs(t *testing.T, s actors.DesiredStore) {
	ctx := context.Background()
	prod, dev, err := s.DesiredConfigs(ctx, "pot-v2", "pot-1")
	if err != nil || prod != nil || dev != nil {
		t.Fatalf("empty store: %v, %v, %v; want nothing", prod, dev, err)
	}
	put := func(scope, key, cfg string, at time.Time) {
		t.Helper()
		if err := s.SetDesiredConfig(ctx, actors.DesiredConfig{Scope: scope, Key: key, Config: []byte(cfg), UpdatedAt: at, By: "test"}); err != nil {
			t.Fatal(err)
		}
	}
	put(actors.ScopeProduct, "pot-v2", `{"reportIntervalS":60}`, t0)
	put(actors.ScopeDevice, "pot-1", `{"reportIntervalS":30}`, t0)
	put(actors.ScopeProduct, "pot-v2", `{"reportIntervalS":120}`, t0.Add(time.Second)) // replaces
	put(actors.ScopeProduct, "pot-1", `{"reportIntervalS":999}`, t0)                   // another scope: no clash
	prod, dev, err = s.DesiredConfigs(ctx, "pot-v2", "pot-1")
	if err != nil {
		t.Fatal(err)
	}
	if prod == nil || string(prod.Config) != `{"reportIntervalS":120}` || !prod.UpdatedAt.Equal(t0.Add(time.Second)) || prod.By != "test" {
		t.Errorf("product config %+v, want the second one", prod)
	}
	if dev == nil || string(dev.Config) != `{"reportIntervalS":30}` || dev.Scope != actors.ScopeDevice {
		t.Errorf("device config %+v", dev)
	}
	list, err := s.ListDesiredConfigs(ctx, actors.ScopeProduct)
	if err != nil || len(list) != 2 || list[0].Key != "pot-1" || list[1].Key != "pot-v2" {
		t.Errorf("product configs %+v, %v; want pot-1 then pot-v2", list, err)
	}
	if err := s.DeleteDesiredConfig(ctx, actors.ScopeDevice, "pot-1"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteDesiredConfig(ctx, actors.ScopeDevice, "pot-1"); err != nil {
		t.Errorf("deleting again: %v, want nil", err)
	}
	if _, dev, _ = s.DesiredConfigs(ctx, "pot-v2", "pot-1"); dev != nil {
		t.Errorf("deleted device config still there: %+v", dev)
	}
}

func testInvalidDesired(t *testing.T, s actors.DesiredStore) {
	ctx := context.Background()
	for _, d := range []actors.DesiredConfig{
		{Scope: "fleet", Key: "x", Config: []byte(`{}`), UpdatedAt: t0},
		{Scope: actors.ScopeProduct, Key: "", Config: []byte(`{}`), UpdatedAt: t0},
		{Scope: actors.ScopeDevice, Key: "has space", Config: []byte(`{}`), UpdatedAt: t0},
		{Scope: actors.ScopeDevice, Key: "pot-1", Config: []byte(`{not json`), UpdatedAt: t0},
		{Scope: actors.ScopeDevice, Key: "pot-1", Config: []byte(`{}`)},
	} {
		if err := s.SetDesiredConfig(ctx, d); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("SetDesiredConfig(%+v) = %v, want ErrInvalid", d, err)
		}
	}
	if list, err := s.ListDesiredConfigs(ctx, actors.ScopeDevice); err != nil || len(list) != 0 {
		t.Errorf("refused configs were stored: %+v, %v", list, err)
	}
	if err := s.ReportConfig(ctx, actors.ConfigReport{DeviceID: "pot-1", Desired: []byte("nope"), UpdatedAt: t0}); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("a report with a config that is not JSON: %v, want ErrInvalid", err)
	}
}

func testConfigDrift(t *testing.T, s actors.DesiredStore) {
	ctx := context.Background()
	report := func(id, product string, drift time.Time, applied string) {
		t.Helper()
		r := actors.ConfigReport{DeviceID: id, Product: product, Desired: []byte(`{"reportIntervalS":30}`),
			DriftSince: drift, UpdatedAt: t0.Add(time.Minute), LastError: "too \x00 soon"}
		if applied != "" {
			r.Applied = []byte(applied)
		}
		if err := s.ReportConfig(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	report("pot-a", "v1", t0, "")
	report("pot-b", "v1", time.Time{}, `{"reportIntervalS":30}`)
	report("pot-c", "v2", t0.Add(time.Second), `{"reportIntervalS":60}`)
	report("pot-d", "v1", t0.Add(2*time.Second), "")
	ids := func(rs []actors.ConfigReport) (out []string) {
		for _, r := range rs {
			out = append(out, r.DeviceID)
		}
		return out
	}
	all, err := s.ConfigDrift(ctx, actors.DriftQuery{})
	if err != nil || len(all) != 3 || all[0].DeviceID != "pot-a" || all[1].DeviceID != "pot-c" || all[2].DeviceID != "pot-d" {
		t.Fatalf("drift %v, %v; want pot-a, pot-c, pot-d", ids(all), err)
	}
	if !all[0].DriftSince.Equal(t0) || all[0].Applied != nil || string(all[1].Applied) != `{"reportIntervalS":60}` || all[0].Product != "v1" {
		t.Errorf("drift rows not as reported: %+v", all)
	}
	v1, err := s.ConfigDrift(ctx, actors.DriftQuery{Product: "v1", AfterID: "pot-a", Limit: 5})
	if err != nil || len(v1) != 1 || v1[0].DeviceID != "pot-d" {
		t.Errorf("drift of v1 after pot-a: %v, %v; want pot-d", ids(v1), err)
	}
	// Back in sync: gone from the drift list, still readable.
	report("pot-a", "v1", time.Time{}, `{"reportIntervalS":30}`)
	all, _ = s.ConfigDrift(ctx, actors.DriftQuery{Product: "v1"})
	if len(all) != 1 || all[0].DeviceID != "pot-d" {
		t.Errorf("drift of v1 after pot-a applied: %v, want pot-d", ids(all))
	}
	r, found, err := s.ConfigReport(ctx, "pot-a")
	if err != nil || !found || !r.DriftSince.IsZero() || string(r.Applied) != `{"reportIntervalS":30}` {
		t.Errorf("report of pot-a: %+v %v %v", r, found, err)
	}
	if _, found, err := s.ConfigReport(ctx, "pot-z"); err != nil || found {
		t.Errorf("report of an unknown pot: found %v, %v", found, err)
	}
}
