/* The outbox ring: order, bounded size with the oldest dropped and counted, acks. */
#include "testutil.h"

#include "ring.h"

static sprout_record telemetry(uint64_t seq)
{
    sprout_record r;
    memset(&r, 0, sizeof r);
    r.kind = SPROUT_RECORD_TELEMETRY;
    r.body.telemetry.seq = seq;
    return r;
}

static void test_records_come_out_oldest_first(void **state)
{
    (void)state;
    static sprout_ring r;
    sprout_ring_init(&r);
    for (uint64_t s = 1; s <= 5; s++) {
        sprout_record rec = telemetry(s);
        assert_false(sprout_ring_push(&r, &rec));
    }
    assert_int_equal(r.count, 5);
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(sprout_record_seq(sprout_ring_at(&r, i)), i + 1);
    }
    assert_null(sprout_ring_at(&r, 5));
}

static void test_a_full_ring_drops_the_oldest_and_counts_it(void **state)
{
    (void)state;
    static sprout_ring r;
    sprout_ring_init(&r);
    for (uint64_t s = 1; s <= SPROUT_RING_CAP + 3; s++) {
        sprout_record rec = telemetry(s);
        assert_int_equal(sprout_ring_push(&r, &rec), s > SPROUT_RING_CAP);
    }
    assert_int_equal(r.count, SPROUT_RING_CAP);
    assert_int_equal(r.dropped, 3);
    assert_int_equal(sprout_record_seq(sprout_ring_at(&r, 0)), 4);
    assert_int_equal(sprout_record_seq(sprout_ring_at(&r, SPROUT_RING_CAP - 1)), SPROUT_RING_CAP + 3);
}

static void test_acks_remove_in_any_order(void **state)
{
    (void)state;
    static sprout_ring r;
    sprout_ring_init(&r);
    for (uint64_t s = 10; s < 15; s++) {
        sprout_record rec = telemetry(s);
        sprout_ring_push(&r, &rec);
    }
    assert_true(sprout_ring_ack(&r, 10)); /* head */
    assert_true(sprout_ring_ack(&r, 12)); /* middle */
    assert_false(sprout_ring_ack(&r, 12)); /* again: already gone */
    assert_false(sprout_ring_ack(&r, 99));
    assert_int_equal(r.count, 3);
    assert_int_equal(sprout_record_seq(sprout_ring_at(&r, 0)), 11);
    assert_int_equal(sprout_record_seq(sprout_ring_at(&r, 1)), 13);
    assert_int_equal(sprout_record_seq(sprout_ring_at(&r, 2)), 14);
}

static void test_drop_through_removes_what_the_server_already_has(void **state)
{
    (void)state;
    static sprout_ring r;
    sprout_ring_init(&r);
    /* wrap the ring first so the drop crosses the end of the array */
    for (uint64_t s = 1; s <= SPROUT_RING_CAP + 10; s++) {
        sprout_record rec = telemetry(s);
        sprout_ring_push(&r, &rec);
    }
    size_t removed = sprout_ring_drop_through(&r, 30);
    assert_int_equal(removed, 30 - 10);
    assert_int_equal(sprout_record_seq(sprout_ring_at(&r, 0)), 31);
    assert_int_equal(sprout_ring_drop_through(&r, 0), 0);
    size_t left = r.count;
    assert_int_equal(sprout_ring_drop_through(&r, UINT64_MAX), left);
    assert_int_equal(r.count, 0);
}

static void test_events_share_the_sequence(void **state)
{
    (void)state;
    sprout_record e;
    memset(&e, 0, sizeof e);
    e.kind = SPROUT_RECORD_EVENT;
    sprout_record_set_seq(&e, 7);
    assert_int_equal(e.body.event.seq, 7);
    assert_int_equal(sprout_record_seq(&e), 7);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_records_come_out_oldest_first),
        cmocka_unit_test(test_a_full_ring_drops_the_oldest_and_counts_it),
        cmocka_unit_test(test_acks_remove_in_any_order),
        cmocka_unit_test(test_drop_through_removes_what_the_server_already_has),
        cmocka_unit_test(test_events_share_the_sequence),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
