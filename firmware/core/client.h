/* The device client: the connection state machine of a Sprout plant pot.
 *
 *   OFFLINE --connect ok, send Hello--> AWAIT_CHALLENGE --Challenge, send Auth--> AWAIT_WELCOME
 *   AWAIT_WELCOME --Welcome--> ONLINE (resend unacked readings, undelivered results)
 *   any connected state --Close / I/O error / timeout / protocol error--> OFFLINE (backoff)
 *
 * One loop (sprout_client_step, called forever by the port's task) owns everything: the socket,
 * the reading schedule, the pump timer and the heartbeats. Readings are taken whether or not the
 * device is online; they wait in a bounded ring until the server acknowledges them.
 * The client keeps no pointer into the caller's memory except cfg's strings and server list. */
#ifndef SPROUT_CLIENT_H
#define SPROUT_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backoff.h"
#include "frame.h"
#include "ota.h"
#include "sprout_limits.h"
#include "ring.h"
#include "sprout_port.h"
#include "store.h"
#include "utf8.h"

#define SPROUT_PROTOCOL_VERSION 1
#define SPROUT_NONCE_BYTES 16

/* SPROUT_SERVER_PROOF_LABEL starts the data of Welcome.server_proof (17 bytes, no NUL). */
#define SPROUT_SERVER_PROOF_LABEL "sprout welcome v1"

/* sprout_server_proof computes what a server that knows secret puts in Welcome.server_proof:
 * HMAC-SHA256(secret, "sprout welcome v1" || server_nonce || device_nonce). */
void sprout_server_proof(const uint8_t *secret, size_t secret_len, const uint8_t device_nonce[SPROUT_NONCE_BYTES],
                         const uint8_t server_nonce[SPROUT_NONCE_BYTES], uint8_t out[32]);

typedef struct {
    const char *host;
    uint16_t port;
} sprout_server;

/* sprout_options holds every limit and timeout of the client; sprout_options_defaults fills in
 * the defaults named after each field. */
typedef struct {
    uint32_t connect_timeout_ms;   /* 5000: a TCP connect that takes longer fails */
    uint32_t handshake_timeout_ms; /* 10000: from connect to Welcome */
    uint32_t send_timeout_ms;      /* 5000: a frame that cannot be written in this time breaks the connection */
    uint32_t backoff_base_ms;      /* 1000: first reconnect delay (before jitter) */
    uint32_t backoff_max_ms;       /* 60000: the delay stops doubling here */
    uint32_t backoff_refused_ms;   /* 600000: after AUTH_FAILED, UNKNOWN_DEVICE, DEVICE_REVOKED, UNSUPPORTED_VERSION */
    uint32_t ack_timeout_ms;       /* 60000: a reading sent but not acked this long means a broken connection */
    uint32_t silence_factor;       /* 3: disconnect when nothing was received for this many heartbeat intervals */
    uint32_t pump_ml_per_s;        /* 20: the pump's flow, for CommandResult.watered_ml */
    uint32_t report_interval_ms;   /* 0: use config.report_interval_s; otherwise force this (simulations) */
    uint32_t max_wait_ms;          /* 1000: the longest a step blocks */
    uint32_t backoff_stable_ms;    /* SPROUT_BACKOFF_STABLE_MS (60000): a session must last this long before
                                      the backoff forgets earlier failures */
    bool ignore_commands;          /* false; true makes the device silent on commands (server timeout tests) */
    /* Firmware updates (ota.h): the defaults come from sprout_limits.h (Kconfig on ESP-IDF). A
     * download starts and goes on only while every margin the port measures is met. */
    uint32_t ota_min_supply_mv;    /* SPROUT_OTA_MIN_SUPPLY_MV (3600) */
    int32_t ota_min_rssi_dbm;      /* SPROUT_OTA_MIN_RSSI_DBM (-80) */
    uint32_t ota_min_free_heap;    /* SPROUT_OTA_MIN_FREE_HEAP (16384) */
    uint32_t ota_save_every_bytes; /* SPROUT_OTA_SAVE_EVERY_BYTES (16384): persist the offset this often */
    uint32_t ota_save_every_ms;    /* SPROUT_OTA_SAVE_EVERY_MS (60000): or after this long */
    uint32_t ota_retry_min_ms;     /* SPROUT_OTA_RETRY_MIN_MS (30000): first re-check of short margins */
    uint32_t ota_retry_max_ms;     /* SPROUT_OTA_RETRY_MAX_MS (900000): the re-check delay stops doubling here */
} sprout_options;

