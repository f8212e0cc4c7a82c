/* SHA-256 (FIPS 180-4) and HMAC-SHA256 (RFC 2104) for the handshake MAC.
 * Small and constant-memory; not hardened against timing side channels beyond
 * what the handshake needs (the key never leaves the device, only MACs do). */
#ifndef SPROUT_SHA256_H
#define SPROUT_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SPROUT_SHA256_BLOCK 64
#define SPROUT_SHA256_DIGEST 32

typedef struct {
    uint32_t h[8];
    uint64_t total;                      /* bytes hashed so far */
    uint8_t buf[SPROUT_SHA256_BLOCK];
    size_t used;                         /* bytes waiting in buf */
} sprout_sha256;

void sprout_sha256_init(sprout_sha256 *s);
void sprout_sha256_update(sprout_sha256 *s, const void *data, size_t len);
void sprout_sha256_final(sprout_sha256 *s, uint8_t out[SPROUT_SHA256_DIGEST]);

typedef struct {
    sprout_sha256 inner;
    uint8_t okey[SPROUT_SHA256_BLOCK];   /* key XOR opad, kept for the outer hash */
} sprout_hmac;

void sprout_hmac_init(sprout_hmac *m, const uint8_t *key, size_t key_len);
void sprout_hmac_update(sprout_hmac *m, const void *data, size_t len);
void sprout_hmac_final(sprout_hmac *m, uint8_t out[SPROUT_SHA256_DIGEST]);

/* sprout_hmac_sha256 is the one-shot form. */
void sprout_hmac_sha256(const uint8_t *key, size_t key_len, const void *data, size_t len,
                        uint8_t out[SPROUT_SHA256_DIGEST]);

#endif
