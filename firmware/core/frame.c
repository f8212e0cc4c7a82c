#include "frame.h"

#include <pb_decode.h>
#include <pb_encode.h>

sprout_frame_status sprout_frame_encode(const sprout_frame *f, uint8_t *buf, size_t cap, size_t *len)
{
    pb_ostream_t os = pb_ostream_from_buffer(buf, cap);
    if (!pb_encode_ex(&os, sprout_device_v1_Frame_fields, f, PB_ENCODE_DELIMITED)) {
        /* The only failure for a static message is running out of room, or a string that is
         * not NUL-terminated within its array (caller bug): both mean "does not fit". */
        return SPROUT_FRAME_NO_SPACE;
    }
    *len = os.bytes_written;
    return SPROUT_FRAME_OK;
}

/* read_prefix parses the uvarint length prefix. It returns the prefix size, 0 if more bytes are
 * needed, or -1 if the prefix is longer than any length we could accept. */
static int read_prefix(const uint8_t *buf, size_t len, uint64_t *value)
{
    uint64_t v = 0;
    for (size_t i = 0; i < len && i < 10; i++) {
        v |= (uint64_t)(buf[i] & 0x7f) << (7 * i);
        if ((buf[i] & 0x80) == 0) {
            *value = v;
            return (int)i + 1;
        }
    }
    return len >= 10 ? -1 : 0;
}

sprout_frame_status sprout_frame_decode(const uint8_t *buf, size_t len, size_t max_body,
                                        sprout_frame *out, size_t *consumed)
{
    uint64_t body = 0;
    int n = read_prefix(buf, len, &body);
    if (n < 0 || n > SPROUT_FRAME_PREFIX_MAX) {
        /* A prefix padded past the longest one our limit needs (0x80 0x80 0x80 0x00 is a valid
         * uvarint) would let prefix + body outgrow the receive buffer. */
        return SPROUT_FRAME_TOO_LARGE;
    }
    if (n == 0) {
        /* A prefix that is already longer than the largest acceptable one cannot end well. */
        return len >= SPROUT_FRAME_PREFIX_MAX + 1 ? SPROUT_FRAME_TOO_LARGE : SPROUT_FRAME_NEED_MORE;
    }
    if (body > max_body) {
        return SPROUT_FRAME_TOO_LARGE;
    }
    if (len - (size_t)n < body) {
        return SPROUT_FRAME_NEED_MORE;
    }
    size_t total = (size_t)n + (size_t)body;
    pb_istream_t is = pb_istream_from_buffer(buf, total);
    if (!pb_decode_ex(&is, sprout_device_v1_Frame_fields, out, PB_DECODE_DELIMITED) || is.bytes_left != 0) {
        return SPROUT_FRAME_MALFORMED;
    }
    *consumed = total;
    return SPROUT_FRAME_OK;
}

const char *sprout_frame_name(const sprout_frame *f)
{
    switch (f->which_body) {
    case sprout_device_v1_Frame_hello_tag: return "hello";
    case sprout_device_v1_Frame_challenge_tag: return "challenge";
    case sprout_device_v1_Frame_auth_tag: return "auth";
    case sprout_device_v1_Frame_welcome_tag: return "welcome";
    case sprout_device_v1_Frame_telemetry_tag: return "telemetry";
    case sprout_device_v1_Frame_ack_tag: return "ack";
    case sprout_device_v1_Frame_command_tag: return "command";
    case sprout_device_v1_Frame_command_result_tag: return "command_result";
    case sprout_device_v1_Frame_event_tag: return "event";
    case sprout_device_v1_Frame_ping_tag: return "ping";
    case sprout_device_v1_Frame_pong_tag: return "pong";
    case sprout_device_v1_Frame_close_tag: return "close";
    case 0: return "empty";
    default: return "unknown";
    }
}
