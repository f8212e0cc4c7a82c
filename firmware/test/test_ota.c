/* OTA on the device (core/ota.c): the manifest's exact bytes (docs/ota.md) and an Ed25519
 * signature over them made with libsodium; then the download against a small server written here
 * from docs/ota.md, over the fake port: when the pot defers (supply, WiFi, heap, pump), how it
 * looks again (bounded backoff, one DEFERRED per reason), how often it persists the offset, and
 * where it resumes after a lost connection or a power cut. */
#include "testutil.h"

#include <sodium.h>

#include "client.h"
#include "fake_port.h"
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

/* ---- the download, against a server written from docs/ota.md ---------------------------- */

typedef sprout_device_v1_Frame frame_t;

static fake_port fake;
static sprout_port port;
static sprout_client client;
static sprout_client_config cfg;
static const sprout_server servers[] = {{"node.example", 7001}};
static const uint8_t secret[] = {9, 8, 7, 6, 5, 4, 3, 2};
static uint8_t pk[32], sk[64];

#define IMAGE_BYTES 16000 /* not a multiple of the chunk: the last one is short */
static uint8_t image[IMAGE_BYTES];
static uint8_t image_sha[32];

/* What the server saw. */
static struct {
    int deferred, downloading, verifying, rebooting, running, failed;
    char last_reason[65];
    uint32_t last_retry_after_s, last_percent;
    int chunk_requests;
    uint32_t first_request_offset;
    bool serve;        /* answer ChunkRequests */
    int64_t chunk_delay_ms; /* the link's time per chunk */
} srv;

static bool sodium_verify(const uint8_t *msg, size_t len, const uint8_t sig[64])
{
    return crypto_sign_verify_detached(sig, msg, len, pk) == 0;
}

static int setup_download(void **state)
{
    (void)state;
    assert_true(sodium_init() >= 0);
    uint8_t seed[32] = {42};
    crypto_sign_seed_keypair(pk, sk, seed);
    for (size_t i = 0; i < sizeof image; i++) {
        image[i] = (uint8_t)(i * 7 + i / 251);
    }
    crypto_hash_sha256(image_sha, image, sizeof image);
    fake_init(&fake, &port);
    fake_ota_enable(&fake, &port);
    fake.verify = sodium_verify;
    memset(&cfg, 0, sizeof cfg);
    cfg.device_id = "pot-ota";
    cfg.secret = secret;
    cfg.secret_len = sizeof secret;
    cfg.firmware_version = "1.0.0";
    cfg.product = "acme-pot";
    cfg.servers = servers;
    cfg.server_count = 1;
    sprout_options_defaults(&cfg.options);
    assert_int_equal(sprout_client_init(&client, &port, &cfg), 0);
    memset(&srv, 0, sizeof srv);
    srv.serve = true;
    return 0;
}

static void push(const frame_t *f) { fake_push_frame(&fake, f); }

/* handle answers what the pot sent, as the node would. */
static void handle(const frame_t *f)
{
    frame_t r = sprout_device_v1_Frame_init_zero;
    switch (f->which_body) {
    case sprout_device_v1_Frame_telemetry_tag:
        r.which_body = sprout_device_v1_Frame_ack_tag;
        r.body.ack.seq = f->body.telemetry.seq;
        push(&r);
        break;
    case sprout_device_v1_Frame_event_tag:
        r.which_body = sprout_device_v1_Frame_ack_tag;
        r.body.ack.seq = f->body.event.seq;
        push(&r);
        break;
    case sprout_device_v1_Frame_ping_tag:
        r.which_body = sprout_device_v1_Frame_pong_tag;
        r.body.pong.nonce = f->body.ping.nonce;
        push(&r);
        break;
    case sprout_device_v1_Frame_chunk_request_tag: {
        const sprout_device_v1_ChunkRequest *q = &f->body.chunk_request;
        if (srv.chunk_requests++ == 0) {
            srv.first_request_offset = q->offset;
        }
        assert_memory_equal(q->sha256, image_sha, 32);
        assert_true(q->length >= 1 && q->length <= SPROUT_OTA_REQUEST_MAX && q->offset < IMAGE_BYTES);
        if (!srv.serve) {
            break;
        }
        fake.now_ms += srv.chunk_delay_ms;
        uint32_t n = q->length < IMAGE_BYTES - q->offset ? q->length : IMAGE_BYTES - q->offset;
        r.which_body = sprout_device_v1_Frame_chunk_tag;
        memcpy(r.body.chunk.sha256, image_sha, 32);
        r.body.chunk.offset = q->offset;
        r.body.chunk.data.size = (pb_size_t)n;
        memcpy(r.body.chunk.data.bytes, image + q->offset, n);
        push(&r);
        break;
    }
    case sprout_device_v1_Frame_update_progress_tag: {
        const sprout_device_v1_UpdateProgress *p = &f->body.update_progress;
        snprintf(srv.last_reason, sizeof srv.last_reason, "%s", p->reason);
        srv.last_retry_after_s = p->retry_after_s;
        srv.last_percent = p->percent;
        switch (p->state) {
        case sprout_device_v1_UpdateState_UPDATE_STATE_DEFERRED: srv.deferred++; break;
        case sprout_device_v1_UpdateState_UPDATE_STATE_DOWNLOADING: srv.downloading++; break;
        case sprout_device_v1_UpdateState_UPDATE_STATE_VERIFYING: srv.verifying++; break;
        case sprout_device_v1_UpdateState_UPDATE_STATE_REBOOTING: srv.rebooting++; break;
        case sprout_device_v1_UpdateState_UPDATE_STATE_RUNNING: srv.running++; break;
        case sprout_device_v1_UpdateState_UPDATE_STATE_FAILED: srv.failed++; break;
        default: break;
        }
        break;
    }
    default:
        break;
    }
}