void sprout_options_defaults(sprout_options *o);

typedef struct {
    const char *device_id;        /* 1..64 bytes */
    const uint8_t *secret;        /* HMAC key, the decoded bytes of the hex secret */
    size_t secret_len;
    const char *firmware_version; /* up to 32 bytes: what the running slot is (Hello, OTA) */
    const char *product;          /* may be NULL: else an UpdateOffer for another product is refused */
    const sprout_server *servers; /* tried in turn; at least one */
    size_t server_count;
    sprout_options options;
} sprout_client_config;

typedef enum {
    SPROUT_STATE_OFFLINE = 0,
    SPROUT_STATE_AWAIT_CHALLENGE,
    SPROUT_STATE_AWAIT_WELCOME,
    SPROUT_STATE_ONLINE,
} sprout_state;

typedef struct {
    uint32_t connect_attempts;
    uint32_t connect_failures;
    uint32_t handshakes;       /* Welcomes received */
    uint32_t disconnects;
    uint32_t frames_in;
    uint32_t frames_out;
    uint32_t records_resent;   /* readings and events sent again after a reconnect */
    uint32_t acks;
    uint32_t protocol_errors;
    uint32_t server_proof_failures; /* Welcomes without a valid server proof (not our server) */
    uint32_t commands_executed; /* commands that ran (not re-sent results, not BUSY) */
    uint32_t results_resent;    /* repeated command ids answered from history */
    uint32_t ota_record_writes; /* times the download record was persisted (flash writes) */
    uint32_t ota_deferrals;     /* DEFERRED answers: a download that had to wait for its margins */
} sprout_stats;

typedef struct {
    bool running;
    char command_id[sizeof(((sprout_device_v1_Command *)0)->command_id)];
    uint32_t water_ms;
    int64_t end_ms;
} sprout_pump_run;

typedef struct sprout_client {
    const sprout_port *port;
    sprout_client_config cfg;
    sprout_state state;

    /* Connection */
    size_t server_index;
    sprout_backoff backoff;
    int64_t next_connect_ms;
    int64_t handshake_deadline_ms;
    uint8_t device_nonce[SPROUT_NONCE_BYTES];
    uint8_t server_nonce[SPROUT_NONCE_BYTES];
    int64_t online_since_ms;  /* when the Welcome of this session arrived */
    char session_id[sizeof(((sprout_device_v1_Welcome *)0)->session_id)];
    uint8_t rx[SPROUT_FRAME_PREFIX_MAX + SPROUT_MAX_FRAME_BYTES];
    size_t rx_len;
    bool io_error;            /* a send failed: drop the connection at the end of this step */
    int64_t last_tx_ms;
    int64_t last_rx_ms;
    uint64_t ping_nonce;

    /* Readings */
    sprout_ring ring;
    uint64_t next_seq;
    uint64_t saved_next_seq;  /* the next_seq last persisted: records at or past it are held back */
    int64_t seq_retry_ms;     /* when to try persisting next_seq again after a failure */
    int64_t next_report_ms;
    bool tank_empty;
    bool sensor_fault;

    /* Clock: wall = monotonic + clock_offset_ms once the server told us the time. */
    bool clock_synced;
    int64_t clock_offset_ms;

    /* Config and commands */
    sprout_config config;
    sprout_history history;
    sprout_pump_run pump;
    bool watered_since_boot;
    int64_t last_water_end_ms;       /* monotonic, valid if watered_since_boot */
    int64_t last_water_end_wall_ms;  /* persisted; 0 if unknown */
    bool reboot_pending;

    /* Firmware update (ota.h) */
    sprout_ota ota;

    sprout_stats stats;
} sprout_client;

/* sprout_client_init loads the persisted state and prepares the first connection attempt. It
 * returns 0, or -1 if cfg is unusable (no servers, bad id length). */
int sprout_client_init(sprout_client *c, const sprout_port *port, const sprout_client_config *cfg);

/* sprout_client_step runs due timers, connects when it is time, and waits for at most
 * options.max_wait_ms for input (less if a timer is due sooner). Call it forever. */
void sprout_client_step(sprout_client *c);

/* sprout_client_shutdown closes the connection politely and stops the pump. */
void sprout_client_shutdown(sprout_client *c);

const char *sprout_state_name(sprout_state s);

/* sprout_client_send_frame sends f on the current connection (for ota.c); false if it could not. */
bool sprout_client_send_frame(sprout_client *c, const sprout_device_v1_Frame *f);

#endif
