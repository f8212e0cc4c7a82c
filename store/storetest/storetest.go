// Package storetest is the contract every actors.Store backend must meet, written once and run
// against each backend by a thin test file beside it (store/sqlite/sqlite_test.go,
// store/postgres/postgres_test.go). A behaviour a grain or an edge relies on belongs here, not in a
// backend's own tests; only what cannot be said for every backend (a data-directory lock, a
// database restart) is tested beside the backend.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/store"
)

// Opener returns a new, empty store for one test and arranges for it to be closed (t.Cleanup).
// Closing an already closed store must be harmless.
type Opener func(t *testing.T) actors.Store

// Run runs the whole contract against the stores open returns, one fresh store per subtest:
// actors.Store, and actors.UserStore and store.Maintainer when the store implements them.
func Run(t *testing.T, open Opener) {
	tests := []struct {
		name string
		fn   func(*testing.T, actors.Store)
	}{
		{"CreatedDeviceIsReturnedUnchanged", testCreateGet},
		{"CreatingATakenIDFailsWithErrDeviceExists", testCreateTaken},
		{"UnknownDeviceFailsWithErrUnknownDevice", testUnknownDevice},
		{"InvalidDeviceIsRefused", testInvalidDevice},
		{"RevokedDeviceKeepsFirstRevocationTime", testRevoke},
		{"ListDevicesPagesInByteOrder", testListDevices},
		{"DeviceWithoutHistoryLoadsAsZero", testLoadEmpty},
		{"AppendThenLoadDeviceRecoversState", testAppendLoad},
		{"LastSeqCountsReadingsAndDeviceEvents", testLastSeq},
		{"DuplicateReadingsAreIgnored", testDuplicateReadings},
		{"DuplicateDeviceEventsAreIgnored", testDuplicateEvents},
		{"SnapshotIsReplacedOrKept", testSnapshot},
		{"EmptyAppendIsANoOp", testEmptyAppend},
		{"DevicesDoNotSeeEachOther", testIsolation},
		{"ReadingsHonourTimeRangeBoundaries", testReadingsRange},
		{"ReadingsRoundTripEveryField", testReadingFields},
		{"EventsHonourTimeRangeBoundaries", testEventsRange},
		{"BucketsAggregateInSQL", testBuckets},
		{"BucketsRefuseBadWidths", testBucketWidths},
		{"HostileTextIsStoredUnchanged", testHostile},
		{"InvalidAppendFailsAloneAndOthersAreStored", testInvalidAppendIsolated},
		{"ConcurrentAppendsAreAllDurable", testConcurrentAppends},
		{"CancelledAppendIsNotStored", testCancelledAppend},
		{"AppendAfterCloseIsUnavailable", testAppendAfterClose},
		{"SupersededActivationIsFenced", testFencing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, open(t)) })
	}
	runUserTests(t, open)
	runRetentionTests(t, open)
	runDesiredTests(t, open)
	runFirmwareTests(t, open)
	runTagTests(t, open)
	runLayoutTests(t, open)
}

// t0 is the base time of every test: a round microsecond, since stores keep microseconds.
var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func at(sec int) time.Time { return t0.Add(time.Duration(sec) * time.Second) }

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func reading(seq uint64, sec int) actors.Reading {
	return actors.Reading{
		Seq:             seq,
		DeviceTime:      at(sec).Add(-time.Second),
		ReceivedAt:      at(sec),
		SoilMoisture:    float32(seq%100) + 0.25,
		Temperature:     20 + float32(seq%10)/4,
		TankLevel:       50.5,
		SupplyMillivolt: 3300,
	}
}

func deviceEvent(seq uint64, sec int) actors.Event {
	return actors.Event{At: at(sec), Kind: actors.EventKindDevice, Seq: seq, Body: []byte(fmt.Sprintf(`{"seq":"%d"}`, seq))}
}

func mustAppend(t *testing.T, s actors.Store, id string, b actors.Batch) {
	t.Helper()
	if err := s.Append(ctxFor(t), id, b); err != nil {
		t.Fatalf("Append(%q): %v", id, err)
	}
}

func mustCreate(t *testing.T, s actors.Store, d actors.Device) {
	t.Helper()
	if err := s.CreateDevice(ctxFor(t), d); err != nil {
		t.Fatalf("CreateDevice(%q): %v", d.ID, err)
	}
}

func device(id string) actors.Device {
	return actors.Device{ID: id, Product: "pot-v1", Secret: []byte("s3cret-" + id), CreatedAt: t0}
}

func sameFloat(a, b float32) bool { return a == b || (a != a && b != b) }

func sameReading(a, b actors.Reading) bool {
	return a.Seq == b.Seq && a.DeviceTime.Equal(b.DeviceTime) && a.ReceivedAt.Equal(b.ReceivedAt) &&
		sameFloat(a.SoilMoisture, b.SoilMoisture) && sameFloat(a.Temperature, b.Temperature) &&
		sameFloat(a.TankLevel, b.TankLevel) && a.SupplyMillivolt == b.SupplyMillivolt
}

