/* Reconnect delays: exponential backoff with "equal jitter" (half fixed, half random), so that a
 * thousand pots that lost the same server do not come back in the same millisecond. Pure: the
 * caller supplies the randomness. */
#ifndef SPROUT_BACKOFF_H
#define SPROUT_BACKOFF_H

#include <stdint.h>

typedef struct {
    uint32_t base_ms;  /* delay before the first retry (before jitter) */
    uint32_t max_ms;   /* the delay stops doubling here */
    uint32_t attempt;  /* failures since the last success */
} sprout_backoff;

/* sprout_backoff_next returns the delay before the next attempt and counts one more failure. */
uint32_t sprout_backoff_next(sprout_backoff *b, uint32_t rand32);

/* sprout_backoff_reset forgets past failures (after a successful handshake). */
void sprout_backoff_reset(sprout_backoff *b);

/* sprout_jitter returns a delay in [delay/2, delay]. */
uint32_t sprout_jitter(uint32_t delay, uint32_t rand32);

#endif
