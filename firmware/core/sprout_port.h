/* The platform layer: everything the portable core needs from an operating system, as one table
 * of functions over an opaque context (like coreMQTT's TransportInterface). The core includes no
 * OS header; a port (port/posix, port/esp-idf) fills this table. All functions are called from
 * the one task that runs the client loop, so a port needs no locking for the core's sake.
 *
 * Conventions: 0 is success, a negative value an error; timeouts are in milliseconds. */
#ifndef SPROUT_PORT_H
#define SPROUT_PORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* sprout_reading is one sample of the pot's sensors. */
typedef struct {
    float soil_moisture_pct;
    float temperature_c;
    float tank_level_pct;
    uint32_t supply_mv;
} sprout_reading;

/* sprout_ota_margins is what the device has to spare for a firmware download, measured now
 * (core/ota.h decides with the thresholds of sprout_limits.h). A field the port cannot measure
 * stays 0 and is not checked. */
typedef struct {
    uint32_t supply_mv;  /* the supply the pot runs from (battery, or USB): 0 unknown */
    int32_t rssi_dbm;    /* the WiFi signal of the joined network, negative dBm: 0 unknown */
    uint32_t free_heap;  /* bytes of heap free: 0 unknown */
    bool pump_busy;      /* the pump runs (the core also knows its own runs) */
} sprout_ota_margins;

typedef enum { SPROUT_LOG_ERROR, SPROUT_LOG_WARN, SPROUT_LOG_INFO, SPROUT_LOG_DEBUG } sprout_log_level;

/* SPROUT_KV_NOT_FOUND is what kv_get returns for a key that was never set. */
#define SPROUT_KV_NOT_FOUND 1

typedef struct sprout_port {
    void *ctx;

    /* Time. monotonic_ms never goes backwards and starts anywhere. wall_ms is Unix time in ms,
     * or 0 when the platform does not know it (the core then uses the server's clock). */
    int64_t (*monotonic_ms)(void *ctx);
    int64_t (*wall_ms)(void *ctx);                                /* may be NULL */
    void (*sleep_ms)(void *ctx, uint32_t ms);                      /* the loop's wait when offline */
    void (*random_bytes)(void *ctx, uint8_t *buf, size_t len);    /* nonces: must be unpredictable */

    /* Network. network_up says whether WiFi is joined (NULL: always). One TCP connection at a
     * time. tcp_send sends all of buf or fails; tcp_recv returns bytes read (>0), 0 on timeout,
     * or a negative value when the connection is closed or broken. */
    bool (*network_up)(void *ctx);                                 /* may be NULL */
    int (*tcp_connect)(void *ctx, const char *host, uint16_t port, uint32_t timeout_ms);
    int (*tcp_send)(void *ctx, const uint8_t *buf, size_t len, uint32_t timeout_ms);
    int (*tcp_recv)(void *ctx, uint8_t *buf, size_t cap, uint32_t timeout_ms);
    void (*tcp_close)(void *ctx);

    /* Key-value storage (NVS, files). Keys are at most 15 characters (the NVS limit). kv_get
     * copies at most cap bytes and sets *len to the stored size; SPROUT_KV_NOT_FOUND if unset.
     * kv_set is durable when it returns 0. */
    int (*kv_get)(void *ctx, const char *key, uint8_t *buf, size_t cap, size_t *len);
    int (*kv_set)(void *ctx, const char *key, const uint8_t *buf, size_t len);

    /* Hardware. pump_start must itself stop the pump after ms even if the loop stalls (a
     * hardware timer on the device): the core's stop is the normal path, not the only one. */
    int (*read_sensors)(void *ctx, sprout_reading *out);
    int (*pump_start)(void *ctx, uint32_t ms);
    void (*pump_stop)(void *ctx);
    void (*reboot)(void *ctx);                                     /* may return (simulated) */

    void (*log)(void *ctx, sprout_log_level level, const char *msg); /* may be NULL */

    /* Firmware updates (core/ota.h, docs/ota.md). All NULL: the device refuses offers with
     * "updates not supported". The inactive slot is the one the device does not run.
     * ota_verify checks an Ed25519 signature over msg with the public key built into the
     * firmware (true: valid). ota_slot_size is the inactive slot's capacity in bytes.
     * ota_begin prepares the inactive slot for an image of size bytes (erases it) when offset is 0,
     * or reopens it to continue at offset (a resumed download). ota_write writes len bytes at
     * offset; ota_read reads them back (for the SHA-256 check). ota_switch makes the inactive slot
     * boot next, on trial: if it is not marked valid the boot after returns to the current slot.
     * ota_mark_valid confirms the running slot (after a Welcome). 0 is success. */
    bool (*ota_verify)(void *ctx, const uint8_t *msg, size_t len, const uint8_t sig[64]);
    uint32_t (*ota_slot_size)(void *ctx);
    int (*ota_begin)(void *ctx, uint32_t size, uint32_t offset);
    int (*ota_write)(void *ctx, uint32_t offset, const uint8_t *buf, size_t len);
    int (*ota_read)(void *ctx, uint32_t offset, uint8_t *buf, size_t len);
    int (*ota_switch)(void *ctx);
    int (*ota_mark_valid)(void *ctx);
    /* ota_margins measures what the device has to spare (sprout_ota_margins); the core asks
     * before it accepts an offer and before each ChunkRequest, and defers the download while a
     * margin is short. May be NULL: then only the pump is checked. 0 is success; on an error the
     * core defers ("margins unknown"). */
    int (*ota_margins)(void *ctx, sprout_ota_margins *out);
} sprout_port;

#endif
