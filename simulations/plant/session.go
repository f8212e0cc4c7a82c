package plant

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sprout-iot/sprout/messages"
	"github.com/sprout-iot/sprout/messages/deviceclient"
	"github.com/sprout-iot/sprout/messages/devicepb"
)

var (
	errDial       = errors.New("dial")
	errHandshake  = errors.New("handshake")
	errWrite      = errors.New("write")
	errAckTimeout = errors.New("ack timeout")
)

// session is one connection after Welcome. Its fields are guarded by Plant.mu.
type session struct {
	c         link
	server    string
	out       []byte    // frames waiting for the next flush
	wdl       time.Time // write deadline set on the socket
	next      int       // ring index of the next entry to write on this connection
	inflight  int       // written on this connection and not yet acked
	lastWrite time.Time
	heartbeat time.Duration
	ended     chan struct{} // closed when the reader returns
	drained   chan struct{} // signalled when closing and nothing is in flight
	err       error         // first failure
	close     *devicepb.Close
	reboot    bool
}

type sessionEnd struct {
	close  *devicepb.Close
	reboot bool
	err    error
}

func (s *session) fail(err error) {
	if s.err == nil {
		s.err = err
	}
	_ = s.c.Close()
}

// connect dials addr and handshakes; on Welcome the session becomes the plant's current one and
// the ring is resent from its oldest entry.
func (p *Plant) connect(ctx context.Context, addr string) (*session, error) {
	p.stats.ConnectAttempts.Add(1)
	var c link
	var w *devicepb.Welcome
	if p.cfg.Transport == TransportMQTT {
		ml, welcome, err := dialMQTT(addr, p.cfg)
		if err != nil {
			return nil, err
		}
		p.observe(Observation{Kind: Connected, Server: addr})
		c, w = ml, welcome
	} else {
		var dc *deviceclient.Conn
		var err error
		if p.cfg.TLS != nil {
			dc, err = deviceclient.DialTLS(addr, p.cfg.LocalIP, p.cfg.DialTimeout, p.cfg.TLS)
		} else {
			dc, err = deviceclient.Dial(addr, p.cfg.LocalIP, p.cfg.DialTimeout)
		}
		if err != nil {
			return nil, fmt.Errorf("%w %s: %w", errDial, addr, err)
		}
		p.observe(Observation{Kind: Connected, Server: addr})
		stop := context.AfterFunc(ctx, func() { _ = dc.Close() })
		p.mu.Lock()
		firmware := p.firmware
		p.mu.Unlock()
		w, err = dc.Handshake(deviceclient.Hello{DeviceID: p.cfg.ID, Secret: p.cfg.Secret, Firmware: firmware}, p.cfg.HandshakeTimeout)
		stop()
		if err != nil {
			_ = dc.Close()
			return nil, fmt.Errorf("%w with %s: %w", errHandshake, addr, err)
		}
		c = dc
	}

	s := &session{c: c, server: addr, ended: make(chan struct{}), drained: make(chan struct{}, 1), lastWrite: time.Now()}
	p.mu.Lock()
	defer func() { p.mu.Unlock(); p.emit() }()
	p.stats.Connects.Add(1)
	if p.welcomed {
		p.stats.Reconnects.Add(1)
	}
	p.welcomed = true
	p.stats.connected()
	p.setDeviceConfig(w.Config)
	s.heartbeat = time.Duration(p.dev.HeartbeatIntervalS) * time.Second

	// The server already stores everything up to last_seq: those entries need no resend, and a
	// counter behind it (a device whose memory was wiped) continues after it.
	for p.ring.len() > 0 && p.ring.at(0).seq <= w.LastSeq {
		if !p.ring.at(0).acked {
			p.stats.FramesAckedByWelcome.Add(1)
		}
		p.ring.pop()
	}
	if p.seq < w.LastSeq {
		p.seq = w.LastSeq
	}
	for i := 0; i < p.ring.len(); i++ {
		p.ring.at(i).sentAt = time.Time{}
	}
	p.s = s
	p.note(Observation{Kind: Welcomed, Server: addr, Welcome: w})
	for _, r := range p.unsent {
		p.sendResult(r)
	}
	p.unsent = nil
	p.otaWelcomed()
	p.pushOut()
	return s, nil
}

