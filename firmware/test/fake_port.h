/* A deterministic in-memory sprout_port for tests and fuzzing: a fake clock that advances only
 * when the client waits, a scripted TCP peer, a key-value table and a scripted pot. */
#ifndef SPROUT_FAKE_PORT_H
#define SPROUT_FAKE_PORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "frame.h"
#include "sprout_port.h"

#define FAKE_KV_KEYS 16
#define FAKE_KV_BYTES 1200
#define FAKE_IO_BYTES 16384
#define FAKE_SLOT_BYTES 32768

typedef struct {
    int64_t now_ms;
    uint32_t random_counter;

    /* TCP */
    bool connected;
    int connect_calls;
    int fail_connects;         /* the next N connects fail */
    char last_host[64];
    uint16_t last_port;
    bool fail_send;            /* tcp_send fails */
    bool peer_closed;          /* tcp_recv reports a closed connection once inbound is drained */
    size_t recv_chunk;         /* deliver at most this many bytes per tcp_recv (0: all) */
    uint8_t inbound[FAKE_IO_BYTES];
    size_t inbound_len;
    uint8_t outbound[FAKE_IO_BYTES];
    size_t outbound_len;
    size_t outbound_read;      /* how far fake_pop_sent has decoded */

    /* Key-value storage */
    struct {
        char key[16];
        uint8_t value[FAKE_KV_BYTES];
        size_t len;
        bool used;
    } kv[FAKE_KV_KEYS];
    bool fail_kv_set;
    int kv_sets;

    /* The pot */
    sprout_reading reading;
    bool fail_sensors;
    bool fail_pump;
    bool pump_on;
    int pump_starts;
    uint32_t pump_ms;
    int reboots;
    bool quiet;

    /* Firmware updates (fake_ota_enable): an in-memory inactive slot and measured margins. */
    uint8_t slot[FAKE_SLOT_BYTES];
    bool (*verify)(const uint8_t *msg, size_t len, const uint8_t sig[64]); /* NULL: accept all */
    int ota_begins;
    uint32_t ota_begin_offset;    /* the offset of the last ota_begin */
    int ota_writes;
    int ota_switches;
    int ota_marks;
    bool margins_fail;            /* ota_margins returns an error */
    sprout_ota_margins margins;   /* what ota_margins reports */
    int margins_calls;
    int ota_record_sets;          /* kv_set of the key "ota" */
} fake_port;

void fake_init(fake_port *f, sprout_port *out);

/* fake_ota_enable installs the ota_* hooks and ota_margins (supply 5000 mV, -50 dBm, 100 kB free). */
void fake_ota_enable(fake_port *f, sprout_port *out);

/* fake_push_frame queues a frame for the client to receive. */
void fake_push_frame(fake_port *f, const sprout_frame *fr);
void fake_push_bytes(fake_port *f, const uint8_t *b, size_t n);

/* fake_pop_sent decodes the next frame the client sent; false if there is none. */
bool fake_pop_sent(fake_port *f, sprout_frame *out);

/* fake_drain_sent discards everything the client sent so far. */
void fake_drain_sent(fake_port *f);

#endif
