#include "store.h"

#include <pb_decode.h>
#include <pb_encode.h>
#include <string.h>

#include "sprout_limits.h"

void sprout_config_defaults(sprout_config *c)
{
    memset(c, 0, sizeof *c);
    sprout_config_normalize(c);
}

/* clamp_min raises v to lo (NaN too). */
static float clamp_min(float v, float lo)
{
    return v >= lo ? v : lo;
}

void sprout_config_normalize(sprout_config *c)
{
    if (c->report_interval_s == 0) {
        c->report_interval_s = SPROUT_DEFAULT_REPORT_INTERVAL_S;
    }
    if (c->heartbeat_interval_s == 0) {
        c->heartbeat_interval_s = SPROUT_DEFAULT_HEARTBEAT_INTERVAL_S;
    }
    if (c->max_water_ms == 0) {
        c->max_water_ms = SPROUT_DEFAULT_MAX_WATER_MS;
    }
    if (c->min_water_interval_s == 0) {
        c->min_water_interval_s = SPROUT_DEFAULT_MIN_WATER_INTERVAL_S;
    }
    if (!c->has_thresholds) {
        c->has_thresholds = true;
        c->thresholds.soil_moisture_min_pct = SPROUT_DEFAULT_SOIL_MOISTURE_MIN_PCT;
        c->thresholds.temperature_max_c = SPROUT_DEFAULT_TEMPERATURE_MAX_C;
        c->thresholds.tank_empty_pct = SPROUT_DEFAULT_TANK_EMPTY_PCT;
        c->thresholds.hysteresis_pct = SPROUT_DEFAULT_HYSTERESIS_PCT;
        c->thresholds.hysteresis_c = SPROUT_DEFAULT_HYSTERESIS_C;
    }
    /* The build-time hard limits (sprout_limits.h) win over any config. */
    if (c->max_water_ms > SPROUT_HARD_MAX_WATER_MS) {
        c->max_water_ms = SPROUT_HARD_MAX_WATER_MS;
    }
    if (c->report_interval_s < SPROUT_HARD_MIN_REPORT_INTERVAL_S) {
        c->report_interval_s = SPROUT_HARD_MIN_REPORT_INTERVAL_S;
    }
    if (c->heartbeat_interval_s < SPROUT_HARD_MIN_HEARTBEAT_INTERVAL_S) {
        c->heartbeat_interval_s = SPROUT_HARD_MIN_HEARTBEAT_INTERVAL_S;
    }
    if (c->min_water_interval_s < SPROUT_HARD_MIN_WATER_INTERVAL_S) {
        c->min_water_interval_s = SPROUT_HARD_MIN_WATER_INTERVAL_S;
    }
    c->thresholds.tank_empty_pct = clamp_min(c->thresholds.tank_empty_pct, SPROUT_HARD_MIN_TANK_EMPTY_PCT);
}

/* same_float compares bit patterns: a NaN equals itself, so a stored NaN is not rewritten. */
static bool same_float(float a, float b)
{
    return memcmp(&a, &b, sizeof a) == 0;
}

bool sprout_config_equal(const sprout_config *a, const sprout_config *b)
{
    const sprout_device_v1_Thresholds *x = &a->thresholds, *y = &b->thresholds;
    return a->report_interval_s == b->report_interval_s && a->heartbeat_interval_s == b->heartbeat_interval_s &&
           a->max_water_ms == b->max_water_ms && a->min_water_interval_s == b->min_water_interval_s &&
           a->has_thresholds == b->has_thresholds && same_float(x->soil_moisture_min_pct, y->soil_moisture_min_pct) &&
           same_float(x->temperature_max_c, y->temperature_max_c) && same_float(x->tank_empty_pct, y->tank_empty_pct) &&
           same_float(x->hysteresis_pct, y->hysteresis_pct) && same_float(x->hysteresis_c, y->hysteresis_c);
}

sprout_history_entry *sprout_history_find(sprout_history *h, const char *command_id)
{
    for (size_t i = 0; i < h->count; i++) {
        if (strcmp(h->items[i].result.command_id, command_id) == 0) {
            return &h->items[i];
        }
    }
    return NULL;
}

sprout_history_entry *sprout_history_put(sprout_history *h, const sprout_command_result *in)
{
    const sprout_command_result copy = *in; /* in may point into h */
    const sprout_command_result *r = &copy;
    for (size_t i = 0; i < h->count; i++) {
        if (strcmp(h->items[i].result.command_id, r->command_id) == 0) {
            /* Move it to the newest position so that eviction stays oldest-first. */
            memmove(&h->items[i], &h->items[i + 1], (h->count - i - 1) * sizeof h->items[0]);
            h->count--;
            break;
        }
    }
    if (h->count == SPROUT_CMD_HISTORY) {
        memmove(&h->items[0], &h->items[1], (h->count - 1) * sizeof h->items[0]);
        h->count--;
    }
    sprout_history_entry *e = &h->items[h->count++];
    e->result = *r;
    e->undelivered = false;
    return e;
}

