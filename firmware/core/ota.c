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

static int save(sprout_client *c)
{
    uint8_t b[RECORD_BYTES];
    const sprout_ota_record *r = &c->ota.rec;
    b[0] = r->phase;
    memcpy(b + 1, r->sha256, 32);
    put32(b + 33, r->size);
    put32(b + 37, r->offset);
    memcpy(b + 41, r->version, 33);
    return c->port->kv_set(c->port->ctx, SPROUT_OTA_KEY, b, sizeof b);
}

static void clear(sprout_client *c)
{
    memset(&c->ota, 0, sizeof c->ota);
    (void)save(c);
}

static void logmsg(sprout_client *c, sprout_log_level level, const char *msg)
{
    if (c->port->log != NULL) {
        c->port->log(c->port->ctx, level, msg);
    }
}

static void progress(sprout_client *c, const uint8_t sha256[32], sprout_device_v1_UpdateState state,
                     uint32_t percent, const char *reason)
{
    frame_t f = sprout_device_v1_Frame_init_zero;
    f.which_body = sprout_device_v1_Frame_update_progress_tag;
    sprout_device_v1_UpdateProgress *p = &f.body.update_progress;
    memcpy(p->sha256, sha256, 32);
    p->state = state;
    p->percent = percent;
    snprintf(p->reason, sizeof p->reason, "%s", reason != NULL ? reason : "");
    snprintf(p->version, sizeof p->version, "%s", c->cfg.firmware_version != NULL ? c->cfg.firmware_version : "");
    if (reason != NULL) {
        char msg[128];
        snprintf(msg, sizeof msg, "ota: state %d: %s", (int)state, reason);
        logmsg(c, state == sprout_device_v1_UpdateState_UPDATE_STATE_FAILED ? SPROUT_LOG_WARN : SPROUT_LOG_INFO, msg);
    }
    (void)sprout_client_send_frame(c, &f);
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
    }
}

void sprout_ota_on_welcome(sprout_client *c)
{
    sprout_ota_record *r = &c->ota.rec;
    c->ota.active = false;
    c->ota.in_flight = false;
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

void sprout_ota_on_offer(sprout_client *c, const sprout_device_v1_UpdateOffer *of)
{
    sprout_ota *o = &c->ota;
    if (!sprout_ota_supported(c->port)) {
        progress(c, of->sha256, sprout_device_v1_UpdateState_UPDATE_STATE_FAILED, 0, "updates not supported");
        return;
    }
    if (o->active && memcmp(o->rec.sha256, of->sha256, 32) == 0) {
        return; /* the same offer again while we download it: carry on */
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
    bool resume = o->rec.phase == SPROUT_OTA_DOWNLOADING && memcmp(o->rec.sha256, of->sha256, 32) == 0 &&
                  o->rec.size == of->size;
    if (!resume) {
        memset(&o->rec, 0, sizeof o->rec);
        o->rec.phase = SPROUT_OTA_DOWNLOADING;
        memcpy(o->rec.sha256, of->sha256, 32);
        o->rec.size = of->size;
        snprintf(o->rec.version, sizeof o->rec.version, "%s", of->version);
    }
    if (c->port->ota_begin(c->port->ctx, o->rec.size, o->rec.offset) != 0) {
        fail(c, of->sha256, "cannot open the update slot");
        return;
    }
    if (save(c) != 0) {
        fail(c, of->sha256, "cannot persist the download");
        return;
    }
    char msg[128];
    snprintf(msg, sizeof msg, "ota: %s %s (%u bytes) at offset %u", resume ? "resuming" : "downloading",
             o->rec.version, (unsigned)o->rec.size, (unsigned)o->rec.offset);
    logmsg(c, SPROUT_LOG_INFO, msg);
    o->active = true;
    o->in_flight = false;
    o->chunk_size = of->chunk_size == 0 || of->chunk_size > SPROUT_OTA_REQUEST_MAX ? SPROUT_OTA_REQUEST_MAX : of->chunk_size;
    o->last_percent = (uint32_t)((uint64_t)o->rec.offset * 100 / o->rec.size);
    progress(c, o->rec.sha256, sprout_device_v1_UpdateState_UPDATE_STATE_DOWNLOADING, o->last_percent, NULL);
    if (o->rec.offset == o->rec.size) {
        finish(c);
        return;
    }
    request_next(c);
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
    if (c->port->ota_write(c->port->ctx, ch->offset, ch->data.bytes, ch->data.size) != 0) {
        fail(c, o->rec.sha256, "slot write error");
        return;
    }
    o->rec.offset += ch->data.size;
    if (save(c) != 0) {
        logmsg(c, SPROUT_LOG_WARN, "ota: cannot persist the offset");
    }
    uint32_t pct = (uint32_t)((uint64_t)o->rec.offset * 100 / o->rec.size);
    if (o->rec.offset == o->rec.size) {
        finish(c);
        return;
    }
    if (pct / 10 != o->last_percent / 10) {
        o->last_percent = pct;
        progress(c, o->rec.sha256, sprout_device_v1_UpdateState_UPDATE_STATE_DOWNLOADING, pct, NULL);
    }
    request_next(c);
}

void sprout_ota_on_disconnect(sprout_client *c)
{
    c->ota.active = false;
    c->ota.in_flight = false;
}