func checkReadings(t *testing.T, got, want []actors.Reading) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d readings %v, want %d %v", len(got), seqs(got), len(want), seqs(want))
	}
	for i := range want {
		if !sameReading(got[i], want[i]) {
			t.Fatalf("reading %d:\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}
}

func seqs(rs []actors.Reading) []uint64 {
	out := make([]uint64, len(rs))
	for i, r := range rs {
		out[i] = r.Seq
	}
	return out
}

func sameEvent(a, b actors.Event) bool {
	return a.At.Equal(b.At) && a.Kind == b.Kind && a.Seq == b.Seq && bytes.Equal(a.Body, b.Body) && (a.Body == nil) == (b.Body == nil)
}

func checkEvents(t *testing.T, got, want []actors.Event) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d events %+v, want %d %+v", len(got), got, len(want), want)
	}
	for i := range want {
		if !sameEvent(got[i], want[i]) {
			t.Fatalf("event %d:\n got %+v (body %q)\nwant %+v (body %q)", i, got[i], got[i].Body, want[i], want[i].Body)
		}
	}
}

func sameDevice(a, b actors.Device) bool {
	return a.ID == b.ID && a.Product == b.Product && bytes.Equal(a.Secret, b.Secret) &&
		a.CreatedAt.Equal(b.CreatedAt) && a.RevokedAt.Equal(b.RevokedAt)
}

// hostileIDs are device ids that break naive quoting, LIKE patterns, collations or encodings.
var hostileIDs = []string{
	`plain-001`,
	`it's`,
	`"double"`,
	`back\slash\`,
	`';DROP+TABLE+devices;--`,
	`100%_like`,
	`emoji-🌱🪴`,
	`中文设备-植物`,
	`Ünïcödé-é`, // precomposed and combining: must not be normalised
	`$1?1:name@p`,
	strings.Repeat("x", store.MaxDeviceIDBytes),
}

func testCreateGet(t *testing.T, s actors.Store) {
	ctx := ctxFor(t)
	for i, id := range hostileIDs {
		d := actors.Device{
			ID: id, Product: "pot \"v1\" 植物 🌱 \\", Secret: []byte{0, 1, 0xff, 0, '\'', '\\'},
			CreatedAt: t0.Add(time.Duration(i) * time.Microsecond),
		}
		mustCreate(t, s, d)
		got, err := s.GetDevice(ctx, id)
		if err != nil {
			t.Fatalf("GetDevice(%q): %v", id, err)
		}
		if !sameDevice(got, d) || got.Revoked() {
			t.Fatalf("GetDevice(%q) =\n %+v, want\n %+v", id, got, d)
		}
		if got.CreatedAt.Location() != time.UTC {
			t.Errorf("CreatedAt in %v, want UTC", got.CreatedAt.Location())
		}
	}
	// A device created already revoked (an import) keeps its revocation.
	d := device("born-revoked")
	d.RevokedAt = at(5)
	mustCreate(t, s, d)
	if got, err := s.GetDevice(ctx, d.ID); err != nil || !sameDevice(got, d) || !got.Revoked() {
		t.Fatalf("GetDevice = %+v, %v; want %+v", got, err, d)
	}
	// A nil secret is stored as empty.
	d = device("no-secret")
	d.Secret = nil
	mustCreate(t, s, d)
	if got, err := s.GetDevice(ctx, d.ID); err != nil || len(got.Secret) != 0 {
		t.Fatalf("GetDevice = %+v, %v; want an empty secret", got, err)
	}
}

func testCreateTaken(t *testing.T, s actors.Store) {
	ctx := ctxFor(t)
	d := device("pot-1")
	mustCreate(t, s, d)
	other := device("pot-1")
	other.Product, other.Secret = "other", []byte("other")
	if err := s.CreateDevice(ctx, other); !errors.Is(err, actors.ErrDeviceExists) {
		t.Fatalf("second CreateDevice = %v, want ErrDeviceExists", err)
	}
	if got, _ := s.GetDevice(ctx, d.ID); !sameDevice(got, d) {
		t.Fatalf("after a refused create the device is %+v, want the original %+v", got, d)
	}
}

func testUnknownDevice(t *testing.T, s actors.Store) {
	ctx := ctxFor(t)
	mustCreate(t, s, device("known"))
	for _, id := range []string{"unknown", "KNOWN", "known ", "", "kno\x00wn", "\xff\xfe"} {
		if _, err := s.GetDevice(ctx, id); !errors.Is(err, actors.ErrUnknownDevice) {
			t.Errorf("GetDevice(%q) = %v, want ErrUnknownDevice", id, err)
		}
		if err := s.RevokeDevice(ctx, id, t0); !errors.Is(err, actors.ErrUnknownDevice) {
			t.Errorf("RevokeDevice(%q) = %v, want ErrUnknownDevice", id, err)
		}
	}
}

func testInvalidDevice(t *testing.T, s actors.Store) {
	ctx := ctxFor(t)
	bad := []actors.Device{
		{ID: "", Product: "p", CreatedAt: t0},
		{ID: "nul\x00id", Product: "p", CreatedAt: t0},
		{ID: "bad-utf8-\xff", Product: "p", CreatedAt: t0},
		// store.ValidID: no whitespace, slashes or control characters (C0, DEL, C1).
		{ID: "tab\tnew\nline", Product: "p", CreatedAt: t0},
		{ID: "a space", Product: "p", CreatedAt: t0},
		{ID: "a/slash", Product: "p", CreatedAt: t0},
		{ID: "csi-\u009b2J", Product: "p", CreatedAt: t0},
		{ID: "esc-\x1b[2J", Product: "p", CreatedAt: t0},
		{ID: "del-\x7f", Product: "p", CreatedAt: t0},
		{ID: strings.Repeat("x", store.MaxDeviceIDBytes+1), Product: "p", CreatedAt: t0},
		{ID: "nul-product", Product: "p\x00", CreatedAt: t0},
		{ID: "no-created-at", Product: "p"},
	}
	for _, d := range bad {
		if err := s.CreateDevice(ctx, d); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("CreateDevice(%q, product %q) = %v, want ErrInvalid", d.ID, d.Product, err)
		}
	}
	if got, err := s.ListDevices(ctx, actors.ListQuery{}); err != nil || len(got) != 0 {
		t.Fatalf("after refused creates ListDevices = %v, %v; want none", got, err)
	}
}

