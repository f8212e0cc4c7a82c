/* The frame codec: byte compatibility with Go (golden frames both ways) and the limits of
 * device.options enforced on decode. */
#include "testutil.h"

#include "frame.h"
#include "golden_cases.h"
#include "client.h"
#include "sha256.h"

static char path_buf[512];

static const char *golden_path(const char *side, const char *name, const char *ext)
{
    snprintf(path_buf, sizeof path_buf, "%s/golden/%s/%s.%s", SPROUT_TEST_DIR, side, name, ext);
    return path_buf;
}

static size_t encode(const sprout_frame *f, uint8_t *buf, size_t cap)
{
    size_t len = 0;
    assert_int_equal(sprout_frame_encode(f, buf, cap, &len), SPROUT_FRAME_OK);
    return len;
}

static void test_go_golden_frames_decode_and_reencode_identically(void **state)
{
    (void)state;
    for (size_t i = 0; i < GOLDEN_CASES; i++) {
        size_t len = 0;
        uint8_t *go = read_file(golden_path("go", golden_cases[i].name, "bin"), &len);
        if (go == NULL) {
            fail_msg("missing %s (run SPROUT_UPDATE_GOLDEN=1 go test ./firmware -run Golden)", path_buf);
        }
        sprout_frame want = sprout_device_v1_Frame_init_zero, got = sprout_device_v1_Frame_init_zero;
        golden_cases[i].build(&want);
        size_t used = 0;
        if (sprout_frame_decode(go, len, SPROUT_MAX_FRAME_BYTES, &got, &used) != SPROUT_FRAME_OK) {
            fail_msg("%s: C cannot decode Go's frame", golden_cases[i].name);
        }
        assert_int_equal(used, len);
        assert_int_equal(got.which_body, want.which_body);

        uint8_t a[SPROUT_FRAME_ENCODED_MAX], b[SPROUT_FRAME_ENCODED_MAX];
        size_t la = encode(&want, a, sizeof a); /* C's encoding of the case */
        size_t lb = encode(&got, b, sizeof b);  /* C's encoding of what it decoded */
        if (la != len || memcmp(a, go, len) != 0) {
            fail_msg("%s: C encoding differs from Go's", golden_cases[i].name);
        }
        assert_int_equal(lb, len);
        assert_memory_equal(b, go, len);
        free(go);
    }
}

/* The C side of the golden files: written on request (make golden-c), else checked for drift. */
static void test_c_golden_frames_are_committed(void **state)
{
    (void)state;
    bool write = getenv("SPROUT_WRITE_GOLDEN") != NULL;
    for (size_t i = 0; i < GOLDEN_CASES; i++) {
        sprout_frame f = sprout_device_v1_Frame_init_zero;
        golden_cases[i].build(&f);
        uint8_t buf[SPROUT_FRAME_ENCODED_MAX];
        size_t len = encode(&f, buf, sizeof buf);
        const char *path = golden_path("c", golden_cases[i].name, "bin");
        if (write) {
            FILE *out = fopen(path, "wb");
            assert_non_null(out);
            assert_int_equal(fwrite(buf, 1, len, out), len);
            fclose(out);
            continue;
        }
        size_t have_len = 0;
        uint8_t *have = read_file(path, &have_len);
        if (have == NULL) {
            fail_msg("missing %s (run make -C firmware golden-c)", path);
        }
        assert_int_equal(have_len, len);
        assert_memory_equal(have, buf, len);
        free(have);
    }
}

static void test_handshake_mac_matches_go(void **state)
{
    (void)state;
    size_t len = 0;
    char *txt = (char *)read_file(golden_path("go", "mac", "txt"), &len);
    assert_non_null(txt);
    txt = realloc(txt, len + 1);
    txt[len] = '\0';
    char secret_hex[256], dn_hex[64], sn_hex[64], id[80], mac_hex[80];
    assert_int_equal(sscanf(txt, "%255s %63s %63s %79s %79s", secret_hex, dn_hex, sn_hex, id, mac_hex), 5);
    uint8_t secret[128], dn[16], sn[16], mac[32];
    size_t sl = unhex(secret_hex, secret, sizeof secret);
    assert_int_equal(unhex(dn_hex, dn, sizeof dn), 16);
    assert_int_equal(unhex(sn_hex, sn, sizeof sn), 16);
    sprout_hmac m;
    sprout_hmac_init(&m, secret, sl);
    sprout_hmac_update(&m, dn, 16);
    sprout_hmac_update(&m, sn, 16);
    sprout_hmac_update(&m, id, strlen(id));
    sprout_hmac_final(&m, mac);
    char got[65];
    tohex(mac, 32, got);
    assert_string_equal(got, mac_hex);
    free(txt);
}