static void put_u64(uint8_t *b, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        b[i] = (uint8_t)(v >> (8 * i));
    }
}

static uint64_t get_u64(const uint8_t *b)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v |= (uint64_t)b[i] << (8 * i);
    }
    return v;
}

static int load_u64(const sprout_port *p, const char *key, uint64_t *v)
{
    uint8_t b[8];
    size_t n = 0;
    int rc = p->kv_get(p->ctx, key, b, sizeof b, &n);
    if (rc != 0) {
        return rc;
    }
    if (n != sizeof b) {
        return -1;
    }
    *v = get_u64(b);
    return 0;
}

static int save_u64(const sprout_port *p, const char *key, uint64_t v)
{
    uint8_t b[8];
    put_u64(b, v);
    return p->kv_set(p->ctx, key, b, sizeof b);
}

int sprout_store_load_seq(const sprout_port *p, uint64_t *next_seq)
{
    *next_seq = 1;
    uint64_t v = 0;
    int rc = load_u64(p, SPROUT_KEY_SEQ, &v);
    if (rc == 0 && v > 0) {
        *next_seq = v;
    }
    return rc;
}

int sprout_store_save_seq(const sprout_port *p, uint64_t next_seq)
{
    return save_u64(p, SPROUT_KEY_SEQ, next_seq);
}

int sprout_store_load_i64(const sprout_port *p, const char *key, int64_t *v)
{
    *v = 0;
    uint64_t u = 0;
    int rc = load_u64(p, key, &u);
    if (rc == 0) {
        *v = (int64_t)u;
    }
    return rc;
}

int sprout_store_save_i64(const sprout_port *p, const char *key, int64_t v)
{
    return save_u64(p, key, (uint64_t)v);
}

int sprout_store_load_config(const sprout_port *p, sprout_config *c)
{
    uint8_t b[sprout_device_v1_Config_size];
    size_t n = 0;
    sprout_config_defaults(c);
    int rc = p->kv_get(p->ctx, SPROUT_KEY_CONFIG, b, sizeof b, &n);
    if (rc != 0) {
        return rc;
    }
    if (n > sizeof b) {
        return -1;
    }
    sprout_config tmp = sprout_device_v1_Config_init_zero;
    pb_istream_t is = pb_istream_from_buffer(b, n);
    if (!pb_decode(&is, sprout_device_v1_Config_fields, &tmp)) {
        return -1;
    }
    sprout_config_normalize(&tmp);
    *c = tmp;
    return 0;
}

int sprout_store_save_config(const sprout_port *p, const sprout_config *c)
{
    uint8_t b[sprout_device_v1_Config_size];
    pb_ostream_t os = pb_ostream_from_buffer(b, sizeof b);
    if (!pb_encode(&os, sprout_device_v1_Config_fields, c)) {
        return -1;
    }
    return p->kv_set(p->ctx, SPROUT_KEY_CONFIG, b, os.bytes_written);
}

/* The history is stored as its results, each length-delimited, oldest first. */
#define HISTORY_BYTES (SPROUT_CMD_HISTORY * (sprout_device_v1_CommandResult_size + 1))

int sprout_store_load_history(const sprout_port *p, sprout_history *h)
{
    static uint8_t b[HISTORY_BYTES]; /* static: keeps a ~1 KB buffer off small task stacks */
    size_t n = 0;
    memset(h, 0, sizeof *h);
    int rc = p->kv_get(p->ctx, SPROUT_KEY_COMMANDS, b, sizeof b, &n);
    if (rc != 0) {
        return rc;
    }
    if (n > sizeof b) {
        return -1;
    }
    pb_istream_t is = pb_istream_from_buffer(b, n);
    while (is.bytes_left > 0 && h->count < SPROUT_CMD_HISTORY) {
        sprout_command_result r = sprout_device_v1_CommandResult_init_zero;
        if (!pb_decode_ex(&is, sprout_device_v1_CommandResult_fields, &r, PB_DECODE_DELIMITED)) {
            memset(h, 0, sizeof *h);
            return -1;
        }
        h->items[h->count].result = r;
        h->items[h->count].undelivered = false;
        h->count++;
    }
    return 0;
}

int sprout_store_save_history(const sprout_port *p, const sprout_history *h)
{
    static uint8_t b[HISTORY_BYTES];
    pb_ostream_t os = pb_ostream_from_buffer(b, sizeof b);
    for (size_t i = 0; i < h->count; i++) {
        if (!pb_encode_ex(&os, sprout_device_v1_CommandResult_fields, &h->items[i].result, PB_ENCODE_DELIMITED)) {
            return -1;
        }
    }
    return p->kv_set(p->ctx, SPROUT_KEY_COMMANDS, b, os.bytes_written);
}