func testRevoke(t *testing.T, s actors.Store) {
	ctx := ctxFor(t)
	mustCreate(t, s, device("pot-1"))
	mustCreate(t, s, device("pot-2"))
	if err := s.RevokeDevice(ctx, "pot-1", at(10)); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeDevice(ctx, "pot-1", at(20)); err != nil {
		t.Fatalf("revoking again: %v", err)
	}
	got, err := s.GetDevice(ctx, "pot-1")
	if err != nil || !got.Revoked() || !got.RevokedAt.Equal(at(10)) {
		t.Fatalf("GetDevice = %+v, %v; want revoked at %v", got, err, at(10))
	}
	if got, _ := s.GetDevice(ctx, "pot-2"); got.Revoked() {
		t.Fatalf("revoking pot-1 revoked pot-2: %+v", got)
	}
	list, err := s.ListDevices(ctx, actors.ListQuery{})
	if err != nil || len(list) != 2 || !list[0].Revoked() || list[1].Revoked() {
		t.Fatalf("ListDevices = %+v, %v", list, err)
	}
}

func testListDevices(t *testing.T, s actors.Store) {
	ctx := ctxFor(t)
	if got, err := s.ListDevices(ctx, actors.ListQuery{}); err != nil || len(got) != 0 {
		t.Fatalf("empty registry: ListDevices = %v, %v", got, err)
	}
	var ids []string
	for i := range 230 {
		// Mixed case, digits, punctuation and non-ASCII: byte order differs from most locales'.
		prefix := []string{"a", "B", "_", "z", "é", "🌱", "Z", "-", "中"}[i%9]
		ids = append(ids, fmt.Sprintf("%s-pot-%03d", prefix, i))
	}
	ids = append(ids, hostileIDs...)
	for _, id := range ids {
		mustCreate(t, s, device(id))
	}
	sort.Strings(ids) // byte order

	var got []string
	after := ""
	for page := 0; ; page++ {
		list, err := s.ListDevices(ctx, actors.ListQuery{AfterID: after, Limit: 37})
		if err != nil {
			t.Fatal(err)
		}
		if len(list) > 37 {
			t.Fatalf("page of %d devices, limit 37", len(list))
		}
		if len(list) == 0 {
			break
		}
		for _, d := range list {
			got = append(got, d.ID)
		}
		after = list[len(list)-1].ID
	}
	if !slices.Equal(got, ids) {
		t.Fatalf("paged ids (%d) are not all ids in byte order (%d):\n got %q\nwant %q", len(got), len(ids), got, ids)
	}
	if list, err := s.ListDevices(ctx, actors.ListQuery{}); err != nil || len(list) != store.DefaultListLimit {
		t.Fatalf("ListDevices with no limit returned %d, %v; want the default %d", len(list), err, store.DefaultListLimit)
	}
	if list, _ := s.ListDevices(ctx, actors.ListQuery{AfterID: ids[len(ids)-1]}); len(list) != 0 {
		t.Fatalf("after the last id: %d devices", len(list))
	}
	if list, _ := s.ListDevices(ctx, actors.ListQuery{AfterID: ids[10], Limit: 1}); len(list) != 1 || list[0].ID != ids[11] {
		t.Fatalf("after %q limit 1: %+v, want %q", ids[10], list, ids[11])
	}
	for _, bad := range []string{"a\x00", "\xff"} {
		if _, err := s.ListDevices(ctx, actors.ListQuery{AfterID: bad}); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("ListDevices after %q = %v, want ErrInvalid", bad, err)
		}
	}
}

func testLoadEmpty(t *testing.T, s actors.Store) {
	for _, id := range []string{"never-seen", "", "nul\x00"} {
		rec, err := s.LoadDevice(ctxFor(t), id)
		if err != nil || rec.Snapshot != nil || rec.LastSeq != 0 || rec.Latest != nil {
			t.Fatalf("LoadDevice(%q) = %+v, %v; want zero", id, rec, err)
		}
	}
}

func testAppendLoad(t *testing.T, s actors.Store) {
	ctx := ctxFor(t)
	snap := []byte{0x0a, 0x00, 0xff, 'x'}
	mustAppend(t, s, "pot-1", actors.Batch{
		Readings: []actors.Reading{reading(1, 1), reading(2, 2), reading(3, 3)},
		Events: []actors.Event{
			deviceEvent(4, 4),
			{At: at(4), Kind: actors.EventKindAlertRaised, Body: []byte(`{"kind":"ALERT_KIND_SOIL_DRY"}`)},
		},
		Snapshot: snap,
	})
	rec, err := s.LoadDevice(ctx, "pot-1")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(rec.Snapshot, snap) || rec.LastSeq != 4 || rec.Latest == nil || !sameReading(*rec.Latest, reading(3, 3)) {
		t.Fatalf("LoadDevice = %+v (latest %+v); want snapshot %x, LastSeq 4, latest reading 3", rec, rec.Latest, snap)
	}
}