static void test_server_proof_matches_go(void **state)
{
    (void)state;
    size_t len = 0;
    char *txt = (char *)read_file(golden_path("go", "server_proof", "txt"), &len);
    assert_non_null(txt);
    txt = realloc(txt, len + 1);
    txt[len] = '\0';
    char secret_hex[256], dn_hex[64], sn_hex[64], proof_hex[80];
    assert_int_equal(sscanf(txt, "%255s %63s %63s %79s", secret_hex, dn_hex, sn_hex, proof_hex), 4);
    uint8_t secret[128], dn[16], sn[16], proof[32];
    size_t sl = unhex(secret_hex, secret, sizeof secret);
    assert_int_equal(unhex(dn_hex, dn, sizeof dn), 16);
    assert_int_equal(unhex(sn_hex, sn, sizeof sn), 16);
    sprout_server_proof(secret, sl, dn, sn, proof);
    char got[65];
    tohex(proof, 32, got);
    assert_string_equal(got, proof_hex);
    free(txt);
}

/* ---- hand-built protobuf for the limits ---- */

typedef struct {
    uint8_t b[2048];
    size_t n;
} pbuf;

static void put_varint(pbuf *p, uint64_t v)
{
    while (v >= 0x80) {
        p->b[p->n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p->b[p->n++] = (uint8_t)v;
}

static void put_bytes_field(pbuf *p, unsigned field, const uint8_t *data, size_t len)
{
    put_varint(p, (uint64_t)field << 3 | 2);
    put_varint(p, len);
    memcpy(p->b + p->n, data, len);
    p->n += len;
}

static void put_str_field(pbuf *p, unsigned field, char c, size_t len)
{
    uint8_t s[300];
    memset(s, c, len);
    put_bytes_field(p, field, s, len);
}

/* frame_of wraps a message body as Frame field `field`, with the length prefix. */
static pbuf frame_of(unsigned field, const pbuf *body)
{
    pbuf inner = {.n = 0}, out = {.n = 0};
    put_bytes_field(&inner, field, body->b, body->n);
    put_varint(&out, inner.n);
    memcpy(out.b + out.n, inner.b, inner.n);
    out.n += inner.n;
    return out;
}

static sprout_frame_status decode_pbuf(const pbuf *p, sprout_frame *f)
{
    size_t used = 0;
    memset(f, 0, sizeof *f);
    return sprout_frame_decode(p->b, p->n, SPROUT_MAX_FRAME_BYTES, f, &used);
}

static void test_strings_at_their_limit_decode_one_more_byte_is_rejected(void **state)
{
    (void)state;
    struct {
        unsigned frame_field, string_field;
        size_t max;
    } limits[] = {
        {sprout_device_v1_Frame_hello_tag, sprout_device_v1_Hello_device_id_tag, 64},
        {sprout_device_v1_Frame_hello_tag, sprout_device_v1_Hello_firmware_version_tag, 32},
        {sprout_device_v1_Frame_welcome_tag, sprout_device_v1_Welcome_session_id_tag, 36},
        {sprout_device_v1_Frame_command_tag, sprout_device_v1_Command_command_id_tag, 36},
        {sprout_device_v1_Frame_command_result_tag, sprout_device_v1_CommandResult_detail_tag, 64},
        {sprout_device_v1_Frame_event_tag, sprout_device_v1_Event_detail_tag, 64},
        {sprout_device_v1_Frame_close_tag, sprout_device_v1_Close_detail_tag, 64},
    };
    for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++) {
        sprout_frame f;
        pbuf ok = {.n = 0}, over = {.n = 0};
        put_str_field(&ok, limits[i].string_field, 'a', limits[i].max);
        put_str_field(&over, limits[i].string_field, 'a', limits[i].max + 1);
        pbuf fo = frame_of(limits[i].frame_field, &ok), fx = frame_of(limits[i].frame_field, &over);
        assert_int_equal(decode_pbuf(&fo, &f), SPROUT_FRAME_OK);
        assert_int_equal(f.which_body, limits[i].frame_field);
        assert_int_equal(decode_pbuf(&fx, &f), SPROUT_FRAME_MALFORMED);
    }
}

static void test_nonces_and_mac_must_have_their_exact_length(void **state)
{
    (void)state;
    struct {
        unsigned frame_field, bytes_field;
        size_t len;
    } fixed[] = {
        {sprout_device_v1_Frame_hello_tag, sprout_device_v1_Hello_device_nonce_tag, 16},
        {sprout_device_v1_Frame_challenge_tag, sprout_device_v1_Challenge_server_nonce_tag, 16},
        {sprout_device_v1_Frame_auth_tag, sprout_device_v1_Auth_mac_tag, 32},
    };
    uint8_t data[40] = {0};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
        sprout_frame f;
        for (int delta = -1; delta <= 1; delta++) {
            pbuf body = {.n = 0};
            put_bytes_field(&body, fixed[i].bytes_field, data, (size_t)((int)fixed[i].len + delta));
            pbuf fr = frame_of(fixed[i].frame_field, &body);
            assert_int_equal(decode_pbuf(&fr, &f), delta == 0 ? SPROUT_FRAME_OK : SPROUT_FRAME_MALFORMED);
        }
    }
}

