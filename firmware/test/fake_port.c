#include "fake_port.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int64_t f_mono(void *ctx) { return ((fake_port *)ctx)->now_ms; }

static void f_sleep(void *ctx, uint32_t ms) { ((fake_port *)ctx)->now_ms += ms; }

static void f_random(void *ctx, uint8_t *buf, size_t len)
{
    fake_port *f = ctx;
    for (size_t i = 0; i < len; i++) {
        f->random_counter = f->random_counter * 1103515245u + 12345u;
        buf[i] = (uint8_t)(f->random_counter >> 16);
    }
}

static int f_connect(void *ctx, const char *host, uint16_t port, uint32_t timeout_ms)
{
    fake_port *f = ctx;
    (void)timeout_ms;
    f->connect_calls++;
    snprintf(f->last_host, sizeof f->last_host, "%s", host);
    f->last_port = port;
    if (f->fail_connects > 0) {
        f->fail_connects--;
        return -1;
    }
    f->connected = true;
    f->peer_closed = false;
    return 0;
}

static int f_send(void *ctx, const uint8_t *buf, size_t len, uint32_t timeout_ms)
{
    fake_port *f = ctx;
    (void)timeout_ms;
    if (!f->connected || f->fail_send || f->outbound_len + len > sizeof f->outbound) {
        return -1;
    }
    memcpy(f->outbound + f->outbound_len, buf, len);
    f->outbound_len += len;
    return 0;
}

static int f_recv(void *ctx, uint8_t *buf, size_t cap, uint32_t timeout_ms)
{
    fake_port *f = ctx;
    if (!f->connected) {
        return -1;
    }
    if (f->inbound_len == 0) {
        if (f->peer_closed) {
            return -1;
        }
        f->now_ms += timeout_ms;
        return 0;
    }
    size_t n = f->inbound_len < cap ? f->inbound_len : cap;
    if (f->recv_chunk > 0 && n > f->recv_chunk) {
        n = f->recv_chunk;
    }
    memcpy(buf, f->inbound, n);
    memmove(f->inbound, f->inbound + n, f->inbound_len - n);
    f->inbound_len -= n;
    return (int)n;
}

static void f_close(void *ctx)
{
    fake_port *f = ctx;
    f->connected = false;
    f->inbound_len = 0;
}

static int f_kv_get(void *ctx, const char *key, uint8_t *buf, size_t cap, size_t *len)
{
    fake_port *f = ctx;
    for (int i = 0; i < FAKE_KV_KEYS; i++) {
        if (f->kv[i].used && strcmp(f->kv[i].key, key) == 0) {
            *len = f->kv[i].len;
            memcpy(buf, f->kv[i].value, f->kv[i].len < cap ? f->kv[i].len : cap);
            return 0;
        }
    }
    return SPROUT_KV_NOT_FOUND;
}

static int f_kv_set(void *ctx, const char *key, const uint8_t *buf, size_t len)
{
    fake_port *f = ctx;
    if (f->fail_kv_set || len > FAKE_KV_BYTES || strlen(key) > 15) {
        return -1;
    }
    int slot = -1;
    for (int i = 0; i < FAKE_KV_KEYS; i++) {
        if (f->kv[i].used && strcmp(f->kv[i].key, key) == 0) {
            slot = i;
            break;
        }
        if (!f->kv[i].used && slot < 0) {
            slot = i;
        }
    }
    if (slot < 0) {
        return -1;
    }
    f->kv[slot].used = true;
    snprintf(f->kv[slot].key, sizeof f->kv[slot].key, "%s", key);
    memcpy(f->kv[slot].value, buf, len);
    f->kv[slot].len = len;
    f->kv_sets++;
    if (strcmp(key, "ota") == 0) {
        f->ota_record_sets++;
    }
    return 0;
}

static int f_sensors(void *ctx, sprout_reading *out)
{
    fake_port *f = ctx;
    if (f->fail_sensors) {
        return -1;
    }
    *out = f->reading;
    return 0;
}

static int f_pump_start(void *ctx, uint32_t ms)
{
    fake_port *f = ctx;
    if (f->fail_pump) {
        return -1;
    }
    f->pump_on = true;
    f->pump_starts++;
    f->pump_ms = ms;
    return 0;
}

static void f_pump_stop(void *ctx) { ((fake_port *)ctx)->pump_on = false; }

static void f_reboot(void *ctx)
{
    fake_port *f = ctx;
    f->reboots++;
    f->pump_on = false;
    f->connected = false;
}

static void f_log(void *ctx, sprout_log_level level, const char *msg)
{
    fake_port *f = ctx;
    if (!f->quiet && getenv("SPROUT_TEST_VERBOSE") != NULL) {
        fprintf(stderr, "[t=%lld] %d %s\n", (long long)f->now_ms, (int)level, msg);
    }
}

