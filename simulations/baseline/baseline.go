// Package baseline is the smallest server that speaks Sprout's device protocol: the same framing
// and handshake as the edge, then an Ack for every Telemetry and Event and a Pong for every Ping,
// with no actors and no storage. Benchmarks run the fleet against it and against the real server
// in the same run, so that the real server's telemetry throughput is read against what the
// machine and the simulator can do at all. It is not a server to deploy.
package baseline

import (
	"bufio"
	"crypto/hmac"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sprout-iot/sprout/messages"
	"github.com/sprout-iot/sprout/messages/devicepb"
)

// Defaults for Server's zero fields.
const (
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultReadBufferBytes  = 1024
	DefaultWriteBufferBytes = 1024
	DefaultWriteTimeout     = 10 * time.Second
)

// Server is a baseline server. The zero value (with SecretFor set) serves with the defaults.
type Server struct {
	// SecretFor returns a device's secret; false closes the connection with UNKNOWN_DEVICE.
	SecretFor func(id string) ([]byte, bool)
	// Config is sent in Welcome (nil: report every 60 s, heartbeat 30 s, the protocol's defaults).
	Config *devicepb.Config
	// MaxFrameBytes closes a connection whose frame is larger, with FRAME_TOO_LARGE (default messages.DefaultMaxFrameBytes).
	MaxFrameBytes    int
	HandshakeTimeout time.Duration
	// IdleTimeout drops a connection silent this long (default 3x the Welcome heartbeat).
	IdleTimeout      time.Duration
	ReadBufferBytes  int
	WriteBufferBytes int
	WriteTimeout     time.Duration
	// OnAck, if set, is called with each Telemetry or Event seq just before its Ack is buffered,
	// from the connection's goroutine. Tests use it to check seq continuity; leave it nil to measure.
	OnAck func(deviceID string, seq uint64)

	acks     atomic.Uint64
	accepted atomic.Uint64
	mu       sync.Mutex
	conns    map[*conn]struct{}
}

// Serve runs a baseline server with default limits on ln until ln is closed.
func Serve(ln net.Listener, secretFor func(id string) ([]byte, bool)) error {
	return (&Server{SecretFor: secretFor}).Serve(ln)
}

// Acks is the number of Acks written so far.
func (s *Server) Acks() uint64 { return s.acks.Load() }

// Accepted is the number of connections accepted so far.
func (s *Server) Accepted() uint64 { return s.accepted.Load() }

// Serve accepts connections on ln, one goroutine each, until ln is closed; it then closes the
// open connections and returns nil.
func (s *Server) Serve(ln net.Listener) error {
	if s.SecretFor == nil {
		return errors.New("baseline: SecretFor is nil")
	}
	cfg := s.welcomeConfig()
	defer s.CloseConnections(devicepb.CloseReason_CLOSE_REASON_SERVER_SHUTDOWN, 0)
	var tempDelay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			// Out of file descriptors and the like: wait and go on, as net/http does.
			if tempDelay == 0 {
				tempDelay = 5 * time.Millisecond
			} else if tempDelay *= 2; tempDelay > time.Second {
				tempDelay = time.Second
			}
			time.Sleep(tempDelay)
			continue
		}
		tempDelay = 0
		s.accepted.Add(1)
		c := s.newConn(nc)
		go c.run(cfg)
	}
}

// CloseConnections sends Close{reason, reconnect_after} on every open connection and closes it;
// it returns how many it closed. Tests use it to make a fleet reconnect.
func (s *Server) CloseConnections(reason devicepb.CloseReason, reconnectAfter time.Duration) int {
	s.mu.Lock()
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.close(reason, "closed by the baseline server", reconnectAfter)
	}
	return len(conns)
}

func (s *Server) welcomeConfig() *devicepb.Config {
	if s.Config != nil {
		return s.Config
	}
	return &devicepb.Config{
		ReportIntervalS: 60, HeartbeatIntervalS: 30, MaxWaterMs: 30000, MinWaterIntervalS: 60,
		Thresholds: &devicepb.Thresholds{SoilMoistureMinPct: 20, TemperatureMaxC: 35, TankEmptyPct: 5, HysteresisPct: 5},
	}
}

func orDefault[T int | time.Duration](v, d T) T {
	if v <= 0 {
		return d
	}
	return v
}

type conn struct {
	s   *Server
	nc  net.Conn
	r   *bufio.Reader
	max int

	wmu    sync.Mutex // the read loop writes; CloseConnections may too
	w      *bufio.Writer
	closed bool
	ack    devicepb.Frame
	ackMsg devicepb.Ack
	wbuf   []byte
	wdl    time.Time // write deadline set on the socket
}

