/* The client state machine, driven through the fake port: every transition of the connection,
 * the reading schedule, acks and resends, heartbeats, and commands with the pump's safety rules. */
#include "testutil.h"

#include "client.h"
#include "fake_port.h"
#include "sha256.h"

static fake_port fake;
static sprout_port port;
static sprout_client client;
static sprout_client_config cfg;
static const sprout_server servers[] = {{"a.example", 7001}, {"b.example", 7002}};
static const uint8_t secret[] = {0x73, 0x33, 0x63, 0x72, 0x65, 0x74, 0x00, 0xff};
#define ID "pot-test"

typedef sprout_device_v1_Frame frame_t;

static int setup(void **state)
{
    (void)state;
    fake_init(&fake, &port);
    memset(&cfg, 0, sizeof cfg);
    cfg.device_id = ID;
    cfg.secret = secret;
    cfg.secret_len = sizeof secret;
    cfg.firmware_version = "test-1";
    cfg.servers = servers;
    cfg.server_count = 2;
    sprout_options_defaults(&cfg.options);
    assert_int_equal(sprout_client_init(&client, &port, &cfg), 0);
    return 0;
}

/* reinit simulates a power cycle: RAM is lost, key-value storage stays. */
static void reinit(void)
{
    fake.connected = false;
    fake.inbound_len = 0;
    assert_int_equal(sprout_client_init(&client, &port, &cfg), 0);
}

static void step(void) { sprout_client_step(&client); }

/* run_for steps until the fake clock has advanced by ms. */
static void run_for(int64_t ms)
{
    int64_t until = fake.now_ms + ms;
    while (fake.now_ms < until) {
        step();
    }
}

static frame_t expect_sent(pb_size_t which)
{
    frame_t f;
    if (!fake_pop_sent(&fake, &f)) {
        fail_msg("expected a %d frame, nothing was sent", (int)which);
    }
    if (f.which_body != which) {
        fail_msg("expected frame %d, got %s", (int)which, sprout_frame_name(&f));
    }
    return f;
}

static void expect_nothing_sent(void)
{
    frame_t f;
    if (fake_pop_sent(&fake, &f)) {
        fail_msg("unexpected %s frame", sprout_frame_name(&f));
    }
}

/* next_event pops sent frames up to the next Event, skipping telemetry; false if none. */
static bool next_event(frame_t *out)
{
    while (fake_pop_sent(&fake, out)) {
        if (out->which_body == sprout_device_v1_Frame_event_tag) {
            return true;
        }
        assert_int_equal(out->which_body, sprout_device_v1_Frame_telemetry_tag);
    }
    return false;
}

/* step_until_not steps while the client stays in state s (bytes may trickle in). */
static void step_until_not(sprout_state s)
{
    for (int i = 0; i < 1000 && client.state == s; i++) {
        step();
    }
}

static void push_challenge(void)
{
    frame_t f = sprout_device_v1_Frame_init_zero;
    f.which_body = sprout_device_v1_Frame_challenge_tag;
    for (int i = 0; i < 16; i++) {
        f.body.challenge.server_nonce[i] = (uint8_t)(0xA0 + i);
    }
    fake_push_frame(&fake, &f);
}

typedef enum { PROOF_VALID, PROOF_MISSING, PROOF_WRONG, PROOF_DEVICE_MAC } proof_kind;

/* server_proof computes what docs/protocol.md specifies, independently of the core:
 * HMAC-SHA256(secret, "sprout welcome v1" || server_nonce || device_nonce). */
static void server_proof(const uint8_t *key, size_t key_len, uint8_t out[32])
{
    uint8_t data[17 + 16 + 16];
    memcpy(data, "sprout welcome v1", 17);
    for (int i = 0; i < 16; i++) {
        data[17 + i] = (uint8_t)(0xA0 + i); /* push_challenge's nonce */
    }
    memcpy(data + 33, client.device_nonce, 16);
    sprout_hmac_sha256(key, key_len, data, sizeof data, out);
}

static void push_welcome_proof(uint64_t last_seq, const sprout_device_v1_Config *config, proof_kind proof)
{
    frame_t f = sprout_device_v1_Frame_init_zero;
    f.which_body = sprout_device_v1_Frame_welcome_tag;
    strcpy(f.body.welcome.session_id, "session-1");
    f.body.welcome.server_time_ms = 1767225600000LL;
    f.body.welcome.last_seq = last_seq;
    if (config != NULL) {
        f.body.welcome.has_config = true;
        f.body.welcome.config = *config;
    }
    static const uint8_t other_secret[] = {1, 2, 3, 4};
    switch (proof) {
    case PROOF_VALID:
        server_proof(secret, sizeof secret, f.body.welcome.server_proof.bytes);
        f.body.welcome.server_proof.size = 32;
        break;
    case PROOF_WRONG:
        server_proof(other_secret, sizeof other_secret, f.body.welcome.server_proof.bytes);
        f.body.welcome.server_proof.size = 32;
        break;
    case PROOF_DEVICE_MAC: { /* the device's own Auth.mac sent back: a replay, not a proof */
        uint8_t data[16 + 16 + sizeof ID - 1];
        memcpy(data, client.device_nonce, 16);
        for (int i = 0; i < 16; i++) {
            data[16 + i] = (uint8_t)(0xA0 + i);
        }
        memcpy(data + 32, ID, sizeof ID - 1);
        sprout_hmac_sha256(secret, sizeof secret, data, sizeof data, f.body.welcome.server_proof.bytes);
        f.body.welcome.server_proof.size = 32;
        break;
    }
    case PROOF_MISSING:
        break;
    }
    fake_push_frame(&fake, &f);
}

static void push_welcome(uint64_t last_seq, const sprout_device_v1_Config *config)
{
    push_welcome_proof(last_seq, config, PROOF_VALID);
}

/* handshake drives OFFLINE -> ONLINE; unsent readings are left to the caller to pop. */
static void handshake(uint64_t last_seq)
{
    for (int i = 0; i < 200 && client.state == SPROUT_STATE_OFFLINE; i++) {
        step();
    }
    assert_int_equal(client.state, SPROUT_STATE_AWAIT_CHALLENGE);
    expect_sent(sprout_device_v1_Frame_hello_tag);
    push_challenge();
    step_until_not(SPROUT_STATE_AWAIT_CHALLENGE);
    assert_int_equal(client.state, SPROUT_STATE_AWAIT_WELCOME);
    expect_sent(sprout_device_v1_Frame_auth_tag);
    push_welcome(last_seq, NULL);
    step_until_not(SPROUT_STATE_AWAIT_WELCOME);
    assert_int_equal(client.state, SPROUT_STATE_ONLINE);
}

static void push_ack(uint64_t seq)
{
    frame_t f = sprout_device_v1_Frame_init_zero;
    f.which_body = sprout_device_v1_Frame_ack_tag;
    f.body.ack.seq = seq;
    fake_push_frame(&fake, &f);
}

