/* A/B firmware slots for vdev (docs/ota.md, firmware/README.md "OTA").
 *
 * The slots are two files in the state directory, slot-a and slot-b; an image's first line is its
 * firmware version (a test image can be a small text file). The file ota-boot says which slot
 * boots and whether it is on trial. sprout_posix_ota_boot plays the bootloader: a slot switched to
 * and booted once without being marked valid is abandoned at the next boot (rolled back). One set
 * of slots per process (the hooks keep their state in this file, not in the port's ctx). */
#ifndef SPROUT_OTA_POSIX_H
#define SPROUT_OTA_POSIX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sprout_port.h"

typedef struct {
    uint8_t pubkey[32];     /* the Ed25519 public key images must be signed with */
    uint32_t slot_bytes;    /* the capacity of a slot (default 4 MiB) */
} sprout_posix_ota_options;

/* sprout_posix_ota_boot picks the slot to run in dir (rolling back an image that was booted on
 * trial and never marked valid) and writes its version (the slot's first line, or
 * default_version when the slot holds no image) into version. *on_trial says whether this boot
 * runs a new image not yet marked valid; *rolled_back whether this boot abandoned one. 0 or -1. */
int sprout_posix_ota_boot(const char *dir, const char *default_version, char *version, size_t cap, bool *on_trial,
                          bool *rolled_back);

/* sprout_posix_ota_install fills port's ota_* hooks (the port's other hooks stay). */
int sprout_posix_ota_install(const sprout_posix_ota_options *o, sprout_port *port);

/* sprout_posix_ota_restart_wanted says whether a slot switch asks for a real restart (vdev
 * re-executes itself, which boots the new slot). */
bool sprout_posix_ota_restart_wanted(void);

/* sprout_posix_ota_parse_key reads 64 hex digits (whitespace around them allowed) from file. */
int sprout_posix_ota_parse_key(const char *file, uint8_t out[32]);

#endif
