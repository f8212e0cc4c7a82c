/* Firmware updates over the air, the device's side (docs/ota.md).
 *
 * The server offers an image after Welcome (UpdateOffer). The core checks the Ed25519 signature
 * of the manifest with the port's ota_verify (the public key is the port's: built in), checks the
 * size against the inactive slot, then asks for the image one ChunkRequest at a time and writes
 * each Chunk at its offset into the inactive slot. Complete, the slot is read back and hashed
 * (SHA-256) against the signed hash, the port switches the boot slot and the device reboots.
 * After the next Welcome, the core marks the image valid (port ota_mark_valid) and says RUNNING
 * if it runs the offered version, or ROLLED_BACK if the bootloader returned to the old one.
 *
 * When to download is the device's decision: before it accepts an offer, before each
 * ChunkRequest and before it verifies and reboots, it asks the port for its margins (ota_margins:
 * supply voltage, WiFi signal, free heap, the pump) and compares them with the thresholds of
 * sprout_options (sprout_limits.h). While one is short it says DEFERRED once with the reason and
 * when it looks again, and looks again after a bounded backoff (ota_retry_min_ms doubling up to
 * ota_retry_max_ms, with jitter), on the same connection; the pump always comes first.
 *
 * The download (phase, sha256, size, version, offset) is persisted under the key "ota" when it
 * starts, then at most every ota_save_every_bytes or ota_save_every_ms, when it pauses and when
 * the connection ends, so flash sees a few writes per image rather than one per chunk. An offer
 * with the same sha256 resumes at the persisted offset: after a power cut at most
 * ota_save_every_bytes are fetched (and written, with the same bytes) again.
 *
 * Memory: one static 512-byte buffer for the read-back; nothing is allocated. */
#ifndef SPROUT_OTA_H
#define SPROUT_OTA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "frame.h"
#include "sprout_port.h"

#define SPROUT_OTA_CHUNK_MAX 512
/* SPROUT_OTA_REQUEST_MAX is the most the device asks for in one ChunkRequest: a Chunk frame of
 * that much data (plus its sha256, offset and framing, 45 bytes at most) stays within the frame
 * limit the device accepts (SPROUT_MAX_FRAME_BYTES, 512), whatever chunk_size the server offers.
 * A multiple of 16, for flash (and flash encryption) write alignment. */
#define SPROUT_OTA_REQUEST_MAX 448
#define SPROUT_OTA_KEY "ota"
#define SPROUT_OTA_MANIFEST_MAX (13 + 65 + 33 + 1 + 8 + 32)

/* What the persisted record says. */
typedef enum {
    SPROUT_OTA_IDLE = 0,
    SPROUT_OTA_DOWNLOADING = 1, /* the inactive slot holds offset bytes of the image */
    SPROUT_OTA_BOOTING = 2,     /* verified and switched: the next boot runs version, or rolls back */
} sprout_ota_phase;

typedef struct {
    uint8_t phase;     /* sprout_ota_phase */
    uint8_t sha256[32];
    uint32_t size;
    uint32_t offset;
    char version[33];
} sprout_ota_record;

/* Why a download waits (what DEFERRED said last). */
typedef enum {
    SPROUT_OTA_MARGIN_OK = 0,
    SPROUT_OTA_MARGIN_PUMP,
    SPROUT_OTA_MARGIN_SUPPLY,
    SPROUT_OTA_MARGIN_WIFI,
    SPROUT_OTA_MARGIN_HEAP,
    SPROUT_OTA_MARGIN_UNKNOWN, /* the port could not measure */
} sprout_ota_margin;

typedef struct {
    sprout_ota_record rec;  /* rec.offset: what the slot holds; may be ahead of the saved one */
    bool persisted;         /* storage holds rec's image (phase, sha256, size, version) */
    bool active;            /* an accepted offer is downloaded on this connection */
    bool opened;            /* ota_begin ran for it */
    bool in_flight;         /* a ChunkRequest awaits its Chunk */
    uint32_t chunk_size;
    uint32_t last_percent;  /* the last DOWNLOADING percent reported */
    uint32_t saved_offset;  /* the offset storage holds */
    int64_t saved_ms;       /* when it was written */
    uint8_t deferred;       /* sprout_ota_margin: why the download waits; OK when it does not */
    int64_t retry_at_ms;    /* when to measure the margins again */
    uint32_t retry_attempt; /* re-checks that found a margin short, for the backoff */
} sprout_ota;

/* sprout_ota_manifest builds the signed manifest bytes into out (cap >= SPROUT_OTA_MANIFEST_MAX)
 * and returns its length, or 0 if product or version is too long. */
size_t sprout_ota_manifest(const char *product, const char *version, uint64_t size, const uint8_t sha256[32],
                           uint8_t *out, size_t cap);

/* sprout_ota_supported says whether the port has every OTA hook. */
bool sprout_ota_supported(const sprout_port *p);

struct sprout_client;

/* Called by the client: at init (load the record), after Welcome, for each OTA frame, and when
 * the connection drops. */
void sprout_ota_init(struct sprout_client *c);
void sprout_ota_on_welcome(struct sprout_client *c);
void sprout_ota_on_offer(struct sprout_client *c, const sprout_device_v1_UpdateOffer *o);
void sprout_ota_on_chunk(struct sprout_client *c, const sprout_device_v1_Chunk *ch);
void sprout_ota_on_disconnect(struct sprout_client *c);

/* sprout_ota_step re-checks the margins of a deferred download when its time has come (the
 * client calls it while online); sprout_ota_deadline lowers d to that time. */
void sprout_ota_step(struct sprout_client *c, int64_t now);
int64_t sprout_ota_deadline(const struct sprout_client *c, int64_t d);

/* sprout_ota_margins_short measures the margins and returns why a download must wait (OK if it
 * need not), with a reason for the server in why (at most 64 bytes with its NUL). */
sprout_ota_margin sprout_ota_margins_short(struct sprout_client *c, char *why, size_t cap);

#endif
