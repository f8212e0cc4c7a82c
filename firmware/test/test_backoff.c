/* Reconnect backoff: doubling up to a cap, jitter within [d/2, d], reset after success. */
#include "testutil.h"

#include "backoff.h"

static void test_delay_doubles_up_to_the_cap_with_jitter_in_range(void **state)
{
    (void)state;
    sprout_backoff b = {.base_ms = 1000, .max_ms = 60000};
    uint32_t nominal[] = {1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000};
    for (size_t i = 0; i < sizeof nominal / sizeof nominal[0]; i++) {
        sprout_backoff probe = b;
        uint32_t lo = sprout_backoff_next(&probe, 0);
        probe = b;
        uint32_t hi = sprout_backoff_next(&probe, UINT32_MAX - (UINT32_MAX % (nominal[i] - nominal[i] / 2 + 1)) - 1);
        assert_int_equal(lo, nominal[i] / 2);
        assert_true(hi <= nominal[i] && hi >= nominal[i] / 2);
        uint32_t d = sprout_backoff_next(&b, 123456789u * (uint32_t)(i + 1));
        assert_true(d >= nominal[i] / 2 && d <= nominal[i]);
    }
}

static void test_many_failures_do_not_overflow(void **state)
{
    (void)state;
    sprout_backoff b = {.base_ms = 1000, .max_ms = 600000, .attempt = UINT32_MAX - 1};
    for (int i = 0; i < 5; i++) {
        uint32_t d = sprout_backoff_next(&b, 7);
        assert_true(d >= 300000 && d <= 600000);
    }
}

static void test_reset_starts_over(void **state)
{
    (void)state;
    sprout_backoff b = {.base_ms = 500, .max_ms = 8000};
    for (int i = 0; i < 6; i++) {
        sprout_backoff_next(&b, 1);
    }
    sprout_backoff_reset(&b);
    assert_int_equal(sprout_backoff_next(&b, 0), 250);
}

static void test_jitter_spreads_delays(void **state)
{
    (void)state;
    /* 1000 pots with different randomness do not all pick the same delay. */
    int buckets[11] = {0};
    uint32_t x = 1;
    for (int i = 0; i < 1000; i++) {
        x = x * 1664525u + 1013904223u;
        uint32_t d = sprout_jitter(10000, x);
        assert_true(d >= 5000 && d <= 10000);
        buckets[(d - 5000) / 500]++;
    }
    for (int i = 0; i < 10; i++) {
        assert_true(buckets[i] > 50);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_delay_doubles_up_to_the_cap_with_jitter_in_range),
        cmocka_unit_test(test_many_failures_do_not_overflow),
        cmocka_unit_test(test_reset_starts_over),
        cmocka_unit_test(test_jitter_spreads_delays),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
