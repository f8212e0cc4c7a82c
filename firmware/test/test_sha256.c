/* SHA-256 against FIPS 180-4 examples, HMAC-SHA256 against RFC 4231 section 4. */
#include "testutil.h"

#include "sha256.h"

static void check_sha(const void *data, size_t len, const char *want)
{
    uint8_t d[32];
    char got[65];
    sprout_sha256 s;
    sprout_sha256_init(&s);
    sprout_sha256_update(&s, data, len);
    sprout_sha256_final(&s, d);
    tohex(d, 32, got);
    assert_string_equal(got, want);
}

static void test_sha256_fips_examples(void **state)
{
    (void)state;
    check_sha("", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    check_sha("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *two_blocks = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    check_sha(two_blocks, strlen(two_blocks), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

static void test_sha256_million_a_in_odd_chunks(void **state)
{
    (void)state;
    uint8_t chunk[997];
    memset(chunk, 'a', sizeof chunk);
    sprout_sha256 s;
    sprout_sha256_init(&s);
    size_t left = 1000000;
    while (left > 0) {
        size_t n = left < sizeof chunk ? left : sizeof chunk;
        sprout_sha256_update(&s, chunk, n);
        left -= n;
    }
    uint8_t d[32];
    char got[65];
    sprout_sha256_final(&s, d);
    tohex(d, 32, got);
    assert_string_equal(got, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

static void test_sha256_padding_boundaries(void **state)
{
    (void)state;
    /* 55, 56 and 64 bytes straddle the length field; compare one-shot against byte-by-byte. */
    uint8_t msg[130];
    for (size_t i = 0; i < sizeof msg; i++) {
        msg[i] = (uint8_t)i;
    }
    size_t lens[] = {55, 56, 57, 63, 64, 65, 119, 120, 128};
    for (size_t k = 0; k < sizeof lens / sizeof lens[0]; k++) {
        uint8_t a[32], b[32];
        sprout_sha256 s;
        sprout_sha256_init(&s);
        sprout_sha256_update(&s, msg, lens[k]);
        sprout_sha256_final(&s, a);
        sprout_sha256_init(&s);
        for (size_t i = 0; i < lens[k]; i++) {
            sprout_sha256_update(&s, msg + i, 1);
        }
        sprout_sha256_final(&s, b);
        assert_memory_equal(a, b, 32);
    }
}

struct hmac_case {
    const char *key_hex;
    const char *data_hex; /* or NULL: use data_str */
    const char *data_str;
    const char *want;     /* hex; may be a truncated prefix (case 5) */
};

static void test_hmac_rfc4231(void **state)
{
    (void)state;
    char k131[263];
    memset(k131, 'a', 262);
    k131[262] = '\0';
    char dd50[101], cd50[101];
    for (int i = 0; i < 50; i++) {
        memcpy(dd50 + 2 * i, "dd", 2);
        memcpy(cd50 + 2 * i, "cd", 2);
    }
    dd50[100] = cd50[100] = '\0';
    const struct hmac_case cases[] = {
        {"0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b", NULL, "Hi There",
         "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"},
        {"4a656665", NULL, "what do ya want for nothing?",
         "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
        {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", dd50, NULL,
         "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"},
        {"0102030405060708090a0b0c0d0e0f10111213141516171819", cd50, NULL,
         "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"},
        {"0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c", NULL, "Test With Truncation", "a3b6167473100ee06e0c796c2955552b"},
        {k131, NULL, "Test Using Larger Than Block-Size Key - Hash Key First",
         "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"},
        {k131, NULL,
         "This is a test using a larger than block-size key and a larger than block-size data. The key needs to "
         "be hashed before being used by the HMAC algorithm.",
         "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t key[131], data[200], mac[32];
        size_t klen = unhex(cases[i].key_hex, key, sizeof key);
        size_t dlen;
        if (cases[i].data_hex != NULL) {
            dlen = unhex(cases[i].data_hex, data, sizeof data);
        } else {
            dlen = strlen(cases[i].data_str);
            memcpy(data, cases[i].data_str, dlen);
        }
        sprout_hmac_sha256(key, klen, data, dlen, mac);
        char got[65];
        tohex(mac, 32, got);
        got[strlen(cases[i].want)] = '\0';
        assert_string_equal(got, cases[i].want);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha256_fips_examples),
        cmocka_unit_test(test_sha256_million_a_in_odd_chunks),
        cmocka_unit_test(test_sha256_padding_boundaries),
        cmocka_unit_test(test_hmac_rfc4231),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
