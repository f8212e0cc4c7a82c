#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE

#include "posix_port.h"

#include "sprout_limits.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

void sprout_plant_defaults(sprout_plant_model *m)
{
    memset(m, 0, sizeof *m);
    m->moisture_pct = 45;
    m->temperature_c = 22;
    m->tank_pct = 80;
    m->dry_pct_per_min = 0.5;
    m->tank_ml = 1000;
    m->soil_pct_per_ml = 0.25;
    m->pump_ml_per_s = 20;
    m->noise_pct = 0.5;
}

static int64_t mono_ms(void *ctx)
{
    (void)ctx;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t wall_ms(void *ctx)
{
    (void)ctx;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(void *ctx, uint32_t ms)
{
    (void)ctx;
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        /* a signal (SIGTERM) interrupts the sleep; the loop checks its flag soon after */
        break;
    }
}

static void random_bytes(void *ctx, uint8_t *buf, size_t len)
{
    (void)ctx;
    while (len > 0) {
        ssize_t n = getrandom(buf, len, 0);
        if (n <= 0) {
            if (errno == EINTR) {
                continue;
            }
            abort(); /* no entropy means no safe nonce: refuse to go on */
        }
        buf += n;
        len -= (size_t)n;
    }
}

/* ---- TCP ---- */

static void log_msg(void *ctx, sprout_log_level level, const char *msg);

static void tcp_close(void *ctx)
{
    sprout_posix *p = ctx;
    if (p->tls != NULL) {
        sprout_tls_end(p->tls);
    }
    if (p->fd >= 0) {
        close(p->fd);
        p->fd = -1;
    }
}

static int tcp_connect(void *ctx, const char *host, uint16_t port, uint32_t timeout_ms)
{
    sprout_posix *p = ctx;
    tcp_close(p);
    char service[8];
    snprintf(service, sizeof service, "%u", (unsigned)port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    if (getaddrinfo(host, service, &hints, &res) != 0) {
        return -1;
    }
    int rc = -1;
    for (struct addrinfo *ai = res; ai != NULL && rc != 0; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            continue;
        }
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
            if (errno != EINPROGRESS) {
                close(fd);
                continue;
            }
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};
            int err = 0;
            socklen_t elen = sizeof err;
            if (poll(&pfd, 1, (int)timeout_ms) != 1 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0 ||
                err != 0) {
                close(fd);
                continue;
            }
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        p->fd = fd;
        rc = 0;
    }
    freeaddrinfo(res);
    if (rc == 0 && p->tls != NULL) {
        /* The server is verified before the core sends anything: a refused certificate is a
         * failed connect, and the core backs off as for a refused socket. */
        char err[400], msg[480];
        if (sprout_tls_start(p->tls, p->fd, host, err, sizeof err) != 0) {
            snprintf(msg, sizeof msg, "TLS to %s:%u failed: %s", host, (unsigned)port, err);
            log_msg(p, SPROUT_LOG_WARN, msg);
            close(p->fd);
            p->fd = -1;
            return -1;
        }
        sprout_tls_describe(p->tls, err, sizeof err);
        snprintf(msg, sizeof msg, "TLS to %s:%u: %s", host, (unsigned)port, err);
        log_msg(p, SPROUT_LOG_INFO, msg);
    }
    return rc;
}

static int tcp_send(void *ctx, const uint8_t *buf, size_t len, uint32_t timeout_ms)
{
    sprout_posix *p = ctx;
    if (p->tls != NULL) {
        char err[200];
        if (p->fd < 0) {
            return -1;
        }
        if (sprout_tls_send(p->tls, buf, len, timeout_ms, err, sizeof err) != 0) {
            log_msg(p, SPROUT_LOG_DEBUG, err);
            return -1;
        }
        return 0;
    }
    while (len > 0) {
        if (p->fd < 0) {
            return -1;
        }
        ssize_t n = send(p->fd, buf, len, MSG_NOSIGNAL);
        if (n > 0) {
            buf += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd pfd = {.fd = p->fd, .events = POLLOUT};
            if (poll(&pfd, 1, (int)timeout_ms) == 1) {
                continue;
            }
        }
        return -1;
    }
    return 0;
}

