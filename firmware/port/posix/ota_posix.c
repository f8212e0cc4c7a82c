/* A/B firmware slots for vdev: see ota_posix.h. */
#define _POSIX_C_SOURCE 200809L

#include "ota_posix.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define BOOT_FILE "ota-boot"

static struct {
    char dir[400];
    char active;   /* 'a' or 'b' */
    bool on_trial; /* booted into a switched slot not yet marked valid */
    sprout_posix_ota_options opts;
    int fd;        /* the inactive slot, open for writing; -1 */
    bool restart;
} g = {.active = 'a', .fd = -1};

static char other(char s)
{
    return s == 'a' ? 'b' : 'a';
}

static void path(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", g.dir, name);
}

static void slot_path(char *out, size_t cap, char slot)
{
    char name[16];
    snprintf(name, sizeof name, "slot-%c", slot);
    path(out, cap, name);
}

/* write_boot stores "<active> <pending 0|1> <tried 0|1>" atomically. */
static int write_boot(char active, int pending, int tried)
{
    char p[512], tmp[520];
    path(p, sizeof p, BOOT_FILE);
    snprintf(tmp, sizeof tmp, "%s.tmp", p);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) {
        return -1;
    }
    char b[16];
    int n = snprintf(b, sizeof b, "%c %d %d\n", active, pending, tried);
    if (write(fd, b, (size_t)n) != n || fsync(fd) != 0) {
        close(fd);
        return -1;
    }
    close(fd);
    return rename(tmp, p);
}

int sprout_posix_ota_boot(const char *dir, const char *default_version, char *version, size_t cap, bool *on_trial,
                          bool *rolled_back)
{
    snprintf(g.dir, sizeof g.dir, "%s", dir);
    *on_trial = false;
    *rolled_back = false;
    char p[512];
    path(p, sizeof p, BOOT_FILE);
    char active = 'a';
    int pending = 0, tried = 0;
    FILE *f = fopen(p, "r");
    if (f != NULL) {
        char a = 0;
        if (fscanf(f, " %c %d %d", &a, &pending, &tried) != 3 || (a != 'a' && a != 'b')) {
            a = 'a';
            pending = tried = 0;
        }
        active = a;
        fclose(f);
    }
    if (pending && tried) {
        /* The new slot booted once and never confirmed itself: go back. */
        active = other(active);
        pending = tried = 0;
        *rolled_back = true;
        if (write_boot(active, 0, 0) != 0) {
            return -1;
        }
    } else if (pending) {
        tried = 1;
        *on_trial = true;
        if (write_boot(active, 1, 1) != 0) {
            return -1;
        }
    }
    g.active = active;
    g.on_trial = *on_trial;
    snprintf(version, cap, "%s", default_version);
    slot_path(p, sizeof p, active);
    f = fopen(p, "r");
    if (f != NULL) {
        char line[64];
        if (fgets(line, sizeof line, f) != NULL) {
            line[strcspn(line, "\r\n")] = '\0';
            if (line[0] != '\0' && strlen(line) < cap) {
                snprintf(version, cap, "%s", line);
            }
        }
        fclose(f);
    }
    return 0;
}

static bool ota_verify(void *ctx, const uint8_t *msg, size_t len, const uint8_t sig[64])
{
    (void)ctx;
    return crypto_sign_verify_detached(sig, msg, len, g.opts.pubkey) == 0;
}

static uint32_t ota_slot_size(void *ctx)
{
    (void)ctx;
    return g.opts.slot_bytes;
}

static int ota_begin(void *ctx, uint32_t size, uint32_t offset)
{
    (void)ctx;
    (void)size;
    char p[512];
    slot_path(p, sizeof p, other(g.active));
    if (g.fd >= 0) {
        close(g.fd);
        g.fd = -1;
    }
    int fd = open(p, O_RDWR | O_CREAT | (offset == 0 ? O_TRUNC : 0), 0600);
    if (fd < 0) {
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || (uint64_t)st.st_size < offset) {
        close(fd); /* the slot holds less than the saved offset says: start over */
        return -1;
    }
    g.fd = fd;
    return 0;
}

static int ota_write(void *ctx, uint32_t offset, const uint8_t *buf, size_t len)
{
    (void)ctx;
    if (g.fd < 0 || pwrite(g.fd, buf, len, offset) != (ssize_t)len || fdatasync(g.fd) != 0) {
        return -1;
    }
    return 0;
}

static int ota_read(void *ctx, uint32_t offset, uint8_t *buf, size_t len)
{
    (void)ctx;
    if (g.fd < 0 || pread(g.fd, buf, len, offset) != (ssize_t)len) {
        return -1;
    }
    return 0;
}

static int ota_switch(void *ctx)
{
    (void)ctx;
    if (g.fd >= 0) {
        close(g.fd);
        g.fd = -1;
    }
    if (write_boot(other(g.active), 1, 0) != 0) {
        return -1;
    }
    g.restart = true;
    return 0;
}

static int ota_mark_valid(void *ctx)
{
    (void)ctx;
    if (!g.on_trial) {
        return 0;
    }
    if (write_boot(g.active, 0, 0) != 0) {
        return -1;
    }
    g.on_trial = false;
    return 0;
}

int sprout_posix_ota_install(const sprout_posix_ota_options *o, sprout_port *port)
{
    if (sodium_init() < 0) {
        return -1;
    }
    g.opts = *o;
    if (g.opts.slot_bytes == 0) {
        g.opts.slot_bytes = 4u << 20;
    }
    port->ota_verify = ota_verify;
    port->ota_slot_size = ota_slot_size;
    port->ota_begin = ota_begin;
    port->ota_write = ota_write;
    port->ota_read = ota_read;
    port->ota_switch = ota_switch;
    port->ota_mark_valid = ota_mark_valid;
    return 0;
}

bool sprout_posix_ota_restart_wanted(void)
{
    return g.restart;
}

int sprout_posix_ota_parse_key(const char *file, uint8_t out[32])
{
    FILE *f = fopen(file, "r");
    if (f == NULL) {
        return -1;
    }
    char hex[80] = {0};
    int ok = fscanf(f, " %70s", hex) == 1;
    fclose(f);
    size_t bin_len = 0;
    if (!ok || strlen(hex) != 64 || sodium_hex2bin(out, 32, hex, 64, NULL, &bin_len, NULL) != 0 || bin_len != 32) {
        errno = EINVAL;
        return -1;
    }
    return 0;
}