static void test_a_length_prefix_over_the_limit_is_refused_before_the_body_arrives(void **state)
{
    (void)state;
    sprout_frame f;
    size_t used = 0;
    uint8_t big[] = {0x81, 0x04}; /* 513 */
    assert_int_equal(sprout_frame_decode(big, sizeof big, SPROUT_MAX_FRAME_BYTES, &f, &used), SPROUT_FRAME_TOO_LARGE);
    uint8_t at_limit[] = {0x80, 0x04}; /* 512: wait for the body */
    assert_int_equal(sprout_frame_decode(at_limit, sizeof at_limit, SPROUT_MAX_FRAME_BYTES, &f, &used),
                     SPROUT_FRAME_NEED_MORE);
    uint8_t endless[] = {0x80, 0x80, 0x80, 0x80};
    assert_int_equal(sprout_frame_decode(endless, 3, SPROUT_MAX_FRAME_BYTES, &f, &used), SPROUT_FRAME_NEED_MORE);
    assert_int_equal(sprout_frame_decode(endless, 4, SPROUT_MAX_FRAME_BYTES, &f, &used), SPROUT_FRAME_TOO_LARGE);
    /* A prefix padded past SPROUT_FRAME_PREFIX_MAX bytes (0x80 0x80 0x80 0x00 is a valid uvarint
     * for 0) would let prefix + body outgrow the receive buffer: refused, not waited for. */
    uint8_t padded[] = {0x80, 0x84, 0x80, 0x00}; /* 512 in four bytes */
    assert_int_equal(sprout_frame_decode(padded, sizeof padded, SPROUT_MAX_FRAME_BYTES, &f, &used), SPROUT_FRAME_TOO_LARGE);
    uint8_t padded_zero[] = {0x80, 0x80, 0x80, 0x00};
    assert_int_equal(sprout_frame_decode(padded_zero, sizeof padded_zero, SPROUT_MAX_FRAME_BYTES, &f, &used),
                     SPROUT_FRAME_TOO_LARGE);
    uint8_t ten[11];
    memset(ten, 0xFF, sizeof ten);
    assert_int_equal(sprout_frame_decode(ten, sizeof ten, SIZE_MAX, &f, &used), SPROUT_FRAME_TOO_LARGE);
}

