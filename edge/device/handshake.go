package device

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"syscall"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/sprout-iot/sprout/cluster/observe"
	"github.com/sprout-iot/sprout/edge/devicelink"
	"github.com/sprout-iot/sprout/messages"
	"github.com/sprout-iot/sprout/messages/actorpb"
	"github.com/sprout-iot/sprout/messages/devicepb"
	"github.com/sprout-iot/sprout/store"
)

// handshake runs Hello, Challenge, Auth and the grain's verdict, and queues the Welcome. On false
// the connection is closing (with the reason set); the caller's cleanup undoes whatever was done
// here: the connection's process registered, the grain asked.
func (c *conn) handshake() bool {
	s := c.s
	_ = c.nc.SetReadDeadline(time.Now().Add(s.opts.HandshakeTimeout))
	f := &devicepb.Frame{}
	if err := messages.ReadFrame(c.r, s.opts.MaxFrameBytes, f); err != nil {
		c.fail(readErrReason(err))
		return false
	}
	hello := f.GetHello()
	if hello == nil {
		c.fail(devicepb.CloseReason_CLOSE_REASON_PROTOCOL_ERROR, "expected Hello first")
		return false
	}
	if err := validHello(hello); err != nil {
		c.fail(devicepb.CloseReason_CLOSE_REASON_PROTOCOL_ERROR, err.Error())
		return false
	}
	c.device = hello.DeviceId
	c.firmware = hello.FirmwareVersion
	serverNonce := make([]byte, messages.NonceBytes)
	_, _ = crand.Read(serverNonce)
	if !c.send(&devicepb.Frame{Body: &devicepb.Frame_Challenge{Challenge: &devicepb.Challenge{ServerNonce: serverNonce}}}) {
		return false
	}
	f.Reset()
	if err := messages.ReadFrame(c.r, s.opts.MaxFrameBytes, f); err != nil {
		c.fail(readErrReason(err))
		return false
	}
	auth := f.GetAuth()
	if auth == nil {
		c.fail(devicepb.CloseReason_CLOSE_REASON_PROTOCOL_ERROR, "expected Auth after Challenge")
		return false
	}
	if !s.handshakes.Enter() {
		c.busy()
		return false
	}
	defer s.handshakes.Leave()
	sid := make([]byte, 16)
	_, _ = crand.Read(sid)
	c.session = hex.EncodeToString(sid)
	c.register()

	hctx, span := observe.StartRoot(context.Background(), "edge.handshake", trace.SpanKindServer)
	defer span.End()
	ar, err := c.authenticate(&actorpb.Authenticate{Trace: observe.Inject(hctx),
		DeviceId: hello.DeviceId, DeviceNonce: hello.DeviceNonce, ServerNonce: serverNonce, Mac: auth.Mac,
		FirmwareVersion: hello.FirmwareVersion, ProtocolVersion: hello.ProtocolVersion, RemoteAddr: c.remote(),
		Conn: &actorpb.ConnRef{Address: c.pid.Address, Id: c.pid.Id, SessionId: c.session, Edge: c.nc.LocalAddr().String()},
	})
	if err != nil {
		s.opts.Logger.Warn("handshake: device grain unavailable", "device", c.device, "err", err)
		c.fail(devicepb.CloseReason_CLOSE_REASON_UNAVAILABLE, "server busy, try later")
		return false
	}
	if !ar.Ok {
		c.failAfter(ar.Reason, ar.Detail, ar.RetryAfterMs)
		return false
	}
	_ = c.nc.SetReadDeadline(time.Time{})
	// Welcome first, then the open commands the grain handed back, then what it sent since.
	frames := append([]*devicepb.Frame{{Body: &devicepb.Frame_Welcome{Welcome: ar.Welcome}}}, ar.AfterWelcome...)
	if !c.welcome(frames) {
		return false
	}
	s.opts.Logger.Debug("device connected", "device", c.device, "session", c.session, "remote", c.remote())
	return true
}

// busy refuses a pot because MaxHandshakes handshakes wait for their grains: it is told to come
// back after a jittered BusyRetry, so that a fleet refused together does not return together.
// Not logged one by one (a storm refuses thousands a second): counted as SERVER_BUSY.
func (c *conn) busy() {
	d := c.s.opts.BusyRetry
	wait := d/2 + rand.N(d+1)
	observe.HandshakeFailed(handshakeBusy)
	c.close(devicepb.CloseReason_CLOSE_REASON_UNAVAILABLE,
		fmt.Sprintf("server busy: too many pots connecting; retry in %v", wait.Round(time.Second)), uint32(wait.Milliseconds()))
}

// handshakeBusy is the handshake-failure reason (metric label) of a pot refused as busy.
const handshakeBusy = "SERVER_BUSY"

// authenticate asks the device's grain (devicelink.Authenticate); the connection then reports to
// that same PID.
func (c *conn) authenticate(m *actorpb.Authenticate) (*actorpb.AuthResult, error) {
	pid, ar, err := devicelink.Authenticate(c.s.cluster, m, c.s.opts.GrainTimeout, &c.asked)
	c.grainPID = pid
	return ar, err
}

func validHello(h *devicepb.Hello) error {
	if err := store.ValidID(h.DeviceId); err != nil {
		return err
	}
	switch {
	case len(h.FirmwareVersion) > messages.MaxFirmwareBytes:
		return fmt.Errorf("firmware_version longer than %d bytes", messages.MaxFirmwareBytes)
	case len(h.DeviceNonce) != messages.NonceBytes:
		return fmt.Errorf("device_nonce must be %d bytes", messages.NonceBytes)
	}
	return nil
}

func readErrReason(err error) (devicepb.CloseReason, string) {
	var ne net.Error
	switch {
	case errors.Is(err, messages.ErrFrameTooLarge):
		return devicepb.CloseReason_CLOSE_REASON_FRAME_TOO_LARGE, err.Error()
	case errors.As(err, &ne) && ne.Timeout():
		return devicepb.CloseReason_CLOSE_REASON_HANDSHAKE_TIMEOUT, "handshake timed out"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed), errors.Is(err, syscall.ECONNRESET):
		return devicepb.CloseReason_CLOSE_REASON_UNSPECIFIED, "connection closed by device"
	default:
		return devicepb.CloseReason_CLOSE_REASON_PROTOCOL_ERROR, truncate(err.Error(), messages.MaxDetailBytes)
	}
}

// fail ends a connection during the handshake.
func (c *conn) fail(r devicepb.CloseReason, detail string) { c.failAfter(r, detail, 0) }

// failAfter is fail with a reconnect hint for the device (0: its own backoff).
func (c *conn) failAfter(r devicepb.CloseReason, detail string, reconnectMs uint32) {
	c.s.opts.Logger.Info("handshake failed", "reason", r.String(), "detail", detail, "device", c.device, "remote", c.remote())
	observe.HandshakeFailed(r.String())
	c.close(r, detail, reconnectMs)
}