func testLastSeq(t *testing.T, s actors.Store) {
	ctx := ctxFor(t)
	tests := []struct {
		name    string
		batches []actors.Batch
		want    uint64
		latest  uint64 // seq of the latest reading, 0 for none
	}{
		{"readings only", []actors.Batch{{Readings: []actors.Reading{reading(1, 1), reading(7, 2)}}}, 7, 7},
		{"device events only", []actors.Batch{{Events: []actors.Event{deviceEvent(3, 1), deviceEvent(9, 2)}}}, 9, 0},
		{"event after readings", []actors.Batch{
			{Readings: []actors.Reading{reading(1, 1)}},
			{Events: []actors.Event{deviceEvent(2, 2)}},
		}, 2, 1},
		{"reading after events", []actors.Batch{
			{Events: []actors.Event{deviceEvent(5, 2)}},
			{Readings: []actors.Reading{reading(6, 3)}},
		}, 6, 6},
		{"readings out of order", []actors.Batch{{Readings: []actors.Reading{reading(12, 1), reading(10, 2), reading(11, 3)}}}, 12, 12},
		{"other events do not count", []actors.Batch{{
			Readings: []actors.Reading{reading(2, 1)},
			Events:   []actors.Event{{At: at(3), Kind: actors.EventKindOnline, Body: []byte(`{}`)}},
		}}, 2, 2},
		{"snapshot only", []actors.Batch{{Snapshot: []byte("s")}}, 0, 0},
	}
	for i, tt := range tests {
		id := fmt.Sprintf("pot-%d", i)
		for _, b := range tt.batches {
			mustAppend(t, s, id, b)
		}
		rec, err := s.LoadDevice(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if rec.LastSeq != tt.want {
			t.Errorf("%s: LastSeq = %d, want %d", tt.name, rec.LastSeq, tt.want)
		}
		switch {
		case tt.latest == 0 && rec.Latest != nil:
			t.Errorf("%s: Latest = %+v, want none", tt.name, rec.Latest)
		case tt.latest != 0 && (rec.Latest == nil || rec.Latest.Seq != tt.latest):
			t.Errorf("%s: Latest = %+v, want seq %d", tt.name, rec.Latest, tt.latest)
		}
	}
}

func testDuplicateReadings(t *testing.T, s actors.Store) {
	ctx := ctxFor(t)
	first := reading(1, 1)
	mustAppend(t, s, "pot-1", actors.Batch{Readings: []actors.Reading{first}})
	resent := reading(1, 5)
	resent.SoilMoisture = 99
	// A resend of seq 1 (different content) together with a new seq 2, and seq 2 twice in one batch.
	mustAppend(t, s, "pot-1", actors.Batch{Readings: []actors.Reading{resent, reading(2, 2), reading(2, 3)}})
	mustAppend(t, s, "pot-1", actors.Batch{Readings: []actors.Reading{first}})
	got, err := s.Readings(ctx, "pot-1", at(0), at(100), 0)
	if err != nil {
		t.Fatal(err)
	}
	checkReadings(t, got, []actors.Reading{first, reading(2, 2)})
}

func testDuplicateEvents(t *testing.T, s actors.Store) {
	ctx := ctxFor(t)
	online := actors.Event{At: at(1), Kind: actors.EventKindOnline, Body: []byte(`{"id":"c1"}`)}
	mustAppend(t, s, "pot-1", actors.Batch{Events: []actors.Event{online, deviceEvent(1, 1)}})
	resent := deviceEvent(1, 2)
	resent.Body = []byte(`{"different":true}`)
	// The device event is resent; the online event (seq 0) is a new log entry, even if identical.
	mustAppend(t, s, "pot-1", actors.Batch{Events: []actors.Event{online, resent, deviceEvent(2, 3), deviceEvent(2, 3)}})
	got, err := s.Events(ctx, "pot-1", at(0), at(100), 0)
	if err != nil {
		t.Fatal(err)
	}
	checkEvents(t, got, []actors.Event{online, deviceEvent(1, 1), online, deviceEvent(2, 3)})
}

func testSnapshot(t *testing.T, s actors.Store) {
	ctx := ctxFor(t)
	load := func() []byte {
		t.Helper()
		rec, err := s.LoadDevice(ctx, "pot-1")
		if err != nil {
			t.Fatal(err)
		}
		return rec.Snapshot
	}
	mustAppend(t, s, "pot-1", actors.Batch{Snapshot: []byte("v1")})
	mustAppend(t, s, "pot-1", actors.Batch{Readings: []actors.Reading{reading(1, 1)}}) // nil: keep
	if got := load(); string(got) != "v1" {
		t.Fatalf("after an append without snapshot: %q, want v1 kept", got)
	}
	mustAppend(t, s, "pot-1", actors.Batch{Readings: []actors.Reading{reading(2, 2)}, Snapshot: []byte("v2")})
	if got := load(); string(got) != "v2" {
		t.Fatalf("snapshot %q, want v2", got)
	}
	mustAppend(t, s, "pot-1", actors.Batch{Snapshot: []byte{}})
	if got := load(); got == nil || len(got) != 0 {
		t.Fatalf("snapshot %q (nil %v), want empty and non-nil", got, got == nil)
	}
}

func testEmptyAppend(t *testing.T, s actors.Store) {
	mustAppend(t, s, "pot-1", actors.Batch{})
	mustAppend(t, s, "pot-1", actors.Batch{Readings: []actors.Reading{}, Events: []actors.Event{}})
	if rec, err := s.LoadDevice(ctxFor(t), "pot-1"); err != nil || rec.Snapshot != nil || rec.LastSeq != 0 {
		t.Fatalf("LoadDevice = %+v, %v; want zero", rec, err)
	}
}

func testIsolation(t *testing.T, s actors.Store) {
	ctx := ctxFor(t)
	ids := []string{"dev", "dev2", "de%", "de_", "DEV"}
	for i, id := range ids {
		mustAppend(t, s, id, actors.Batch{
			Readings: []actors.Reading{reading(uint64(i+1), i+1)},
			Events:   []actors.Event{deviceEvent(uint64(i+10), i+1)},
			Snapshot: []byte(id),
		})
	}
	for i, id := range ids {
		rec, err := s.LoadDevice(ctx, id)
		if err != nil || string(rec.Snapshot) != id || rec.LastSeq != uint64(i+10) || rec.Latest.Seq != uint64(i+1) {
			t.Fatalf("LoadDevice(%q) = %+v, %v", id, rec, err)
		}
		rs, _ := s.Readings(ctx, id, at(0), at(100), 0)
		checkReadings(t, rs, []actors.Reading{reading(uint64(i+1), i+1)})
		es, _ := s.Events(ctx, id, at(0), at(100), 0)
		checkEvents(t, es, []actors.Event{deviceEvent(uint64(i+10), i+1)})
		bs, _ := s.Buckets(ctx, id, at(0), at(100), time.Hour)
		if len(bs) != 1 || bs[0].Count != 1 {
			t.Fatalf("Buckets(%q) = %+v, want one reading", id, bs)
		}
	}
}

func testReadingsRange(t *testing.T, s actors.Store) {
	ctx := ctxFor(t)
	// Appended out of order; received one second apart (seq 5 arrives first).
	var all []actors.Reading
	for i := range 10 {
		all = append(all, reading(uint64(10-i), 10+i))
	}
	mustAppend(t, s, "pot-1", actors.Batch{Readings: all[5:]})
	mustAppend(t, s, "pot-1", actors.Batch{Readings: all[:5]})
	mustAppend(t, s, "pot-2", actors.Batch{Readings: []actors.Reading{reading(1, 12)}})
	tests := []struct {
		name     string
		from, to time.Time
		limit    int
		want     []actors.Reading
	}{
		{"everything", at(0), at(100), 0, all},
		{"from is inclusive, to exclusive", at(12), at(15), 0, all[2:5]},
		{"a microsecond before from is out", at(12).Add(time.Microsecond), at(15).Add(time.Microsecond), 0, all[3:6]},
		{"limit keeps the oldest", at(0), at(100), 3, all[:3]},
		{"empty range", at(15), at(15), 0, nil},
		{"reversed range", at(15), at(12), 0, nil},
		{"before any reading", at(0), at(10), 0, nil},
	}
	for _, tt := range tests {
		got, err := s.Readings(ctx, "pot-1", tt.from, tt.to, tt.limit)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		t.Run(tt.name, func(t *testing.T) { checkReadings(t, got, tt.want) })
	}
	if got, err := s.Readings(ctx, "nobody", at(0), at(100), 0); err != nil || len(got) != 0 {
		t.Fatalf("unknown device: %v, %v", got, err)
	}
}

func testReadingFields(t *testing.T, s actors.Store) {
	ctx := ctxFor(t)
	nan := float32(math.NaN())
	inf := float32(math.Inf(1))
	rs := []actors.Reading{
		{Seq: 1, ReceivedAt: at(1), SoilMoisture: 0, Temperature: -12.5, TankLevel: 100, SupplyMillivolt: 0}, // no device time
		{Seq: 2, DeviceTime: at(-3600), ReceivedAt: at(2), SoilMoisture: 33.333332, Temperature: math.SmallestNonzeroFloat32, TankLevel: math.MaxFloat32, SupplyMillivolt: math.MaxUint32},
		{Seq: 3, DeviceTime: at(3), ReceivedAt: at(3), SoilMoisture: nan, Temperature: inf, TankLevel: -inf, SupplyMillivolt: 1},
		{Seq: store.MaxSeq, ReceivedAt: at(4), SupplyMillivolt: 2},
	}
	mustAppend(t, s, "pot-1", actors.Batch{Readings: rs})
	got, err := s.Readings(ctx, "pot-1", at(-10000), at(100), 0)
	if err != nil {
		t.Fatal(err)
	}
	checkReadings(t, got, rs)
	if !got[0].DeviceTime.IsZero() {
		t.Errorf("unknown device time came back as %v", got[0].DeviceTime)
	}
	for _, r := range got {
		if r.ReceivedAt.Location() != time.UTC || (!r.DeviceTime.IsZero() && r.DeviceTime.Location() != time.UTC) {
			t.Errorf("times of seq %d not in UTC: %v %v", r.Seq, r.ReceivedAt.Location(), r.DeviceTime.Location())
		}
	}
	// Stores keep microseconds: nanoseconds are truncated, consistently on every backend.
	fine := reading(5, 50)
	fine.ReceivedAt = at(50).Add(1234567 * time.Nanosecond)
	mustAppend(t, s, "pot-2", actors.Batch{Readings: []actors.Reading{fine}})
	got, _ = s.Readings(ctx, "pot-2", at(0), at(100), 0)
	if len(got) != 1 || !got[0].ReceivedAt.Equal(at(50).Add(1234*time.Microsecond)) {
		t.Fatalf("ReceivedAt with nanoseconds came back as %+v", got)
	}
	if rec, _ := s.LoadDevice(ctx, "pot-1"); rec.LastSeq != store.MaxSeq {
		t.Fatalf("LastSeq = %d, want %d", rec.LastSeq, uint64(store.MaxSeq))
	}
}

func testEventsRange(t *testing.T, s actors.Store) {
	ctx := ctxFor(t)
	var all []actors.Event
	kinds := []string{actors.EventKindOnline, actors.EventKindAlertRaised, actors.EventKindCommandSent, actors.EventKindCommandOutcome, actors.EventKindOffline}
	for i := range 10 {
		all = append(all, actors.Event{At: at(10 + i/2), Kind: kinds[i%len(kinds)], Body: []byte(fmt.Sprintf(`{"n":%d}`, i))})
	}
	all[3].Body = nil // no body
	all[4] = deviceEvent(1, 12)
	// Logged in order, in several appends; events at the same instant keep their logging order.
	mustAppend(t, s, "pot-1", actors.Batch{Events: all[:4]})
	mustAppend(t, s, "pot-1", actors.Batch{Events: all[4:7]})
	mustAppend(t, s, "pot-1", actors.Batch{Events: all[7:]})
	mustAppend(t, s, "pot-2", actors.Batch{Events: all[:2]})
	tests := []struct {
		name     string
		from, to time.Time
		limit    int
		want     []actors.Event
	}{
		{"everything", at(0), at(100), 0, all},
		{"from is inclusive, to exclusive", at(11), at(13), 0, all[2:6]},
		{"limit keeps the oldest", at(0), at(100), 3, all[:3]},
		{"empty range", at(12), at(12), 0, nil},
	}
	for _, tt := range tests {
		got, err := s.Events(ctx, "pot-1", tt.from, tt.to, tt.limit)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		t.Run(tt.name, func(t *testing.T) { checkEvents(t, got, tt.want) })
	}
}

func testBuckets(t *testing.T, s actors.Store) {
	ctx := ctxFor(t)
	type m struct {
		sec            int
		moist, temp, k float32
	}
	nan := float32(math.NaN())
	in := []m{
		// bucket [100, 160): three readings
		{100, 10, 20, 50}, {130, 20, 22, 40}, {159, 60, 21, 30},
		// bucket [160, 220): empty
		// bucket [220, 280): one reading on its first microsecond, one with a NaN moisture
		{220, 5, -3.5, 0}, {250, nan, -1.5, 0},
		// bucket [280, 340): only NaN moisture
		{339, nan, 30, 100},
		// outside the range
		{99, 1000, 1000, 1000}, {400, 1000, 1000, 1000},
	}
	var rs []actors.Reading
	for i, x := range in {
		rs = append(rs, actors.Reading{Seq: uint64(i + 1), ReceivedAt: at(x.sec), SoilMoisture: x.moist, Temperature: x.temp, TankLevel: x.k})
	}
	mustAppend(t, s, "pot-1", actors.Batch{Readings: rs})
	mustAppend(t, s, "pot-2", actors.Batch{Readings: []actors.Reading{{Seq: 1, ReceivedAt: at(130), SoilMoisture: 1000}}})
	got, err := s.Buckets(ctx, "pot-1", at(100), at(400), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	want := []actors.Bucket{
		{Start: at(100), Count: 3, MoistureMin: 10, MoistureAvg: 30, MoistureMax: 60, TempMin: 20, TempAvg: 21, TempMax: 22, TankMin: 30, TankAvg: 40, TankMax: 50},
		{Start: at(220), Count: 2, MoistureMin: 5, MoistureAvg: 5, MoistureMax: 5, TempMin: -3.5, TempAvg: -2.5, TempMax: -1.5, TankMin: 0, TankAvg: 0, TankMax: 0},
		{Start: at(280), Count: 1, MoistureMin: nan, MoistureAvg: nan, MoistureMax: nan, TempMin: 30, TempAvg: 30, TempMax: 30, TankMin: 100, TankAvg: 100, TankMax: 100},
	}
	checkBuckets(t, got, want)

	// Buckets are aligned on from, not on the epoch; a single bucket covering everything.
	got, err = s.Buckets(ctx, "pot-1", at(130), at(250), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	checkBuckets(t, got, []actors.Bucket{{Start: at(130), Count: 3, MoistureMin: 5, MoistureAvg: 85.0 / 3, MoistureMax: 60,
		TempMin: -3.5, TempAvg: (22 + 21 - 3.5) / 3.0, TempMax: 22, TankMin: 0, TankAvg: 70.0 / 3, TankMax: 40}})

	if got, err := s.Buckets(ctx, "nobody", at(0), at(1000), time.Minute); err != nil || len(got) != 0 {
		t.Fatalf("unknown device: %v, %v", got, err)
	}
}

func checkBuckets(t *testing.T, got, want []actors.Bucket) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d buckets %+v, want %d %+v", len(got), got, len(want), want)
	}
	near := func(a, b float32) bool {
		return (a != a && b != b) || math.Abs(float64(a-b)) <= 1e-4*math.Max(1, math.Abs(float64(b)))
	}
	for i, w := range want {
		g := got[i]
		ok := g.Start.Equal(w.Start) && g.Count == w.Count
		for _, p := range [][2]float32{
			{g.MoistureMin, w.MoistureMin}, {g.MoistureAvg, w.MoistureAvg}, {g.MoistureMax, w.MoistureMax},
			{g.TempMin, w.TempMin}, {g.TempAvg, w.TempAvg}, {g.TempMax, w.TempMax},
			{g.TankMin, w.TankMin}, {g.TankAvg, w.TankAvg}, {g.TankMax, w.TankMax},
		} {
			ok = ok && near(p[0], p[1])
		}
		if !ok {
			t.Fatalf("bucket %d:\n got %+v\nwant %+v", i, g, w)
		}
		if g.Start.Location() != time.UTC {
			t.Errorf("bucket start in %v, want UTC", g.Start.Location())
		}
	}
}

func testBucketWidths(t *testing.T, s actors.Store) {
	ctx := ctxFor(t)
	mustAppend(t, s, "pot-1", actors.Batch{Readings: []actors.Reading{reading(1, 1)}})
	for _, w := range []time.Duration{0, -time.Minute, time.Nanosecond} {
		if _, err := s.Buckets(ctx, "pot-1", at(0), at(10), w); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("Buckets(width %v) = %v, want ErrInvalid", w, err)
		}
	}
	if _, err := s.Buckets(ctx, "pot-1", at(0), at(0).Add(365*24*time.Hour), time.Second); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("a year in one-second buckets = %v, want ErrInvalid (too many buckets)", err)
	}
	got, err := s.Buckets(ctx, "pot-1", at(1), at(1).Add(time.Millisecond), time.Microsecond)
	if err != nil || len(got) != 1 || !got[0].Start.Equal(at(1)) {
		t.Fatalf("one-microsecond buckets = %+v, %v", got, err)
	}
}

