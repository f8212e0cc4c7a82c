#include "ring.h"

#include <string.h>

void sprout_ring_init(sprout_ring *r)
{
    memset(r, 0, sizeof *r);
}

uint64_t sprout_record_seq(const sprout_record *rec)
{
    return rec->kind == SPROUT_RECORD_EVENT ? rec->body.event.seq : rec->body.telemetry.seq;
}

void sprout_record_set_seq(sprout_record *rec, uint64_t seq)
{
    if (rec->kind == SPROUT_RECORD_EVENT) {
        rec->body.event.seq = seq;
    } else {
        rec->body.telemetry.seq = seq;
    }
}

bool sprout_ring_push(sprout_ring *r, const sprout_record *rec)
{
    bool dropped = false;
    if (r->count == SPROUT_RING_CAP) {
        r->head = (r->head + 1) % SPROUT_RING_CAP;
        r->count--;
        r->dropped++;
        dropped = true;
    }
    r->items[(r->head + r->count) % SPROUT_RING_CAP] = *rec;
    r->count++;
    return dropped;
}

sprout_record *sprout_ring_at(sprout_ring *r, size_t i)
{
    if (i >= r->count) {
        return NULL;
    }
    return &r->items[(r->head + i) % SPROUT_RING_CAP];
}

/* remove_at closes the gap at position i by shifting the newer records down. */
static void remove_at(sprout_ring *r, size_t i)
{
    if (i == 0) {
        r->head = (r->head + 1) % SPROUT_RING_CAP;
    } else {
        for (size_t j = i; j + 1 < r->count; j++) {
            r->items[(r->head + j) % SPROUT_RING_CAP] = r->items[(r->head + j + 1) % SPROUT_RING_CAP];
        }
    }
    r->count--;
}

bool sprout_ring_ack(sprout_ring *r, uint64_t seq)
{
    for (size_t i = 0; i < r->count; i++) {
        if (sprout_record_seq(sprout_ring_at(r, i)) == seq) {
            remove_at(r, i);
            return true;
        }
    }
    return false;
}

size_t sprout_ring_drop_through(sprout_ring *r, uint64_t seq)
{
    size_t removed = 0;
    size_t i = 0;
    while (i < r->count) {
        if (sprout_record_seq(sprout_ring_at(r, i)) <= seq) {
            remove_at(r, i);
            removed++;
        } else {
            i++;
        }
    }
    return removed;
}