static void push_command(const char *id, sprout_device_v1_CommandKind kind, uint32_t water_ms)
{
    frame_t f = sprout_device_v1_Frame_init_zero;
    f.which_body = sprout_device_v1_Frame_command_tag;
    strcpy(f.body.command.command_id, id);
    f.body.command.kind = kind;
    f.body.command.water_ms = water_ms;
    f.body.command.deadline_ms = 10000;
    fake_push_frame(&fake, &f);
}

static void push_close(sprout_device_v1_CloseReason reason, uint32_t after_ms)
{
    frame_t f = sprout_device_v1_Frame_init_zero;
    f.which_body = sprout_device_v1_Frame_close_tag;
    f.body.close.reason = reason;
    strcpy(f.body.close.detail, "test");
    f.body.close.reconnect_after_ms = after_ms;
    fake_push_frame(&fake, &f);
}

static sprout_device_v1_CommandResult expect_result(const char *id, sprout_device_v1_CommandStatus status)
{
    frame_t f = expect_sent(sprout_device_v1_Frame_command_result_tag);
    assert_string_equal(f.body.command_result.command_id, id);
    if (f.body.command_result.status != status) {
        fail_msg("command %s: status %d (%s), want %d", id, (int)f.body.command_result.status,
                 f.body.command_result.detail, (int)status);
    }
    return f.body.command_result;
}

/* online_and_drained: connected, boot reading sent and acked, nothing pending. */
static void online_and_drained(void)
{
    handshake(0);
    frame_t t = expect_sent(sprout_device_v1_Frame_telemetry_tag);
    push_ack(t.body.telemetry.seq);
    while (fake_pop_sent(&fake, &t)) { /* more readings if the interval is short */
        assert_int_equal(t.which_body, sprout_device_v1_Frame_telemetry_tag);
        push_ack(t.body.telemetry.seq);
    }
    step();
    expect_nothing_sent();
    assert_int_equal(client.ring.count, 0);
}

static void drop_peer(void)
{
    fake.peer_closed = true;
    step();
    assert_int_equal(client.state, SPROUT_STATE_OFFLINE);
}

/* ---- the handshake ---- */

static void test_handshake_proves_the_secret_and_goes_online(void **state)
{
    (void)state;
    step();
    assert_int_equal(client.state, SPROUT_STATE_AWAIT_CHALLENGE);
    assert_string_equal(fake.last_host, "a.example");
    frame_t hello = expect_sent(sprout_device_v1_Frame_hello_tag);
    assert_string_equal(hello.body.hello.device_id, ID);
    assert_string_equal(hello.body.hello.firmware_version, "test-1");
    assert_int_equal(hello.body.hello.protocol_version, 1);

    push_challenge();
    step();
    frame_t auth = expect_sent(sprout_device_v1_Frame_auth_tag);
    uint8_t data[16 + 16 + sizeof ID - 1], want[32];
    memcpy(data, hello.body.hello.device_nonce, 16);
    for (int i = 0; i < 16; i++) {
        data[16 + i] = (uint8_t)(0xA0 + i);
    }
    memcpy(data + 32, ID, sizeof ID - 1);
    sprout_hmac_sha256(secret, sizeof secret, data, sizeof data, want);
    assert_memory_equal(auth.body.auth.mac, want, 32);

    push_welcome(0, NULL);
    step();
    assert_int_equal(client.state, SPROUT_STATE_ONLINE);
    assert_string_equal(client.session_id, "session-1");
    /* The reading taken at boot, while offline, goes out now with the server's clock. */
    frame_t t = expect_sent(sprout_device_v1_Frame_telemetry_tag);
    assert_int_equal(t.body.telemetry.seq, 1);
    assert_true(t.body.telemetry.device_time_ms > 1767225600000LL - 10000);
    assert_true(t.body.telemetry.soil_moisture_pct == 40.0f);
}

static void test_each_connection_uses_a_fresh_nonce(void **state)
{
    (void)state;
    step();
    frame_t a = expect_sent(sprout_device_v1_Frame_hello_tag);
    drop_peer();
    while (client.state == SPROUT_STATE_OFFLINE) {
        step();
    }
    frame_t b = expect_sent(sprout_device_v1_Frame_hello_tag);
    assert_memory_not_equal(a.body.hello.device_nonce, b.body.hello.device_nonce, 16);
}

static void test_handshake_timeout_drops_the_connection(void **state)
{
    (void)state;
    step();
    assert_int_equal(client.state, SPROUT_STATE_AWAIT_CHALLENGE);
    run_for(9000);
    assert_int_equal(client.state, SPROUT_STATE_AWAIT_CHALLENGE);
    run_for(1500);
    assert_int_equal(client.stats.disconnects, 1);
    assert_int_equal(fake.connect_calls, 2); /* and a new attempt after the backoff */
}

static void test_a_frame_out_of_order_is_a_protocol_error(void **state)
{
    (void)state;
    step();
    expect_sent(sprout_device_v1_Frame_hello_tag);
    push_ack(1); /* an Ack before the handshake completed */
    step();
    frame_t c = expect_sent(sprout_device_v1_Frame_close_tag);
    assert_int_equal(c.body.close.reason, sprout_device_v1_CloseReason_CLOSE_REASON_PROTOCOL_ERROR);
    assert_int_equal(client.state, SPROUT_STATE_OFFLINE);
    assert_int_equal(client.stats.protocol_errors, 1);
}

static void test_a_malformed_frame_closes_with_protocol_error(void **state)
{
    (void)state;
    step();
    expect_sent(sprout_device_v1_Frame_hello_tag);
    const uint8_t junk[] = {0x02, 0xFF, 0xFF};
    fake_push_bytes(&fake, junk, sizeof junk);
    step();
    frame_t c = expect_sent(sprout_device_v1_Frame_close_tag);
    assert_int_equal(c.body.close.reason, sprout_device_v1_CloseReason_CLOSE_REASON_PROTOCOL_ERROR);
    assert_int_equal(client.state, SPROUT_STATE_OFFLINE);
}

static void test_an_oversized_frame_closes_with_frame_too_large(void **state)
{
    (void)state;
    step();
    expect_sent(sprout_device_v1_Frame_hello_tag);
    const uint8_t big[] = {0x80, 0x10}; /* 2048 bytes announced */
    fake_push_bytes(&fake, big, sizeof big);
    step();
    frame_t c = expect_sent(sprout_device_v1_Frame_close_tag);
    assert_int_equal(c.body.close.reason, sprout_device_v1_CloseReason_CLOSE_REASON_FRAME_TOO_LARGE);
    assert_int_equal(client.state, SPROUT_STATE_OFFLINE);
}

static void test_frames_split_into_single_bytes_are_reassembled(void **state)
{
    (void)state;
    fake.recv_chunk = 1;
    handshake(0);
    expect_sent(sprout_device_v1_Frame_telemetry_tag);
}

