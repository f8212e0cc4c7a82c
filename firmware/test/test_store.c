/* Persistence in key-value storage: defaults, round trips, corrupt values, the history. */
#include "testutil.h"

#include "fake_port.h"
#include "sprout_limits.h"
#include "store.h"

static fake_port fake;
static sprout_port port;

static int setup(void **state)
{
    (void)state;
    fake_init(&fake, &port);
    return 0;
}

static void test_missing_values_give_defaults(void **state)
{
    (void)state;
    uint64_t seq = 0;
    sprout_config c;
    sprout_history h;
    int64_t t = 5;
    assert_int_equal(sprout_store_load_seq(&port, &seq), SPROUT_KV_NOT_FOUND);
    assert_int_equal(seq, 1);
    assert_int_equal(sprout_store_load_config(&port, &c), SPROUT_KV_NOT_FOUND);
    assert_int_equal(c.report_interval_s, 60);
    assert_int_equal(c.heartbeat_interval_s, 30);
    assert_int_equal(c.max_water_ms, 30000);
    assert_int_equal(c.min_water_interval_s, 60);
    assert_true(c.has_thresholds);
    assert_true(c.thresholds.tank_empty_pct == 5.0f);
    assert_int_equal(sprout_store_load_history(&port, &h), SPROUT_KV_NOT_FOUND);
    assert_int_equal(h.count, 0);
    assert_int_equal(sprout_store_load_i64(&port, SPROUT_KEY_LAST_WATER, &t), SPROUT_KV_NOT_FOUND);
    assert_int_equal(t, 0);
}

static void test_values_round_trip(void **state)
{
    (void)state;
    assert_int_equal(sprout_store_save_seq(&port, 1ULL << 40), 0);
    uint64_t seq = 0;
    assert_int_equal(sprout_store_load_seq(&port, &seq), 0);
    assert_int_equal(seq, 1ULL << 40);

    sprout_config c = sprout_device_v1_Config_init_zero, back;
    c.report_interval_s = 15;
    c.max_water_ms = 1234;
    c.has_thresholds = true;
    c.thresholds.tank_empty_pct = 4; /* an explicit threshold survives */
    c.thresholds.soil_moisture_min_pct = 33;
    assert_int_equal(sprout_store_save_config(&port, &c), 0);
    assert_int_equal(sprout_store_load_config(&port, &back), 0);
    assert_int_equal(back.report_interval_s, 15);
    assert_int_equal(back.max_water_ms, 1234);
    assert_int_equal(back.heartbeat_interval_s, 30); /* unset -> default */
    assert_true(back.thresholds.tank_empty_pct == 4.0f);
    /* ...but never one under the build-time hard limits (sprout_limits.h) */
    c.thresholds.tank_empty_pct = 0;
    c.report_interval_s = 1;
    c.max_water_ms = 3600000;
    assert_int_equal(sprout_store_save_config(&port, &c), 0);
    assert_int_equal(sprout_store_load_config(&port, &back), 0);
    assert_true(back.thresholds.tank_empty_pct == SPROUT_HARD_MIN_TANK_EMPTY_PCT);
    assert_int_equal(back.report_interval_s, SPROUT_HARD_MIN_REPORT_INTERVAL_S);
    assert_int_equal(back.max_water_ms, SPROUT_HARD_MAX_WATER_MS);
    assert_true(back.thresholds.soil_moisture_min_pct == 33.0f);

    assert_int_equal(sprout_store_save_i64(&port, SPROUT_KEY_LAST_WATER, 1767225600123LL), 0);
    int64_t t = 0;
    assert_int_equal(sprout_store_load_i64(&port, SPROUT_KEY_LAST_WATER, &t), 0);
    assert_int_equal(t, 1767225600123LL);
}

static void test_corrupt_values_are_errors_with_defaults(void **state)
{
    (void)state;
    const uint8_t junk[] = {0xFF, 0xFF, 0xFF};
    port.kv_set(port.ctx, SPROUT_KEY_SEQ, junk, sizeof junk);
    port.kv_set(port.ctx, SPROUT_KEY_CONFIG, junk, sizeof junk);
    port.kv_set(port.ctx, SPROUT_KEY_COMMANDS, junk, sizeof junk);
    uint64_t seq = 0;
    sprout_config c;
    sprout_history h;
    assert_true(sprout_store_load_seq(&port, &seq) < 0);
    assert_int_equal(seq, 1);
    assert_true(sprout_store_load_config(&port, &c) < 0);
    assert_int_equal(c.report_interval_s, 60);
    assert_true(sprout_store_load_history(&port, &h) < 0);
    assert_int_equal(h.count, 0);
}

static sprout_command_result result(const char *id, sprout_device_v1_CommandStatus st)
{
    sprout_command_result r = sprout_device_v1_CommandResult_init_zero;
    snprintf(r.command_id, sizeof r.command_id, "%s", id);
    r.status = st;
    snprintf(r.detail, sizeof r.detail, "detail of %s", id);
    r.watered_ml = 7;
    return r;
}

static void test_history_keeps_the_newest_and_survives_a_reboot(void **state)
{
    (void)state;
    sprout_history h;
    memset(&h, 0, sizeof h);
    char id[16];
    for (int i = 0; i < SPROUT_CMD_HISTORY + 3; i++) {
        snprintf(id, sizeof id, "cmd-%d", i);
        sprout_command_result r = result(id, sprout_device_v1_CommandStatus_COMMAND_STATUS_DONE);
        sprout_history_put(&h, &r);
    }
    assert_int_equal(h.count, SPROUT_CMD_HISTORY);
    assert_null(sprout_history_find(&h, "cmd-0"));
    assert_null(sprout_history_find(&h, "cmd-2"));
    assert_non_null(sprout_history_find(&h, "cmd-3"));
    /* Updating an id (interrupted -> done) replaces it instead of adding one. */
    sprout_command_result upd = result("cmd-3", sprout_device_v1_CommandStatus_COMMAND_STATUS_FAILED);
    sprout_history_put(&h, &upd);
    assert_int_equal(h.count, SPROUT_CMD_HISTORY);
    assert_int_equal(sprout_history_find(&h, "cmd-3")->result.status, sprout_device_v1_CommandStatus_COMMAND_STATUS_FAILED);

    assert_int_equal(sprout_store_save_history(&port, &h), 0);
    sprout_history back;
    assert_int_equal(sprout_store_load_history(&port, &back), 0);
    assert_int_equal(back.count, h.count);
    for (size_t i = 0; i < h.count; i++) {
        assert_string_equal(back.items[i].result.command_id, h.items[i].result.command_id);
        assert_string_equal(back.items[i].result.detail, h.items[i].result.detail);
        assert_int_equal(back.items[i].result.status, h.items[i].result.status);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_missing_values_give_defaults, setup),
        cmocka_unit_test_setup(test_values_round_trip, setup),
        cmocka_unit_test_setup(test_corrupt_values_are_errors_with_defaults, setup),
        cmocka_unit_test_setup(test_history_keeps_the_newest_and_survives_a_reboot, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