func testHostile(t *testing.T, s actors.Store) {
	ctx := ctxFor(t)
	bodies := [][]byte{
		[]byte(`{"q":"it's \"quoted\"","b":"back\\slash\\","u":"植物 🌱 é"}`),
		[]byte(`{"nul":"a\u0000b","ctl":"\u0001\u001f","sep":"\u2028"}`), // JSON escapes, not raw bytes
		[]byte("  [1, 2.50, 1e3, null, true]\n"),                         // whitespace and number spelling kept
		[]byte(`{"b":1,"a":2,"b":3}`),                                    // key order and duplicates kept
		[]byte(`"just a string with ' and \\"`),
		[]byte(`{"x":"` + strings.Repeat("长", 2000) + `"}`),
	}
	snap := []byte{0, 0, 0xff, 0xfe, '\'', '"', '\\', 0, 0xc3, 0x28} // NUL and invalid UTF-8
	kinds := []string{"custom 'kind'", `kind "two" \ `, "种类-🌱"}
	for i, id := range hostileIDs {
		d := actors.Device{ID: id, Product: id, Secret: snap, CreatedAt: at(i)}
		mustCreate(t, s, d)
		var events []actors.Event
		for j, b := range bodies {
			events = append(events, actors.Event{At: at(j), Kind: kinds[j%len(kinds)], Body: b})
		}
		mustAppend(t, s, id, actors.Batch{Readings: []actors.Reading{reading(1, 1)}, Events: events, Snapshot: snap})
		if got, err := s.GetDevice(ctx, id); err != nil || !sameDevice(got, d) {
			t.Fatalf("GetDevice(%q) = %+v, %v; want %+v", id, got, err, d)
		}
		got, err := s.Events(ctx, id, at(-1), at(100), 0)
		if err != nil {
			t.Fatal(err)
		}
		checkEvents(t, got, events)
		rec, err := s.LoadDevice(ctx, id)
		if err != nil || !bytes.Equal(rec.Snapshot, snap) || rec.LastSeq != 1 {
			t.Fatalf("LoadDevice(%q) = %+v, %v", id, rec, err)
		}
	}
	list, err := s.ListDevices(ctx, actors.ListQuery{Limit: 1000})
	if err != nil || len(list) != len(hostileIDs) {
		t.Fatalf("ListDevices = %d devices, %v; want %d", len(list), err, len(hostileIDs))
	}
	for _, d := range list {
		if !slices.Contains(hostileIDs, d.ID) || d.Product != d.ID {
			t.Fatalf("ListDevices returned %q (product %q), not one of the ids stored", d.ID, d.Product)
		}
	}
}