static void test_unknown_frame_bodies_are_ignored(void **state)
{
    (void)state;
    online_and_drained();
    const uint8_t body40[] = {0x03, 0xC2, 0x02, 0x00}; /* field 40, empty message */
    fake_push_bytes(&fake, body40, sizeof body40);
    step();
    assert_int_equal(client.state, SPROUT_STATE_ONLINE);
    expect_nothing_sent();
}

/* ---- reconnects, backoff, Close ---- */

static void test_connect_failures_back_off_exponentially_over_the_server_list(void **state)
{
    (void)state;
    fake.fail_connects = 5;
    int64_t times[6];
    char hosts[6][16];
    int n = 0;
    int calls = 0;
    while (n < 6) {
        step();
        if (fake.connect_calls != calls) {
            calls = fake.connect_calls;
            times[n] = fake.now_ms;
            snprintf(hosts[n], sizeof hosts[n], "%s", fake.last_host);
            n++;
        }
    }
    for (int i = 0; i < 6; i++) {
        assert_string_equal(hosts[i], i % 2 == 0 ? "a.example" : "b.example");
    }
    for (int i = 1; i < 6; i++) {
        int64_t gap = times[i] - times[i - 1];
        int64_t nominal = 1000LL << (i - 1);
        if (gap < nominal / 2 || gap > nominal + 1000) {
            fail_msg("retry %d after %lld ms, want within [%lld, %lld]", i, (long long)gap, (long long)nominal / 2,
                     (long long)nominal + 1000);
        }
    }
    assert_int_equal(client.state, SPROUT_STATE_AWAIT_CHALLENGE);
}

static void test_a_handshake_alone_does_not_reset_the_backoff(void **state)
{
    (void)state;
    fake.fail_connects = 4;
    handshake(0);
    /* Only a session that stays up SPROUT_BACKOFF_STABLE_MS forgets the failures (see
     * test_backoff_resets_only_after_a_session_stayed_up). */
    assert_int_equal(client.backoff.attempt, 4);
}

static void test_refused_device_backs_off_for_minutes(void **state)
{
    (void)state;
    sprout_device_v1_CloseReason refused[] = {
        sprout_device_v1_CloseReason_CLOSE_REASON_AUTH_FAILED,
        sprout_device_v1_CloseReason_CLOSE_REASON_UNKNOWN_DEVICE,
        sprout_device_v1_CloseReason_CLOSE_REASON_DEVICE_REVOKED,
    };
    for (size_t i = 0; i < 3; i++) {
        while (client.state != SPROUT_STATE_AWAIT_CHALLENGE) {
            step();
        }
        push_challenge();
        step();
        push_close(refused[i], 0);
        step();
        assert_int_equal(client.state, SPROUT_STATE_OFFLINE);
        int64_t wait = client.next_connect_ms - fake.now_ms;
        assert_true(wait >= 300000 - 1000);
        fake.now_ms = client.next_connect_ms; /* skip the wait */
    }
}

static void test_close_with_a_hint_reconnects_after_it_to_the_next_server(void **state)
{
    (void)state;
    online_and_drained();
    push_close(sprout_device_v1_CloseReason_CLOSE_REASON_SERVER_SHUTDOWN, 2500);
    step();
    assert_int_equal(client.state, SPROUT_STATE_OFFLINE);
    int64_t wait = client.next_connect_ms - fake.now_ms;
    assert_true(wait >= 2500 - 1000 && wait <= 2500 + 1250);
    while (client.state == SPROUT_STATE_OFFLINE) {
        step();
    }
    assert_string_equal(fake.last_host, "b.example");
}

static void test_a_broken_send_drops_the_connection(void **state)
{
    (void)state;
    online_and_drained();
    fake.fail_send = true;
    push_command("c1", sprout_device_v1_CommandKind_COMMAND_KIND_READ_NOW, 0);
    step();
    assert_int_equal(client.state, SPROUT_STATE_OFFLINE);
}

/* ---- readings, acks, resends ---- */

static void test_readings_follow_the_report_interval(void **state)
{
    (void)state;
    cfg.options.report_interval_ms = 5000;
    setup(NULL);
    cfg.options.report_interval_ms = 5000;
    assert_int_equal(sprout_client_init(&client, &port, &cfg), 0);
    online_and_drained();
    run_for(5000);
    frame_t t = expect_sent(sprout_device_v1_Frame_telemetry_tag);
    assert_int_equal(t.body.telemetry.seq, 2);
    run_for(5000);
    t = expect_sent(sprout_device_v1_Frame_telemetry_tag);
    assert_int_equal(t.body.telemetry.seq, 3);
    cfg.options.report_interval_ms = 0;
}

static void test_unacked_readings_are_resent_in_order_after_a_reconnect(void **state)
{
    (void)state;
    cfg.options.report_interval_ms = 1000;
    assert_int_equal(sprout_client_init(&client, &port, &cfg), 0);
    handshake(0);
    expect_sent(sprout_device_v1_Frame_telemetry_tag); /* seq 1 */
    run_for(3000);
    assert_true(client.next_seq >= 4);
    push_ack(1);
    push_ack(3); /* acks may skip: 2 stays pending */
    step();
    fake_drain_sent(&fake);
    drop_peer();
    uint64_t last = client.next_seq - 1;
    handshake(1); /* the server has 1 stored */
    frame_t t = expect_sent(sprout_device_v1_Frame_telemetry_tag);
    assert_int_equal(t.body.telemetry.seq, 2);
    for (uint64_t s = 4; s <= last; s++) {
        t = expect_sent(sprout_device_v1_Frame_telemetry_tag);
        assert_int_equal(t.body.telemetry.seq, s);
    }
    assert_true(client.stats.records_resent >= 2);
    cfg.options.report_interval_ms = 0;
}

static void test_welcome_last_seq_drops_what_the_server_already_stored(void **state)
{
    (void)state;
    cfg.options.report_interval_ms = 1000;
    assert_int_equal(sprout_client_init(&client, &port, &cfg), 0);
    fake.fail_connects = 1000;
    run_for(5500); /* offline: readings 1..6 wait in the ring */
    assert_int_equal(client.ring.count, 6);
    fake.fail_connects = 0;
    handshake(4); /* e.g. acks for 1..4 were lost with the old connection */
    assert_int_equal(expect_sent(sprout_device_v1_Frame_telemetry_tag).body.telemetry.seq, 5);
    assert_int_equal(expect_sent(sprout_device_v1_Frame_telemetry_tag).body.telemetry.seq, 6);
    cfg.options.report_interval_ms = 0;
}

static void test_a_lost_counter_continues_after_the_servers_last_seq(void **state)
{
    (void)state;
    handshake(500); /* fresh storage: our counter (2) is behind the server (500) */
    frame_t t = expect_sent(sprout_device_v1_Frame_telemetry_tag);
    assert_int_equal(t.body.telemetry.seq, 501); /* the boot reading, renumbered, not dropped */
    assert_int_equal(client.next_seq, 502);
    uint64_t stored = 0;
    sprout_store_load_seq(&port, &stored);
    assert_int_equal(stored, 502);
}