void fake_init(fake_port *f, sprout_port *out)
{
    memset(f, 0, sizeof *f);
    f->now_ms = 1000000; /* monotonic clocks start anywhere */
    f->random_counter = 42;
    f->reading.soil_moisture_pct = 40;
    f->reading.temperature_c = 21;
    f->reading.tank_level_pct = 80;
    f->reading.supply_mv = 3300;
    memset(out, 0, sizeof *out);
    out->ctx = f;
    out->monotonic_ms = f_mono;
    out->wall_ms = NULL;
    out->sleep_ms = f_sleep;
    out->random_bytes = f_random;
    out->tcp_connect = f_connect;
    out->tcp_send = f_send;
    out->tcp_recv = f_recv;
    out->tcp_close = f_close;
    out->kv_get = f_kv_get;
    out->kv_set = f_kv_set;
    out->read_sensors = f_sensors;
    out->pump_start = f_pump_start;
    out->pump_stop = f_pump_stop;
    out->reboot = f_reboot;
    out->log = f_log;
}

void fake_push_bytes(fake_port *f, const uint8_t *b, size_t n)
{
    if (f->inbound_len + n > sizeof f->inbound) {
        n = sizeof f->inbound - f->inbound_len;
    }
    memcpy(f->inbound + f->inbound_len, b, n);
    f->inbound_len += n;
}

void fake_push_frame(fake_port *f, const sprout_frame *fr)
{
    uint8_t buf[SPROUT_FRAME_ENCODED_MAX];
    size_t len = 0;
    if (sprout_frame_encode(fr, buf, sizeof buf, &len) == SPROUT_FRAME_OK) {
        fake_push_bytes(f, buf, len);
    }
}

bool fake_pop_sent(fake_port *f, sprout_frame *out)
{
    size_t used = 0;
    memset(out, 0, sizeof *out);
    if (f->outbound_read >= f->outbound_len) {
        f->outbound_read = f->outbound_len = 0; /* all read: room for a long conversation */
        return false;
    }
    if (sprout_frame_decode(f->outbound + f->outbound_read, f->outbound_len - f->outbound_read,
                            SPROUT_MAX_FRAME_BYTES, out, &used) != SPROUT_FRAME_OK) {
        return false;
    }
    f->outbound_read += used;
    return true;
}

void fake_drain_sent(fake_port *f)
{
    f->outbound_read = f->outbound_len;
}

/* ---- firmware updates ---- */

static bool f_ota_verify(void *ctx, const uint8_t *msg, size_t len, const uint8_t sig[64])
{
    fake_port *f = ctx;
    return f->verify == NULL || f->verify(msg, len, sig);
}

static uint32_t f_ota_slot_size(void *ctx)
{
    (void)ctx;
    return FAKE_SLOT_BYTES;
}

static int f_ota_begin(void *ctx, uint32_t size, uint32_t offset)
{
    fake_port *f = ctx;
    if (size > FAKE_SLOT_BYTES || offset > size) {
        return -1;
    }
    f->ota_begins++;
    f->ota_begin_offset = offset;
    if (offset == 0) {
        memset(f->slot, 0xff, sizeof f->slot); /* erased flash */
    }
    return 0;
}

static int f_ota_write(void *ctx, uint32_t offset, const uint8_t *buf, size_t len)
{
    fake_port *f = ctx;
    if (offset > FAKE_SLOT_BYTES || len > FAKE_SLOT_BYTES - offset) {
        return -1;
    }
    memcpy(f->slot + offset, buf, len);
    f->ota_writes++;
    return 0;
}

static int f_ota_read(void *ctx, uint32_t offset, uint8_t *buf, size_t len)
{
    fake_port *f = ctx;
    if (offset > FAKE_SLOT_BYTES || len > FAKE_SLOT_BYTES - offset) {
        return -1;
    }
    memcpy(buf, f->slot + offset, len);
    return 0;
}

static int f_ota_switch(void *ctx)
{
    ((fake_port *)ctx)->ota_switches++;
    return 0;
}

static int f_ota_mark_valid(void *ctx)
{
    ((fake_port *)ctx)->ota_marks++;
    return 0;
}

static int f_ota_margins(void *ctx, sprout_ota_margins *out)
{
    fake_port *f = ctx;
    f->margins_calls++;
    if (f->margins_fail) {
        return -1;
    }
    *out = f->margins;
    return 0;
}

void fake_ota_enable(fake_port *f, sprout_port *out)
{
    f->margins.supply_mv = 5000;
    f->margins.rssi_dbm = -50;
    f->margins.free_heap = 100000;
    out->ota_verify = f_ota_verify;
    out->ota_slot_size = f_ota_slot_size;
    out->ota_begin = f_ota_begin;
    out->ota_write = f_ota_write;
    out->ota_read = f_ota_read;
    out->ota_switch = f_ota_switch;
    out->ota_mark_valid = f_ota_mark_valid;
    out->ota_margins = f_ota_margins;
}
