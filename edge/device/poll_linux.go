//go:build linux

package device

import (
	"errors"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sprout-iot/sprout/messages/devicepb"
)

// The poller reads welcomed plain-TCP connections without a goroutine each: a few loops (one per
// CPU) wait in epoll (edge-triggered) for readable sockets, read each into the loop's buffer,
// decode the complete frames and hand them to the grain, and keep only the bytes of a frame split
// across reads. Writing stays with the connection's writer (outq.go), through Go's own poller, so a
// socket that does not drain never blocks a loop. The idle timeout, a socket deadline on a reading
// goroutine, is a sweep here: every connection's last complete frame is checked a few times per
// IdleTimeout.

// pollReadBytes is each loop's read buffer; pollRounds bounds the reads of one connection per
// turn, so that a pot that floods does not starve the loop's others (it gets another turn after them).
const (
	pollReadBytes = 16 << 10
	pollRounds    = 4
)

type poller struct {
	s     *Server
	loops []pollLoop
	next  atomic.Uint64
	now   atomic.Int64 // coarse unix ns, set by the sweep

	mu    sync.RWMutex
	conns map[uint64]*conn
	stop  chan struct{}
	wg    sync.WaitGroup
}

type pollLoop struct {
	epfd, wake int // the epoll set and an eventfd that ends the loop
}

// pollerFor returns the edge's poller if nc can be polled (a plain TCP socket, and
// GoroutinePerConn off), starting it on first use; nil otherwise.
func (s *Server) pollerFor(nc net.Conn) *poller {
	if s.opts.GoroutinePerConn {
		return nil
	}
	if _, ok := nc.(*net.TCPConn); !ok {
		return nil
	}
	s.pollOnce.Do(func() {
		p, err := newPoller(s)
		if err != nil {
			s.opts.Logger.Warn("device edge: no epoll; reading each connection on a goroutine", "err", err)
			return
		}
		s.mu.Lock()
		closed := s.closed
		if !closed {
			s.poll = p
		}
		s.mu.Unlock()
		if closed {
			p.close()
		}
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.poll
}

func newPoller(s *Server) (*poller, error) {
	n := max(1, min(runtime.GOMAXPROCS(0), 8))
	p := &poller{s: s, conns: map[uint64]*conn{}, stop: make(chan struct{})}
	p.now.Store(time.Now().UnixNano())
	for i := 0; i < n; i++ {
		epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
		if err != nil {
			p.closeLoops()
			return nil, err
		}
		wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
		if err != nil {
			_ = unix.Close(epfd)
			p.closeLoops()
			return nil, err
		}
		ev := unix.EpollEvent{Events: unix.EPOLLIN} // id 0: the wake-up
		if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wake, &ev); err != nil {
			_ = unix.Close(epfd)
			_ = unix.Close(wake)
			p.closeLoops()
			return nil, err
		}
		p.loops = append(p.loops, pollLoop{epfd: epfd, wake: wake})
	}
	for i := range p.loops {
		p.wg.Add(1)
		go p.loop(p.loops[i])
	}
	p.wg.Add(1)
	go p.sweep()
	return p, nil
}

func (p *poller) closeLoops() {
	for _, l := range p.loops {
		_ = unix.Close(l.epfd)
		_ = unix.Close(l.wake)
	}
	p.loops = nil
}

// close ends the loops and the sweep (the edge is shut down; its connections are closing).
func (p *poller) close() {
	select {
	case <-p.stop:
		return
	default:
	}
	close(p.stop)
	one := []byte{1, 0, 0, 0, 0, 0, 0, 0}
	for _, l := range p.loops {
		_, _ = unix.Write(l.wake, one)
	}
	p.wg.Wait()
	p.closeLoops()
}

// handOff gives a welcomed connection to the poller: the bytes its handshake read past Auth are
// dispatched first, then the socket is watched.
func (c *conn) handOff(p *poller) {
	rc, err := c.nc.(*net.TCPConn).SyscallConn()
	if err != nil {
		c.close(devicepb.CloseReason_CLOSE_REASON_UNSPECIFIED, "", 0)
		c.cleanup()
		return
	}
	c.rc = rc
	if n := c.r.Buffered(); n > 0 {
		b, _ := c.r.Peek(n)
		c.partial = append([]byte(nil), b...)
	}
	c.r.Reset(nil)
	readers.Put(c.r)
	c.r = nil
	c.seen.Store(p.now.Load())
	c.pollID = p.next.Add(1)
	p.mu.Lock()
	p.conns[c.pollID] = c
	p.mu.Unlock()
	c.polled.Store(true)
	select {
	case <-c.closing: // closed during the hand-off: its close found no cleanup to start
		go c.cleanup()
		return
	default:
	}
	// Frames that came with the handshake's last read go first; then the socket is watched
	// (registering a socket that holds data reports it at once).
	c.rmu.Lock()
	if len(c.partial) > 0 {
		c.readFrom(make([]byte, len(c.partial)))
	}
	c.rmu.Unlock()
	l := p.loops[c.pollID%uint64(len(p.loops))]
	var cerr error
	err = rc.Control(func(fd uintptr) {
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(uint32(c.pollID)), Pad: int32(uint32(c.pollID >> 32))}
		cerr = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, int(fd), &ev)
	})
	if err == nil {
		err = cerr
	}
	if err != nil {
		select {
		case <-c.closing:
		default:
			c.s.opts.Logger.Warn("device edge: cannot watch a socket", "device", c.device, "err", err)
		}
		c.close(devicepb.CloseReason_CLOSE_REASON_UNSPECIFIED, "", 0)
	}
}