// invalidAppends are steps no backend stores. Every backend refuses them the same way, before they
// reach the database, so they cannot fail anyone else's batch.
var invalidAppends = []struct {
	name string
	id   string
	b    actors.Batch
}{
	{"NUL in device id", "pot\x00evil", actors.Batch{Readings: []actors.Reading{reading(1, 1)}}},
	{"invalid UTF-8 device id", "pot-\xff", actors.Batch{Readings: []actors.Reading{reading(1, 1)}}},
	{"empty device id", "", actors.Batch{Readings: []actors.Reading{reading(1, 1)}}},
	{"body not JSON", "pot-bad", actors.Batch{Events: []actors.Event{{At: at(1), Kind: "k", Body: []byte(`{"a":`)}}}},
	{"raw NUL in body", "pot-bad", actors.Batch{Events: []actors.Event{{At: at(1), Kind: "k", Body: []byte("{\"a\":\"\x00\"}")}}}},
	{"invalid UTF-8 in body", "pot-bad", actors.Batch{Events: []actors.Event{{At: at(1), Kind: "k", Body: []byte("\"\xff\"")}}}},
	{"empty body", "pot-bad", actors.Batch{Events: []actors.Event{{At: at(1), Kind: "k", Body: []byte{}}}}},
	{"NUL in kind", "pot-bad", actors.Batch{Events: []actors.Event{{At: at(1), Kind: "k\x00", Body: []byte(`{}`)}}}},
	{"no kind", "pot-bad", actors.Batch{Events: []actors.Event{{At: at(1), Body: []byte(`{}`)}}}},
	{"seq beyond int64", "pot-bad", actors.Batch{Readings: []actors.Reading{reading(math.MaxUint64, 1)}}},
	{"reading without time", "pot-bad", actors.Batch{Readings: []actors.Reading{{Seq: 1}}}},
	{"event without time", "pot-bad", actors.Batch{Events: []actors.Event{{Kind: "k"}}}},
}

