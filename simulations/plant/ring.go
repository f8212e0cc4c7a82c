package plant

import (
	"time"

	"github.com/sprout-iot/sprout/messages/devicepb"
)

// entry is one unacknowledged Telemetry or Event.
type entry struct {
	seq    uint64
	frame  *devicepb.Frame
	sentAt time.Time // when written on the current connection; zero if not yet
	sent   bool      // written on some connection (a later write is a resend)
	acked  bool      // acked out of order; removed once it reaches the front
}

// ring holds unacked frames in seq order, contiguous seqs, oldest first. It grows up to its limit
// and then drops the oldest entry, as a device with a fixed buffer would.
type ring struct {
	buf   []entry
	head  int
	limit int
}

func (r *ring) len() int { return len(r.buf) - r.head }

func (r *ring) at(i int) *entry { return &r.buf[r.head+i] }

// push appends e and reports whether the oldest entry had to be dropped to make room (returning it).
func (r *ring) push(e entry) (dropped entry, ok bool) {
	if r.len() >= r.limit {
		dropped, ok = *r.at(0), true
		r.pop()
	}
	r.buf = append(r.buf, e)
	return dropped, ok
}

func (r *ring) pop() {
	r.buf[r.head] = entry{}
	r.head++
	if r.head == len(r.buf) {
		r.buf, r.head = r.buf[:0], 0
	} else if r.head > 64 && r.head*2 > len(r.buf) {
		n := copy(r.buf, r.buf[r.head:])
		clear(r.buf[n:])
		r.buf, r.head = r.buf[:n], 0
	}
}

// find returns the index of seq, relying on contiguous seqs.
func (r *ring) find(seq uint64) (int, bool) {
	if r.len() == 0 {
		return 0, false
	}
	first := r.at(0).seq
	if seq < first || seq-first >= uint64(r.len()) {
		return 0, false
	}
	return int(seq - first), true
}