static void test_the_sequence_survives_a_reboot_and_never_repeats(void **state)
{
    (void)state;
    online_and_drained();
    push_command("r1", sprout_device_v1_CommandKind_COMMAND_KIND_READ_NOW, 0);
    step();
    assert_int_equal(expect_sent(sprout_device_v1_Frame_telemetry_tag).body.telemetry.seq, 2);
    fake_drain_sent(&fake);
    reinit();
    handshake(2);
    /* the boot reading after the power cycle */
    assert_int_equal(expect_sent(sprout_device_v1_Frame_telemetry_tag).body.telemetry.seq, 3);
}

static void test_offline_readings_fill_a_bounded_ring_dropping_the_oldest(void **state)
{
    (void)state;
    cfg.options.report_interval_ms = 1000;
    assert_int_equal(sprout_client_init(&client, &port, &cfg), 0);
    fake.fail_connects = 1000000;
    run_for((SPROUT_RING_CAP + 10) * 1000LL);
    assert_int_equal(client.ring.count, SPROUT_RING_CAP);
    assert_true(client.ring.dropped >= 10);
    uint64_t oldest = sprout_record_seq(sprout_ring_at(&client.ring, 0));
    assert_int_equal(oldest, client.next_seq - SPROUT_RING_CAP);
    cfg.options.report_interval_ms = 0;
}

static void test_no_ack_for_too_long_reconnects_to_resend(void **state)
{
    (void)state;
    handshake(0);
    expect_sent(sprout_device_v1_Frame_telemetry_tag);
    /* the server answers pings but never acks */
    for (int i = 0; i < 70; i++) {
        frame_t p = sprout_device_v1_Frame_init_zero;
        p.which_body = sprout_device_v1_Frame_pong_tag;
        fake_push_frame(&fake, &p);
        run_for(1000);
        if (client.stats.disconnects > 0) {
            break;
        }
    }
    assert_int_equal(client.stats.disconnects, 1);
    assert_true(fake.now_ms - client.last_rx_ms < 2000); /* not for silence: for the missing ack */
}

/* ---- heartbeats ---- */

static void test_an_idle_device_pings_and_answers_the_servers_ping(void **state)
{
    (void)state;
    online_and_drained();
    run_for(29000);
    expect_nothing_sent();
    run_for(2000);
    expect_sent(sprout_device_v1_Frame_ping_tag);

    frame_t ping = sprout_device_v1_Frame_init_zero;
    ping.which_body = sprout_device_v1_Frame_ping_tag;
    ping.body.ping.nonce = 0xDEADBEEFCAFEULL;
    fake_push_frame(&fake, &ping);
    step();
    frame_t pong = expect_sent(sprout_device_v1_Frame_pong_tag);
    assert_int_equal(pong.body.pong.nonce, 0xDEADBEEFCAFEULL);
}

static void test_a_silent_server_is_dropped_after_three_heartbeats(void **state)
{
    (void)state;
    online_and_drained();
    run_for(85000);
    assert_int_equal(client.state, SPROUT_STATE_ONLINE);
    run_for(6000);
    assert_int_equal(client.stats.disconnects, 1);
}

/* ---- commands ---- */

static void test_water_runs_the_pump_for_water_ms_and_reports_done(void **state)
{
    (void)state;
    online_and_drained();
    push_command("w1", sprout_device_v1_CommandKind_COMMAND_KIND_WATER, 3000);
    step();
    assert_true(fake.pump_on);
    assert_int_equal(fake.pump_ms, 3000);
    expect_nothing_sent(); /* the result waits for the pump */
    run_for(3100);
    assert_false(fake.pump_on);
    sprout_device_v1_CommandResult r = expect_result("w1", sprout_device_v1_CommandStatus_COMMAND_STATUS_DONE);
    assert_int_equal(r.watered_ml, 60); /* 3 s at 20 ml/s */
}

static void test_water_longer_than_max_water_ms_is_rejected(void **state)
{
    (void)state;
    online_and_drained();
    push_command("w1", sprout_device_v1_CommandKind_COMMAND_KIND_WATER, 30001);
    step();
    sprout_device_v1_CommandResult r = expect_result("w1", sprout_device_v1_CommandStatus_COMMAND_STATUS_REJECTED);
    assert_non_null(strstr(r.detail, "max_water_ms"));
    assert_int_equal(fake.pump_starts, 0);
    push_command("w0", sprout_device_v1_CommandKind_COMMAND_KIND_WATER, 0);
    step();
    expect_result("w0", sprout_device_v1_CommandStatus_COMMAND_STATUS_REJECTED);
}

static void test_water_sooner_than_min_interval_is_rejected(void **state)
{
    (void)state;
    online_and_drained();
    push_command("w1", sprout_device_v1_CommandKind_COMMAND_KIND_WATER, 1000);
    step();
    run_for(1100);
    expect_result("w1", sprout_device_v1_CommandStatus_COMMAND_STATUS_DONE);
    run_for(30000);
    fake_drain_sent(&fake);
    push_command("w2", sprout_device_v1_CommandKind_COMMAND_KIND_WATER, 1000);
    step();
    sprout_device_v1_CommandResult r = expect_result("w2", sprout_device_v1_CommandStatus_COMMAND_STATUS_REJECTED);
    assert_non_null(strstr(r.detail, "too soon"));
    run_for(31000);
    fake_drain_sent(&fake);
    push_command("w3", sprout_device_v1_CommandKind_COMMAND_KIND_WATER, 1000);
    step();
    assert_true(fake.pump_on);
    assert_int_equal(fake.pump_starts, 2);
}

static void test_min_interval_holds_across_a_reboot(void **state)
{
    (void)state;
    online_and_drained();
    push_command("w1", sprout_device_v1_CommandKind_COMMAND_KIND_WATER, 1000);
    step();
    run_for(1100);
    expect_result("w1", sprout_device_v1_CommandStatus_COMMAND_STATUS_DONE);
    reinit();
    handshake(client.next_seq - 1);
    fake_drain_sent(&fake);
    push_command("w2", sprout_device_v1_CommandKind_COMMAND_KIND_WATER, 1000);
    step();
    expect_result("w2", sprout_device_v1_CommandStatus_COMMAND_STATUS_REJECTED);
}

static void test_water_with_an_empty_tank_is_rejected(void **state)
{
    (void)state;
    online_and_drained();
    fake.reading.tank_level_pct = 5.0f; /* at the threshold counts as empty */
    push_command("w1", sprout_device_v1_CommandKind_COMMAND_KIND_WATER, 1000);
    step();
    sprout_device_v1_CommandResult r = expect_result("w1", sprout_device_v1_CommandStatus_COMMAND_STATUS_REJECTED);
    assert_non_null(strstr(r.detail, "tank empty"));
    assert_int_equal(fake.pump_starts, 0);
}