/* serve steps the pot and answers it until done() or ms of fake time have passed. */
static void serve_until(int64_t ms, bool (*done)(void))
{
    int64_t until = fake.now_ms + ms;
    while (fake.now_ms < until && (done == NULL || !done())) {
        sprout_client_step(&client);
        frame_t f;
        while (fake_pop_sent(&fake, &f)) {
            handle(&f);
        }
    }
}

static void go_online(void)
{
    for (int i = 0; i < 100 && client.state != SPROUT_STATE_AWAIT_CHALLENGE; i++) {
        sprout_client_step(&client);
    }
    assert_int_equal(client.state, SPROUT_STATE_AWAIT_CHALLENGE);
    frame_t f = sprout_device_v1_Frame_init_zero;
    f.which_body = sprout_device_v1_Frame_challenge_tag;
    memset(f.body.challenge.server_nonce, 0x5a, 16);
    push(&f);
    sprout_client_step(&client);
    assert_int_equal(client.state, SPROUT_STATE_AWAIT_WELCOME);
    frame_t w = sprout_device_v1_Frame_init_zero;
    w.which_body = sprout_device_v1_Frame_welcome_tag;
    snprintf(w.body.welcome.session_id, sizeof w.body.welcome.session_id, "s-%d", client.stats.handshakes);
    w.body.welcome.server_time_ms = 1700000000000;
    sprout_server_proof(secret, sizeof secret, client.device_nonce, f.body.challenge.server_nonce,
                        w.body.welcome.server_proof.bytes);
    w.body.welcome.server_proof.size = 32;
    push(&w);
    sprout_client_step(&client);
    assert_int_equal(client.state, SPROUT_STATE_ONLINE);
    frame_t sent;
    while (fake_pop_sent(&fake, &sent)) {
        handle(&sent);
    }
}

static void offer(void)
{
    frame_t f = sprout_device_v1_Frame_init_zero;
    f.which_body = sprout_device_v1_Frame_update_offer_tag;
    sprout_device_v1_UpdateOffer *o = &f.body.update_offer;
    snprintf(o->version, sizeof o->version, "2.0.0");
    snprintf(o->product, sizeof o->product, "acme-pot");
    o->size = IMAGE_BYTES;
    memcpy(o->sha256, image_sha, 32);
    o->chunk_size = 512;
    uint8_t m[SPROUT_OTA_MANIFEST_MAX];
    size_t n = sprout_ota_manifest(o->product, o->version, o->size, o->sha256, m, sizeof m);
    crypto_sign_detached(o->signature, NULL, m, n, sk);
    push(&f);
}

static bool rebooting(void) { return srv.rebooting > 0; }
static bool downloading(void) { return srv.chunk_requests > 0; }
static bool past_half(void) { return client.ota.rec.offset >= IMAGE_BYTES / 2; }

/* A pot on a weak battery declines the offer (no slot erased, no chunk asked), says so once with
 * its reason and when it looks again, looks again with a doubling but bounded delay, and downloads
 * once the supply recovers. */
