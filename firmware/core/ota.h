/* Firmware updates over the air, the device's side (docs/ota.md).
 *
 * The server offers an image after Welcome (UpdateOffer). The core checks the Ed25519 signature
 * of the manifest with the port's ota_verify (the public key is the port's: built in), checks the
 * size against the inactive slot, then asks for the image one ChunkRequest at a time and writes
 * each Chunk at its offset into the inactive slot. The download (sha256, size, version, offset)
 * is persisted under the key "ota" after every chunk, so a reconnect or a reboot resumes where the
 * slot ends: a new offer with the same sha256 continues from the saved offset. Complete, the slot
 * is read back and hashed (SHA-256) against the signed hash, the port switches the boot slot and
 * the device reboots. After the next Welcome, the core marks the image valid (port ota_mark_valid)
 * and says RUNNING if it runs the offered version, or ROLLED_BACK if the bootloader returned to
 * the old one.
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

typedef struct {
    sprout_ota_record rec;
    bool active;           /* a download runs on this connection */
    bool in_flight;        /* a ChunkRequest awaits its Chunk */
    uint32_t chunk_size;
    uint32_t last_percent; /* the last DOWNLOADING percent reported */
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

#endif
