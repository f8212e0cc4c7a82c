// Package memory is a Store that keeps everything in memory. It is the "no storage" baseline in
// benchmarks and a scratch store for demos; it is not durable and a restart loses everything.
package memory

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/sprout-iot/sprout/actors"
	"github.com/sprout-iot/sprout/store"
)

// Store is an in-memory actors.Store.
type Store struct {
	mu      sync.RWMutex
	devices map[string]actors.Device
	data    map[string]*deviceData
	u       *userData
}

type deviceData struct {
	epoch    uint64
	snapshot []byte
	lastSeq  uint64
	readings []actors.Reading
	events   []actors.Event
	seqs     map[uint64]bool
}

var _ actors.Store = (*Store)(nil)

// New returns an empty store.
func New() *Store {
	return &Store{devices: map[string]actors.Device{}, data: map[string]*deviceData{}}
}

func (s *Store) CreateDevice(_ context.Context, d actors.Device) error {
	if err := store.ValidID(d.ID); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.devices[d.ID]; ok {
		return actors.ErrDeviceExists
	}
	s.devices[d.ID] = d
	return nil
}

func (s *Store) GetDevice(_ context.Context, id string) (actors.Device, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	d, ok := s.devices[id]
	if !ok {
		return actors.Device{}, actors.ErrUnknownDevice
	}
	return d, nil
}

func (s *Store) ListDevices(_ context.Context, q actors.ListQuery) ([]actors.Device, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	limit := q.Limit
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, 1000)
	var out []actors.Device
	for _, d := range s.devices {
		if d.ID > q.AfterID {
			out = append(out, d)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

func (s *Store) RevokeDevice(_ context.Context, id string, at time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.devices[id]
	if !ok {
		return actors.ErrUnknownDevice
	}
	d.RevokedAt = at
	s.devices[id] = d
	return nil
}

func (s *Store) LoadDevice(_ context.Context, id string) (actors.Recovered, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	dd := s.data[id]
	if dd == nil {
		return actors.Recovered{}, nil
	}
	r := actors.Recovered{Snapshot: dd.snapshot, LastSeq: dd.lastSeq}
	if n := len(dd.readings); n > 0 {
		l := dd.readings[n-1]
		r.Latest = &l
	}
	return r, nil
}

func (s *Store) Append(_ context.Context, id string, b actors.Batch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	dd := s.data[id]
	if dd == nil {
		dd = &deviceData{seqs: map[uint64]bool{}}
		s.data[id] = dd
	}
	switch {
	case b.Claim:
		dd.epoch = b.Epoch
	case b.Epoch != 0 && b.Epoch != dd.epoch:
		return fmt.Errorf("memory: append for device %q: %w", id, actors.ErrFenced)
	}
	for _, r := range b.Readings {
		if dd.seqs[r.Seq] {
			continue
		}
		dd.seqs[r.Seq] = true
		dd.lastSeq = max(dd.lastSeq, r.Seq)
		dd.readings = append(dd.readings, r)
	}
	for _, e := range b.Events {
		if e.Seq != 0 {
			if dd.seqs[e.Seq] {
				continue
			}
			dd.seqs[e.Seq] = true
			dd.lastSeq = max(dd.lastSeq, e.Seq)
		}
		dd.events = append(dd.events, e)
	}
	if b.Snapshot != nil {
		dd.snapshot = b.Snapshot
	}
	return nil
}

func (s *Store) Readings(_ context.Context, id string, from, to time.Time, limit int) ([]actors.Reading, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []actors.Reading
	if dd := s.data[id]; dd != nil {
		for _, r := range dd.readings {
			if !r.ReceivedAt.Before(from) && r.ReceivedAt.Before(to) && len(out) < limitOf(limit) {
				out = append(out, r)
			}
		}
	}
	return out, nil
}

func (s *Store) Buckets(_ context.Context, id string, from, to time.Time, bucket time.Duration) ([]actors.Bucket, error) {
	rs, _ := s.Readings(context.Background(), id, from, to, 10000)
	var out []actors.Bucket
	for _, r := range rs {
		start := r.ReceivedAt.Truncate(bucket)
		if len(out) == 0 || !out[len(out)-1].Start.Equal(start) {
			out = append(out, actors.Bucket{Start: start, MoistureMin: r.SoilMoisture, MoistureMax: r.SoilMoisture,
				TempMin: r.Temperature, TempMax: r.Temperature, TankMin: r.TankLevel, TankMax: r.TankLevel})
		}
		b := &out[len(out)-1]
		n := float32(b.Count)
		b.MoistureAvg = (b.MoistureAvg*n + r.SoilMoisture) / (n + 1)
		b.TempAvg = (b.TempAvg*n + r.Temperature) / (n + 1)
		b.TankAvg = (b.TankAvg*n + r.TankLevel) / (n + 1)
		b.MoistureMin, b.MoistureMax = min(b.MoistureMin, r.SoilMoisture), max(b.MoistureMax, r.SoilMoisture)
		b.TempMin, b.TempMax = min(b.TempMin, r.Temperature), max(b.TempMax, r.Temperature)
		b.TankMin, b.TankMax = min(b.TankMin, r.TankLevel), max(b.TankMax, r.TankLevel)
		b.Count++
	}
	return out, nil
}

func (s *Store) Events(_ context.Context, id string, from, to time.Time, limit int) ([]actors.Event, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []actors.Event
	if dd := s.data[id]; dd != nil {
		for _, e := range dd.events {
			if !e.At.Before(from) && e.At.Before(to) && len(out) < limitOf(limit) {
				out = append(out, e)
			}
		}
	}
	return out, nil
}

func (s *Store) Close() error { return nil }

func limitOf(n int) int {
	if n <= 0 || n > 10000 {
		return 10000
	}
	return n
}
