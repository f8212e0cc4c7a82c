/* OTA manifest: the exact bytes the server signs (docs/ota.md), and an Ed25519 signature over them
 * made with libsodium verifying only for those bytes. */
#include "testutil.h"

#include <sodium.h>

#include "ota.h"

static const uint8_t sha[32] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
                                17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};

static void test_manifest_bytes(void **state)
{
    (void)state;
    uint8_t m[SPROUT_OTA_MANIFEST_MAX];
    size_t n = sprout_ota_manifest("acme-pot", "2.1.0", 0x0102030405ull, sha, m, sizeof m);
    static const uint8_t head[] = "sprout-fw-v1\0acme-pot\0" "2.1.0\0\0\0\0\x01\x02\x03\x04\x05";
    assert_int_equal(n, sizeof head - 1 + 32);
    assert_memory_equal(m, head, sizeof head - 1);
    assert_memory_equal(m + sizeof head - 1, sha, 32);
}

static void test_manifest_refuses_long_fields(void **state)
{
    (void)state;
    uint8_t m[SPROUT_OTA_MANIFEST_MAX];
    char longv[40];
    memset(longv, 'v', sizeof longv - 1);
    longv[sizeof longv - 1] = '\0';
    assert_int_equal(sprout_ota_manifest("p", longv, 1, sha, m, sizeof m), 0);
    assert_int_equal(sprout_ota_manifest("p", "1", 1, sha, m, 10), 0);
}

static void test_signature_covers_every_field(void **state)
{
    (void)state;
    assert_true(sodium_init() >= 0);
    uint8_t pk[32], sk[64], sig[64], seed[32] = {7};
    crypto_sign_seed_keypair(pk, sk, seed);
    uint8_t m[SPROUT_OTA_MANIFEST_MAX];
    size_t n = sprout_ota_manifest("acme-pot", "2.1.0", 4096, sha, m, sizeof m);
    crypto_sign_detached(sig, NULL, m, n, sk);
    assert_int_equal(crypto_sign_verify_detached(sig, m, n, pk), 0);
    /* Another product, version, size or hash: a different manifest, the signature fails. */
    uint8_t other[32];
    memcpy(other, sha, 32);
    other[31] ^= 1;
    size_t k;
    k = sprout_ota_manifest("acme-po", "2.1.0", 4096, sha, m, sizeof m);
    assert_int_not_equal(crypto_sign_verify_detached(sig, m, k, pk), 0);
    k = sprout_ota_manifest("acme-pot", "2.1.1", 4096, sha, m, sizeof m);
    assert_int_not_equal(crypto_sign_verify_detached(sig, m, k, pk), 0);
    k = sprout_ota_manifest("acme-pot", "2.1.0", 4097, sha, m, sizeof m);
    assert_int_not_equal(crypto_sign_verify_detached(sig, m, k, pk), 0);
    k = sprout_ota_manifest("acme-pot", "2.1.0", 4096, other, m, sizeof m);
    assert_int_not_equal(crypto_sign_verify_detached(sig, m, k, pk), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_manifest_bytes),
        cmocka_unit_test(test_manifest_refuses_long_fields),
        cmocka_unit_test(test_signature_covers_every_field),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