static void test_a_command_while_the_pump_runs_is_busy_and_may_be_retried(void **state)
{
    (void)state;
    online_and_drained();
    push_command("w1", sprout_device_v1_CommandKind_COMMAND_KIND_WATER, 5000);
    step();
    push_command("r1", sprout_device_v1_CommandKind_COMMAND_KIND_READ_NOW, 0);
    step();
    expect_result("r1", sprout_device_v1_CommandStatus_COMMAND_STATUS_BUSY);
    push_command("w1", sprout_device_v1_CommandKind_COMMAND_KIND_WATER, 5000); /* retry of the running one */
    step();
    expect_nothing_sent();
    run_for(5100);
    expect_result("w1", sprout_device_v1_CommandStatus_COMMAND_STATUS_DONE);
    push_command("r1", sprout_device_v1_CommandKind_COMMAND_KIND_READ_NOW, 0); /* BUSY was not remembered */
    step();
    expect_sent(sprout_device_v1_Frame_telemetry_tag);
    expect_result("r1", sprout_device_v1_CommandStatus_COMMAND_STATUS_DONE);
    assert_int_equal(fake.pump_starts, 1);
}

static void test_a_repeated_command_id_gets_its_result_again_never_a_second_run(void **state)
{
    (void)state;
    online_and_drained();
    push_command("w1", sprout_device_v1_CommandKind_COMMAND_KIND_WATER, 1000);
    step();
    run_for(1100);
    expect_result("w1", sprout_device_v1_CommandStatus_COMMAND_STATUS_DONE);
    run_for(61000);
    fake_drain_sent(&fake);
    /* again on the same connection */
    push_command("w1", sprout_device_v1_CommandKind_COMMAND_KIND_WATER, 1000);
    step();
    assert_int_equal(expect_result("w1", sprout_device_v1_CommandStatus_COMMAND_STATUS_DONE).watered_ml, 20);
    /* after a reconnect */
    drop_peer();
    handshake(client.next_seq - 1);
    fake_drain_sent(&fake);
    push_command("w1", sprout_device_v1_CommandKind_COMMAND_KIND_WATER, 1000);
    step();
    expect_result("w1", sprout_device_v1_CommandStatus_COMMAND_STATUS_DONE);
    /* after a reboot */
    reinit();
    handshake(client.next_seq - 1);
    fake_drain_sent(&fake);
    push_command("w1", sprout_device_v1_CommandKind_COMMAND_KIND_WATER, 1000);
    step();
    expect_result("w1", sprout_device_v1_CommandStatus_COMMAND_STATUS_DONE);
    assert_int_equal(fake.pump_starts, 1);
    assert_int_equal(client.stats.results_resent, 1);
}

static void test_a_reboot_while_watering_never_waters_that_command_again(void **state)
{
    (void)state;
    online_and_drained();
    push_command("w1", sprout_device_v1_CommandKind_COMMAND_KIND_WATER, 5000);
    step();
    assert_true(fake.pump_on);
    reinit(); /* power cut mid-run */
    handshake(client.next_seq - 1);
    fake_drain_sent(&fake);
    push_command("w1", sprout_device_v1_CommandKind_COMMAND_KIND_WATER, 5000);
    step();
    sprout_device_v1_CommandResult r = expect_result("w1", sprout_device_v1_CommandStatus_COMMAND_STATUS_FAILED);
    assert_non_null(strstr(r.detail, "interrupted"));
    assert_int_equal(fake.pump_starts, 1);
}

static void test_a_result_finished_offline_is_sent_after_the_reconnect(void **state)
{
    (void)state;
    online_and_drained();
    push_command("w1", sprout_device_v1_CommandKind_COMMAND_KIND_WATER, 3000);
    step();
    drop_peer();
    fake.fail_connects = 1000;
    run_for(3500);
    assert_false(fake.pump_on); /* the pump stops on time while offline */
    fake.fail_connects = 0;
    handshake(client.next_seq - 1);
    expect_result("w1", sprout_device_v1_CommandStatus_COMMAND_STATUS_DONE);
}

static void test_a_pump_that_does_not_start_fails_the_command_and_raises_an_event(void **state)
{
    (void)state;
    online_and_drained();
    fake.fail_pump = true;
    push_command("w1", sprout_device_v1_CommandKind_COMMAND_KIND_WATER, 1000);
    step();
    frame_t e = expect_sent(sprout_device_v1_Frame_event_tag);
    assert_int_equal(e.body.event.kind, sprout_device_v1_EventKind_EVENT_KIND_PUMP_FAULT);
    expect_result("w1", sprout_device_v1_CommandStatus_COMMAND_STATUS_FAILED);
}

static void test_read_now_sends_a_reading_at_once(void **state)
{
    (void)state;
    online_and_drained();
    fake.reading.soil_moisture_pct = 12.5f;
    push_command("r1", sprout_device_v1_CommandKind_COMMAND_KIND_READ_NOW, 0);
    step();
    frame_t t = expect_sent(sprout_device_v1_Frame_telemetry_tag);
    assert_true(t.body.telemetry.soil_moisture_pct == 12.5f);
    expect_result("r1", sprout_device_v1_CommandStatus_COMMAND_STATUS_DONE);
}

static void test_set_config_is_stored_applied_and_survives_a_reboot(void **state)
{
    (void)state;
    online_and_drained();
    frame_t f = sprout_device_v1_Frame_init_zero;
    f.which_body = sprout_device_v1_Frame_command_tag;
    strcpy(f.body.command.command_id, "cfg1");
    f.body.command.kind = sprout_device_v1_CommandKind_COMMAND_KIND_SET_CONFIG;
    f.body.command.has_config = true;
    f.body.command.config.max_water_ms = 2000;
    f.body.command.config.heartbeat_interval_s = 10;
    fake_push_frame(&fake, &f);
    step();
    expect_result("cfg1", sprout_device_v1_CommandStatus_COMMAND_STATUS_DONE);
    assert_int_equal(client.config.max_water_ms, 2000);
    assert_int_equal(client.config.report_interval_s, 60); /* unset -> default */
    run_for(11000);
    expect_sent(sprout_device_v1_Frame_ping_tag); /* the new heartbeat applies */
    reinit();
    assert_int_equal(client.config.max_water_ms, 2000);
    handshake(client.next_seq - 1);
    fake_drain_sent(&fake);
    push_command("w1", sprout_device_v1_CommandKind_COMMAND_KIND_WATER, 2500);
    step();
    expect_result("w1", sprout_device_v1_CommandStatus_COMMAND_STATUS_REJECTED);
}

static void test_welcome_config_is_applied_and_persisted(void **state)
{
    (void)state;
    step();
    expect_sent(sprout_device_v1_Frame_hello_tag);
    push_challenge();
    step();
    sprout_device_v1_Config c = sprout_device_v1_Config_init_zero;
    c.report_interval_s = 15;
    c.min_water_interval_s = 25;
    push_welcome(0, &c);
    step();
    assert_int_equal(client.config.report_interval_s, 15);
    sprout_config stored;
    assert_int_equal(sprout_store_load_config(&port, &stored), 0);
    assert_int_equal(stored.min_water_interval_s, 25);
}