func testInvalidAppendIsolated(t *testing.T, s actors.Store) {
	ctx := ctxFor(t)
	var wg sync.WaitGroup
	errs := make([]error, len(invalidAppends))
	good := make([]error, 50)
	for i := range good {
		wg.Go(func() {
			good[i] = s.Append(ctx, fmt.Sprintf("pot-%d", i), actors.Batch{Readings: []actors.Reading{reading(1, 1)}, Snapshot: []byte("ok")})
		})
	}
	for i, tt := range invalidAppends {
		wg.Go(func() { errs[i] = s.Append(ctx, tt.id, tt.b) })
	}
	wg.Wait()
	for i, tt := range invalidAppends {
		if !errors.Is(errs[i], store.ErrInvalid) || errors.Is(errs[i], actors.ErrUnavailable) {
			t.Errorf("%s: Append = %v, want ErrInvalid", tt.name, errs[i])
		}
	}
	for i, err := range good {
		if err != nil {
			t.Fatalf("good append %d failed beside invalid ones: %v", i, err)
		}
		rec, err := s.LoadDevice(ctx, fmt.Sprintf("pot-%d", i))
		if err != nil || rec.LastSeq != 1 || string(rec.Snapshot) != "ok" {
			t.Fatalf("good append %d not stored: %+v, %v", i, rec, err)
		}
	}
	if rec, _ := s.LoadDevice(ctx, "pot-bad"); rec.LastSeq != 0 || rec.Latest != nil {
		t.Fatalf("an invalid append was partly stored: %+v", rec)
	}
	if es, _ := s.Events(ctx, "pot-bad", at(-100), at(100), 0); len(es) != 0 {
		t.Fatalf("an invalid append was partly stored: %+v", es)
	}
}

