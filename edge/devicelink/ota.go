package devicelink

import (
	"context"
	"sync"
	"time"

	"github.com/sprout-iot/sprout/messages/devicepb"
)

// OTA is what a device edge needs of the firmware rollout service (actors.OTA, docs/ota.md): the
// offer for a pot that has just been welcomed or is idle, a chunk of an image, and a place for the
// pot's progress. Both edges (TCP and MQTT) take the same service.
type OTA interface {
	// OnConnect settles what a welcomed pot's firmware version says about an update in progress
	// and returns the offer to send, or nil.
	OnConnect(ctx context.Context, deviceID, firmware string) (*devicepb.UpdateOffer, error)
	// Pending returns the offer for a connected pot that has none yet (a stage opened), or nil.
	Pending(ctx context.Context, deviceID, firmware string) (*devicepb.UpdateOffer, error)
	// ReadChunk returns n bytes of the image sha at off (fewer at its end).
	ReadChunk(ctx context.Context, sha []byte, off, n int) ([]byte, error)
	// Progress records a pot's UpdateProgress.
	Progress(ctx context.Context, deviceID string, p *devicepb.UpdateProgress) error
}

// PaceChunkBytes is the unit of a Pace: a TCP chunk (at most 512 bytes) costs one, a larger
// chunk (the MQTT edge offers bigger ones) costs one per started PaceChunkBytes.
const PaceChunkBytes = 512

// Pace bounds the firmware chunks a node sends per second, all pots and all edges together, so a
// rollout never crowds out telemetry, acks and commands (which are not limited). It is a token
// bucket of perSecond tokens a second with a burst of a tenth of that (at least one). Share one
// Pace between the edges of a node to keep the limit node-wide.
type Pace struct {
	mu     sync.Mutex
	per    time.Duration
	burst  float64
	tokens float64
	last   time.Time
}

// NewPace returns a Pace of perSecond chunks of PaceChunkBytes a second (at least 1).
func NewPace(perSecond int) *Pace {
	perSecond = max(perSecond, 1)
	b := float64(max(perSecond/10, 1))
	return &Pace{per: time.Second / time.Duration(perSecond), burst: b, tokens: b, last: time.Now()}
}

// Wait takes the tokens a chunk of n bytes costs, waiting until they are there; false if stop
// closed first. A chunk costing more than the burst waits for a full bucket and leaves it in
// debt, so the average rate holds whatever the chunk size.
func (p *Pace) Wait(n int, stop <-chan struct{}) bool {
	cost := float64(max((n+PaceChunkBytes-1)/PaceChunkBytes, 1))
	for {
		p.mu.Lock()
		now := time.Now()
		p.tokens = min(p.burst, p.tokens+float64(now.Sub(p.last))/float64(p.per))
		p.last = now
		if need := min(cost, p.burst); p.tokens >= need {
			p.tokens -= cost
			p.mu.Unlock()
			return true
		}
		d := time.Duration((min(cost, p.burst) - p.tokens) * float64(p.per))
		p.mu.Unlock()
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-stop:
			t.Stop()
			return false
		}
	}
}
