package device

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/sprout-iot/sprout/messages"
	"github.com/sprout-iot/sprout/messages/actorpb"
	"github.com/sprout-iot/sprout/messages/devicepb"
)

// outq is a connection's outbound queue: frames encoded into one buffer, bounded in frames and
// bytes (MaxPendingFrames, MaxPendingBytes) when they are queued, and drained by one writer that
// hands everything queued to the socket in one write. The writer goroutine is started when frames
// are queued to an idle queue and ends when it is empty, so an idle connection holds none; there
// is never more than one. Closing queues Close after what is already queued.
type outq struct {
	mu       sync.Mutex
	buf      []byte // encoded frames waiting for the writer
	frames   int    // how many
	wframes  int    // frames the writer is writing now
	wbytes   int    // their bytes
	spare    []byte // the writer's last buffer, reused
	held     []*devicepb.Frame
	welcomed bool // frames from the grain go out; before, they are held to follow the Welcome
	writing  bool // the writer goroutine runs
	closing  bool // nothing more is accepted; the writer closes the socket once buf is written
	ended    bool // the socket is closed
	done     chan struct{}
}

func (q *outq) init() { q.done = make(chan struct{}) }

// send queues frames for the device. It returns false if they were not queued: the connection is
// closing, or they would overflow the queue, which closes it as a slow consumer.
func (c *conn) send(frames ...*devicepb.Frame) bool {
	q := &c.out
	q.mu.Lock()
	err := q.push(c, frames)
	q.mu.Unlock()
	if err != nil && err != errClosing {
		c.drop(devicepb.CloseReason_CLOSE_REASON_SLOW_CONSUMER, err.Error())
	}
	return err == nil
}

// errClosing is push's answer once the connection is closing: the frames are dropped.
var errClosing = errors.New("connection closing")

// deliver queues frames from the grain; until the Welcome is queued they are held to follow it.
func (c *conn) deliver(frames []*devicepb.Frame) {
	q := &c.out
	q.mu.Lock()
	var over error
	if !q.welcomed && !q.closing {
		q.held = append(q.held, frames...)
		if len(q.held) > c.s.opts.MaxPendingFrames {
			over = fmt.Errorf("%d frames held before the Welcome, limit %d", len(q.held), c.s.opts.MaxPendingFrames)
		}
	} else {
		over = q.push(c, frames)
	}
	q.mu.Unlock()
	if over != nil && over != errClosing {
		c.drop(devicepb.CloseReason_CLOSE_REASON_SLOW_CONSUMER, over.Error())
	}
}

// welcome queues the Welcome (with the frames that must follow it) ahead of the held frames.
func (c *conn) welcome(frames []*devicepb.Frame) bool {
	q := &c.out
	q.mu.Lock()
	q.welcomed = true
	frames = append(frames, q.held...)
	q.held = nil
	err := q.push(c, frames)
	q.mu.Unlock()
	if err != nil && err != errClosing {
		c.drop(devicepb.CloseReason_CLOSE_REASON_SLOW_CONSUMER, err.Error())
	}
	return err == nil
}

// push encodes frames onto the queue, all or none, and wakes the writer. It returns errClosing
// once the connection is closing, or an error saying by how much they would overflow the queue.
// Call with q.mu held.
func (q *outq) push(c *conn, frames []*devicepb.Frame) error {
	if q.closing {
		return errClosing
	}
	if len(frames) == 0 {
		return nil
	}
	was := len(q.buf)
	for _, f := range frames {
		var err error
		if q.buf, err = messages.AppendFrame(q.buf, f); err != nil {
			q.buf = q.buf[:was]
			c.s.opts.Logger.Error("encoding a frame failed", "device", c.device, "err", err)
			return nil
		}
	}
	return q.admit(c, was, len(frames))
}

// sendAcks queues Ack{seq} for each of acks, in order, as one push: it is send of those frames,
// encoded without proto.Marshal (acks are most of what the edge writes, and the marshaller's deep
// stack grows the grain goroutine that answers on every turn).
func (c *conn) sendAcks(acks []*actorpb.ReportAck) bool {
	if len(acks) == 0 {
		return true
	}
	q := &c.out
	q.mu.Lock()
	err := errClosing
	if !q.closing {
		was := len(q.buf)
		for _, a := range acks {
			q.buf = appendAck(q.buf, a.Seq)
		}
		err = q.admit(c, was, len(acks))
	}
	q.mu.Unlock()
	if err != nil && err != errClosing {
		c.drop(devicepb.CloseReason_CLOSE_REASON_SLOW_CONSUMER, err.Error())
	}
	return err == nil
}

