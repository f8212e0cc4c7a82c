/* The frame codec: one sprout.device.v1.Frame per frame, prefixed by its uvarint length
 * (nanopb PB_ENCODE_DELIMITED, Go protodelim). String and byte limits come from
 * messages/devicepb/device.options; nanopb rejects a frame that exceeds any of them. */
#ifndef SPROUT_FRAME_H
#define SPROUT_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "devicepb/device.pb.h"

typedef sprout_device_v1_Frame sprout_frame;

/* SPROUT_MAX_FRAME_BYTES is the largest frame body the device accepts. Every frame the protocol
 * defines fits in sprout_device_v1_Frame_size (126) bytes; the slack leaves room for fields a
 * newer server may add, which nanopb skips. The server's own limit is 1024. */
#ifndef SPROUT_MAX_FRAME_BYTES
#define SPROUT_MAX_FRAME_BYTES 512
#endif

/* SPROUT_FRAME_PREFIX_MAX is the largest length prefix for SPROUT_MAX_FRAME_BYTES (a uvarint). */
#define SPROUT_FRAME_PREFIX_MAX 3

/* SPROUT_FRAME_ENCODED_MAX bounds what sprout_frame_encode writes for any frame. */
#define SPROUT_FRAME_ENCODED_MAX (sprout_device_v1_Frame_size + 2)

typedef enum {
    SPROUT_FRAME_OK = 0,
    SPROUT_FRAME_NEED_MORE = 1,   /* buf holds only part of a frame: read more bytes */
    SPROUT_FRAME_TOO_LARGE = -1,  /* the length prefix exceeds max_body: close the connection */
    SPROUT_FRAME_MALFORMED = -2,  /* not a valid Frame, or a field over its limit */
    SPROUT_FRAME_NO_SPACE = -3,   /* the output buffer is too small (encode) */
} sprout_frame_status;

/* sprout_frame_encode writes f with its length prefix into buf and sets *len. */
sprout_frame_status sprout_frame_encode(const sprout_frame *f, uint8_t *buf, size_t cap, size_t *len);

/* sprout_frame_decode decodes the frame at the start of buf[0..len). On SPROUT_FRAME_OK it sets
 * *consumed to the bytes it used (prefix and body); the rest of buf is the next frame. A body
 * longer than max_body is SPROUT_FRAME_TOO_LARGE as soon as the prefix is complete, before the
 * body arrives. On an error *out is unspecified. */
sprout_frame_status sprout_frame_decode(const uint8_t *buf, size_t len, size_t max_body,
                                        sprout_frame *out, size_t *consumed);

/* sprout_frame_name names f's body for logs ("hello", "ack", ...; "empty" when unset). */
const char *sprout_frame_name(const sprout_frame *f);

#endif
