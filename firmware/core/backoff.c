#include "backoff.h"

uint32_t sprout_jitter(uint32_t delay, uint32_t rand32)
{
    uint32_t half = delay / 2;
    return half + rand32 % (delay - half + 1);
}

uint32_t sprout_backoff_next(sprout_backoff *b, uint32_t rand32)
{
    uint32_t d = b->base_ms;
    for (uint32_t i = 0; i < b->attempt && d < b->max_ms; i++) {
        d = d > b->max_ms / 2 ? b->max_ms : d * 2;
    }
    if (d > b->max_ms) {
        d = b->max_ms;
    }
    if (b->attempt < UINT32_MAX) {
        b->attempt++;
    }
    return sprout_jitter(d, rand32);
}

void sprout_backoff_reset(sprout_backoff *b)
{
    b->attempt = 0;
}
