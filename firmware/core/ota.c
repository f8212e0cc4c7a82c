/* Firmware updates over the air: see ota.h and docs/ota.md. */
#include "ota.h"

#include <stdio.h>
#include <string.h>

#include "client.h"
#include "sha256.h"

typedef sprout_device_v1_Frame frame_t;

#define RECORD_BYTES (1 + 32 + 4 + 4 + 33)
#define MAGIC "sprout-fw-v1"

size_t sprout_ota_manifest(const char *product, const char *version, uint64_t size, const uint8_t sha256[32],
                           uint8_t *out, size_t cap)
{
    size_t pl = strlen(product), vl = strlen(version);
    size_t n = sizeof MAGIC + pl + 1 + vl + 1 + 8 + 32; /* sizeof MAGIC counts its NUL */
    if (pl > 64 || vl > 32 || n > cap) {
        return 0;
    }
    uint8_t *p = out;
    memcpy(p, MAGIC, sizeof MAGIC);
    p += sizeof MAGIC;
    memcpy(p, product, pl);
    p += pl;
    *p++ = 0;
    memcpy(p, version, vl);
    p += vl;
    *p++ = 0;
    for (int i = 7; i >= 0; i--) {
        *p++ = (uint8_t)(size >> (8 * i));
    }
    memcpy(p, sha256, 32);
    return n;
}

bool sprout_ota_supported(const sprout_port *p)
{
    return p->ota_verify != NULL && p->ota_slot_size != NULL && p->ota_begin != NULL && p->ota_write != NULL &&
           p->ota_read != NULL && p->ota_switch != NULL && p->ota_mark_valid != NULL;
}

static void put32(uint8_t *b, uint32_t v)
{
    b[0] = (uint8_t)(v >> 24);
    b[1] = (uint8_t)(v >> 16);
    b[2] = (uint8_t)(v >> 8);
    b[3] = (uint8_t)v;
}

