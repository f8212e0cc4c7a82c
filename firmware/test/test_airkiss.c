/* The AirKiss decoder against the Go encoder's vectors (test/vectors/airkiss_*.txt, written by
 * `go generate ./simulations/airkiss`), plus unit cases for each stage. */
#define _DEFAULT_SOURCE
#include "testutil.h"

#include <dirent.h>
#include <sys/stat.h>

#include "airkiss.h"

typedef struct {
    char name[64];
    uint8_t ssid[64], password[128];
    size_t ssid_len, password_len;
    int random;
    bool expect_ok;
    uint16_t *lengths;
    size_t count;
} vector;

static size_t hex_field(const char *s, uint8_t *out, size_t cap)
{
    if (strcmp(s, "-") == 0) {
        return 0;
    }
    return unhex(s, out, cap);
}

static void load_vector(const char *path, vector *v)
{
    memset(v, 0, sizeof *v);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[512];
    while (fgets(line, sizeof line, f) != NULL) {
        char key[32], val[256];
        if (line[0] == '#' || sscanf(line, "%31s %255s", key, val) != 2) {
            continue;
        }
        if (strcmp(key, "name") == 0) {
            snprintf(v->name, sizeof v->name, "%s", val);
        } else if (strcmp(key, "ssid") == 0) {
            v->ssid_len = hex_field(val, v->ssid, sizeof v->ssid);
        } else if (strcmp(key, "password") == 0) {
            v->password_len = hex_field(val, v->password, sizeof v->password);
        } else if (strcmp(key, "random") == 0) {
            v->random = atoi(val);
        } else if (strcmp(key, "expect") == 0) {
            v->expect_ok = strcmp(val, "ok") == 0;
        } else if (strcmp(key, "lengths") == 0) {
            v->count = (size_t)atol(val);
            v->lengths = calloc(v->count, sizeof *v->lengths);
            for (size_t i = 0; i < v->count; i++) {
                unsigned x = 0;
                assert_int_equal(fscanf(f, "%u", &x), 1);
                v->lengths[i] = (uint16_t)x;
            }
            break;
        }
    }
    fclose(f);
    assert_true(v->count > 0);
}

/* write_seed stores a vector as little-endian uint16s for the fuzzer's corpus. */
static void write_seed(const vector *v)
{
    const char *dir = getenv("SPROUT_FUZZ_SEEDS");
    if (dir == NULL) {
        return;
    }
    mkdir(dir, 0755);
    char path[512];
    snprintf(path, sizeof path, "%s/%s.bin", dir, v->name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    for (size_t i = 0; i < v->count; i++) {
        uint8_t b[2] = {(uint8_t)v->lengths[i], (uint8_t)(v->lengths[i] >> 8)};
        fwrite(b, 1, 2, f);
    }
    fclose(f);
}

static void test_decoder_recovers_credentials_from_every_go_vector(void **state)
{
    (void)state;
    char dir[400];
    snprintf(dir, sizeof dir, "%s/vectors", SPROUT_TEST_DIR);
    DIR *d = opendir(dir);
    assert_non_null(d);
    int checked = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, "airkiss_", 8) != 0 || strstr(e->d_name, ".txt") == NULL) {
            continue;
        }
        char path[700];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        vector v;
        load_vector(path, &v);
        write_seed(&v);
        static sprout_airkiss ak;
        sprout_airkiss_reset(&ak);
        size_t done_at = 0;
        bool locked = false;
        for (size_t i = 0; i < v.count && done_at == 0; i++) {
            sprout_airkiss_status st = sprout_airkiss_feed(&ak, v.lengths[i]);
            locked = locked || st == SPROUT_AIRKISS_LOCKED;
            if (st == SPROUT_AIRKISS_COMPLETE) {
                done_at = i + 1;
            }
        }
        if (!v.expect_ok) {
            if (done_at != 0) {
                fail_msg("%s: decoded something from a vector that holds no credentials", v.name);
            }
        } else {
            if (done_at == 0) {
                fail_msg("%s: not decoded from %zu lengths (state %d, prefix %d)", v.name, v.count, (int)ak.state,
                         (int)ak.have_prefix);
            }
            assert_true(locked);
            assert_int_equal(ak.ssid_len, v.ssid_len);
            assert_memory_equal(ak.ssid, v.ssid, v.ssid_len);
            assert_int_equal(ak.password_len, v.password_len);
            assert_memory_equal(ak.password, v.password, v.password_len);
            assert_int_equal(ak.random, v.random);
            assert_int_equal(ak.ssid[ak.ssid_len], '\0');
            printf("    %-18s decoded after %5zu of %5zu lengths\n", v.name, done_at, v.count);
        }
        free(v.lengths);
        checked++;
    }
    closedir(d);
    assert_true(checked >= 5);
}

