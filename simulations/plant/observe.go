package plant

import (
	"time"

	"github.com/sprout-iot/sprout/messages/devicepb"
)

// ObservationKind names what happened in an Observation.
type ObservationKind int

const (
	Connected       ObservationKind = iota + 1 // a TCP connection opened (Server)
	Welcomed                                   // the handshake completed (Server, Welcome)
	Sent                                       // a Telemetry or Event was written (Seq, Resend)
	Acked                                      // a frame was acknowledged for the first time (Seq)
	EventQueued                                // the plant raised an Event (Seq, EventKind)
	CommandReceived                            // a Command arrived (Command)
	ResultSent                                 // a CommandResult was written (Result)
	Closed                                     // a connection ended or an attempt failed (Server, Reason if the server sent Close, Err)
	UpdateOffered                              // an UpdateOffer arrived (Offer)
	UpdateReported                             // an UpdateProgress was written (UpdateState, Percent, Detail: its reason)
)

var kindNames = [...]string{"", "connected", "welcomed", "sent", "acked", "event queued", "command received", "result sent", "closed", "update offered", "update reported"}

func (k ObservationKind) String() string {
	if k > 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "unknown"
}

// Observation is one thing a plant did or saw, for tests and tools. Only the fields named by its
// Kind are set.
type Observation struct {
	Kind      ObservationKind
	Time      time.Time
	Server    string
	Seq       uint64
	Resend    bool
	Welcome   *devicepb.Welcome
	Command   *devicepb.Command
	Result    *devicepb.CommandResult
	EventKind devicepb.EventKind
	Reason    devicepb.CloseReason
	Err       error

	Offer       *devicepb.UpdateOffer
	UpdateState devicepb.UpdateState
	Percent     uint32
	Detail      string
}

// note queues an observation. Call with p.mu held.
func (p *Plant) note(o Observation) {
	if p.cfg.Observer == nil {
		return
	}
	o.Time = time.Now()
	p.notes = append(p.notes, o)
}

// observe is note for callers that do not hold p.mu.
func (p *Plant) observe(o Observation) {
	if p.cfg.Observer == nil {
		return
	}
	p.mu.Lock()
	p.note(o)
	p.mu.Unlock()
	p.emit()
}

// emit wakes the observer goroutine, which calls Observer outside the plant's lock so that it
// may call the plant's methods.
func (p *Plant) emit() {
	if p.cfg.Observer == nil {
		return
	}
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

func (p *Plant) observerLoop(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	for {
		stopping := false
		select {
		case <-p.wake:
		case <-stop:
			stopping = true
		}
		p.mu.Lock()
		notes := p.notes
		p.notes = nil
		p.mu.Unlock()
		for _, o := range notes {
			p.cfg.Observer(o)
		}
		if stopping {
			return
		}
	}
}