static void test_low_supply_defers_then_downloads(void **state)
{
    (void)state;
    fake.margins.supply_mv = 3300;
    go_online();
    offer();
    serve_until(1000, NULL);
    assert_int_equal(srv.deferred, 1);
    assert_string_equal(srv.last_reason, "low supply: 3300 mV < 3600 mV");
    assert_true(srv.last_retry_after_s >= 15 && srv.last_retry_after_s <= 30); /* 30 s, equal jitter */
    assert_int_equal(fake.ota_begins, 0);
    assert_int_equal(srv.chunk_requests, 0);
    assert_int_equal(client.stats.ota_deferrals, 1);

    /* Two hours on a weak battery: the pot keeps looking, ever less often (30 s doubling to 15 min),
     * and tells the server nothing new. */
    int calls = fake.margins_calls;
    serve_until(2 * 3600 * 1000, NULL);
    int looks = fake.margins_calls - calls;
    assert_true(looks >= 8 && looks <= 20);
    assert_int_equal(srv.deferred, 1);
    assert_int_equal(srv.chunk_requests, 0);
    assert_int_equal(client.state, SPROUT_STATE_ONLINE); /* deferring keeps the link up */

    /* Charged: within the longest wait it downloads, verifies and reboots into the image. */
    fake.margins.supply_mv = 4100;
    serve_until(SPROUT_OTA_RETRY_MAX_MS + 60000, rebooting);
    assert_int_equal(srv.rebooting, 1);
    assert_int_equal(srv.failed, 0);
    assert_int_equal(srv.first_request_offset, 0);
    assert_memory_equal(fake.slot, image, IMAGE_BYTES);
    assert_int_equal(fake.ota_switches, 1);
}

/* Each cause is reported with its own reason; a measurement the port cannot make defers too,
 * and a field the port does not know (0) is not checked. */