func (s *Server) newConn(nc net.Conn) *conn {
	c := &conn{
		s: s, nc: nc,
		r:   bufio.NewReaderSize(nc, orDefault(s.ReadBufferBytes, DefaultReadBufferBytes)),
		w:   bufio.NewWriterSize(nc, orDefault(s.WriteBufferBytes, DefaultWriteBufferBytes)),
		max: orDefault(s.MaxFrameBytes, messages.DefaultMaxFrameBytes),
	}
	c.ack.Body = &devicepb.Frame_Ack{Ack: &c.ackMsg}
	s.mu.Lock()
	if s.conns == nil {
		s.conns = make(map[*conn]struct{})
	}
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	return c
}

// write buffers f; flush sends. Both take wmu.
func (c *conn) write(f *devicepb.Frame) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.writeLocked(f)
}

func (c *conn) writeLocked(f *devicepb.Frame) error {
	if c.closed {
		return net.ErrClosed
	}
	var err error
	if c.wbuf, err = messages.AppendFrame(c.wbuf[:0], f); err != nil {
		return err
	}
	_, err = c.w.Write(c.wbuf)
	return err
}

func (c *conn) flush() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed || c.w.Buffered() == 0 {
		return nil
	}
	wt := orDefault(c.s.WriteTimeout, DefaultWriteTimeout)
	if now := time.Now(); c.wdl.Sub(now) < wt*3/4 {
		c.wdl = now.Add(wt)
		_ = c.nc.SetWriteDeadline(c.wdl)
	}
	return c.w.Flush()
}

// close says Close and closes the socket, once.
func (c *conn) close(reason devicepb.CloseReason, detail string, reconnectAfter time.Duration) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed {
		return
	}
	if reason != devicepb.CloseReason_CLOSE_REASON_UNSPECIFIED {
		if len(detail) > messages.MaxDetailBytes {
			detail = detail[:messages.MaxDetailBytes]
		}
		_ = c.writeLocked(&devicepb.Frame{Body: &devicepb.Frame_Close{Close: &devicepb.Close{
			Reason: reason, Detail: detail, ReconnectAfterMs: uint32(reconnectAfter / time.Millisecond)}}})
		_ = c.nc.SetWriteDeadline(time.Now().Add(time.Second))
		_ = c.w.Flush()
	}
	c.closed = true
	_ = c.nc.Close()
}

func (c *conn) run(cfg *devicepb.Config) {
	defer func() {
		c.close(devicepb.CloseReason_CLOSE_REASON_UNSPECIFIED, "", 0)
		c.s.mu.Lock()
		delete(c.s.conns, c)
		c.s.mu.Unlock()
	}()
	id, reason, err := c.handshake(cfg)
	if err != nil {
		c.close(reason, err.Error(), 0)
		return
	}
	idle := orDefault(c.s.IdleTimeout, 3*time.Duration(cfg.GetHeartbeatIntervalS())*time.Second)
	var f devicepb.Frame
	var deadline time.Time
	for {
		// nats-style: flush what the frames so far produced only when the next read would block.
		// The idle deadline moves only once a quarter of it has passed: resetting the runtime
		// timer on every read costs more than the rest of the loop.
		if c.r.Buffered() == 0 {
			if c.flush() != nil {
				return
			}
			if now := time.Now(); deadline.Sub(now) < idle*3/4 {
				deadline = now.Add(idle)
				_ = c.nc.SetReadDeadline(deadline)
			}
		}
		if err := messages.ReadFrame(c.r, c.max, &f); err != nil {
			switch {
			case errors.Is(err, messages.ErrFrameTooLarge):
				c.close(devicepb.CloseReason_CLOSE_REASON_FRAME_TOO_LARGE, err.Error(), 0)
			case isTimeout(err):
				c.close(devicepb.CloseReason_CLOSE_REASON_IDLE_TIMEOUT, "silent too long", 0)
			case isMalformed(err):
				c.close(devicepb.CloseReason_CLOSE_REASON_PROTOCOL_ERROR, err.Error(), 0)
			}
			return
		}
		var werr error
		switch b := f.Body.(type) {
		case *devicepb.Frame_Telemetry:
			werr = c.writeAck(id, b.Telemetry.GetSeq())
		case *devicepb.Frame_Event:
			werr = c.writeAck(id, b.Event.GetSeq())
		case *devicepb.Frame_Ping:
			werr = c.write(&devicepb.Frame{Body: &devicepb.Frame_Pong{Pong: &devicepb.Pong{Nonce: b.Ping.GetNonce()}}})
		case *devicepb.Frame_Pong, *devicepb.Frame_CommandResult:
		case *devicepb.Frame_Close:
			return
		default:
			c.close(devicepb.CloseReason_CLOSE_REASON_PROTOCOL_ERROR, fmt.Sprintf("unexpected %T after handshake", f.Body), 0)
			return
		}
		if werr != nil {
			return
		}
	}
}