static void test_reboot_answers_done_then_restarts(void **state)
{
    (void)state;
    online_and_drained();
    push_command("b1", sprout_device_v1_CommandKind_COMMAND_KIND_REBOOT, 0);
    step();
    expect_result("b1", sprout_device_v1_CommandStatus_COMMAND_STATUS_DONE);
    frame_t bye = expect_sent(sprout_device_v1_Frame_close_tag); /* it says goodbye first */
    assert_non_null(strstr(bye.body.close.detail, "rebooting"));
    assert_int_equal(fake.reboots, 1);
    assert_int_equal(client.state, SPROUT_STATE_OFFLINE);
    handshake(client.next_seq - 1);
    fake_drain_sent(&fake);
    push_command("b1", sprout_device_v1_CommandKind_COMMAND_KIND_REBOOT, 0);
    step();
    expect_result("b1", sprout_device_v1_CommandStatus_COMMAND_STATUS_DONE);
    assert_int_equal(fake.reboots, 1); /* not twice */
}

static void test_unknown_command_kinds_and_missing_ids_are_rejected(void **state)
{
    (void)state;
    online_and_drained();
    push_command("k9", (sprout_device_v1_CommandKind)9, 0);
    step();
    expect_result("k9", sprout_device_v1_CommandStatus_COMMAND_STATUS_REJECTED);
    push_command("", sprout_device_v1_CommandKind_COMMAND_KIND_READ_NOW, 0);
    step();
    expect_result("", sprout_device_v1_CommandStatus_COMMAND_STATUS_REJECTED);
}

static void test_silent_mode_ignores_commands(void **state)
{
    (void)state;
    cfg.options.ignore_commands = true;
    assert_int_equal(sprout_client_init(&client, &port, &cfg), 0);
    online_and_drained();
    push_command("w1", sprout_device_v1_CommandKind_COMMAND_KIND_WATER, 1000);
    step();
    expect_nothing_sent();
    assert_int_equal(fake.pump_starts, 0);
    cfg.options.ignore_commands = false;
}

/* ---- device events ---- */

static void test_tank_events_fire_on_transitions_only(void **state)
{
    (void)state;
    cfg.options.report_interval_ms = 1000;
    assert_int_equal(sprout_client_init(&client, &port, &cfg), 0);
    online_and_drained();
    frame_t e;
    fake.reading.tank_level_pct = 4.0f;
    run_for(1500);
    assert_true(next_event(&e));
    assert_int_equal(e.body.event.kind, sprout_device_v1_EventKind_EVENT_KIND_TANK_EMPTY);
    assert_int_equal(e.body.event.seq, client.next_seq - 1); /* the same sequence as telemetry */
    run_for(3000);
    assert_false(next_event(&e));
    fake.reading.tank_level_pct = 8.0f; /* inside the hysteresis band: still empty */
    run_for(3000);
    assert_false(next_event(&e));
    fake.reading.tank_level_pct = 60.0f;
    run_for(1500);
    assert_true(next_event(&e));
    assert_int_equal(e.body.event.kind, sprout_device_v1_EventKind_EVENT_KIND_TANK_REFILLED);
    cfg.options.report_interval_ms = 0;
}

static void test_a_sensor_failure_raises_one_event(void **state)
{
    (void)state;
    cfg.options.report_interval_ms = 1000;
    assert_int_equal(sprout_client_init(&client, &port, &cfg), 0);
    online_and_drained();
    fake.fail_sensors = true;
    run_for(3000);
    frame_t e;
    assert_true(next_event(&e));
    assert_int_equal(e.body.event.kind, sprout_device_v1_EventKind_EVENT_KIND_SENSOR_FAULT);
    assert_false(next_event(&e));
    cfg.options.report_interval_ms = 0;
}

/* ---- the server's proof and the build-time hard limits ---- */

/* hostile_welcome: a server without the secret answers the handshake with a Welcome that would
 * let the pump run for an hour. */
static void hostile_welcome(proof_kind proof)
{
    step();
    expect_sent(sprout_device_v1_Frame_hello_tag);
    push_challenge();
    step();
    expect_sent(sprout_device_v1_Frame_auth_tag);
    sprout_device_v1_Config evil = sprout_device_v1_Config_init_zero;
    evil.max_water_ms = 3600000;
    evil.report_interval_s = 1;
    int sets = fake.kv_sets;
    push_welcome_proof(0, &evil, proof);
    push_command("evil-1", sprout_device_v1_CommandKind_COMMAND_KIND_WATER, 3600000);
    step();
    assert_int_not_equal(client.state, SPROUT_STATE_ONLINE);
    assert_int_equal(client.stats.handshakes, 0);
    assert_int_equal(client.stats.server_proof_failures, 1);
    frame_t c = expect_sent(sprout_device_v1_Frame_close_tag);
    assert_int_equal(c.body.close.reason, sprout_device_v1_CloseReason_CLOSE_REASON_AUTH_FAILED);
    expect_nothing_sent(); /* no result, no reading: nothing for a stranger */
    assert_int_equal(fake.pump_starts, 0);
    assert_int_equal(client.config.max_water_ms, SPROUT_DEFAULT_MAX_WATER_MS);
    assert_int_equal(client.config.report_interval_s, SPROUT_DEFAULT_REPORT_INTERVAL_S);
    assert_int_equal(fake.kv_sets, sets); /* nothing persisted from it */
    assert_true(client.next_connect_ms > fake.now_ms); /* and it backs off */
}

static void test_a_welcome_without_the_server_proof_is_refused(void **state)
{
    (void)state;
    hostile_welcome(PROOF_MISSING);
}

static void test_a_welcome_with_a_wrong_server_proof_is_refused(void **state)
{
    (void)state;
    hostile_welcome(PROOF_WRONG);
}

static void test_the_devices_own_mac_is_not_a_server_proof(void **state)
{
    (void)state;
    hostile_welcome(PROOF_DEVICE_MAC);
}

static void test_refused_server_proofs_back_off_exponentially(void **state)
{
    (void)state;
    int64_t delays[4];
    for (int i = 0; i < 4; i++) {
        while (client.state == SPROUT_STATE_OFFLINE) {
            step();
        }
        expect_sent(sprout_device_v1_Frame_hello_tag);
        push_challenge();
        step();
        expect_sent(sprout_device_v1_Frame_auth_tag);
        push_welcome_proof(0, NULL, PROOF_MISSING);
        step();
        expect_sent(sprout_device_v1_Frame_close_tag);
        assert_int_equal(client.state, SPROUT_STATE_OFFLINE);
        delays[i] = client.next_connect_ms - fake.now_ms;
    }
    /* base 1 s doubling, with jitter in [d/2, d]: 0.5..1, 1..2, 2..4, 4..8 s */
    for (int i = 0; i < 4; i++) {
        assert_true(delays[i] >= 500 << i && delays[i] <= 1000 << i);
    }
}