static void test_partial_frames_need_more_and_back_to_back_frames_split(void **state)
{
    (void)state;
    sprout_frame a = sprout_device_v1_Frame_init_zero, b = sprout_device_v1_Frame_init_zero, got;
    g_welcome(&a);
    g_ping(&b);
    uint8_t buf[400];
    size_t la = encode(&a, buf, sizeof buf);
    size_t lb = encode(&b, buf + la, sizeof buf - la);
    size_t used = 0;
    assert_int_equal(sprout_frame_decode(buf, 0, SPROUT_MAX_FRAME_BYTES, &got, &used), SPROUT_FRAME_NEED_MORE);
    for (size_t cut = 1; cut < la; cut++) {
        assert_int_equal(sprout_frame_decode(buf, cut, SPROUT_MAX_FRAME_BYTES, &got, &used), SPROUT_FRAME_NEED_MORE);
    }
    assert_int_equal(sprout_frame_decode(buf, la + lb, SPROUT_MAX_FRAME_BYTES, &got, &used), SPROUT_FRAME_OK);
    assert_int_equal(used, la);
    assert_int_equal(got.which_body, sprout_device_v1_Frame_welcome_tag);
    assert_int_equal(got.body.welcome.last_seq, 1ULL << 40);
    assert_int_equal(sprout_frame_decode(buf + la, lb, SPROUT_MAX_FRAME_BYTES, &got, &used), SPROUT_FRAME_OK);
    assert_int_equal(got.which_body, sprout_device_v1_Frame_ping_tag);
    assert_int_equal(used, lb);
}

static void test_unknown_fields_are_skipped_and_an_unknown_body_is_empty(void **state)
{
    (void)state;
    sprout_frame f;
    /* An Ack with an extra field 15 (a newer server) still decodes. */
    pbuf ack = {.n = 0};
    put_varint(&ack, 1 << 3 | 0);
    put_varint(&ack, 77);
    put_varint(&ack, 15 << 3 | 0);
    put_varint(&ack, 1);
    pbuf fr = frame_of(sprout_device_v1_Frame_ack_tag, &ack);
    assert_int_equal(decode_pbuf(&fr, &f), SPROUT_FRAME_OK);
    assert_int_equal(f.which_body, sprout_device_v1_Frame_ack_tag);
    assert_int_equal(f.body.ack.seq, 77);
    /* A oneof member this firmware does not know (field 40) leaves the body unset. */
    pbuf unknown = frame_of(40, &ack);
    assert_int_equal(decode_pbuf(&unknown, &f), SPROUT_FRAME_OK);
    assert_int_equal(f.which_body, 0);
}

static void test_garbage_inside_a_complete_frame_is_malformed(void **state)
{
    (void)state;
    sprout_frame f;
    size_t used = 0;
    /* A submessage whose declared length runs past the frame. */
    uint8_t bad[] = {0x03, 0x32, 0x05, 0x08};
    assert_int_equal(sprout_frame_decode(bad, sizeof bad, SPROUT_MAX_FRAME_BYTES, &f, &used), SPROUT_FRAME_MALFORMED);
    /* A wire type 7 does not exist. */
    uint8_t wt[] = {0x01, 0x0F};
    assert_int_equal(sprout_frame_decode(wt, sizeof wt, SPROUT_MAX_FRAME_BYTES, &f, &used), SPROUT_FRAME_MALFORMED);
}

static void test_encode_reports_a_buffer_too_small(void **state)
{
    (void)state;
    sprout_frame f = sprout_device_v1_Frame_init_zero;
    g_hello_limits(&f);
    uint8_t buf[SPROUT_FRAME_ENCODED_MAX];
    size_t len = 0;
    assert_int_equal(sprout_frame_encode(&f, buf, 20, &len), SPROUT_FRAME_NO_SPACE);
    assert_int_equal(sprout_frame_encode(&f, buf, sizeof buf, &len), SPROUT_FRAME_OK);
    assert_true(len <= SPROUT_FRAME_ENCODED_MAX);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_go_golden_frames_decode_and_reencode_identically),
        cmocka_unit_test(test_c_golden_frames_are_committed),
        cmocka_unit_test(test_handshake_mac_matches_go),
        cmocka_unit_test(test_server_proof_matches_go),
        cmocka_unit_test(test_strings_at_their_limit_decode_one_more_byte_is_rejected),
        cmocka_unit_test(test_nonces_and_mac_must_have_their_exact_length),
        cmocka_unit_test(test_a_length_prefix_over_the_limit_is_refused_before_the_body_arrives),
        cmocka_unit_test(test_partial_frames_need_more_and_back_to_back_frames_split),
        cmocka_unit_test(test_unknown_fields_are_skipped_and_an_unknown_body_is_empty),
        cmocka_unit_test(test_garbage_inside_a_complete_frame_is_malformed),
        cmocka_unit_test(test_encode_reports_a_buffer_too_small),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