func testConcurrentAppends(t *testing.T, s actors.Store) {
	ctx := ctxFor(t)
	const devices, steps = 300, 20
	var wg sync.WaitGroup
	errc := make(chan error, devices)
	stop := make(chan struct{})
	// Readers run beside the writers: reads must neither fail nor block appends.
	var readers sync.WaitGroup
	for r := range 2 {
		readers.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("pot-%03d", (i*7+r)%devices)
				if _, err := s.LoadDevice(ctx, id); err != nil {
					errc <- fmt.Errorf("LoadDevice during appends: %w", err)
					return
				}
				if _, err := s.Readings(ctx, id, at(0), at(1000), 100); err != nil {
					errc <- fmt.Errorf("readings during appends: %w", err)
					return
				}
			}
		})
	}
	for d := range devices {
		wg.Go(func() {
			id := fmt.Sprintf("pot-%03d", d)
			seq := uint64(0)
			for step := range steps {
				b := actors.Batch{Snapshot: []byte(fmt.Sprintf("%s@%d", id, step))}
				seq++
				b.Readings = append(b.Readings, reading(seq, step))
				if step%4 == 3 {
					seq++
					b.Events = append(b.Events, deviceEvent(seq, step))
				}
				if err := s.Append(ctx, id, b); err != nil {
					errc <- fmt.Errorf("Append(%s, step %d): %w", id, step, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	readers.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	for d := range devices {
		id := fmt.Sprintf("pot-%03d", d)
		rec, err := s.LoadDevice(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		wantSeq := uint64(steps + steps/4)
		if rec.LastSeq != wantSeq || string(rec.Snapshot) != fmt.Sprintf("%s@%d", id, steps-1) {
			t.Fatalf("%s: LastSeq %d snapshot %q; want %d and the last step's", id, rec.LastSeq, rec.Snapshot, wantSeq)
		}
		rs, err := s.Readings(ctx, id, at(0), at(1000), 0)
		if err != nil || len(rs) != steps {
			t.Fatalf("%s: %d readings, %v; want %d", id, len(rs), err, steps)
		}
		es, err := s.Events(ctx, id, at(0), at(1000), 0)
		if err != nil || len(es) != steps/4 {
			t.Fatalf("%s: %d events, %v; want %d", id, len(es), err, steps/4)
		}
	}
}

func testCancelledAppend(t *testing.T, s actors.Store) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := s.Append(ctx, "pot-1", actors.Batch{Readings: []actors.Reading{reading(1, 1)}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Append with a cancelled context = %v, want context.Canceled", err)
	}
	// Appends are committed in order: once a later one is acknowledged, a cancelled one that was
	// going to be written would be.
	mustAppend(t, s, "pot-2", actors.Batch{Readings: []actors.Reading{reading(1, 1)}})
	if rec, _ := s.LoadDevice(ctxFor(t), "pot-1"); rec.LastSeq != 0 {
		t.Fatalf("a cancelled append was stored: %+v", rec)
	}
}

func testAppendAfterClose(t *testing.T, s actors.Store) {
	mustAppend(t, s, "pot-1", actors.Batch{Readings: []actors.Reading{reading(1, 1)}})
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	err := s.Append(ctxFor(t), "pot-1", actors.Batch{Readings: []actors.Reading{reading(2, 2)}})
	if !errors.Is(err, actors.ErrUnavailable) {
		t.Fatalf("Append after Close = %v, want ErrUnavailable", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}