static int tcp_recv(void *ctx, uint8_t *buf, size_t cap, uint32_t timeout_ms)
{
    sprout_posix *p = ctx;
    if (p->fd < 0) {
        return -1;
    }
    if (p->tls != NULL) {
        char err[200];
        int n = sprout_tls_recv(p->tls, buf, cap, timeout_ms, err, sizeof err);
        if (n < 0) {
            log_msg(p, SPROUT_LOG_DEBUG, err);
        }
        return n;
    }
    struct pollfd pfd = {.fd = p->fd, .events = POLLIN};
    int r = poll(&pfd, 1, (int)timeout_ms);
    if (r == 0 || (r < 0 && errno == EINTR)) {
        return 0;
    }
    if (r < 0) {
        return -1;
    }
    ssize_t n = recv(p->fd, buf, cap, 0);
    if (n > 0) {
        return (int)n;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        return 0;
    }
    return -1; /* 0: the server closed the connection */
}

/* ---- key-value storage: one file per key, replaced atomically ---- */

static int key_path(sprout_posix *p, const char *key, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s/%s", p->state_dir, key);
    return n > 0 && (size_t)n < cap ? 0 : -1;
}

static int kv_get(void *ctx, const char *key, uint8_t *buf, size_t cap, size_t *len)
{
    sprout_posix *p = ctx;
    char path[512];
    if (key_path(p, key, path, sizeof path) != 0) {
        return -1;
    }
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return errno == ENOENT ? SPROUT_KV_NOT_FOUND : -1;
    }
    size_t n = fread(buf, 1, cap, f);
    size_t total = n;
    if (n == cap) {
        uint8_t extra[64];
        size_t m;
        while ((m = fread(extra, 1, sizeof extra, f)) > 0) {
            total += m;
        }
    }
    int err = ferror(f);
    fclose(f);
    *len = total;
    return err ? -1 : 0;
}

static int kv_set(void *ctx, const char *key, const uint8_t *buf, size_t len)
{
    sprout_posix *p = ctx;
    char path[512], tmp[520];
    if (key_path(p, key, path, sizeof path) != 0) {
        return -1;
    }
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        return -1;
    }
    size_t off = 0;
    while (off < len) {
        ssize_t n = write(fd, buf + off, len - off);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            close(fd);
            return -1;
        }
        off += (size_t)n;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        return -1;
    }
    if (rename(tmp, path) != 0) {
        return -1;
    }
    /* The rename is durable only once the directory is: without this fsync a power cut can
     * bring back the old value (or no file) although kv_set returned 0. */
    int dfd = open(p->state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        return -1;
    }
    int rc = fsync(dfd);
    close(dfd);
    return rc == 0 ? 0 : -1;
}

/* ---- the simulated pot ---- */

static double noise(sprout_posix *p)
{
    /* xorshift64*: reproducible enough for a simulation, no need for entropy */
    p->noise_state ^= p->noise_state >> 12;
    p->noise_state ^= p->noise_state << 25;
    p->noise_state ^= p->noise_state >> 27;
    uint64_t r = p->noise_state * 0x2545F4914F6CDD1DULL;
    return (double)(r >> 11) / (double)(1ULL << 53) * 2.0 - 1.0; /* [-1, 1) */
}

/* advance moves the plant model to now: drying, and pumping while the pump is on. */
static void advance(sprout_posix *p, int64_t now)
{
    sprout_plant_model *m = &p->plant;
    int64_t from = p->plant_updated_ms;
    if (now <= from) {
        return;
    }
    double minutes = (double)(now - from) / 60000.0;
    double warmth = 1.0 + 0.05 * (m->temperature_c - 20.0);
    if (warmth < 0.2) {
        warmth = 0.2;
    }
    m->moisture_pct -= m->dry_pct_per_min * warmth * minutes;
    if (p->pump_on) {
        int64_t until = now < p->pump_off_ms ? now : p->pump_off_ms;
        double ml = until > from ? (double)(until - from) / 1000.0 * m->pump_ml_per_s : 0;
        double available = m->tank_pct / 100.0 * m->tank_ml;
        if (ml > available) {
            ml = available; /* the pump runs dry */
        }
        m->tank_pct -= ml / m->tank_ml * 100.0;
        m->moisture_pct += ml * m->soil_pct_per_ml;
        if (now >= p->pump_off_ms) {
            p->pump_on = false; /* the failsafe stop */
        }
    }
    if (m->moisture_pct < 0) {
        m->moisture_pct = 0;
    }
    if (m->moisture_pct > 100) {
        m->moisture_pct = 100;
    }
    if (m->tank_pct < 0) {
        m->tank_pct = 0;
    }
    p->plant_updated_ms = now;
}

static int read_sensors(void *ctx, sprout_reading *out)
{
    sprout_posix *p = ctx;
    advance(p, mono_ms(p));
    if (p->plant.sensor_fault) {
        return -1;
    }
    double moisture = p->plant.moisture_pct + noise(p) * p->plant.noise_pct;
    out->soil_moisture_pct = (float)(moisture < 0 ? 0 : moisture > 100 ? 100 : moisture);
    out->temperature_c = (float)(p->plant.temperature_c + noise(p) * 0.2);
    out->tank_level_pct = (float)p->plant.tank_pct;
    out->supply_mv = (uint32_t)((double)sprout_posix_measure(p).supply_mv + noise(p) * 20);
    return 0;
}

