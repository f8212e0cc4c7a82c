package edgetest

import (
	"context"
	"sync"

	"github.com/sprout-iot/sprout/actors"
)

// LoadGate is a real store whose loading of one device waits until Open: that device's
// handshake then waits for its grain for as long as a test likes (an edge's handshake limit).
// Everything else passes through.
type LoadGate struct {
	actors.Store
	device  string
	loading chan struct{}
	open    chan struct{}
	once    sync.Once
	opened  sync.Once
}

// NewLoadGate wraps st, holding the loads of device.
func NewLoadGate(st actors.Store, device string) *LoadGate {
	return &LoadGate{Store: st, device: device, loading: make(chan struct{}), open: make(chan struct{})}
}

func (s *LoadGate) LoadDevice(ctx context.Context, id string) (actors.Recovered, error) {
	if id == s.device {
		s.once.Do(func() { close(s.loading) })
		<-s.open
	}
	return s.Store.LoadDevice(ctx, id)
}

// Loading is closed once the device's first load has begun.
func (s *LoadGate) Loading() <-chan struct{} { return s.loading }

// Open lets the device's loads go on (again and again: a no-op).
func (s *LoadGate) Open() { s.opened.Do(func() { close(s.open) }) }