/* A server that does know the secret (a compromised or misconfigured one) still cannot exceed
 * the limits compiled into the firmware. */
static void test_build_time_hard_limits_cap_every_config_and_command(void **state)
{
    (void)state;
    step();
    expect_sent(sprout_device_v1_Frame_hello_tag);
    push_challenge();
    step();
    expect_sent(sprout_device_v1_Frame_auth_tag);
    sprout_device_v1_Config evil = sprout_device_v1_Config_init_zero;
    evil.max_water_ms = 3600000;
    evil.report_interval_s = 1;
    evil.heartbeat_interval_s = 1;
    evil.min_water_interval_s = 1;
    evil.has_thresholds = true;
    evil.thresholds.tank_empty_pct = -50;
    push_welcome(0, &evil);
    step();
    assert_int_equal(client.state, SPROUT_STATE_ONLINE);
    assert_int_equal(client.config.max_water_ms, SPROUT_HARD_MAX_WATER_MS);
    assert_int_equal(client.config.report_interval_s, SPROUT_HARD_MIN_REPORT_INTERVAL_S);
    assert_int_equal(client.config.heartbeat_interval_s, SPROUT_HARD_MIN_HEARTBEAT_INTERVAL_S);
    assert_int_equal(client.config.min_water_interval_s, SPROUT_HARD_MIN_WATER_INTERVAL_S);
    assert_true(client.config.thresholds.tank_empty_pct == SPROUT_HARD_MIN_TANK_EMPTY_PCT);
    fake_drain_sent(&fake);

    push_command("long", sprout_device_v1_CommandKind_COMMAND_KIND_WATER, 3600000);
    step();
    sprout_device_v1_CommandResult r = expect_result("long", sprout_device_v1_CommandStatus_COMMAND_STATUS_REJECTED);
    assert_non_null(strstr(r.detail, "exceeds"));
    assert_int_equal(fake.pump_starts, 0);

    /* SET_CONFIG is capped the same way. */
    frame_t f = sprout_device_v1_Frame_init_zero;
    f.which_body = sprout_device_v1_Frame_command_tag;
    strcpy(f.body.command.command_id, "cfg");
    f.body.command.kind = sprout_device_v1_CommandKind_COMMAND_KIND_SET_CONFIG;
    f.body.command.has_config = true;
    f.body.command.config = evil;
    fake_push_frame(&fake, &f);
    step();
    expect_result("cfg", sprout_device_v1_CommandStatus_COMMAND_STATUS_DONE);
    assert_int_equal(client.config.max_water_ms, SPROUT_HARD_MAX_WATER_MS);

    /* A tank at 1 % is empty for the firmware whatever the config says. */
    fake.reading.tank_level_pct = 1.0f;
    push_command("dry", sprout_device_v1_CommandKind_COMMAND_KIND_WATER, 1000);
    step();
    while (fake_pop_sent(&fake, &f) && f.which_body != sprout_device_v1_Frame_command_result_tag) {
    }
    assert_int_equal(f.body.command_result.status, sprout_device_v1_CommandStatus_COMMAND_STATUS_REJECTED);
    assert_int_equal(fake.pump_starts, 0);

    /* A config stored by an older firmware (or written behind its back) is capped on load. */
    sprout_config stored = evil;
    assert_int_equal(sprout_store_save_config(&port, &stored), 0);
    reinit();
    assert_int_equal(client.config.max_water_ms, SPROUT_HARD_MAX_WATER_MS);
    assert_int_equal(client.config.report_interval_s, SPROUT_HARD_MIN_REPORT_INTERVAL_S);
}

/* ---- strings cut on character boundaries ---- */

static bool valid_utf8(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        int n = *p < 0x80 ? 0 : (*p & 0xE0) == 0xC0 ? 1 : (*p & 0xF0) == 0xE0 ? 2 : (*p & 0xF8) == 0xF0 ? 3 : -1;
        if (n < 0) {
            return false;
        }
        p++;
        for (int i = 0; i < n; i++, p++) {
            if ((*p & 0xC0) != 0x80) {
                return false;
            }
        }
    }
    return true;
}

static void test_busy_detail_with_a_non_ascii_command_id_stays_valid_utf8(void **state)
{
    (void)state;
    online_and_drained();
    /* "busy: the pump is running command " is 34 bytes, leaving 30 of the detail's 64 for the
     * id: "w" and 29 bytes of three-byte characters, one byte short of the tenth. */
    const char *id = "w浇水浇水浇水浇水浇水浇";
    assert_int_equal(strlen(id), 34);
    push_command(id, sprout_device_v1_CommandKind_COMMAND_KIND_WATER, 5000);
    step();
    push_command("r1", sprout_device_v1_CommandKind_COMMAND_KIND_READ_NOW, 0);
    step();
    sprout_device_v1_CommandResult r = expect_result("r1", sprout_device_v1_CommandStatus_COMMAND_STATUS_BUSY);
    assert_true(valid_utf8(r.detail));
    assert_non_null(strstr(r.detail, "浇水"));
}

static void test_every_cut_string_ends_on_a_character_boundary(void **state)
{
    (void)state;
    char out[8];
    sprout_utf8_copy(out, sizeof out, "ab水水"); /* 2 + 3 + 3 bytes: the second 水 does not fit */
    assert_string_equal(out, "ab水");
    sprout_utf8_copy(out, sizeof out, "abcdefgh");
    assert_string_equal(out, "abcdefg");
    sprout_utf8_copy(out, sizeof out, "a😀😀"); /* 1 + 4 + 4 */
    assert_string_equal(out, "a😀");
    char cut[] = "abcd水";
    sprout_utf8_cut(cut, 6); /* 6 bytes would split 水 */
    assert_string_equal(cut, "abcd");
    /* A long Close detail (an id from the server) is cut the same way. */
    assert_true(valid_utf8(out));
}

/* ---- backoff across short sessions ---- */

static void test_backoff_resets_only_after_a_session_stayed_up(void **state)
{
    (void)state;
    /* A server that welcomes and drops at once: the delays must grow, not stay at 1 s. */
    int64_t delays[5];
    for (int i = 0; i < 5; i++) {
        handshake(0);
        fake_drain_sent(&fake);
        drop_peer();
        delays[i] = client.next_connect_ms - fake.now_ms;
    }
    assert_true(delays[0] <= 1000);
    assert_true(delays[4] >= 8000); /* 16 s before jitter */
    /* A session that stays up past the stable time forgets the failures. */
    handshake(0);
    fake.peer_closed = false;
    for (int i = 0; i * 10000 < SPROUT_BACKOFF_STABLE_MS + 10000; i++) {
        frame_t f;
        while (fake_pop_sent(&fake, &f)) { /* ack everything, the resent records too */
            if (f.which_body == sprout_device_v1_Frame_telemetry_tag) {
                push_ack(f.body.telemetry.seq);
            }
        }
        frame_t p = sprout_device_v1_Frame_init_zero;
        p.which_body = sprout_device_v1_Frame_pong_tag;
        fake_push_frame(&fake, &p);
        run_for(10000);
    }
    assert_int_equal(client.state, SPROUT_STATE_ONLINE);
    drop_peer();
    assert_true(client.next_connect_ms - fake.now_ms <= 1000);
}