// setDeviceConfig applies a config from Welcome or SET_CONFIG. Call with p.mu held.
func (p *Plant) setDeviceConfig(c *devicepb.Config) {
	p.dev = deviceConfig(c)
	if p.s != nil {
		p.s.heartbeat = time.Duration(p.dev.HeartbeatIntervalS) * time.Second
	}
	select {
	case p.cfgChanged <- struct{}{}:
	default:
	}
}

// serve runs a session until the connection ends or ctx does.
func (p *Plant) serve(ctx context.Context, s *session) sessionEnd {
	go p.readLoop(s)
	p.mu.Lock()
	period := min(s.heartbeat, p.cfg.AckTimeout) / 4
	p.mu.Unlock()
	period = max(20*time.Millisecond, min(period, time.Second))
	tick := time.NewTicker(period)
	defer tick.Stop()
loop:
	for {
		select {
		case <-s.ended:
			break loop
		case <-tick.C:
			p.mu.Lock()
			p.housekeep(s)
			p.mu.Unlock()
			p.emit()
		case <-ctx.Done():
			p.shutdown(s)
			break loop
		}
	}
	_ = s.c.Close()
	<-s.ended

	p.mu.Lock()
	p.s = nil
	p.otaDisconnected()
	p.stats.Connected.Add(-1)
	end := sessionEnd{close: s.close, reboot: s.reboot, err: s.err}
	o := Observation{Kind: Closed, Server: s.server, Err: s.err}
	if s.close != nil {
		o.Reason = s.close.Reason
		p.stats.Error("closed: " + ReasonName(s.close.Reason))
	} else if s.err != nil && !s.reboot && ctx.Err() == nil {
		p.stats.Error(errorKind(s.err))
	}
	p.note(o)
	p.mu.Unlock()
	p.emit()
	return end
}

// housekeep sends a Ping on an idle connection and gives up on a connection whose oldest frame
// waited too long for its ack. Call with p.mu held.
func (p *Plant) housekeep(s *session) {
	now := time.Now()
	for i := 0; i < s.next && i < p.ring.len(); i++ {
		e := p.ring.at(i)
		if e.acked || e.sentAt.IsZero() {
			continue
		}
		if now.Sub(e.sentAt) > p.cfg.AckTimeout {
			s.fail(fmt.Errorf("%w: seq %d unacked after %v", errAckTimeout, e.seq, p.cfg.AckTimeout))
			return
		}
		break
	}
	if now.Sub(s.lastWrite) >= s.heartbeat {
		p.stats.PingsSent.Add(1)
		s.out, _ = messages.AppendFrame(s.out, &devicepb.Frame{Body: &devicepb.Frame_Ping{Ping: &devicepb.Ping{Nonce: p.rng.Uint64()}}})
		p.flush()
	}
}

// shutdown stops new frames, waits up to DrainTimeout for in-flight acks and says Close.
func (p *Plant) shutdown(s *session) {
	p.mu.Lock()
	p.closing = true
	waiting := s.inflight > 0
	p.mu.Unlock()
	if waiting {
		t := time.NewTimer(p.cfg.DrainTimeout)
		select {
		case <-s.drained:
		case <-s.ended:
		case <-t.C:
		}
		t.Stop()
	}
	p.mu.Lock()
	if s.err == nil {
		s.out, _ = messages.AppendFrame(s.out, &devicepb.Frame{Body: &devicepb.Frame_Close{Close: &devicepb.Close{
			Reason: devicepb.CloseReason_CLOSE_REASON_UNSPECIFIED, Detail: "device shutting down"}}})
		p.flush()
	}
	p.mu.Unlock()
}

// readLoop reads frames and handles them under the plant's lock. Like nats' read loop it writes
// what the frames produced (acks free window slots, Pongs, results) only when no more input is
// buffered, so that a burst of acks costs one write.
func (p *Plant) readLoop(s *session) {
	defer close(s.ended)
	p.mu.Lock()
	timeout := 3 * s.heartbeat
	p.mu.Unlock()
	var deadline time.Time
	for {
		// Moving the deadline resets a runtime timer; on a busy connection do it only once a
		// quarter of the timeout has passed.
		if now := time.Now(); s.c.Buffered() == 0 && deadline.Sub(now) < timeout*3/4 {
			deadline = now.Add(timeout)
			_ = s.c.SetReadDeadline(deadline)
		}
		f := &devicepb.Frame{}
		err := s.c.Read(f)
		p.mu.Lock()
		if err != nil {
			s.fail(err)
			p.mu.Unlock()
			return
		}
		p.handle(s, f)
		if s.c.Buffered() == 0 || s.close != nil || s.reboot {
			p.pushOut()
		}
		timeout = 3 * s.heartbeat
		stop := s.close != nil || s.reboot || s.err != nil
		p.mu.Unlock()
		p.emit()
		if stop {
			return
		}
	}
}

