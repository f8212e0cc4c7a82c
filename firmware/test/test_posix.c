/* The POSIX port (vdev's): its key-value store is durable when kv_set returns (the file, and the
 * directory entry of its rename, are fsynced), and its pump guard enforces the hard limit. */
#define _GNU_SOURCE
#include "testutil.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "posix_port.h"
#include "sprout_limits.h"

/* fsync is interposed: posix_port.c, linked into this binary, calls this one. */
static int dir_syncs, file_syncs;

int fsync(int fd)
{
    struct stat st;
    if (fstat(fd, &st) == 0) {
        if (S_ISDIR(st.st_mode)) {
            dir_syncs++;
        } else {
            file_syncs++;
        }
    }
    return (int)syscall(SYS_fsync, fd);
}

static char dir[64];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/sprout-posix-XXXXXX");
    assert_non_null(mkdtemp(dir));
    dir_syncs = file_syncs = 0;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd);
}

static void test_kv_set_fsyncs_the_file_and_the_directory(void **state)
{
    (void)state;
    static sprout_posix p;
    sprout_port port;
    assert_int_equal(sprout_posix_init(&p, dir, "test"), 0);
    p.log_level = -1;
    sprout_posix_port(&p, &port);
    const uint8_t v[] = {1, 2, 3};
    assert_int_equal(port.kv_set(port.ctx, "seq", v, sizeof v), 0);
    assert_int_equal(file_syncs, 1);
    assert_int_equal(dir_syncs, 1); /* the rename is durable too */
    uint8_t back[8];
    size_t len = 0;
    assert_int_equal(port.kv_get(port.ctx, "seq", back, sizeof back, &len), 0);
    assert_int_equal(len, 3);
    assert_memory_equal(back, v, 3);
}

static void test_the_pump_refuses_a_run_over_the_hard_limit(void **state)
{
    (void)state;
    static sprout_posix p;
    sprout_port port;
    assert_int_equal(sprout_posix_init(&p, dir, "test"), 0);
    p.log_level = -1;
    sprout_posix_port(&p, &port);
    assert_int_not_equal(port.pump_start(port.ctx, SPROUT_HARD_MAX_WATER_MS + 1), 0);
    assert_false(p.pump_on);
    assert_int_not_equal(port.pump_start(port.ctx, 3600 * 1000), 0);
    assert_int_equal(port.pump_start(port.ctx, 1000), 0);
    assert_true(p.pump_on);
    port.pump_stop(port.ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_kv_set_fsyncs_the_file_and_the_directory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_the_pump_refuses_a_run_over_the_hard_limit, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