static void test_each_margin_defers(void **state)
{
    (void)state;
    go_online();
    struct {
        sprout_ota_margins m;
        bool fail;
        const char *reason;
    } cases[] = {
        {{.supply_mv = 5000, .rssi_dbm = -85, .free_heap = 100000}, false, "weak WiFi: -85 dBm < -80 dBm"},
        {{.supply_mv = 5000, .rssi_dbm = -50, .free_heap = 9000}, false, "low memory: 9000 bytes free < 16384"},
        {{.supply_mv = 5000, .rssi_dbm = -50, .free_heap = 100000, .pump_busy = true}, false, "watering"},
        {{0}, true, "margins unknown: cannot measure supply and WiFi"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fake.margins = cases[i].m;
        fake.margins_fail = cases[i].fail;
        char why[65] = "";
        assert_int_not_equal(sprout_ota_margins_short(&client, why, sizeof why), SPROUT_OTA_MARGIN_OK);
        assert_string_equal(why, cases[i].reason);
    }
    fake.margins_fail = false;
    memset(&fake.margins, 0, sizeof fake.margins); /* nothing measurable: nothing short */
    char why[65];
    assert_int_equal(sprout_ota_margins_short(&client, why, sizeof why), SPROUT_OTA_MARGIN_OK);

    /* The offer meets weak WiFi: deferred; the signal comes back: downloaded. */
    fake.margins.rssi_dbm = -88;
    offer();
    serve_until(1000, NULL);
    assert_int_equal(srv.deferred, 1);
    assert_string_equal(srv.last_reason, "weak WiFi: -88 dBm < -80 dBm");
    fake.margins.rssi_dbm = -60;
    serve_until(120000, rebooting);
    assert_int_equal(srv.rebooting, 1);
    assert_memory_equal(fake.slot, image, IMAGE_BYTES);
}

/* The pump starts in the middle of a download: the chunk that arrives is not written, the offset
 * is persisted, the server hears "watering", and the download goes on from that offset once the
 * pump has stopped. */
static void test_pump_pauses_a_download(void **state)
{
    (void)state;
    go_online();
    offer();
    serve_until(60000, past_half);
    assert_true(client.ota.rec.offset >= IMAGE_BYTES / 2);
    fake.margins.pump_busy = true;
    int writes = fake.ota_writes;
    serve_until(1000, NULL);
    assert_int_equal(fake.ota_writes, writes); /* the chunk in flight was dropped, not written */
    assert_int_equal(srv.deferred, 1);
    assert_string_equal(srv.last_reason, "watering");
    uint32_t paused_at = client.ota.rec.offset;
    assert_int_equal(client.ota.saved_offset, paused_at); /* persisted as it paused */
    assert_int_equal(srv.last_percent, paused_at * 100 / IMAGE_BYTES);

    fake.margins.pump_busy = false;
    int downloading_before = srv.downloading;
    serve_until(120000, rebooting);
    assert_true(srv.downloading > downloading_before); /* the server sees it downloading again */
    assert_int_equal(srv.rebooting, 1);
    assert_memory_equal(fake.slot, image, IMAGE_BYTES);
    assert_int_equal(fake.ota_begins, 1); /* one slot erase; the pause reopened nothing */
}

/* The offset is persisted every ota_save_every_bytes (not every chunk); a power cut loses at most
 * that much, and the offer after it resumes at the persisted offset. */
static void test_offset_saved_every_n_bytes_and_resumed_after_power_cut(void **state)
{
    (void)state;
    cfg.options.ota_save_every_bytes = 4096;
    assert_int_equal(sprout_client_init(&client, &port, &cfg), 0);
    go_online();
    offer();
    serve_until(60000, past_half);
    uint32_t held = client.ota.rec.offset; /* in the slot when the power goes */
    int sets = fake.ota_record_sets;
    /* start + one per 4096 bytes: 36 chunks of 448 bytes would have been 18 writes */
    assert_true(sets >= 1 + (int)(held / 4096) - 1 && sets <= 1 + (int)(held / 4096) + 1);

    /* Power cut: RAM gone, storage and the slot stay. */
    fake.connected = false;
    fake.inbound_len = 0;
    fake_drain_sent(&fake);
    assert_int_equal(sprout_client_init(&client, &port, &cfg), 0);
    uint32_t saved = client.ota.rec.offset;
    assert_true(saved <= held && held - saved < 4096 + SPROUT_OTA_REQUEST_MAX);
    assert_true(saved >= 4096);

    memset(&srv, 0, sizeof srv);
    srv.serve = true;
    go_online();
    offer();
    serve_until(60000, rebooting);
    assert_int_equal(fake.ota_begin_offset, saved); /* reopened, not erased */
    assert_int_equal(srv.first_request_offset, saved);
    assert_int_equal(srv.rebooting, 1);
    assert_memory_equal(fake.slot, image, IMAGE_BYTES);
    /* every record write of the whole download, booting phase included */
    assert_true(fake.ota_record_sets <= 2 + IMAGE_BYTES / 4096 + 2);
}

/* A slow link: the offset is persisted at least every ota_save_every_ms even when little arrives. */
static void test_offset_saved_every_t_seconds_on_a_slow_link(void **state)
{
    (void)state;
    srv.chunk_delay_ms = 20000; /* one chunk every 20 s */
    go_online();
    offer();
    serve_until(12 * 20000 + 1000, NULL);
    /* 12 chunks (5376 bytes, under the 16 KiB step) in 4 minutes: saved at the start and every
     * 60 s or so, not 12 times. */
    assert_true(client.ota.rec.offset >= 10 * SPROUT_OTA_REQUEST_MAX);
    assert_true(fake.ota_record_sets >= 3 && fake.ota_record_sets <= 6);
    assert_true(client.ota.rec.offset - client.ota.saved_offset <= 3 * SPROUT_OTA_REQUEST_MAX);
}

/* A lost connection persists the exact offset: the next connection fetches nothing twice. */
static void test_lost_connection_resumes_exactly(void **state)
{
    (void)state;
    go_online();
    offer();
    srv.serve = true;
    serve_until(60000, past_half);
    srv.serve = false; /* the request in flight is never answered */
    serve_until(10, NULL);
    uint32_t held = client.ota.rec.offset;
    fake.peer_closed = true;
    for (int i = 0; i < 10 && client.state == SPROUT_STATE_ONLINE; i++) {
        sprout_client_step(&client);
    }
    assert_int_equal(client.state, SPROUT_STATE_OFFLINE);
    assert_int_equal(client.ota.saved_offset, held);
    fake.peer_closed = false;
    memset(&srv, 0, sizeof srv);
    srv.serve = true;
    go_online();
    offer();
    serve_until(60000, downloading);
    assert_int_equal(srv.first_request_offset, held);
    serve_until(60000, rebooting);
    assert_memory_equal(fake.slot, image, IMAGE_BYTES);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_manifest_bytes),
        cmocka_unit_test(test_manifest_refuses_long_fields),
        cmocka_unit_test(test_signature_covers_every_field),
        cmocka_unit_test_setup(test_low_supply_defers_then_downloads, setup_download),
        cmocka_unit_test_setup(test_each_margin_defers, setup_download),
        cmocka_unit_test_setup(test_pump_pauses_a_download, setup_download),
        cmocka_unit_test_setup(test_offset_saved_every_n_bytes_and_resumed_after_power_cut, setup_download),
        cmocka_unit_test_setup(test_offset_saved_every_t_seconds_on_a_slow_link, setup_download),
        cmocka_unit_test_setup(test_lost_connection_resumes_exactly, setup_download),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