sprout_posix_conditions sprout_posix_measure(sprout_posix *p)
{
    sprout_posix_conditions c = p->conditions;
    if (p->conditions_file[0] == '\0') {
        return c;
    }
    FILE *f = fopen(p->conditions_file, "r");
    if (f == NULL) {
        return c;
    }
    char key[32];
    long v;
    while (fscanf(f, " %31[a-z_] %ld", key, &v) == 2) {
        if (strcmp(key, "supply_mv") == 0 && v >= 0) {
            c.supply_mv = (uint32_t)v;
        } else if (strcmp(key, "rssi_dbm") == 0) {
            c.rssi_dbm = (int32_t)v;
        } else if (strcmp(key, "free_heap") == 0 && v >= 0) {
            c.free_heap = (uint32_t)v;
        }
    }
    fclose(f);
    return c;
}

static int ota_margins(void *ctx, sprout_ota_margins *out)
{
    sprout_posix *p = ctx;
    advance(p, mono_ms(p));
    sprout_posix_conditions c = sprout_posix_measure(p);
    out->supply_mv = c.supply_mv;
    out->rssi_dbm = c.rssi_dbm;
    out->free_heap = c.free_heap;
    out->pump_busy = p->pump_on;
    return 0;
}

static int pump_start(void *ctx, uint32_t ms)
{
    sprout_posix *p = ctx;
    int64_t now = mono_ms(p);
    advance(p, now);
    if (p->plant.pump_fault) {
        return -1;
    }
    if (ms == 0 || ms > SPROUT_HARD_MAX_WATER_MS) {
        /* The port's own guard: whatever the core asks, the pump never runs longer than the
         * build-time hard limit (sprout_limits.h). */
        return -1;
    }
    p->pump_on = true;
    p->pump_off_ms = now + ms; /* the failsafe stop in advance(), capped by the check above */
    return 0;
}

static void pump_stop(void *ctx)
{
    sprout_posix *p = ctx;
    advance(p, mono_ms(p));
    p->pump_on = false;
}

static void reboot(void *ctx)
{
    sprout_posix *p = ctx;
    pump_stop(p);
    tcp_close(p);
    p->reboots++;
}

static void log_msg(void *ctx, sprout_log_level level, const char *msg)
{
    sprout_posix *p = ctx;
    static const char *names[] = {"ERROR", "WARN", "INFO", "DEBUG"};
    if ((int)level > p->log_level) {
        return;
    }
    fprintf(stderr, "%s%s %s\n", p->log_prefix, names[level], msg);
}

int sprout_posix_init(sprout_posix *p, const char *state_dir, const char *log_prefix)
{
    memset(p, 0, sizeof *p);
    p->fd = -1;
    p->log_level = SPROUT_LOG_INFO;
    sprout_plant_defaults(&p->plant);
    p->plant_updated_ms = mono_ms(p);
    random_bytes(p, (uint8_t *)&p->noise_state, sizeof p->noise_state);
    p->noise_state |= 1;
    p->conditions.supply_mv = 5000;
    p->conditions.rssi_dbm = -55;
    p->conditions.free_heap = 120000;
    if (snprintf(p->state_dir, sizeof p->state_dir, "%s", state_dir) >= (int)sizeof p->state_dir) {
        return -1;
    }
    snprintf(p->log_prefix, sizeof p->log_prefix, "%s", log_prefix);
    if (mkdir(state_dir, 0700) != 0 && errno != EEXIST) {
        return -1;
    }
    return 0;
}

void sprout_posix_port(sprout_posix *p, sprout_port *out)
{
    memset(out, 0, sizeof *out);
    out->ctx = p;
    out->monotonic_ms = mono_ms;
    out->wall_ms = wall_ms;
    out->sleep_ms = sleep_ms;
    out->random_bytes = random_bytes;
    out->network_up = NULL;
    out->tcp_connect = tcp_connect;
    out->tcp_send = tcp_send;
    out->tcp_recv = tcp_recv;
    out->tcp_close = tcp_close;
    out->kv_get = kv_get;
    out->kv_set = kv_set;
    out->read_sensors = read_sensors;
    out->pump_start = pump_start;
    out->pump_stop = pump_stop;
    out->reboot = reboot;
    out->log = log_msg;
    out->ota_margins = ota_margins; /* used once the ota_* hooks are installed (ota_posix.h) */
}
