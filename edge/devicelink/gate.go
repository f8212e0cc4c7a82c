package devicelink

import "sync/atomic"

// Gate bounds how many callers hold it at once: an edge's handshakes waiting for their device
// grain (device.Options.MaxHandshakes, mqtt.Options.MaxHandshakes). A caller that cannot enter is
// refused at once rather than queued, so that a reconnecting fleet is let in at the rate the node
// can take.
type Gate struct {
	limit int64 // negative: no bound
	n     atomic.Int64
}

// NewGate returns a gate for at most limit holders (negative: no bound).
func NewGate(limit int) *Gate { return &Gate{limit: int64(limit)} }

// Enter takes a place, or reports false when all are taken; a true Enter is paired with Leave.
func (g *Gate) Enter() bool {
	if g.n.Add(1) > g.limit && g.limit >= 0 {
		g.n.Add(-1)
		return false
	}
	return true
}

// Leave gives back a place taken by Enter.
func (g *Gate) Leave() { g.n.Add(-1) }