// appendAck appends the frame Frame{ack: Ack{seq}} exactly as messages.AppendFrame encodes it.
func appendAck(b []byte, seq uint64) []byte {
	inner := 0
	if seq != 0 {
		inner = 1 + protowire.SizeVarint(seq)
	}
	b = protowire.AppendVarint(b, uint64(1+protowire.SizeVarint(uint64(inner))+inner))
	b = protowire.AppendTag(b, ackField, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(inner))
	if seq != 0 {
		b = protowire.AppendTag(b, 1, protowire.VarintType)
		b = protowire.AppendVarint(b, seq)
	}
	return b
}

// ackField is Frame.ack's field number (messages/devicepb/device.proto).
const ackField = 6

// admit keeps the n frames encoded past was if they fit the queue's limits, and wakes the writer.
// Call with q.mu held.
func (q *outq) admit(c *conn, was, n int) error {
	o := &c.s.opts
	// The limits cover what the writer is writing too: all of it is memory held for this device.
	if total, b := q.wframes+q.frames+n, q.wbytes+len(q.buf); total > o.MaxPendingFrames || b > o.MaxPendingBytes {
		q.buf = q.buf[:was]
		return fmt.Errorf("outbound queue full: %d frames, %d bytes (limits %d, %d)", total, b, o.MaxPendingFrames, o.MaxPendingBytes)
	}
	q.frames += n
	c.s.pending.Add(int64(n))
	c.s.pendingBytes.Add(int64(len(q.buf) - was))
	q.wake(c)
	return nil
}

// wake starts the writer unless it runs. Call with q.mu held.
func (q *outq) wake(c *conn) {
	if !q.writing && !q.ended {
		q.writing = true
		go c.writeLoop()
	}
}

// finish queues last (Close) after everything queued, beyond the limits, and stops accepting
// frames; the writer closes the socket once it has written them.
func (q *outq) finish(c *conn, last *devicepb.Frame) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.held = nil
	if q.closing {
		return
	}
	q.closing = true
	was := len(q.buf)
	var err error
	if q.buf, err = messages.AppendFrame(q.buf, last); err != nil {
		q.buf = q.buf[:was]
	} else {
		q.frames++
		c.s.pending.Add(1)
		c.s.pendingBytes.Add(int64(len(q.buf) - was))
	}
	if q.writing {
		return
	}
	if len(q.buf) == 0 {
		q.endLocked(c)
		return
	}
	q.wake(c)
}

// abort drops what is queued and closes the socket now, interrupting a write in progress.
func (q *outq) abort(c *conn) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closing = true
	q.held = nil
	q.discardLocked(c)
	if q.writing {
		_ = c.nc.Close() // the writer's write fails; it ends the queue
		return
	}
	q.endLocked(c)
}

func (q *outq) discardLocked(c *conn) {
	c.s.pending.Add(-int64(q.frames))
	c.s.pendingBytes.Add(-int64(len(q.buf)))
	q.buf, q.frames = q.buf[:0], 0
}

// endLocked closes the socket, once; the connection's cleanup waits for it. Call with q.mu held.
func (q *outq) endLocked(c *conn) {
	if q.ended {
		return
	}
	q.ended = true
	q.discardLocked(c)
	q.buf, q.spare = nil, nil
	_ = c.nc.Close()
	close(q.done)
}

// writeLoop is the one writer: it takes everything queued, writes it in one write bounded by
// WriteTimeout, and repeats until the queue is empty. A write that fails or times out drops the
// connection (a timeout as a slow consumer).
func (c *conn) writeLoop() {
	q := &c.out
	for {
		q.mu.Lock()
		if len(q.buf) == 0 || q.ended {
			q.writing = false
			if q.closing {
				q.endLocked(c)
			}
			q.mu.Unlock()
			return
		}
		b, n := q.buf, q.frames
		q.buf, q.frames, q.spare = q.spare[:0], 0, nil
		q.wframes, q.wbytes = n, len(b)
		q.mu.Unlock()

		_ = c.nc.SetWriteDeadline(time.Now().Add(c.s.opts.WriteTimeout))
		_, err := c.nc.Write(b)
		q.mu.Lock()
		q.wframes, q.wbytes = 0, 0
		if err == nil && cap(b) <= 4096 {
			q.spare = b
		}
		q.mu.Unlock()
		if err == nil {
			c.s.framesOut.Add(int64(n))
		}
		c.s.pending.Add(-int64(n))
		c.s.pendingBytes.Add(-int64(len(b)))
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				c.drop(devicepb.CloseReason_CLOSE_REASON_SLOW_CONSUMER, "the device did not read within the write timeout")
			} else {
				c.drop(devicepb.CloseReason_CLOSE_REASON_UNSPECIFIED, "write failed: "+err.Error())
			}
			q.mu.Lock()
			q.writing = false
			q.endLocked(c)
			q.mu.Unlock()
			return
		}
	}
}
