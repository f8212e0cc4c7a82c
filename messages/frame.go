package messages

import (
	"bufio"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/sprout-iot/sprout/messages/devicepb"
)

// DefaultMaxFrameBytes is the largest frame either side accepts unless configured otherwise.
// The largest frame the protocol defines is well under it (nanopb: 126 bytes).
const DefaultMaxFrameBytes = 1024

// Protocol limits shared with device.options; the server checks them on what it receives and sends.
const (
	ProtocolVersion   = 1
	MaxDeviceIDBytes  = 64
	MaxFirmwareBytes  = 32
	NonceBytes        = 16
	MACBytes          = 32
	MaxSessionIDBytes = 36
	MaxCommandIDBytes = 36
	MaxDetailBytes    = 64
)

// ErrFrameTooLarge reports a length prefix above the reader's limit.
var ErrFrameTooLarge = errors.New("frame too large")

// ReadFrame reads one length-prefixed Frame. It returns ErrFrameTooLarge (without reading the
// body) when the prefix exceeds max, and io.EOF only on a clean end between frames.
func ReadFrame(r *bufio.Reader, max int, f *devicepb.Frame) error {
	n, err := readUvarint(r)
	if err != nil {
		return err
	}
	if n > uint64(max) {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, n, max)
	}
	var buf []byte
	if int(n) <= r.Size() {
		// Peek avoids a copy when the whole frame is buffered.
		if buf, err = r.Peek(int(n)); err != nil {
			return unexpected(err)
		}
		err = proto.Unmarshal(buf, f)
		_, _ = r.Discard(int(n))
	} else {
		buf = make([]byte, n)
		if _, err = io.ReadFull(r, buf); err != nil {
			return unexpected(err)
		}
		err = proto.Unmarshal(buf, f)
	}
	if err != nil {
		return fmt.Errorf("malformed frame: %w", err)
	}
	return nil
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

func readUvarint(r *bufio.Reader) (uint64, error) {
	var x uint64
	for i := 0; i < binary10; i++ {
		b, err := r.ReadByte()
		if err != nil {
			if i > 0 {
				return 0, unexpected(err)
			}
			return 0, err
		}
		x |= uint64(b&0x7f) << (7 * i)
		if b < 0x80 {
			return x, nil
		}
	}
	return 0, errors.New("malformed frame: length prefix overflows")
}

const binary10 = 10

// AppendFrame appends f with its uvarint length prefix to b.
func AppendFrame(b []byte, f *devicepb.Frame) ([]byte, error) {
	size := proto.Size(f)
	b = protowire.AppendVarint(b, uint64(size))
	return proto.MarshalOptions{}.MarshalAppend(b, f)
}

// MAC computes the handshake proof: HMAC-SHA256(secret, deviceNonce || serverNonce || deviceID).
func MAC(secret, deviceNonce, serverNonce []byte, deviceID string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write(deviceNonce)
	m.Write(serverNonce)
	m.Write([]byte(deviceID))
	return m.Sum(nil)
}

// ServerProofLabel starts the data of the server's proof, so that it can never be taken for a
// device's MAC (which starts with the device nonce) or the other way round.
const ServerProofLabel = "sprout welcome v1"

// ServerProof computes Welcome.server_proof, the server's side of the mutual handshake:
// HMAC-SHA256(secret, "sprout welcome v1" || serverNonce || deviceNonce).
func ServerProof(secret, deviceNonce, serverNonce []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ServerProofLabel))
	m.Write(serverNonce)
	m.Write(deviceNonce)
	return m.Sum(nil)
}
