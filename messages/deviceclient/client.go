// Package deviceclient is the device side of Sprout's wire protocol (messages/devicepb over TCP):
// dial an edge, run the Hello/Challenge/Auth handshake, send and receive length-prefixed frames. It
// does what the firmware's connection code does, in Go, written from docs/protocol.md; the edge's
// tests, the shared test helpers (edge/edgetest) and the plant simulator (simulations/plant) all
// speak the protocol through it. It is not a device: it keeps no readings, runs no commands and
// does not reconnect (simulations/plant does that on top of it).
package deviceclient

import (
	"bufio"
	"crypto/hmac"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/sprout-iot/sprout/messages"
	"github.com/sprout-iot/sprout/messages/devicepb"
)

// ErrClosed is returned when the server ends the connection with a Close frame.
type ErrClosed struct {
	Reason           devicepb.CloseReason
	Detail           string
	ReconnectAfterMs uint32 // the server's hint, 0 if none
}

func (e *ErrClosed) Error() string {
	return fmt.Sprintf("server closed the connection: %s (%s)", e.Reason, e.Detail)
}

// closed turns a Close frame into an *ErrClosed.
func closed(c *devicepb.Close) *ErrClosed {
	return &ErrClosed{Reason: c.Reason, Detail: c.Detail, ReconnectAfterMs: c.ReconnectAfterMs}
}

// Conn is one device connection. Reads happen on one goroutine at a time (Recv, Read); writes
// (Send, SendRaw) are safe from several goroutines.
type Conn struct {
	nc  net.Conn
	r   *bufio.Reader
	wmu sync.Mutex
	buf []byte
	max int

	// Welcome is the server's Welcome, set by a successful Handshake.
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

// NewConn wraps an established connection (either side of it: a scripted server in a test reads
// and writes frames with it too).
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

// SendRaw writes bytes as they are: frames encoded by the caller (several in one write), or
// malformed input for tests.
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
	if err := c.Read(f); err != nil {
		return nil, err
	}
	return f, nil
}

// Read reads one frame into f under the read deadline already set (SetReadDeadline), for a read
// loop that manages its own deadline.
func (c *Conn) Read(f *devicepb.Frame) error { return messages.ReadFrame(c.r, c.max, f) }

// Buffered is how many received bytes wait in the read buffer: when it is 0, the next Read may
// block.
func (c *Conn) Buffered() int { return c.r.Buffered() }

// SetReadDeadline sets the deadline of the reads that follow.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.nc.SetReadDeadline(t) }

// SetWriteDeadline sets the deadline of the writes that follow.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.nc.SetWriteDeadline(t) }

// Close closes the socket (an orderly TCP close: FIN).
func (c *Conn) Close() error { return c.nc.Close() }

// Reset drops the connection with a TCP reset (SO_LINGER 0, then close), as a pot does when it
// loses power or its WiFi stack gives up: the server learns of it only from a failed read or write.
func (c *Conn) Reset() error {
	if tc, ok := c.nc.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	return c.nc.Close()
}

// LocalAddr is the client side's address.
func (c *Conn) LocalAddr() net.Addr { return c.nc.LocalAddr() }

// Hello is what a device says about itself in the handshake; Handshake does the rest.
type Hello struct {
	DeviceID string
	Secret   []byte
	Firmware string // Hello.firmware_version (default DefaultFirmware)
}

// DefaultFirmware is the firmware version announced when Hello.Firmware is empty.
const DefaultFirmware = "sim-1.0.0"