// handle acts on one frame from the server. Call with p.mu held.
func (p *Plant) handle(s *session, f *devicepb.Frame) {
	switch b := f.Body.(type) {
	case *devicepb.Frame_Ack:
		p.ack(s, b.Ack.GetSeq())
	case *devicepb.Frame_Ping:
		p.stats.PongsSent.Add(1)
		s.out, _ = messages.AppendFrame(s.out, &devicepb.Frame{Body: &devicepb.Frame_Pong{Pong: &devicepb.Pong{Nonce: b.Ping.GetNonce()}}})
	case *devicepb.Frame_Pong:
	case *devicepb.Frame_Command:
		p.command(b.Command)
	case *devicepb.Frame_Close:
		s.close = b.Close
	case *devicepb.Frame_UpdateOffer:
		p.offer(s, b.UpdateOffer)
	case *devicepb.Frame_Chunk:
		p.chunk(s, b.Chunk)
	default:
		p.stats.Error(fmt.Sprintf("unexpected frame %T", f.Body))
	}
}

// ack marks seq stored and frees its window slot.
func (p *Plant) ack(s *session, seq uint64) {
	i, ok := p.ring.find(seq)
	if !ok || p.ring.at(i).acked {
		p.stats.DuplicateAcks.Add(1)
		return
	}
	e := p.ring.at(i)
	e.acked = true
	p.stats.FramesAcked.Add(1)
	if i < s.next && !e.sentAt.IsZero() {
		s.inflight--
		p.stats.AckLatency.Record(time.Since(e.sentAt))
	}
	p.note(Observation{Kind: Acked, Seq: seq})
	for p.ring.len() > 0 && p.ring.at(0).acked {
		p.ring.pop()
		if s.next > 0 {
			s.next--
		}
	}
	if p.closing && s.inflight == 0 {
		select {
		case s.drained <- struct{}{}:
		default:
		}
	}
}

// pushOut fills the window and writes what is pending. Call with p.mu held.
func (p *Plant) pushOut() {
	p.fill()
	p.flush()
}

// fill writes ring entries into the session's buffer while the window has room; in Flood mode it
// takes a new reading for every free slot. Call with p.mu held.
func (p *Plant) fill() {
	s := p.s
	if s == nil || p.closing || s.err != nil {
		return
	}
	now := time.Now()
	for s.inflight < p.cfg.Window {
		if s.next >= p.ring.len() {
			if p.cfg.ReportInterval != Flood {
				return
			}
			p.takeReading()
			if s.next >= p.ring.len() {
				return
			}
		}
		e := p.ring.at(s.next)
		s.next++
		if e.acked {
			continue
		}
		resend := e.sent
		if resend {
			p.stats.FramesResent.Add(1)
		}
		e.sent, e.sentAt = true, now
		s.inflight++
		var err error
		if s.out, err = messages.AppendFrame(s.out, e.frame); err != nil {
			s.fail(fmt.Errorf("encode seq %d: %w", e.seq, err))
			return
		}
		p.stats.FramesSent.Add(1)
		p.note(Observation{Kind: Sent, Seq: e.seq, Resend: resend})
	}
}

// flush writes the session's buffer. Call with p.mu held.
func (p *Plant) flush() {
	s := p.s
	if s == nil || len(s.out) == 0 || s.err != nil {
		return
	}
	now := time.Now()
	if s.wdl.Sub(now) < p.cfg.WriteTimeout*3/4 {
		s.wdl = now.Add(p.cfg.WriteTimeout)
		_ = s.c.SetWriteDeadline(s.wdl)
	}
	err := s.c.SendRaw(s.out)
	s.out = s.out[:0]
	s.lastWrite = now
	if err != nil {
		s.fail(fmt.Errorf("%w: %w", errWrite, err))
	}
}
