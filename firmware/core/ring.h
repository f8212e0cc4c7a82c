/* The outbox: readings and events not yet acknowledged by the server, oldest first.
 * Bounded: when full, the oldest record is dropped and counted, because a plant pot that has
 * been offline for a day cares more about the latest readings than the first ones. */
#ifndef SPROUT_RING_H
#define SPROUT_RING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "devicepb/device.pb.h"

#ifndef SPROUT_RING_CAP
#define SPROUT_RING_CAP 64
#endif

typedef enum { SPROUT_RECORD_TELEMETRY = 1, SPROUT_RECORD_EVENT = 2 } sprout_record_kind;

/* sprout_record is one Telemetry or Event with the bookkeeping the client needs. */
typedef struct {
    sprout_record_kind kind;
    int64_t taken_ms;  /* monotonic time it was taken; fills device_time_ms once the clock is known */
    int64_t sent_ms;   /* monotonic time it was last sent, 0 if not sent on this connection */
    union {
        sprout_device_v1_Telemetry telemetry;
        sprout_device_v1_Event event;
    } body;
} sprout_record;

typedef struct {
    sprout_record items[SPROUT_RING_CAP];
    size_t head;       /* index of the oldest record */
    size_t count;
    uint32_t dropped;  /* records dropped because the ring was full, since boot */
} sprout_ring;

void sprout_ring_init(sprout_ring *r);

/* sprout_ring_push appends rec, dropping the oldest record if full (returns true then). */
bool sprout_ring_push(sprout_ring *r, const sprout_record *rec);

/* sprout_ring_at returns the i-th oldest record (0 = oldest), or NULL past the end. */
sprout_record *sprout_ring_at(sprout_ring *r, size_t i);

/* sprout_ring_ack removes the record with this seq; false if there is none. */
bool sprout_ring_ack(sprout_ring *r, uint64_t seq);

/* sprout_ring_drop_through removes every record with seq <= seq and returns how many. */
size_t sprout_ring_drop_through(sprout_ring *r, uint64_t seq);

uint64_t sprout_record_seq(const sprout_record *rec);
void sprout_record_set_seq(sprout_record *rec, uint64_t seq);

#endif