static void test_crc8_is_maxim_dallas(void **state)
{
    (void)state;
    assert_int_equal(sprout_airkiss_crc8((const uint8_t *)"123456789", 9), 0xA1);
    assert_int_equal(sprout_airkiss_crc8(NULL, 0), 0);
}

static void feed_all(sprout_airkiss *ak, const uint16_t *v, size_t n, uint16_t base)
{
    for (size_t i = 0; i < n; i++) {
        sprout_airkiss_feed(ak, (uint16_t)(v[i] + base));
    }
}

static void test_the_guide_locks_only_when_seen_twice(void **state)
{
    (void)state;
    static sprout_airkiss ak;
    sprout_airkiss_reset(&ak);
    const uint16_t guide[] = {1, 2, 3, 4};
    assert_int_equal(sprout_airkiss_feed(&ak, 43), SPROUT_AIRKISS_CONTINUE);
    assert_int_equal(sprout_airkiss_feed(&ak, 44), SPROUT_AIRKISS_CONTINUE);
    assert_int_equal(sprout_airkiss_feed(&ak, 45), SPROUT_AIRKISS_CONTINUE);
    assert_int_equal(sprout_airkiss_feed(&ak, 46), SPROUT_AIRKISS_CONTINUE); /* once */
    assert_int_equal(ak.state, SPROUT_AIRKISS_GUIDE);
    feed_all(&ak, guide, 3, 42);
    assert_int_equal(sprout_airkiss_feed(&ak, 46), SPROUT_AIRKISS_LOCKED);
    assert_int_equal(ak.state, SPROUT_AIRKISS_MAGIC);
    assert_int_equal(ak.base_len, 42);
}

static void test_a_false_lock_is_replaced_by_a_real_guide(void **state)
{
    (void)state;
    static sprout_airkiss ak;
    sprout_airkiss_reset(&ak);
    const uint16_t guide[] = {1, 2, 3, 4, 1, 2, 3, 4};
    feed_all(&ak, guide, 8, 500); /* other traffic that happened to rise by one, twice */
    assert_int_equal(ak.base_len, 500);
    feed_all(&ak, guide, 8, 42);
    assert_int_equal(ak.state, SPROUT_AIRKISS_MAGIC);
    assert_int_equal(ak.base_len, 42);
}

static void test_magic_needs_two_agreeing_sightings_and_reads_0x08_as_zero(void **state)
{
    (void)state;
    static sprout_airkiss ak;
    sprout_airkiss_reset(&ak);
    const uint16_t guide[] = {1, 2, 3, 4, 1, 2, 3, 4};
    feed_all(&ak, guide, 8, 42);
    uint8_t crc = sprout_airkiss_crc8((const uint8_t *)"a", 1);
    const uint16_t magic[] = {0x08, 0x12, (uint16_t)(0x20 | crc >> 4), (uint16_t)(0x30 | (crc & 0xF))};
    feed_all(&ak, magic, 4, 42);
    assert_int_equal(ak.state, SPROUT_AIRKISS_MAGIC);
    feed_all(&ak, magic, 4, 42);
    assert_int_equal(ak.state, SPROUT_AIRKISS_DATA);
    assert_int_equal(ak.total_len, 2);
    assert_int_equal(ak.ssid_crc, crc);
}