static uint32_t get32(const uint8_t *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

static void logmsg(sprout_client *c, sprout_log_level level, const char *msg)
{
    if (c->port->log != NULL) {
        c->port->log(c->port->ctx, level, msg);
    }
}

static int64_t now_ms(sprout_client *c)
{
    return c->port->monotonic_ms(c->port->ctx);
}

/* save persists the record (one flash write on a device). */
static int save(sprout_client *c)
{
    uint8_t b[RECORD_BYTES];
    sprout_ota *o = &c->ota;
    const sprout_ota_record *r = &o->rec;
    b[0] = r->phase;
    memcpy(b + 1, r->sha256, 32);
    put32(b + 33, r->size);
    put32(b + 37, r->offset);
    memcpy(b + 41, r->version, 33);
    c->stats.ota_record_writes++;
    int rc = c->port->kv_set(c->port->ctx, SPROUT_OTA_KEY, b, sizeof b);
    if (rc == 0) {
        o->persisted = true;
        o->saved_offset = r->offset;
        o->saved_ms = now_ms(c);
    }
    char msg[96];
    snprintf(msg, sizeof msg, "ota: record saved: phase %u, offset %u of %u%s", (unsigned)r->phase,
             (unsigned)r->offset, (unsigned)r->size, rc == 0 ? "" : " (FAILED)");
    logmsg(c, SPROUT_LOG_DEBUG, msg);
    return rc;
}

static void clear(sprout_client *c)
{
    memset(&c->ota, 0, sizeof c->ota);
    (void)save(c);
}

/* flush persists the offset the slot holds if storage is behind it (a pause, a lost connection,
 * a shutdown): nothing written is fetched again unless the power goes first. */
static void flush(sprout_client *c)
{
    sprout_ota *o = &c->ota;
    if (o->opened && o->rec.phase == SPROUT_OTA_DOWNLOADING && o->rec.offset != o->saved_offset) {
        if (save(c) != 0) {
            logmsg(c, SPROUT_LOG_WARN, "ota: cannot persist the offset");
        }
    }
}

static void progress_after(sprout_client *c, const uint8_t sha256[32], sprout_device_v1_UpdateState state,
                           uint32_t percent, const char *reason, uint32_t retry_after_s)
{
    frame_t f = sprout_device_v1_Frame_init_zero;
    f.which_body = sprout_device_v1_Frame_update_progress_tag;
    sprout_device_v1_UpdateProgress *p = &f.body.update_progress;
    memcpy(p->sha256, sha256, 32);
    p->state = state;
    p->percent = percent;
    snprintf(p->reason, sizeof p->reason, "%s", reason != NULL ? reason : "");
    snprintf(p->version, sizeof p->version, "%s", c->cfg.firmware_version != NULL ? c->cfg.firmware_version : "");
    p->retry_after_s = retry_after_s;
    if (reason != NULL) {
        char msg[128];
        snprintf(msg, sizeof msg, "ota: state %d: %s", (int)state, reason);
        logmsg(c, state == sprout_device_v1_UpdateState_UPDATE_STATE_FAILED ? SPROUT_LOG_WARN : SPROUT_LOG_INFO, msg);
    }
    (void)sprout_client_send_frame(c, &f);
}

static void progress(sprout_client *c, const uint8_t sha256[32], sprout_device_v1_UpdateState state,
                     uint32_t percent, const char *reason)
{
    progress_after(c, sha256, state, percent, reason, 0);
}

void sprout_ota_init(sprout_client *c)
{
    memset(&c->ota, 0, sizeof c->ota);
    if (!sprout_ota_supported(c->port)) {
        return;
    }
    uint8_t b[RECORD_BYTES];
    size_t n = 0;
    if (c->port->kv_get(c->port->ctx, SPROUT_OTA_KEY, b, sizeof b, &n) != 0 || n != sizeof b ||
        b[0] > SPROUT_OTA_BOOTING || b[40 + 33] != '\0') {
        return;
    }
    sprout_ota_record *r = &c->ota.rec;
    r->phase = b[0];
    memcpy(r->sha256, b + 1, 32);
    r->size = get32(b + 33);
    r->offset = get32(b + 37);
    memcpy(r->version, b + 41, 33);
    if (r->offset > r->size) {
        memset(r, 0, sizeof *r);
        return;
    }
    c->ota.persisted = true;
    c->ota.saved_offset = r->offset;
}

void sprout_ota_on_welcome(sprout_client *c)
{
    sprout_ota_record *r = &c->ota.rec;
    c->ota.active = false;
    c->ota.opened = false;
    c->ota.in_flight = false;
    c->ota.deferred = SPROUT_OTA_MARGIN_OK;
    if (r->phase != SPROUT_OTA_BOOTING) {
        return;
    }
    uint8_t sha[32];
    memcpy(sha, r->sha256, 32);
    const char *running = c->cfg.firmware_version != NULL ? c->cfg.firmware_version : "";
    if (strcmp(running, r->version) == 0) {
        /* The new image reached a server that proved it knows our secret: keep it. */
        if (c->port->ota_mark_valid(c->port->ctx) != 0) {
            logmsg(c, SPROUT_LOG_ERROR, "ota: cannot mark the running image valid");
            return; /* try again after the next Welcome */
        }
        clear(c);
        progress(c, sha, sprout_device_v1_UpdateState_UPDATE_STATE_RUNNING, 100, NULL);
        logmsg(c, SPROUT_LOG_INFO, "ota: the new image runs and is marked valid");
        return;
    }
    char reason[65];
    snprintf(reason, sizeof reason, "%s did not come back", r->version); /* <= 52 bytes: no cut */
    clear(c);
    progress(c, sha, sprout_device_v1_UpdateState_UPDATE_STATE_ROLLED_BACK, 0, reason);
}

static void request_next(sprout_client *c)
{
    sprout_ota *o = &c->ota;
    uint32_t left = o->rec.size - o->rec.offset;
    frame_t f = sprout_device_v1_Frame_init_zero;
    f.which_body = sprout_device_v1_Frame_chunk_request_tag;
    memcpy(f.body.chunk_request.sha256, o->rec.sha256, 32);
    f.body.chunk_request.offset = o->rec.offset;
    f.body.chunk_request.length = left < o->chunk_size ? left : o->chunk_size;
    if (sprout_client_send_frame(c, &f)) {
        o->in_flight = true;
    }
}

static void fail(sprout_client *c, const uint8_t sha[32], const char *reason)
{
    uint8_t s[32];
    memcpy(s, sha, 32);
    clear(c);
    progress(c, s, sprout_device_v1_UpdateState_UPDATE_STATE_FAILED, 0, reason);
}

/* finish hashes the slot, switches to it and asks the client to reboot. */
static void finish(sprout_client *c)
{
    static uint8_t buf[SPROUT_OTA_CHUNK_MAX];
    sprout_ota *o = &c->ota;
    o->active = false;
    progress(c, o->rec.sha256, sprout_device_v1_UpdateState_UPDATE_STATE_VERIFYING, 100, NULL);
    sprout_sha256 h;
    sprout_sha256_init(&h);
    for (uint32_t off = 0; off < o->rec.size;) {
        uint32_t n = o->rec.size - off < sizeof buf ? o->rec.size - off : (uint32_t)sizeof buf;
        if (c->port->ota_read(c->port->ctx, off, buf, n) != 0) {
            fail(c, o->rec.sha256, "slot read error");
            return;
        }
        sprout_sha256_update(&h, buf, n);
        off += n;
    }
    uint8_t got[32];
    sprout_sha256_final(&h, got);
    if (memcmp(got, o->rec.sha256, 32) != 0) {
        fail(c, o->rec.sha256, "sha256 mismatch");
        return;
    }
    if (c->port->ota_switch(c->port->ctx) != 0) {
        fail(c, o->rec.sha256, "cannot switch the boot slot");
        return;
    }
    o->rec.phase = SPROUT_OTA_BOOTING;
    if (save(c) != 0) {
        logmsg(c, SPROUT_LOG_WARN, "ota: cannot persist the booting state");
    }
    progress(c, o->rec.sha256, sprout_device_v1_UpdateState_UPDATE_STATE_REBOOTING, 100, NULL);
    c->reboot_pending = true;
}

sprout_ota_margin sprout_ota_margins_short(sprout_client *c, char *why, size_t cap)
{
    const sprout_options *opt = &c->cfg.options;
    if (c->pump.running) {
        snprintf(why, cap, "watering");
        return SPROUT_OTA_MARGIN_PUMP;
    }
    if (c->port->ota_margins == NULL) {
        return SPROUT_OTA_MARGIN_OK;
    }
    sprout_ota_margins m;
    memset(&m, 0, sizeof m);
    if (c->port->ota_margins(c->port->ctx, &m) != 0) {
        snprintf(why, cap, "margins unknown: cannot measure supply and WiFi");
        return SPROUT_OTA_MARGIN_UNKNOWN;
    }
    if (m.pump_busy) {
        snprintf(why, cap, "watering");
        return SPROUT_OTA_MARGIN_PUMP;
    }
    if (m.supply_mv != 0 && m.supply_mv < opt->ota_min_supply_mv) {
        snprintf(why, cap, "low supply: %u mV < %u mV", (unsigned)m.supply_mv, (unsigned)opt->ota_min_supply_mv);
        return SPROUT_OTA_MARGIN_SUPPLY;
    }
    if (m.rssi_dbm != 0 && m.rssi_dbm < opt->ota_min_rssi_dbm) {
        snprintf(why, cap, "weak WiFi: %d dBm < %d dBm", (int)m.rssi_dbm, (int)opt->ota_min_rssi_dbm);
        return SPROUT_OTA_MARGIN_WIFI;
    }
    if (m.free_heap != 0 && m.free_heap < opt->ota_min_free_heap) {
        snprintf(why, cap, "low memory: %u bytes free < %u", (unsigned)m.free_heap, (unsigned)opt->ota_min_free_heap);
        return SPROUT_OTA_MARGIN_HEAP;
    }
    return SPROUT_OTA_MARGIN_OK;
}

static uint32_t percent_of(const sprout_ota *o)
{
    return (uint32_t)((uint64_t)o->rec.offset * 100 / o->rec.size);
}

/* defer pauses the download: the offset is persisted (a short supply may end in a power cut),
 * the server told once per reason, and the margins measured again after a bounded backoff. */
static void defer(sprout_client *c, sprout_ota_margin why_kind, const char *why)
{
    sprout_ota *o = &c->ota;
    flush(c);
    const sprout_options *opt = &c->cfg.options;
    sprout_backoff b = {.base_ms = opt->ota_retry_min_ms, .max_ms = opt->ota_retry_max_ms, .attempt = o->retry_attempt};
    uint8_t r[4];
    c->port->random_bytes(c->port->ctx, r, sizeof r);
    uint32_t delay = sprout_backoff_next(&b, (uint32_t)r[0] | (uint32_t)r[1] << 8 | (uint32_t)r[2] << 16 | (uint32_t)r[3] << 24);
    o->retry_attempt = b.attempt;
    o->retry_at_ms = now_ms(c) + delay;
    bool news = o->deferred != why_kind;
    o->deferred = (uint8_t)why_kind;
    if (news) {
        c->stats.ota_deferrals++;
        progress_after(c, o->rec.sha256, sprout_device_v1_UpdateState_UPDATE_STATE_DEFERRED, percent_of(o), why,
                       (delay + 999) / 1000);
    }
    char msg[128];
    snprintf(msg, sizeof msg, "ota: %s %s: %s; margins measured again in %u ms", news ? "deferring" : "still deferring",
             o->rec.version, why, (unsigned)delay);
    logmsg(c, news ? SPROUT_LOG_INFO : SPROUT_LOG_DEBUG, msg);
}

/* open_slot prepares the slot for the accepted offer: erased for a new image, reopened at the saved
 * offset for a resumed one. */
static bool open_slot(sprout_client *c)
{
    sprout_ota *o = &c->ota;
    bool resume = o->persisted;
    if (c->port->ota_begin(c->port->ctx, o->rec.size, o->rec.offset) != 0) {
        fail(c, o->rec.sha256, "cannot open the update slot");
        return false;
    }
    o->opened = true;
    if (!o->persisted && save(c) != 0) {
        fail(c, o->rec.sha256, "cannot persist the download");
        return false;
    }
    o->saved_ms = now_ms(c);
    char msg[128];
    snprintf(msg, sizeof msg, "ota: %s %s (%u bytes) at offset %u", resume ? "resuming" : "downloading",
             o->rec.version, (unsigned)o->rec.size, (unsigned)o->rec.offset);
    logmsg(c, SPROUT_LOG_INFO, msg);
    return true;
}

/* next_step asks for the next chunk, or verifies and switches once the image is complete. */
static void next_step(sprout_client *c)
{
    sprout_ota *o = &c->ota;
    if (o->rec.offset == o->rec.size) {
        finish(c);
        return;
    }
    request_next(c);
}

/* proceed takes the accepted download one step on, if the margins allow: opens the slot, asks
 * for the next chunk, or verifies and switches once the image is complete. */
static void proceed(sprout_client *c)
{
    sprout_ota *o = &c->ota;
    char why[65];
    sprout_ota_margin m = sprout_ota_margins_short(c, why, sizeof why);
    if (m != SPROUT_OTA_MARGIN_OK) {
        defer(c, m, why);
        return;
    }
    bool was_deferred = o->deferred != SPROUT_OTA_MARGIN_OK;
    o->deferred = SPROUT_OTA_MARGIN_OK;
    o->retry_attempt = 0;
    bool news = was_deferred;
    if (!o->opened) {
        if (!open_slot(c)) {
            return;
        }
        news = true;
    } else if (was_deferred) {
        char msg[96];
        snprintf(msg, sizeof msg, "ota: margins met again: downloading %s from offset %u", o->rec.version,
                 (unsigned)o->rec.offset);
        logmsg(c, SPROUT_LOG_INFO, msg);
    }
    if (news) {
        /* The server shows the pot downloading again (it showed deferred, or only offered). */
        o->last_percent = percent_of(o);
        progress(c, o->rec.sha256, sprout_device_v1_UpdateState_UPDATE_STATE_DOWNLOADING, o->last_percent, NULL);
    }
    next_step(c);
}

void sprout_ota_on_offer(sprout_client *c, const sprout_device_v1_UpdateOffer *of)
{
    sprout_ota *o = &c->ota;
    if (!sprout_ota_supported(c->port)) {
        progress(c, of->sha256, sprout_device_v1_UpdateState_UPDATE_STATE_FAILED, 0, "updates not supported");
        return;
    }
    if (o->active && memcmp(o->rec.sha256, of->sha256, 32) == 0) {
        return; /* the same offer again while we download it (or wait to): carry on */
    }
    if (o->rec.phase == SPROUT_OTA_BOOTING) {
        return; /* a reboot into an image is pending */
    }
    uint8_t manifest[SPROUT_OTA_MANIFEST_MAX];
    size_t mlen = sprout_ota_manifest(of->product, of->version, of->size, of->sha256, manifest, sizeof manifest);
    if (mlen == 0 || !c->port->ota_verify(c->port->ctx, manifest, mlen, of->signature)) {
        progress(c, of->sha256, sprout_device_v1_UpdateState_UPDATE_STATE_FAILED, 0, "bad signature");
        return;
    }
    if (c->cfg.product != NULL && c->cfg.product[0] != '\0' && strcmp(c->cfg.product, of->product) != 0) {
        progress(c, of->sha256, sprout_device_v1_UpdateState_UPDATE_STATE_FAILED, 0, "wrong product");
        return;
    }
    if (of->size == 0 || of->size > c->port->ota_slot_size(c->port->ctx)) {
        progress(c, of->sha256, sprout_device_v1_UpdateState_UPDATE_STATE_FAILED, 0, "image does not fit the slot");
        return;
    }
    if (c->cfg.firmware_version != NULL && strcmp(c->cfg.firmware_version, of->version) == 0) {
        return; /* already running it */
    }
    bool same = o->rec.phase == SPROUT_OTA_DOWNLOADING && memcmp(o->rec.sha256, of->sha256, 32) == 0 &&
                o->rec.size == of->size;
    if (!same) {
        /* Another image: what the slot and the record hold is abandoned (the record is replaced
         * when the new download opens the slot). */
        memset(&o->rec, 0, sizeof o->rec);
        o->rec.phase = SPROUT_OTA_DOWNLOADING;
        memcpy(o->rec.sha256, of->sha256, 32);
        o->rec.size = of->size;
        snprintf(o->rec.version, sizeof o->rec.version, "%s", of->version);
        o->persisted = false;
        o->saved_offset = 0;
        o->retry_attempt = 0;
    }
    o->active = true;
    o->opened = false;
    o->in_flight = false;
    o->chunk_size = of->chunk_size == 0 || of->chunk_size > SPROUT_OTA_REQUEST_MAX ? SPROUT_OTA_REQUEST_MAX : of->chunk_size;
    o->last_percent = percent_of(o);
    /* A deferral of an earlier connection is news to this one: say it again if it lasts. */
    o->deferred = SPROUT_OTA_MARGIN_OK;
    proceed(c);
}

void sprout_ota_on_chunk(sprout_client *c, const sprout_device_v1_Chunk *ch)
{
    sprout_ota *o = &c->ota;
    if (!o->active || !o->in_flight || memcmp(ch->sha256, o->rec.sha256, 32) != 0) {
        return; /* not asked for (a late chunk of an older offer): ignore */
    }
    o->in_flight = false;
    if (ch->data.size == 0) {
        logmsg(c, SPROUT_LOG_INFO, "ota: the image is no longer offered: dropping it");
        clear(c);
        return;
    }
    uint32_t want = o->rec.size - o->rec.offset;
    if (ch->offset != o->rec.offset || ch->data.size > want || ch->data.size > o->chunk_size) {
        fail(c, o->rec.sha256, "chunk out of order");
        return;
    }
    char why[65];
    sprout_ota_margin m = sprout_ota_margins_short(c, why, sizeof why);
    if (m != SPROUT_OTA_MARGIN_OK) {
        /* The pump started, or the supply or WiFi dropped, since the request: write nothing now
         * (ask for this chunk again later). */
        defer(c, m, why);
        return;
    }
    if (c->port->ota_write(c->port->ctx, ch->offset, ch->data.bytes, ch->data.size) != 0) {
        fail(c, o->rec.sha256, "slot write error");
        return;
    }
    o->rec.offset += ch->data.size;
    const sprout_options *opt = &c->cfg.options;
    if (o->rec.offset != o->rec.size && (o->rec.offset - o->saved_offset >= opt->ota_save_every_bytes ||
                                         now_ms(c) - o->saved_ms >= (int64_t)opt->ota_save_every_ms)) {
        if (save(c) != 0) {
            logmsg(c, SPROUT_LOG_WARN, "ota: cannot persist the offset");
        }
    }
    uint32_t pct = percent_of(o);
    if (o->rec.offset != o->rec.size && pct / 10 != o->last_percent / 10) {
        o->last_percent = pct;
        progress(c, o->rec.sha256, sprout_device_v1_UpdateState_UPDATE_STATE_DOWNLOADING, pct, NULL);
    }
    next_step(c); /* the margins were measured just now, before the write */
}

void sprout_ota_on_disconnect(sprout_client *c)
{
    sprout_ota *o = &c->ota;
    flush(c);
    o->active = false;
    o->opened = false;
    o->in_flight = false;
    /* o->deferred and retry_attempt stay: the backoff goes on across connections. */
}

void sprout_ota_step(sprout_client *c, int64_t now)
{
    sprout_ota *o = &c->ota;
    if (o->active && o->deferred != SPROUT_OTA_MARGIN_OK && !o->in_flight && now >= o->retry_at_ms) {
        proceed(c);
    }
}

int64_t sprout_ota_deadline(const sprout_client *c, int64_t d)
{
    const sprout_ota *o = &c->ota;
    if (o->active && o->deferred != SPROUT_OTA_MARGIN_OK && o->retry_at_ms < d) {
        return o->retry_at_ms;
    }
    return d;
}