// Handshake sends Hello and Auth (answering the server's Challenge) and waits for Welcome, at most
// timeout for each answer. A Close from the server comes back as *ErrClosed.
func (c *Conn) Handshake(h Hello, timeout time.Duration) (*devicepb.Welcome, error) {
	nonce, err := c.SendHello(h)
	if err != nil {
		return nil, err
	}
	ch, err := c.AwaitChallenge(timeout)
	if err != nil {
		return nil, err
	}
	if err := c.SendAuth(h, nonce, ch); err != nil {
		return nil, err
	}
	f, err := c.Recv(timeout)
	if err != nil {
		return nil, err
	}
	if cl := f.GetClose(); cl != nil {
		return nil, closed(cl)
	}
	w := f.GetWelcome()
	if w == nil {
		return nil, fmt.Errorf("expected Welcome, got %T", f.Body)
	}
	// The server proves it knows the secret too; a device trusts nothing from a server that
	// cannot (its config, its commands). It says why and hangs up, as the firmware does.
	if !hmac.Equal(w.ServerProof, messages.ServerProof(h.Secret, nonce, ch.ServerNonce)) {
		_ = c.Send(&devicepb.Frame{Body: &devicepb.Frame_Close{Close: &devicepb.Close{
			Reason: devicepb.CloseReason_CLOSE_REASON_AUTH_FAILED, Detail: "server proof failed"}}})
		if len(w.ServerProof) == 0 {
			return nil, fmt.Errorf("%w: the Welcome carries none", ErrServerProof)
		}
		return nil, fmt.Errorf("%w: wrong proof", ErrServerProof)
	}
	c.Welcome = w
	return w, nil
}

// ErrServerProof is Handshake's error for a Welcome without a valid server_proof: the server
// does not know the device's secret (docs/protocol.md).
var ErrServerProof = errors.New("the server did not prove it knows the device secret")

// SendHello sends the Hello with a fresh device nonce, which it returns (the first step of
// Handshake, for tests that stop part-way).
func (c *Conn) SendHello(h Hello) (nonce []byte, err error) {
	nonce = make([]byte, messages.NonceBytes)
	_, _ = rand.Read(nonce)
	fw := h.Firmware
	if fw == "" {
		fw = DefaultFirmware
	}
	err = c.Send(&devicepb.Frame{Body: &devicepb.Frame_Hello{Hello: &devicepb.Hello{
		DeviceId: h.DeviceID, FirmwareVersion: fw, ProtocolVersion: messages.ProtocolVersion, DeviceNonce: nonce,
	}}})
	return nonce, err
}

// AwaitChallenge reads the server's answer to Hello: its Challenge, or its Close as *ErrClosed.
func (c *Conn) AwaitChallenge(timeout time.Duration) (*devicepb.Challenge, error) {
	f, err := c.Recv(timeout)
	if err != nil {
		return nil, err
	}
	if cl := f.GetClose(); cl != nil {
		return nil, closed(cl)
	}
	ch := f.GetChallenge()
	if ch == nil {
		return nil, fmt.Errorf("expected Challenge, got %T", f.Body)
	}
	return ch, nil
}

// SendAuth proves the device knows its secret: the MAC over both nonces and its id.
func (c *Conn) SendAuth(h Hello, deviceNonce []byte, ch *devicepb.Challenge) error {
	mac := messages.MAC(h.Secret, deviceNonce, ch.ServerNonce, h.DeviceID)
	return c.Send(&devicepb.Frame{Body: &devicepb.Frame_Auth{Auth: &devicepb.Auth{Mac: mac}}})
}

// Report sends a reading and waits for its Ack, answering Pings and handing other frames to
// other (which may be nil) on the way.
func (c *Conn) Report(t *devicepb.Telemetry, timeout time.Duration, other func(*devicepb.Frame)) error {
	if err := c.Send(&devicepb.Frame{Body: &devicepb.Frame_Telemetry{Telemetry: t}}); err != nil {
		return err
	}
	return c.AwaitAck(t.Seq, timeout, other)
}

// AwaitAck reads frames until Ack{seq}, answering Pings and handing other frames to other (which
// may be nil). A Close comes back as *ErrClosed.
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
			return closed(b.Close)
		case *devicepb.Frame_Ping:
			_ = c.Send(&devicepb.Frame{Body: &devicepb.Frame_Pong{Pong: &devicepb.Pong{Nonce: b.Ping.Nonce}}})
		default:
			if other != nil {
				other(f)
			}
		}
	}
}
