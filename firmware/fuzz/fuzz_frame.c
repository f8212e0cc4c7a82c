/* libFuzzer target: the frame decoder on arbitrary bytes (what a hostile or broken server can
 * send). Every decoded frame must re-encode, and decode again to the same bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t off = 0;
    while (off < size) {
        sprout_frame f, g;
        size_t used = 0;
        memset(&f, 0, sizeof f);
        sprout_frame_status st = sprout_frame_decode(data + off, size - off, SPROUT_MAX_FRAME_BYTES, &f, &used);
        if (st != SPROUT_FRAME_OK) {
            break;
        }
        if (used == 0 || used > size - off) {
            abort();
        }
        off += used;
        uint8_t a[SPROUT_FRAME_ENCODED_MAX], b[SPROUT_FRAME_ENCODED_MAX];
        size_t la = 0, lb = 0, used2 = 0;
        if (sprout_frame_encode(&f, a, sizeof a, &la) != SPROUT_FRAME_OK) {
            abort(); /* whatever decodes fits the static structs, so it must encode */
        }
        memset(&g, 0, sizeof g);
        if (sprout_frame_decode(a, la, SPROUT_MAX_FRAME_BYTES, &g, &used2) != SPROUT_FRAME_OK || used2 != la) {
            abort();
        }
        if (sprout_frame_encode(&g, b, sizeof b, &lb) != SPROUT_FRAME_OK || la != lb || memcmp(a, b, la) != 0) {
            abort();
        }
    }
    return 0;
}