/* ---- the seq is saved before anything with it is sent ---- */

static void test_nothing_is_sent_until_its_seq_is_saved(void **state)
{
    (void)state;
    cfg.options.report_interval_ms = 1000;
    assert_int_equal(sprout_client_init(&client, &port, &cfg), 0);
    online_and_drained();
    fake.fail_kv_set = true;
    run_for(1500);
    expect_nothing_sent(); /* a reading whose seq could not be saved is held back */
    assert_int_equal(client.ring.count, 1);
    fake.fail_kv_set = false;
    run_for(1000);
    frame_t a = expect_sent(sprout_device_v1_Frame_telemetry_tag);
    frame_t b = expect_sent(sprout_device_v1_Frame_telemetry_tag);
    assert_int_equal(b.body.telemetry.seq, a.body.telemetry.seq + 1);
    uint64_t next = 0;
    assert_int_equal(sprout_store_load_seq(&port, &next), 0);
    assert_true(next > b.body.telemetry.seq);
    cfg.options.report_interval_ms = 0;
}

/* ---- shutdown ---- */

static void test_shutdown_says_close_to_the_server(void **state)
{
    (void)state;
    online_and_drained();
    sprout_client_shutdown(&client);
    frame_t c = expect_sent(sprout_device_v1_Frame_close_tag);
    assert_non_null(strstr(c.body.close.detail, "shutting down"));
    assert_int_equal(client.state, SPROUT_STATE_OFFLINE);
}

static void test_config_compare_ignores_padding(void **state)
{
    (void)state;
    sprout_config a, b;
    memset(&a, 0x00, sizeof a);
    memset(&b, 0xAA, sizeof b);
    sprout_config_defaults(&a);
    b.report_interval_s = a.report_interval_s;
    b.heartbeat_interval_s = a.heartbeat_interval_s;
    b.max_water_ms = a.max_water_ms;
    b.min_water_interval_s = a.min_water_interval_s;
    b.has_thresholds = true;
    b.thresholds = a.thresholds;
    assert_true(sprout_config_equal(&a, &b));
    b.thresholds.hysteresis_c += 1;
    assert_false(sprout_config_equal(&a, &b));
    /* Applying the same config again writes nothing to flash. */
    online_and_drained();
    int sets = fake.kv_sets;
    frame_t f = sprout_device_v1_Frame_init_zero;
    f.which_body = sprout_device_v1_Frame_command_tag;
    strcpy(f.body.command.command_id, "same");
    f.body.command.kind = sprout_device_v1_CommandKind_COMMAND_KIND_SET_CONFIG;
    f.body.command.has_config = true;
    f.body.command.config = client.config;
    fake_push_frame(&fake, &f);
    step();
    expect_result("same", sprout_device_v1_CommandStatus_COMMAND_STATUS_DONE);
    assert_int_equal(fake.kv_sets, sets + 1); /* the command history only, not the config */
}

int main(void)
{
#define T(name) cmocka_unit_test_setup(name, setup)
    const struct CMUnitTest tests[] = {
        T(test_handshake_proves_the_secret_and_goes_online),
        T(test_each_connection_uses_a_fresh_nonce),
        T(test_handshake_timeout_drops_the_connection),
        T(test_a_frame_out_of_order_is_a_protocol_error),
        T(test_a_malformed_frame_closes_with_protocol_error),
        T(test_an_oversized_frame_closes_with_frame_too_large),
        T(test_frames_split_into_single_bytes_are_reassembled),
        T(test_unknown_frame_bodies_are_ignored),
        T(test_connect_failures_back_off_exponentially_over_the_server_list),
        T(test_a_handshake_alone_does_not_reset_the_backoff),
        T(test_refused_device_backs_off_for_minutes),
        T(test_close_with_a_hint_reconnects_after_it_to_the_next_server),
        T(test_a_broken_send_drops_the_connection),
        T(test_readings_follow_the_report_interval),
        T(test_unacked_readings_are_resent_in_order_after_a_reconnect),
        T(test_welcome_last_seq_drops_what_the_server_already_stored),
        T(test_a_lost_counter_continues_after_the_servers_last_seq),
        T(test_the_sequence_survives_a_reboot_and_never_repeats),
        T(test_offline_readings_fill_a_bounded_ring_dropping_the_oldest),
        T(test_no_ack_for_too_long_reconnects_to_resend),
        T(test_an_idle_device_pings_and_answers_the_servers_ping),
        T(test_a_silent_server_is_dropped_after_three_heartbeats),
        T(test_water_runs_the_pump_for_water_ms_and_reports_done),
        T(test_water_longer_than_max_water_ms_is_rejected),
        T(test_water_sooner_than_min_interval_is_rejected),
        T(test_min_interval_holds_across_a_reboot),
        T(test_water_with_an_empty_tank_is_rejected),
        T(test_a_command_while_the_pump_runs_is_busy_and_may_be_retried),
        T(test_a_repeated_command_id_gets_its_result_again_never_a_second_run),
        T(test_a_reboot_while_watering_never_waters_that_command_again),
        T(test_a_result_finished_offline_is_sent_after_the_reconnect),
        T(test_a_pump_that_does_not_start_fails_the_command_and_raises_an_event),
        T(test_read_now_sends_a_reading_at_once),
        T(test_set_config_is_stored_applied_and_survives_a_reboot),
        T(test_welcome_config_is_applied_and_persisted),
        T(test_reboot_answers_done_then_restarts),
        T(test_unknown_command_kinds_and_missing_ids_are_rejected),
        T(test_silent_mode_ignores_commands),
        T(test_tank_events_fire_on_transitions_only),
        T(test_a_sensor_failure_raises_one_event),
        T(test_a_welcome_without_the_server_proof_is_refused),
        T(test_a_welcome_with_a_wrong_server_proof_is_refused),
        T(test_the_devices_own_mac_is_not_a_server_proof),
        T(test_refused_server_proofs_back_off_exponentially),
        T(test_build_time_hard_limits_cap_every_config_and_command),
        T(test_busy_detail_with_a_non_ascii_command_id_stays_valid_utf8),
        T(test_every_cut_string_ends_on_a_character_boundary),
        T(test_backoff_resets_only_after_a_session_stayed_up),
        T(test_nothing_is_sent_until_its_seq_is_saved),
        T(test_shutdown_says_close_to_the_server),
        T(test_config_compare_ignores_padding),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