func (c *conn) writeAck(id string, seq uint64) error {
	if c.s.OnAck != nil {
		c.s.OnAck(id, seq)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.ackMsg.Seq = seq
	err := c.writeLocked(&c.ack)
	if err == nil {
		c.s.acks.Add(1)
	}
	return err
}

// handshake runs Hello -> Challenge -> Auth -> Welcome. On failure it returns the reason to close with.
func (c *conn) handshake(cfg *devicepb.Config) (string, devicepb.CloseReason, error) {
	timeout := orDefault(c.s.HandshakeTimeout, DefaultHandshakeTimeout)
	_ = c.nc.SetReadDeadline(time.Now().Add(timeout))
	var f devicepb.Frame
	if err := messages.ReadFrame(c.r, c.max, &f); err != nil {
		return "", readReason(err), fmt.Errorf("reading Hello: %w", err)
	}
	h := f.GetHello()
	switch {
	case h == nil:
		return "", devicepb.CloseReason_CLOSE_REASON_PROTOCOL_ERROR, fmt.Errorf("expected Hello, got %T", f.Body)
	case h.GetProtocolVersion() != messages.ProtocolVersion:
		return "", devicepb.CloseReason_CLOSE_REASON_UNSUPPORTED_VERSION, fmt.Errorf("protocol version %d, want %d", h.GetProtocolVersion(), messages.ProtocolVersion)
	case len(h.GetDeviceId()) == 0 || len(h.GetDeviceId()) > messages.MaxDeviceIDBytes,
		len(h.GetFirmwareVersion()) > messages.MaxFirmwareBytes,
		len(h.GetDeviceNonce()) != messages.NonceBytes:
		return "", devicepb.CloseReason_CLOSE_REASON_PROTOCOL_ERROR, errors.New("malformed Hello")
	}
	id := h.GetDeviceId()
	secret, ok := c.s.SecretFor(id)
	if !ok {
		return "", devicepb.CloseReason_CLOSE_REASON_UNKNOWN_DEVICE, fmt.Errorf("unknown device %q", id)
	}
	nonce := make([]byte, messages.NonceBytes)
	_, _ = rand.Read(nonce)
	if err := c.write(&devicepb.Frame{Body: &devicepb.Frame_Challenge{Challenge: &devicepb.Challenge{ServerNonce: nonce}}}); err != nil {
		return "", 0, err
	}
	if err := c.flush(); err != nil {
		return "", 0, err
	}
	if err := messages.ReadFrame(c.r, c.max, &f); err != nil {
		return "", readReason(err), fmt.Errorf("reading Auth: %w", err)
	}
	a := f.GetAuth()
	if a == nil {
		return "", devicepb.CloseReason_CLOSE_REASON_PROTOCOL_ERROR, fmt.Errorf("expected Auth, got %T", f.Body)
	}
	if !hmac.Equal(a.GetMac(), messages.MAC(secret, h.GetDeviceNonce(), nonce, id)) {
		return "", devicepb.CloseReason_CLOSE_REASON_AUTH_FAILED, errors.New("wrong MAC")
	}
	sid := make([]byte, 16)
	_, _ = rand.Read(sid)
	if err := c.write(&devicepb.Frame{Body: &devicepb.Frame_Welcome{Welcome: &devicepb.Welcome{
		SessionId: hex.EncodeToString(sid), ServerTimeMs: time.Now().UnixMilli(), Config: cfg,
		ServerProof: messages.ServerProof(secret, h.GetDeviceNonce(), nonce),
	}}}); err != nil {
		return "", 0, err
	}
	return id, 0, c.flush()
}

func readReason(err error) devicepb.CloseReason {
	switch {
	case errors.Is(err, messages.ErrFrameTooLarge):
		return devicepb.CloseReason_CLOSE_REASON_FRAME_TOO_LARGE
	case isTimeout(err):
		return devicepb.CloseReason_CLOSE_REASON_HANDSHAKE_TIMEOUT
	case isMalformed(err):
		return devicepb.CloseReason_CLOSE_REASON_PROTOCOL_ERROR
	}
	return devicepb.CloseReason_CLOSE_REASON_UNSPECIFIED // the peer went away: nobody to tell
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func isMalformed(err error) bool {
	return err != nil && len(err.Error()) >= 9 && err.Error()[:9] == "malformed"
}
