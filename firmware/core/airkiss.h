/* AirKiss decoder: recovers the WiFi SSID and password that WeChat broadcasts in the lengths of
 * UDP packets (the wire format is summarised below). A pure state machine: feed it the length of every
 * frame sniffed on the channel, in order; it knows nothing about radios or channels.
 *
 *   GUIDE  lengths b+1, b+2, b+3, b+4 (seen twice with the same b) lock base_len = b
 *   MAGIC  4 words 0x00|L>>4, 0x10|L&F, 0x20|crc>>4, 0x30|crc&F (seen twice alike): total length
 *          L = len(ssid)+len(pwd)+1 and crc8(ssid)
 *   DATA   prefix 0x40..0x70 (password length, crc-checked) and sequence groups
 *          [0x80|crc7, 0x80|index, 0x100|byte x4] over pwd || random || ssid
 *
 * The sender repeats its whole sequence, so lost and corrupted groups are filled in from later
 * rounds. Each group carries only a 7-bit CRC, so a group is trusted once seen twice, or once if
 * no other candidate ever appeared for its index and the SSID's CRC8 matches. A caller that hops
 * channels resets the decoder when it gives up on one. */
#ifndef SPROUT_AIRKISS_H
#define SPROUT_AIRKISS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SPROUT_AIRKISS_MAX_SSID 32
#define SPROUT_AIRKISS_MAX_PASSWORD 64
#define SPROUT_AIRKISS_MAX_DATA (SPROUT_AIRKISS_MAX_PASSWORD + 1 + SPROUT_AIRKISS_MAX_SSID)
#define SPROUT_AIRKISS_MAX_GROUPS ((SPROUT_AIRKISS_MAX_DATA + 3) / 4)
#define SPROUT_AIRKISS_CANDIDATES 3

typedef enum {
    SPROUT_AIRKISS_GUIDE = 0,
    SPROUT_AIRKISS_MAGIC,
    SPROUT_AIRKISS_DATA,
    SPROUT_AIRKISS_DONE,
} sprout_airkiss_state;

typedef enum {
    SPROUT_AIRKISS_CONTINUE = 0, /* nothing new */
    SPROUT_AIRKISS_LOCKED,       /* guide found: the caller may stop hopping channels */
    SPROUT_AIRKISS_COMPLETE,     /* ssid, password and random are available */
} sprout_airkiss_status;

typedef struct {
    uint8_t bytes[4];
    uint8_t count;
} sprout_airkiss_candidate;

typedef struct {
    sprout_airkiss_state state;
    uint16_t raw[4];     /* the last four lengths, for the guide */
    uint8_t raw_len;
    uint16_t window[4];  /* the last four base-relative words, for magic and prefix */
    uint8_t window_len;
    uint16_t base_len;
    uint16_t guide_candidate;
    uint8_t guide_seen;

    uint8_t total_len;   /* L from the magic code */
    uint8_t ssid_crc;
    uint16_t magic_candidate; /* L << 8 | crc, waiting for its confirmation */
    bool magic_seen;

    bool have_prefix;
    uint8_t pwd_len;

    struct {             /* the group being received */
        uint8_t headers[2]; /* the last two sequence headers: crc, then index */
        uint8_t header_count;
        bool collecting;    /* data bytes follow two headers */
        uint8_t crc, index, n;
        uint8_t bytes[4];
    } pending;
    sprout_airkiss_candidate groups[SPROUT_AIRKISS_MAX_GROUPS][SPROUT_AIRKISS_CANDIDATES];
    uint16_t bad_groups; /* groups that failed their 7-bit CRC (diagnostics) */

    /* The result, valid once COMPLETE; strings are NUL-terminated. */
    char ssid[SPROUT_AIRKISS_MAX_SSID + 1];
    char password[SPROUT_AIRKISS_MAX_PASSWORD + 1];
    uint8_t ssid_len;
    uint8_t password_len;
    uint8_t random;
} sprout_airkiss;

void sprout_airkiss_reset(sprout_airkiss *ak);
sprout_airkiss_status sprout_airkiss_feed(sprout_airkiss *ak, uint16_t frame_len);

/* sprout_airkiss_crc8 is the Maxim/Dallas CRC8 (reflected polynomial 0x8C, init 0) AirKiss uses. */
uint8_t sprout_airkiss_crc8(const uint8_t *data, size_t len);

#endif