func (p *poller) remove(c *conn) {
	p.mu.Lock()
	delete(p.conns, c.pollID)
	p.mu.Unlock()
}

func (p *poller) lookup(id uint64) *conn {
	p.mu.RLock()
	c := p.conns[id]
	p.mu.RUnlock()
	return c
}

// loop waits for readable sockets and serves them, one at a time, on this goroutine: serving only
// decodes and queues (to the grain, to outq), it never waits.
func (p *poller) loop(l pollLoop) {
	defer p.wg.Done()
	events := make([]unix.EpollEvent, 256)
	buf := make([]byte, pollReadBytes+p.s.opts.MaxFrameBytes+binaryMaxVarint)
	var again, next []*conn
	for {
		timeout := -1
		if len(again) > 0 {
			timeout = 0
		}
		n, err := unix.EpollWait(l.epfd, events, timeout)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			p.s.opts.Logger.Error("device edge: epoll failed", "err", err)
			return
		}
		for i := 0; i < n; i++ {
			id := uint64(uint32(events[i].Fd)) | uint64(uint32(events[i].Pad))<<32
			if id == 0 {
				return // close
			}
			if c := p.lookup(id); c != nil && c.pollRead(buf, pollRounds) {
				next = append(next, c)
			}
		}
		for _, c := range again {
			if c.pollRead(buf, pollRounds) {
				next = append(next, c)
			}
		}
		clear(again)
		again, next = next, again[:0]
	}
}

const binaryMaxVarint = 10

// pollRead is a connection's turn: up to rounds reads (0: until the socket is drained), each
// followed by dispatching the complete frames. It reports whether the socket may hold more.
func (c *conn) pollRead(buf []byte, rounds int) (more bool) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for i := 0; rounds == 0 || i < rounds; i++ {
		if c.rstop || c.paused.Load() {
			return false
		}
		if c.readFrom(buf) != readMore {
			return false
		}
	}
	return true
}

type readResult int

const (
	readMore readResult = iota
	readDrained
	readStop
)

// readFrom dispatches the pending bytes and what one read adds to them, as far as frames are
// complete; the rest stays pending. With no room left in buf after the pending bytes (a paused
// connection's held frames), it only dispatches. Call with rmu held.
func (c *conn) readFrom(buf []byte) readResult {
	n := copy(buf, c.partial)
	c.partial = nil
	room := len(buf) - n
	var m int
	var err error
	if room > 0 {
		m, err = c.rawRead(buf[n:])
	}
	rest, r, d, stop := c.frames(buf[:n+m])
	if stop {
		c.rstop = true
		c.close(r, d, 0)
		return readStop
	}
	if len(rest) < n+m {
		c.seen.Store(c.s.poll.now.Load()) // a complete frame: the idle timeout starts again
	}
	if len(rest) > 0 {
		c.partial = append([]byte(nil), rest...)
	}
	switch {
	case room == 0:
		return readMore
	case err == nil && m == 0: // end of stream
		c.rstop = true
		c.close(devicepb.CloseReason_CLOSE_REASON_UNSPECIFIED, "connection closed by device", 0)
		return readStop
	case errors.Is(err, unix.EAGAIN):
		return readDrained
	case err != nil:
		c.rstop = true
		c.close(devicepb.CloseReason_CLOSE_REASON_UNSPECIFIED, "connection closed by device", 0)
		return readStop
	case m < room:
		return readDrained // a short read emptied the socket; new data brings a new event
	}
	return readMore
}

// rawRead reads once from the socket without waiting. The descriptor stays valid while it reads,
// even if the connection is closed meanwhile.
func (c *conn) rawRead(b []byte) (n int, err error) {
	rerr := c.rc.Read(func(fd uintptr) bool {
		for {
			n, err = unix.Read(int(fd), b)
			if err != unix.EINTR {
				return true
			}
		}
	})
	if n < 0 {
		n = 0
	}
	if rerr != nil {
		return 0, rerr
	}
	return n, err
}

var resumeBufs = sync.Pool{New: func() any { return new([]byte) }}

// resume reads a connection that was paused with all its in-flight slots taken, now that an
// answer freed one: the frames it held back, then the socket until it is drained (its readiness
// came while it was paused and will not be reported again).
func (c *conn) resume() {
	p := c.s.poll
	if p == nil {
		return
	}
	bp := resumeBufs.Get().(*[]byte)
	if len(*bp) < pollReadBytes+c.s.opts.MaxFrameBytes+binaryMaxVarint {
		*bp = make([]byte, pollReadBytes+c.s.opts.MaxFrameBytes+binaryMaxVarint)
	}
	c.pollRead(*bp, 0)
	resumeBufs.Put(bp)
}

// sweep closes polled connections silent for IdleTimeout, checking a few times per IdleTimeout.
func (p *poller) sweep() {
	defer p.wg.Done()
	idle := p.s.opts.IdleTimeout
	every := min(max(idle/8, 5*time.Millisecond), time.Second)
	t := time.NewTicker(every)
	defer t.Stop()
	var late []*conn
	for {
		select {
		case <-p.stop:
			return
		case now := <-t.C:
			p.now.Store(now.UnixNano())
			limit := now.Add(-idle).UnixNano()
			p.mu.RLock()
			for _, c := range p.conns {
				if c.seen.Load() < limit {
					late = append(late, c)
				}
			}
			p.mu.RUnlock()
			for _, c := range late {
				c.close(devicepb.CloseReason_CLOSE_REASON_IDLE_TIMEOUT, "no frame within the idle timeout", 0)
			}
			clear(late)
			late = late[:0]
		}
	}
}