static void test_a_group_with_a_bad_crc_is_ignored(void **state)
{
    (void)state;
    static sprout_airkiss ak;
    sprout_airkiss_reset(&ak);
    const uint16_t guide[] = {1, 2, 3, 4, 1, 2, 3, 4};
    feed_all(&ak, guide, 8, 0);
    /* ssid "a", password "", random 7: data = {7, 'a'} */
    uint8_t crc = sprout_airkiss_crc8((const uint8_t *)"a", 1);
    const uint16_t magic[] = {0x08, 0x12, (uint16_t)(0x20 | crc >> 4), (uint16_t)(0x30 | (crc & 0xF)),
                              0x08, 0x12, (uint16_t)(0x20 | crc >> 4), (uint16_t)(0x30 | (crc & 0xF))};
    feed_all(&ak, magic, 8, 0);
    uint8_t pl = 0, plcrc = sprout_airkiss_crc8(&pl, 1);
    const uint16_t prefix[] = {0x40, 0x50, (uint16_t)(0x60 | plcrc >> 4), (uint16_t)(0x70 | (plcrc & 0xF))};
    feed_all(&ak, prefix, 4, 0);
    assert_true(ak.have_prefix);
    uint8_t g[3] = {0, 7, 'a'};
    uint8_t gcrc = sprout_airkiss_crc8(g, 3) & 0x7F;
    const uint16_t bad[] = {(uint16_t)(0x80 | ((gcrc + 1) & 0x7F)), 0x80, 0x107, 0x161};
    feed_all(&ak, bad, 4, 0);
    assert_int_equal(ak.state, SPROUT_AIRKISS_DATA);
    const uint16_t good[] = {(uint16_t)(0x80 | gcrc), 0x80, 0x107};
    feed_all(&ak, good, 3, 0);
    assert_int_equal(sprout_airkiss_feed(&ak, 0x161), SPROUT_AIRKISS_COMPLETE);
    assert_string_equal(ak.ssid, "a");
    assert_int_equal(ak.password_len, 0);
    assert_int_equal(ak.random, 7);
    /* Once complete it stays complete. */
    assert_int_equal(sprout_airkiss_feed(&ak, 999), SPROUT_AIRKISS_COMPLETE);
}

/* A sequence that says the SSID is empty (total = password + random byte): there is no network
 * to join, so it must never decode, however clean. */
static void test_an_empty_ssid_is_refused(void **state)
{
    (void)state;
    static sprout_airkiss ak;
    sprout_airkiss_reset(&ak);
    const uint16_t guide[] = {1, 2, 3, 4, 1, 2, 3, 4};
    feed_all(&ak, guide, 8, 0);
    uint8_t crc = sprout_airkiss_crc8(NULL, 0); /* of the empty SSID */
    const uint16_t magic[] = {0x08, 0x13, (uint16_t)(0x20 | crc >> 4), (uint16_t)(0x30 | (crc & 0xF))};
    feed_all(&ak, magic, 4, 0);
    feed_all(&ak, magic, 4, 0);
    assert_int_equal(ak.state, SPROUT_AIRKISS_DATA);
    uint8_t pl = 2, plcrc = sprout_airkiss_crc8(&pl, 1);
    const uint16_t prefix[] = {0x40, 0x52, (uint16_t)(0x60 | plcrc >> 4), (uint16_t)(0x70 | (plcrc & 0xF))};
    uint8_t g[4] = {0, 'p', 'w', 9};
    uint8_t gcrc = sprout_airkiss_crc8(g, 4) & 0x7F;
    const uint16_t group[] = {(uint16_t)(0x80 | gcrc), 0x80, 0x100 | 'p', 0x100 | 'w', 0x109};
    for (int round = 0; round < 3; round++) {
        feed_all(&ak, prefix, 4, 0);
        for (size_t i = 0; i < 5; i++) {
            assert_int_not_equal(sprout_airkiss_feed(&ak, group[i]), SPROUT_AIRKISS_COMPLETE);
        }
    }
    assert_int_not_equal(ak.state, SPROUT_AIRKISS_DONE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decoder_recovers_credentials_from_every_go_vector),
        cmocka_unit_test(test_crc8_is_maxim_dallas),
        cmocka_unit_test(test_the_guide_locks_only_when_seen_twice),
        cmocka_unit_test(test_a_false_lock_is_replaced_by_a_real_guide),
        cmocka_unit_test(test_magic_needs_two_agreeing_sightings_and_reads_0x08_as_zero),
        cmocka_unit_test(test_a_group_with_a_bad_crc_is_ignored),
        cmocka_unit_test(test_an_empty_ssid_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
