// Package plant simulates Sprout's plant pots: Conn is a device-side protocol client (what the
// firmware does, in Go), and Plant puts a soil, tank and pump model behind it. Tests use Conn to
// speak the protocol frame by frame; `sprout sim` runs thousands of Plants against a server.
package plant

import (
	"bufio"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/sprout-iot/sprout/messages"
	"github.com/sprout-iot/sprout/messages/devicepb"
)

// ErrClosed is returned by Conn.Handshake when the server closes the connection with a reason.
type ErrClosed struct {
	Reason           devicepb.CloseReason
	Detail           string
	ReconnectAfterMs uint32 // the server's hint, 0 if none
}

func (e *ErrClosed) Error() string {
	return fmt.Sprintf("server closed the connection: %s (%s)", e.Reason, e.Detail)
}

// Conn is one device connection. Reads happen on the caller's goroutine (Recv); writes are safe
// from several goroutines.
type Conn struct {
	nc  net.Conn
	r   *bufio.Reader
	wmu sync.Mutex
	buf []byte
	max int

	Welcome *devicepb.Welcome
}

// Dial connects to an edge. localIP, if not empty, is the source address (to spread clients over
// 127.0.0.x and pass the per-source ephemeral port limit).
func Dial(addr, localIP string, timeout time.Duration) (*Conn, error) {
	d := net.Dialer{Timeout: timeout}
	if localIP != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(localIP)}
	}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	return NewConn(nc), nil
}

// NewConn wraps an established connection.
func NewConn(nc net.Conn) *Conn {
	return &Conn{nc: nc, r: bufio.NewReaderSize(nc, 512), max: messages.DefaultMaxFrameBytes}
}

// Send writes one frame.
func (c *Conn) Send(f *devicepb.Frame) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	var err error
	c.buf, err = messages.AppendFrame(c.buf[:0], f)
	if err != nil {
		return err
	}
	_, err = c.nc.Write(c.buf)
	return err
}

// SendRaw writes bytes as they are (for malformed-input tests).
func (c *Conn) SendRaw(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.nc.Write(b)
	return err
}

// Recv reads one frame, waiting at most timeout (0: no limit).
func (c *Conn) Recv(timeout time.Duration) (*devicepb.Frame, error) {
	if timeout > 0 {
		_ = c.nc.SetReadDeadline(time.Now().Add(timeout))
	} else {
		_ = c.nc.SetReadDeadline(time.Time{})
	}
	f := &devicepb.Frame{}
	if err := messages.ReadFrame(c.r, c.max, f); err != nil {
		return nil, err
	}
	return f, nil
}

// Close closes the socket.
func (c *Conn) Close() error { return c.nc.Close() }

// LocalAddr is the client side's address.
func (c *Conn) LocalAddr() net.Addr { return c.nc.LocalAddr() }

// Hello is the first half of a handshake; Handshake does the rest.
type Hello struct {
	DeviceID string
	Secret   []byte
	Firmware string
}

// Handshake runs Hello/Challenge/Auth and waits for Welcome. A Close from the server comes back as
// *ErrClosed.
func (c *Conn) Handshake(h Hello, timeout time.Duration) (*devicepb.Welcome, error) {
	nonce := make([]byte, messages.NonceBytes)
	_, _ = rand.Read(nonce)
	fw := h.Firmware
	if fw == "" {
		fw = "sim-1.0.0"
	}
	if err := c.Send(&devicepb.Frame{Body: &devicepb.Frame_Hello{Hello: &devicepb.Hello{
		DeviceId: h.DeviceID, FirmwareVersion: fw, ProtocolVersion: messages.ProtocolVersion, DeviceNonce: nonce,
	}}}); err != nil {
		return nil, err
	}
	f, err := c.Recv(timeout)
	if err != nil {
		return nil, err
	}
	if cl := f.GetClose(); cl != nil {
		return nil, &ErrClosed{Reason: cl.Reason, Detail: cl.Detail, ReconnectAfterMs: cl.ReconnectAfterMs}
	}
	ch := f.GetChallenge()
	if ch == nil {
		return nil, fmt.Errorf("expected Challenge, got %T", f.Body)
	}
	mac := messages.MAC(h.Secret, nonce, ch.ServerNonce, h.DeviceID)
	if err := c.Send(&devicepb.Frame{Body: &devicepb.Frame_Auth{Auth: &devicepb.Auth{Mac: mac}}}); err != nil {
		return nil, err
	}
	f, err = c.Recv(timeout)
	if err != nil {
		return nil, err
	}
	if cl := f.GetClose(); cl != nil {
		return nil, &ErrClosed{Reason: cl.Reason, Detail: cl.Detail, ReconnectAfterMs: cl.ReconnectAfterMs}
	}
	w := f.GetWelcome()
	if w == nil {
		return nil, fmt.Errorf("expected Welcome, got %T", f.Body)
	}
	c.Welcome = w
	return w, nil
}

// ErrUnexpectedFrame is returned by helpers that wait for a specific frame type.
var ErrUnexpectedFrame = errors.New("unexpected frame")

// Report sends a reading and waits for its Ack, answering Pings and returning other frames to
// the handler (which may be nil) on the way.
func (c *Conn) Report(t *devicepb.Telemetry, timeout time.Duration, other func(*devicepb.Frame)) error {
	if err := c.Send(&devicepb.Frame{Body: &devicepb.Frame_Telemetry{Telemetry: t}}); err != nil {
		return err
	}
	return c.AwaitAck(t.Seq, timeout, other)
}

// AwaitAck reads frames until Ack{seq}.
func (c *Conn) AwaitAck(seq uint64, timeout time.Duration, other func(*devicepb.Frame)) error {
	deadline := time.Now().Add(timeout)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("no ack for seq %d within %v", seq, timeout)
		}
		f, err := c.Recv(left)
		if err != nil {
			return err
		}
		switch b := f.Body.(type) {
		case *devicepb.Frame_Ack:
			if b.Ack.Seq == seq {
				return nil
			}
		case *devicepb.Frame_Close:
			return &ErrClosed{Reason: b.Close.Reason, Detail: b.Close.Detail, ReconnectAfterMs: b.Close.ReconnectAfterMs}
		case *devicepb.Frame_Ping:
			_ = c.Send(&devicepb.Frame{Body: &devicepb.Frame_Pong{Pong: &devicepb.Pong{Nonce: b.Ping.Nonce}}})
		default:
			if other != nil {
				other(f)
			}
		}
	}
}
