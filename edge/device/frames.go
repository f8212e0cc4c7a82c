package device

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/sprout-iot/sprout/messages"
	"github.com/sprout-iot/sprout/messages/devicepb"
)

// errRefused is readFrame's error for a frame that is well formed except for a string that is
// not valid UTF-8 in a CommandResult. Its framing is intact (the whole frame was consumed), so
// the connection goes on: the frame is refused, not the session.
type errRefused struct{ what string }

func (e *errRefused) Error() string { return "refused frame: " + e.what }

// readFrame is messages.ReadFrame (same limits, same errors) that also tells a refusable frame
// apart from a malformed one.
func (c *conn) readFrame(f *devicepb.Frame) error {
	n, err := binary.ReadUvarint(c.r)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return err
		}
		var ne interface{ Timeout() bool }
		if errors.As(err, &ne) {
			return err
		}
		return fmt.Errorf("malformed frame: %w", err)
	}
	if n > uint64(c.s.opts.MaxFrameBytes) {
		return fmt.Errorf("%w: %d bytes, limit %d", messages.ErrFrameTooLarge, n, c.s.opts.MaxFrameBytes)
	}
	var body []byte
	if int(n) <= c.r.Size() {
		// Peek avoids a copy when the whole frame fits the buffer (Unmarshal copies what it keeps).
		if body, err = c.r.Peek(int(n)); err != nil {
			return unexpected(err)
		}
		defer func() { _, _ = c.r.Discard(int(n)) }()
	} else {
		body = make([]byte, n)
		if _, err := io.ReadFull(c.r, body); err != nil {
			return unexpected(err)
		}
	}
	if err := proto.Unmarshal(body, f); err != nil {
		if what, ok := invalidResultString(body); ok {
			return &errRefused{what: what}
		}
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

// invalidResultString reports whether body is a Frame holding only a CommandResult whose every
// field is well formed but whose command_id or detail is not valid UTF-8, and which one.
func invalidResultString(body []byte) (string, bool) {
	num, typ, n := protowire.ConsumeTag(body)
	if n < 0 || num != 8 || typ != protowire.BytesType {
		return "", false
	}
	inner, m := protowire.ConsumeBytes(body[n:])
	if m < 0 || n+m != len(body) {
		return "", false
	}
	bad := ""
	for len(inner) > 0 {
		num, typ, n := protowire.ConsumeTag(inner)
		if n < 0 {
			return "", false
		}
		inner = inner[n:]
		switch {
		case (num == 1 || num == 3) && typ == protowire.BytesType:
			v, m := protowire.ConsumeBytes(inner)
			if m < 0 {
				return "", false
			}
			if !utf8.Valid(v) && bad == "" {
				bad = map[protowire.Number]string{1: "command_id", 3: "detail"}[num]
			}
			inner = inner[m:]
		case (num == 2 || num == 4) && typ == protowire.VarintType:
			_, m := protowire.ConsumeVarint(inner)
			if m < 0 {
				return "", false
			}
			inner = inner[m:]
		default:
			m := protowire.ConsumeFieldValue(num, typ, inner)
			if m < 0 {
				return "", false
			}
			inner = inner[m:]
		}
	}
	if bad == "" {
		return "", false
	}
	return "command_result: invalid UTF-8 in " + bad, true
}

// frames decodes and dispatches the complete frames at the head of b, in order (consecutive
// reports go to the grain in batches), and returns what is left: a frame split across reads, or,
// once every in-flight slot is taken, the frames not yet dispatched (the connection is then paused
// until an answer frees a slot). stop ends the connection with the reason. Decoding copies what
// the frames keep, so b may be reused.
func (c *conn) frames(b []byte) (rest []byte, _ devicepb.CloseReason, _ string, stop bool) {
	var reports batch // the reports decoded from b go to their grain together
	defer c.flush(&reports, nil)
	for len(b) > 0 {
		n, k := binary.Uvarint(b)
		if k == 0 {
			return b, 0, "", false // the length itself is split
		}
		if k < 0 {
			return nil, devicepb.CloseReason_CLOSE_REASON_PROTOCOL_ERROR, "malformed frame: binary: varint overflows a 64-bit integer", true
		}
		if n > uint64(c.s.opts.MaxFrameBytes) {
			return nil, devicepb.CloseReason_CLOSE_REASON_FRAME_TOO_LARGE,
				fmt.Sprintf("%v: %d bytes, limit %d", messages.ErrFrameTooLarge, n, c.s.opts.MaxFrameBytes), true
		}
		if uint64(len(b)-k) < n {
			return b, 0, "", false
		}
		body := b[k : k+int(n)]
		f := &devicepb.Frame{} // not reused: the grain may still hold its body
		if err := proto.Unmarshal(body, f); err != nil {
			if what, ok := invalidResultString(body); ok {
				c.refused(&errRefused{what: what})
				b = b[k+int(n):]
				continue
			}
			return nil, devicepb.CloseReason_CLOSE_REASON_PROTOCOL_ERROR, truncate(fmt.Errorf("malformed frame: %w", err).Error(), messages.MaxDetailBytes), true
		}
		if !c.reserve(f) {
			// Every slot is taken: pause, unless an answer freed one meanwhile.
			c.paused.Store(true)
			if !c.reserve(f) {
				return b, 0, "", false
			}
			if !c.paused.CompareAndSwap(true, false) {
				// An answer already took the pause and resumes this connection: give the slot
				// back and let the resume dispatch this frame.
				c.inflight.Add(-1)
				return b, 0, "", false
			}
		}
		b = b[k+int(n):]
		if r, d, ok := c.dispatch(f, &reports); !ok {
			return nil, r, d, true
		}
	}
	return nil, 0, "", false
}
