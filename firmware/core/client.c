#include "client.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "sprout_limits.h"
#include "sha256.h"
#include "utf8.h"

typedef sprout_device_v1_Frame frame_t;

#define BODY(f, member) ((f)->body.member)

void sprout_options_defaults(sprout_options *o)
{
    memset(o, 0, sizeof *o);
    o->connect_timeout_ms = 5000;
    o->handshake_timeout_ms = 10000;
    o->send_timeout_ms = 5000;
    o->backoff_base_ms = 1000;
    o->backoff_max_ms = 60000;
    o->backoff_refused_ms = 600000;
    o->ack_timeout_ms = 60000;
    o->silence_factor = 3;
    o->pump_ml_per_s = 20;
    o->report_interval_ms = 0;
    o->max_wait_ms = 1000;
    o->backoff_stable_ms = SPROUT_BACKOFF_STABLE_MS;
    o->ota_min_supply_mv = SPROUT_OTA_MIN_SUPPLY_MV;
    o->ota_min_rssi_dbm = SPROUT_OTA_MIN_RSSI_DBM;
    o->ota_min_free_heap = SPROUT_OTA_MIN_FREE_HEAP;
    o->ota_save_every_bytes = SPROUT_OTA_SAVE_EVERY_BYTES;
    o->ota_save_every_ms = SPROUT_OTA_SAVE_EVERY_MS;
    o->ota_retry_min_ms = SPROUT_OTA_RETRY_MIN_MS;
    o->ota_retry_max_ms = SPROUT_OTA_RETRY_MAX_MS;
}

void sprout_server_proof(const uint8_t *secret, size_t secret_len, const uint8_t device_nonce[SPROUT_NONCE_BYTES],
                         const uint8_t server_nonce[SPROUT_NONCE_BYTES], uint8_t out[32])
{
    static const char label[] = SPROUT_SERVER_PROOF_LABEL;
    sprout_hmac m;
    sprout_hmac_init(&m, secret, secret_len);
    sprout_hmac_update(&m, label, sizeof label - 1);
    sprout_hmac_update(&m, server_nonce, SPROUT_NONCE_BYTES);
    sprout_hmac_update(&m, device_nonce, SPROUT_NONCE_BYTES);
    sprout_hmac_final(&m, out);
}

const char *sprout_state_name(sprout_state s)
{
    switch (s) {
    case SPROUT_STATE_OFFLINE: return "offline";
    case SPROUT_STATE_AWAIT_CHALLENGE: return "await_challenge";
    case SPROUT_STATE_AWAIT_WELCOME: return "await_welcome";
    case SPROUT_STATE_ONLINE: return "online";
    }
    return "?";
}

/* ---- small helpers ---------------------------------------------------------------------- */

static void logf_(sprout_client *c, sprout_log_level level, const char *fmt, ...)
{
    if (c->port->log == NULL) {
        return;
    }
    char msg[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    c->port->log(c->port->ctx, level, msg);
}

static int64_t now_ms(sprout_client *c)
{
    return c->port->monotonic_ms(c->port->ctx);
}

static uint32_t rand32(sprout_client *c)
{
    uint8_t b[4];
    c->port->random_bytes(c->port->ctx, b, sizeof b);
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

/* wall_ms is Unix time: the server's clock once synced, else the platform's, else 0. */
static int64_t wall_ms(sprout_client *c, int64_t mono)
{
    if (c->clock_synced) {
        return mono + c->clock_offset_ms;
    }
    if (c->port->wall_ms != NULL) {
        return c->port->wall_ms(c->port->ctx);
    }
    return 0;
}

/* copy_str copies a string into a fixed protocol field, cut on a character boundary. */
static void copy_str(char *dst, size_t cap, const char *src)
{
    sprout_utf8_copy(dst, cap, src);
}

/* tenths formats a percentage as "12.3" without %f, so that the core needs no float printf
 * (newlib-nano and many embedded libcs leave it out). */
static const char *tenths(char buf[16], float v)
{
    if (!(v == v)) {
        return "nan";
    }
    long t = (long)(v * 10.0f + (v < 0 ? -0.5f : 0.5f));
    const char *sign = t < 0 ? "-" : "";
    if (t < 0) {
        t = -t;
    }
    snprintf(buf, 16, "%s%ld.%ld", sign, t / 10, t % 10);
    return buf;
}

/* equal_time compares in constant time (proofs). */
static bool equal_time(const uint8_t *a, const uint8_t *b, size_t n)
{
    uint8_t d = 0;
    for (size_t i = 0; i < n; i++) {
        d |= (uint8_t)(a[i] ^ b[i]);
    }
    return d == 0;
}

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

static int64_t heartbeat_ms(const sprout_client *c)
{
    return (int64_t)c->config.heartbeat_interval_s * 1000;
}

static int64_t report_interval_ms(const sprout_client *c)
{
    if (c->cfg.options.report_interval_ms > 0) {
        return c->cfg.options.report_interval_ms;
    }
    return (int64_t)c->config.report_interval_s * 1000;
}

static bool connected(const sprout_client *c)
{
    return c->state != SPROUT_STATE_OFFLINE;
}

/* ---- sending ---------------------------------------------------------------------------- */

/* send_frame writes f. A failure marks the connection broken; the step drops it afterwards, so
 * handlers never tear the connection down under their own feet. */
static bool send_frame(sprout_client *c, const frame_t *f)
{
    if (!connected(c) || c->io_error) {
        return false;
    }
    uint8_t buf[SPROUT_FRAME_ENCODED_MAX];
    size_t len = 0;
    if (sprout_frame_encode(f, buf, sizeof buf, &len) != SPROUT_FRAME_OK) {
        logf_(c, SPROUT_LOG_ERROR, "cannot encode %s frame", sprout_frame_name(f));
        return false;
    }
    if (c->port->tcp_send(c->port->ctx, buf, len, c->cfg.options.send_timeout_ms) != 0) {
        logf_(c, SPROUT_LOG_WARN, "send %s failed", sprout_frame_name(f));
        c->io_error = true;
        return false;
    }
    c->last_tx_ms = now_ms(c);
    c->stats.frames_out++;
    return true;
}

bool sprout_client_send_frame(sprout_client *c, const sprout_device_v1_Frame *f)
{
    return send_frame(c, f);
}

static void send_close(sprout_client *c, sprout_device_v1_CloseReason reason, const char *detail)
{
    frame_t f = sprout_device_v1_Frame_init_zero;
    f.which_body = sprout_device_v1_Frame_close_tag;
    BODY(&f, close).reason = reason;
    copy_str(BODY(&f, close).detail, sizeof BODY(&f, close).detail, detail);
    send_frame(c, &f);
}

/* drop_connection closes the socket and schedules the next attempt after delay_ms, on the next
 * server of the list. Unacked records stay in the ring for the next connection. */
static void drop_connection(sprout_client *c, uint32_t delay_ms)
{
    if (connected(c)) {
        c->port->tcp_close(c->port->ctx);
        c->stats.disconnects++;
    }
    logf_(c, SPROUT_LOG_INFO, "offline (was %s), next attempt in %u ms", sprout_state_name(c->state),
          (unsigned)delay_ms);
    c->state = SPROUT_STATE_OFFLINE;
    c->rx_len = 0;
    c->io_error = false;
    c->session_id[0] = '\0';
    sprout_ota_on_disconnect(c);
    for (size_t i = 0; i < c->ring.count; i++) {
        sprout_ring_at(&c->ring, i)->sent_ms = 0;
    }
    if (c->cfg.server_count > 0) {
        c->server_index = (c->server_index + 1) % c->cfg.server_count;
    }
    c->next_connect_ms = now_ms(c) + delay_ms;
}

static void drop_with_backoff(sprout_client *c)
{
    drop_connection(c, sprout_backoff_next(&c->backoff, rand32(c)));
}

static void protocol_error(sprout_client *c, const char *detail)
{
    logf_(c, SPROUT_LOG_WARN, "protocol error: %s", detail);
    c->stats.protocol_errors++;
    send_close(c, sprout_device_v1_CloseReason_CLOSE_REASON_PROTOCOL_ERROR, detail);
    drop_with_backoff(c);
}

static void send_record(sprout_client *c, sprout_record *rec)
{
    if (sprout_record_seq(rec) >= c->saved_next_seq) {
        return; /* its seq is not persisted yet: after a reboot it could be reused (held back) */
    }
    frame_t f = sprout_device_v1_Frame_init_zero;
    if (rec->kind == SPROUT_RECORD_EVENT) {
        if (rec->body.event.device_time_ms == 0 && c->clock_synced) {
            rec->body.event.device_time_ms = rec->taken_ms + c->clock_offset_ms;
        }
        f.which_body = sprout_device_v1_Frame_event_tag;
        BODY(&f, event) = rec->body.event;
    } else {
        if (rec->body.telemetry.device_time_ms == 0 && c->clock_synced) {
            rec->body.telemetry.device_time_ms = rec->taken_ms + c->clock_offset_ms;
        }
        f.which_body = sprout_device_v1_Frame_telemetry_tag;
        BODY(&f, telemetry) = rec->body.telemetry;
    }
    if (send_frame(c, &f)) {
        rec->sent_ms = now_ms(c);
    }
}

/* send_pending sends, in order, every queued record not yet sent on this connection. */
static void send_pending(sprout_client *c, bool resend)
{
    if (c->state != SPROUT_STATE_ONLINE) {
        return;
    }
    for (size_t i = 0; i < c->ring.count && !c->io_error; i++) {
        sprout_record *rec = sprout_ring_at(&c->ring, i);
        if (rec->sent_ms == 0 && sprout_record_seq(rec) < c->saved_next_seq) {
            send_record(c, rec);
            if (resend) {
                c->stats.records_resent++;
            }
        }
    }
}

/* save_seq persists next_seq. Until it succeeds, records numbered at or past the last saved
 * value are held back: sent, then forgotten by a reboot, their seqs would be given out again and
 * the server would drop the new readings as duplicates. */
static bool save_seq(sprout_client *c)
{
    if (c->saved_next_seq == c->next_seq) {
        return true;
    }
    if (sprout_store_save_seq(c->port, c->next_seq) != 0) {
        logf_(c, SPROUT_LOG_ERROR, "cannot persist seq %llu: holding back records from seq %llu",
              (unsigned long long)c->next_seq, (unsigned long long)c->saved_next_seq);
        c->seq_retry_ms = now_ms(c) + 1000;
        return false;
    }
    c->saved_next_seq = c->next_seq;
    return true;
}

/* ---- readings and events ---------------------------------------------------------------- */

/* push_record numbers rec, persists the counter first (a seq must never repeat, even across a
 * power cut), queues it and sends it when online and its seq is saved. */
static void push_record(sprout_client *c, sprout_record *rec)
{
    uint64_t seq = c->next_seq++;
    sprout_record_set_seq(rec, seq);
    rec->sent_ms = 0;
    if (sprout_ring_push(&c->ring, rec)) {
        logf_(c, SPROUT_LOG_WARN, "outbox full: dropped the oldest record (%u dropped since boot)",
              (unsigned)c->ring.dropped);
    }
    if (save_seq(c)) {
        send_pending(c, false);
    }
}

static void push_event(sprout_client *c, sprout_device_v1_EventKind kind, const char *fmt, ...)
{
    int64_t now = now_ms(c);
    sprout_record rec;
    memset(&rec, 0, sizeof rec);
    rec.kind = SPROUT_RECORD_EVENT;
    rec.taken_ms = now;
    rec.body.event.device_time_ms = wall_ms(c, now);
    rec.body.event.kind = kind;
    char detail[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    copy_str(rec.body.event.detail, sizeof rec.body.event.detail, detail);
    push_record(c, &rec);
}

/* take_reading samples the sensors, queues a Telemetry, and raises the device-side events (tank
 * empty / refilled, sensor fault) on their transitions only. Returns false if the sensors failed. */
static bool take_reading(sprout_client *c)
{
    sprout_reading r;
    memset(&r, 0, sizeof r);
    if (c->port->read_sensors(c->port->ctx, &r) != 0) {
        if (!c->sensor_fault) {
            c->sensor_fault = true;
            push_event(c, sprout_device_v1_EventKind_EVENT_KIND_SENSOR_FAULT, "sensor read failed");
        }
        return false;
    }
    c->sensor_fault = false;
    int64_t now = now_ms(c);
    sprout_record rec;
    memset(&rec, 0, sizeof rec);
    rec.kind = SPROUT_RECORD_TELEMETRY;
    rec.taken_ms = now;
    rec.body.telemetry.device_time_ms = wall_ms(c, now);
    rec.body.telemetry.soil_moisture_pct = r.soil_moisture_pct;
    rec.body.telemetry.temperature_c = r.temperature_c;
    rec.body.telemetry.tank_level_pct = r.tank_level_pct;
    rec.body.telemetry.supply_mv = r.supply_mv;
    push_record(c, &rec);

    const sprout_device_v1_Thresholds *t = &c->config.thresholds;
    char pct[16];
    if (!c->tank_empty && r.tank_level_pct <= t->tank_empty_pct) {
        c->tank_empty = true;
        push_event(c, sprout_device_v1_EventKind_EVENT_KIND_TANK_EMPTY, "tank at %s%%", tenths(pct, r.tank_level_pct));
    } else if (c->tank_empty && r.tank_level_pct > t->tank_empty_pct + t->hysteresis_pct) {
        c->tank_empty = false;
        push_event(c, sprout_device_v1_EventKind_EVENT_KIND_TANK_REFILLED, "tank at %s%%",
                   tenths(pct, r.tank_level_pct));
    }
    return true;
}

/* ---- commands --------------------------------------------------------------------------- */

static void send_result(sprout_client *c, sprout_history_entry *e)
{
    frame_t f = sprout_device_v1_Frame_init_zero;
    f.which_body = sprout_device_v1_Frame_command_result_tag;
    BODY(&f, command_result) = e->result;
    if (send_frame(c, &f)) {
        e->undelivered = false;
    }
}

/* finish records a command's result before sending it, so that a repeated id (or a reboot)
 * never runs it again. BUSY is not recorded: the command did not run, and a retry may. */
static void finish(sprout_client *c, const char *id, sprout_device_v1_CommandStatus status,
                   uint32_t watered_ml, const char *fmt, ...)
{
    sprout_command_result r = sprout_device_v1_CommandResult_init_zero;
    copy_str(r.command_id, sizeof r.command_id, id);
    r.status = status;
    r.watered_ml = watered_ml;
    char detail[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    copy_str(r.detail, sizeof r.detail, detail); /* an id in the detail may be cut mid-character */
    logf_(c, SPROUT_LOG_INFO, "command %s: status %d, %s", r.command_id, (int)status, r.detail);

    sprout_history_entry tmp = {.result = r, .undelivered = true};
    sprout_history_entry *e = &tmp;
    if (status != sprout_device_v1_CommandStatus_COMMAND_STATUS_BUSY && r.command_id[0] != '\0') {
        e = sprout_history_put(&c->history, &r);
        e->undelivered = true;
        if (sprout_store_save_history(c->port, &c->history) != 0) {
            logf_(c, SPROUT_LOG_ERROR, "cannot persist command history");
        }
    }
    send_result(c, e);
}

static bool too_soon(sprout_client *c, int64_t now, uint32_t *elapsed_s)
{
    int64_t min_ms = (int64_t)c->config.min_water_interval_s * 1000;
    int64_t elapsed;
    if (c->watered_since_boot) {
        elapsed = now - c->last_water_end_ms;
    } else if (c->last_water_end_wall_ms > 0 && wall_ms(c, now) > 0) {
        elapsed = wall_ms(c, now) - c->last_water_end_wall_ms;
    } else {
        return false;
    }
    if (elapsed < 0) {
        elapsed = 0; /* a clock that went backwards: be conservative */
    }
    *elapsed_s = (uint32_t)(elapsed / 1000);
    return elapsed < min_ms;
}

static void start_water(sprout_client *c, const sprout_device_v1_Command *cmd)
{
    const char *id = cmd->command_id;
    const sprout_config *cf = &c->config;
    int64_t now = now_ms(c);
    uint32_t elapsed_s = 0;
    sprout_reading r;

    if (cmd->water_ms == 0) {
        finish(c, id, sprout_device_v1_CommandStatus_COMMAND_STATUS_REJECTED, 0, "water_ms must be positive");
        return;
    }
    if (cmd->water_ms > cf->max_water_ms || cmd->water_ms > SPROUT_HARD_MAX_WATER_MS) {
        /* cf is clamped to the hard limit already; the second test keeps this true even if a
         * future path forgets to clamp. */
        uint32_t max = cf->max_water_ms < SPROUT_HARD_MAX_WATER_MS ? cf->max_water_ms : SPROUT_HARD_MAX_WATER_MS;
        finish(c, id, sprout_device_v1_CommandStatus_COMMAND_STATUS_REJECTED, 0,
               "water_ms %u exceeds max_water_ms %u", (unsigned)cmd->water_ms, (unsigned)max);
        return;
    }
    if (too_soon(c, now, &elapsed_s)) {
        finish(c, id, sprout_device_v1_CommandStatus_COMMAND_STATUS_REJECTED, 0,
               "too soon: last run %u s ago, min_water_interval_s %u", (unsigned)elapsed_s,
               (unsigned)cf->min_water_interval_s);
        return;
    }
    memset(&r, 0, sizeof r);
    if (c->port->read_sensors(c->port->ctx, &r) != 0) {
        finish(c, id, sprout_device_v1_CommandStatus_COMMAND_STATUS_FAILED, 0, "cannot read the tank level");
        return;
    }
    float empty = cf->thresholds.tank_empty_pct;
    if (!(empty >= SPROUT_HARD_MIN_TANK_EMPTY_PCT)) {
        empty = SPROUT_HARD_MIN_TANK_EMPTY_PCT;
    }
    if (!(r.tank_level_pct > empty)) { /* NaN from a broken sensor counts as empty too */
        char lvl[16], lim[16];
        finish(c, id, sprout_device_v1_CommandStatus_COMMAND_STATUS_REJECTED, 0, "tank empty: %s%% <= %s%%",
               tenths(lvl, r.tank_level_pct), tenths(lim, empty));
        return;
    }
    /* Record the id before the pump starts: if the device reboots mid-run, a retry of this id gets
     * this answer instead of a second run. */
    sprout_command_result pending = sprout_device_v1_CommandResult_init_zero;
    copy_str(pending.command_id, sizeof pending.command_id, id);
    pending.status = sprout_device_v1_CommandStatus_COMMAND_STATUS_FAILED;
    copy_str(pending.detail, sizeof pending.detail, "interrupted: the device restarted while watering");
    sprout_history_put(&c->history, &pending);
    if (sprout_store_save_history(c->port, &c->history) != 0) {
        logf_(c, SPROUT_LOG_ERROR, "cannot persist command history");
    }
    if (c->port->pump_start(c->port->ctx, cmd->water_ms) != 0) {
        push_event(c, sprout_device_v1_EventKind_EVENT_KIND_PUMP_FAULT, "pump did not start");
        finish(c, id, sprout_device_v1_CommandStatus_COMMAND_STATUS_FAILED, 0, "pump fault: did not start");
        return;
    }
    c->stats.commands_executed++;
    c->pump.running = true;
    copy_str(c->pump.command_id, sizeof c->pump.command_id, id);
    c->pump.water_ms = cmd->water_ms;
    c->pump.end_ms = now + cmd->water_ms;
    logf_(c, SPROUT_LOG_INFO, "pump on for %u ms (command %s)", (unsigned)cmd->water_ms, id);
}

static void finish_water(sprout_client *c)
{
    int64_t now = now_ms(c);
    c->port->pump_stop(c->port->ctx);
    c->pump.running = false;
    c->watered_since_boot = true;
    c->last_water_end_ms = now;
    c->last_water_end_wall_ms = wall_ms(c, now);
    if (c->last_water_end_wall_ms > 0) {
        sprout_store_save_i64(c->port, SPROUT_KEY_LAST_WATER, c->last_water_end_wall_ms);
    }
    uint32_t ml = (uint32_t)((uint64_t)c->pump.water_ms * c->cfg.options.pump_ml_per_s / 1000);
    finish(c, c->pump.command_id, sprout_device_v1_CommandStatus_COMMAND_STATUS_DONE, ml, "watered %u ms",
           (unsigned)c->pump.water_ms);
}

static void apply_config(sprout_client *c, const sprout_config *in)
{
    sprout_config next = *in;
    sprout_config_normalize(&next);
    if (sprout_config_equal(&next, &c->config)) {
        return; /* no flash write for a config we already have */
    }
    int64_t old_interval = report_interval_ms(c);
    c->config = next;
    if (sprout_store_save_config(c->port, &c->config) != 0) {
        logf_(c, SPROUT_LOG_ERROR, "cannot persist config");
    }
    int64_t interval = report_interval_ms(c);
    if (interval < old_interval) {
        c->next_report_ms = min64(c->next_report_ms, now_ms(c) + interval);
    }
    logf_(c, SPROUT_LOG_INFO, "config: report %us heartbeat %us max_water %ums min_interval %us",
          (unsigned)c->config.report_interval_s, (unsigned)c->config.heartbeat_interval_s,
          (unsigned)c->config.max_water_ms, (unsigned)c->config.min_water_interval_s);
}

static void handle_command(sprout_client *c, const sprout_device_v1_Command *cmd)
{
    if (c->cfg.options.ignore_commands) {
        logf_(c, SPROUT_LOG_INFO, "ignoring command %s (silent mode)", cmd->command_id);
        return;
    }
    if (cmd->command_id[0] == '\0') {
        finish(c, "", sprout_device_v1_CommandStatus_COMMAND_STATUS_REJECTED, 0, "missing command_id");
        return;
    }
    sprout_history_entry *prev = sprout_history_find(&c->history, cmd->command_id);
    if (prev != NULL && !(c->pump.running && strcmp(c->pump.command_id, cmd->command_id) == 0)) {
        c->stats.results_resent++;
        logf_(c, SPROUT_LOG_INFO, "command %s seen before: re-sending its result", cmd->command_id);
        send_result(c, prev);
        return;
    }
    if (c->pump.running) {
        if (strcmp(c->pump.command_id, cmd->command_id) == 0) {
            return; /* a retry of the running command: its result follows when the pump stops */
        }
        finish(c, cmd->command_id, sprout_device_v1_CommandStatus_COMMAND_STATUS_BUSY, 0,
               "busy: the pump is running command %s", c->pump.command_id);
        return;
    }
    /* Commands start as soon as they arrive, so deadline_ms (latest start after receipt) always
     * holds; it would matter only if commands were queued. */
    switch (cmd->kind) {
    case sprout_device_v1_CommandKind_COMMAND_KIND_WATER:
        start_water(c, cmd);
        break;
    case sprout_device_v1_CommandKind_COMMAND_KIND_READ_NOW:
        c->stats.commands_executed++;
        if (take_reading(c)) {
            finish(c, cmd->command_id, sprout_device_v1_CommandStatus_COMMAND_STATUS_DONE, 0, "reading seq %llu",
                   (unsigned long long)(c->next_seq - 1));
        } else {
            finish(c, cmd->command_id, sprout_device_v1_CommandStatus_COMMAND_STATUS_FAILED, 0, "sensor read failed");
        }
        break;
    case sprout_device_v1_CommandKind_COMMAND_KIND_SET_CONFIG:
        if (!cmd->has_config) {
            finish(c, cmd->command_id, sprout_device_v1_CommandStatus_COMMAND_STATUS_REJECTED, 0, "config missing");
            break;
        }
        c->stats.commands_executed++;
        apply_config(c, &cmd->config);
        finish(c, cmd->command_id, sprout_device_v1_CommandStatus_COMMAND_STATUS_DONE, 0, "config stored");
        break;
    case sprout_device_v1_CommandKind_COMMAND_KIND_REBOOT:
        c->stats.commands_executed++;
        finish(c, cmd->command_id, sprout_device_v1_CommandStatus_COMMAND_STATUS_DONE, 0, "rebooting");
        c->reboot_pending = true;
        break;
    default:
        finish(c, cmd->command_id, sprout_device_v1_CommandStatus_COMMAND_STATUS_REJECTED, 0,
               "unknown command kind %d", (int)cmd->kind);
        break;
    }
}

/* ---- the handshake and incoming frames -------------------------------------------------- */

static void start_connection(sprout_client *c)
{
    const sprout_server *s = &c->cfg.servers[c->server_index];
    if (c->port->network_up != NULL && !c->port->network_up(c->port->ctx)) {
        c->next_connect_ms = now_ms(c) + c->cfg.options.backoff_base_ms;
        return;
    }
    c->stats.connect_attempts++;
    logf_(c, SPROUT_LOG_INFO, "connecting to %s:%u", s->host, (unsigned)s->port);
    if (c->port->tcp_connect(c->port->ctx, s->host, s->port, c->cfg.options.connect_timeout_ms) != 0) {
        c->stats.connect_failures++;
        drop_with_backoff(c); /* not connected: only rotates the server and schedules */
        return;
    }
    int64_t now = now_ms(c);
    c->state = SPROUT_STATE_AWAIT_CHALLENGE;
    c->rx_len = 0;
    c->io_error = false;
    c->last_rx_ms = now;
    c->handshake_deadline_ms = now + c->cfg.options.handshake_timeout_ms;
    c->port->random_bytes(c->port->ctx, c->device_nonce, sizeof c->device_nonce);

    frame_t f = sprout_device_v1_Frame_init_zero;
    f.which_body = sprout_device_v1_Frame_hello_tag;
    copy_str(BODY(&f, hello).device_id, sizeof BODY(&f, hello).device_id, c->cfg.device_id);
    copy_str(BODY(&f, hello).firmware_version, sizeof BODY(&f, hello).firmware_version,
             c->cfg.firmware_version != NULL ? c->cfg.firmware_version : "");
    BODY(&f, hello).protocol_version = SPROUT_PROTOCOL_VERSION;
    memcpy(BODY(&f, hello).device_nonce, c->device_nonce, sizeof c->device_nonce);
    send_frame(c, &f);
}

static void on_challenge(sprout_client *c, const sprout_device_v1_Challenge *ch)
{
    sprout_hmac m;
    frame_t f = sprout_device_v1_Frame_init_zero;
    f.which_body = sprout_device_v1_Frame_auth_tag;
    sprout_hmac_init(&m, c->cfg.secret, c->cfg.secret_len);
    sprout_hmac_update(&m, c->device_nonce, sizeof c->device_nonce);
    sprout_hmac_update(&m, ch->server_nonce, sizeof ch->server_nonce);
    sprout_hmac_update(&m, c->cfg.device_id, strlen(c->cfg.device_id));
    sprout_hmac_final(&m, BODY(&f, auth).mac);
    memcpy(c->server_nonce, ch->server_nonce, sizeof c->server_nonce);
    c->state = SPROUT_STATE_AWAIT_WELCOME;
    send_frame(c, &f);
}

/* server_proven checks Welcome.server_proof: only a server that knows this device's secret can
 * compute it for this connection's nonces. */
static bool server_proven(sprout_client *c, const sprout_device_v1_Welcome *w)
{
    uint8_t want[32];
    if (w->server_proof.size != sizeof want) {
        return false;
    }
    sprout_server_proof(c->cfg.secret, c->cfg.secret_len, c->device_nonce, c->server_nonce, want);
    return equal_time(want, w->server_proof.bytes, sizeof want);
}

static void on_welcome(sprout_client *c, const sprout_device_v1_Welcome *w)
{
    if (!server_proven(c, w)) {
        /* Not our server (or a server without our secret): accept nothing from it, neither its
         * config nor anything after the Welcome, and try again later, on the next server. */
        c->stats.server_proof_failures++;
        logf_(c, SPROUT_LOG_ERROR, "server proof %s: not trusting this server",
              w->server_proof.size == 0 ? "missing" : "wrong");
        send_close(c, sprout_device_v1_CloseReason_CLOSE_REASON_AUTH_FAILED, "server proof failed");
        drop_with_backoff(c);
        return;
    }
    int64_t now = now_ms(c);
    c->state = SPROUT_STATE_ONLINE;
    c->stats.handshakes++;
    c->online_since_ms = now; /* the backoff is forgotten once this session has lasted (run_timers) */
    copy_str(c->session_id, sizeof c->session_id, w->session_id);
    if (w->server_time_ms > 0) {
        c->clock_synced = true;
        c->clock_offset_ms = w->server_time_ms - now;
    }
    if (w->has_config) {
        apply_config(c, &w->config);
    }
    if (c->next_seq <= w->last_seq) {
        /* The counter was lost (storage wiped): everything queued was numbered from the restart
         * and has never been stored, so renumber it after what the server has. */
        uint64_t seq = w->last_seq + 1;
        for (size_t i = 0; i < c->ring.count; i++) {
            sprout_record_set_seq(sprout_ring_at(&c->ring, i), seq++);
        }
        logf_(c, SPROUT_LOG_WARN, "seq counter behind the server (%llu <= %llu): continuing from %llu",
              (unsigned long long)c->next_seq, (unsigned long long)w->last_seq, (unsigned long long)seq);
        c->next_seq = seq;
        c->saved_next_seq = w->last_seq + 1; /* nothing above the server's was ever sent */
        (void)save_seq(c);
    } else {
        sprout_ring_drop_through(&c->ring, w->last_seq);
    }
    logf_(c, SPROUT_LOG_INFO, "online: session %s, server last_seq %llu, %u to resend", c->session_id,
          (unsigned long long)w->last_seq, (unsigned)c->ring.count);
    send_pending(c, true);
    sprout_ota_on_welcome(c);
    for (size_t i = 0; i < c->history.count && !c->io_error; i++) {
        sprout_history_entry *e = &c->history.items[i];
        if (e->undelivered && !(c->pump.running && strcmp(e->result.command_id, c->pump.command_id) == 0)) {
            send_result(c, e);
        }
    }
}

static void on_close(sprout_client *c, const sprout_device_v1_Close *cl)
{
    uint32_t delay;
    switch (cl->reason) {
    case sprout_device_v1_CloseReason_CLOSE_REASON_AUTH_FAILED:
    case sprout_device_v1_CloseReason_CLOSE_REASON_UNKNOWN_DEVICE:
    case sprout_device_v1_CloseReason_CLOSE_REASON_DEVICE_REVOKED:
    case sprout_device_v1_CloseReason_CLOSE_REASON_UNSUPPORTED_VERSION:
        /* Retrying soon cannot help: only a change on the server side can. */
        (void)sprout_backoff_next(&c->backoff, 0);
        delay = sprout_jitter(c->cfg.options.backoff_refused_ms, rand32(c));
        if (cl->reconnect_after_ms > delay) {
            delay = cl->reconnect_after_ms;
        }
        break;
    default:
        if (cl->reconnect_after_ms > 0) {
            delay = cl->reconnect_after_ms + rand32(c) % (cl->reconnect_after_ms / 2 + 1);
        } else {
            delay = sprout_backoff_next(&c->backoff, rand32(c));
        }
        break;
    }
    logf_(c, SPROUT_LOG_WARN, "server closed the connection: reason %d (%s)", (int)cl->reason, cl->detail);
    drop_connection(c, delay);
}

static void on_frame(sprout_client *c, const frame_t *f)
{
    c->stats.frames_in++;
    switch (f->which_body) {
    case sprout_device_v1_Frame_close_tag:
        on_close(c, &BODY(f, close));
        return;
    case sprout_device_v1_Frame_ping_tag: {
        frame_t p = sprout_device_v1_Frame_init_zero;
        p.which_body = sprout_device_v1_Frame_pong_tag;
        BODY(&p, pong).nonce = BODY(f, ping).nonce;
        send_frame(c, &p);
        return;
    }
    case 0:
        return; /* a body this firmware does not know (newer server): ignore it */
    default:
        break;
    }
    switch (c->state) {
    case SPROUT_STATE_AWAIT_CHALLENGE:
        if (f->which_body == sprout_device_v1_Frame_challenge_tag) {
            on_challenge(c, &BODY(f, challenge));
            return;
        }
        break;
    case SPROUT_STATE_AWAIT_WELCOME:
        if (f->which_body == sprout_device_v1_Frame_welcome_tag) {
            on_welcome(c, &BODY(f, welcome));
            return;
        }
        break;
    case SPROUT_STATE_ONLINE:
        switch (f->which_body) {
        case sprout_device_v1_Frame_ack_tag:
            if (sprout_ring_ack(&c->ring, BODY(f, ack).seq)) {
                c->stats.acks++;
            }
            return; /* an ack for something no longer queued is harmless */
        case sprout_device_v1_Frame_command_tag:
            handle_command(c, &BODY(f, command));
            return;
        case sprout_device_v1_Frame_pong_tag:
            return; /* any frame proves the server alive; the nonce needs no check */
        case sprout_device_v1_Frame_update_offer_tag:
            sprout_ota_on_offer(c, &BODY(f, update_offer));
            return;
        case sprout_device_v1_Frame_chunk_tag:
            sprout_ota_on_chunk(c, &BODY(f, chunk));
            return;
        default:
            break;
        }
        break;
    case SPROUT_STATE_OFFLINE:
        return;
    }
    char detail[64];
    snprintf(detail, sizeof detail, "unexpected %s in state %s", sprout_frame_name(f), sprout_state_name(c->state));
    protocol_error(c, detail);
}

/* receive appends bytes to the frame buffer and handles every complete frame in it. */
static void receive(sprout_client *c)
{
    size_t off = 0;
    while (connected(c) && !c->io_error && off < c->rx_len) {
        static frame_t f; /* static: a Frame is ~200 bytes; keep it off small task stacks */
        size_t used = 0;
        memset(&f, 0, sizeof f);
        sprout_frame_status st = sprout_frame_decode(c->rx + off, c->rx_len - off, SPROUT_MAX_FRAME_BYTES, &f, &used);
        if (st == SPROUT_FRAME_NEED_MORE) {
            break;
        }
        if (st == SPROUT_FRAME_TOO_LARGE) {
            logf_(c, SPROUT_LOG_WARN, "frame over %u bytes: closing", (unsigned)SPROUT_MAX_FRAME_BYTES);
            c->stats.protocol_errors++;
            send_close(c, sprout_device_v1_CloseReason_CLOSE_REASON_FRAME_TOO_LARGE, "frame too large");
            drop_with_backoff(c);
            return;
        }
        if (st != SPROUT_FRAME_OK) {
            protocol_error(c, "malformed frame");
            return;
        }
        off += used;
        on_frame(c, &f);
    }
    if (!connected(c)) {
        return; /* the connection (and its buffer) is gone */
    }
    memmove(c->rx, c->rx + off, c->rx_len - off);
    c->rx_len -= off;
}

/* ---- the loop --------------------------------------------------------------------------- */

int sprout_client_init(sprout_client *c, const sprout_port *port, const sprout_client_config *cfg)
{
    memset(c, 0, sizeof *c);
    if (cfg->server_count == 0 || cfg->servers == NULL || cfg->device_id == NULL) {
        return -1;
    }
    size_t idlen = strlen(cfg->device_id);
    if (idlen == 0 || idlen >= sizeof(((sprout_device_v1_Hello *)0)->device_id)) {
        return -1;
    }
    c->port = port;
    c->cfg = *cfg;
    c->backoff.base_ms = cfg->options.backoff_base_ms;
    c->backoff.max_ms = cfg->options.backoff_max_ms;
    sprout_ring_init(&c->ring);
    if (sprout_store_load_seq(port, &c->next_seq) < 0) {
        logf_(c, SPROUT_LOG_ERROR, "stored seq unreadable: starting at 1 (the server's last_seq will correct it)");
    }
    if (sprout_store_load_config(port, &c->config) < 0) {
        logf_(c, SPROUT_LOG_ERROR, "stored config unreadable: using defaults");
    }
    if (sprout_store_load_history(port, &c->history) < 0) {
        logf_(c, SPROUT_LOG_ERROR, "stored command history unreadable");
    }
    c->saved_next_seq = c->next_seq;
    sprout_store_load_i64(port, SPROUT_KEY_LAST_WATER, &c->last_water_end_wall_ms);
    sprout_ota_init(c);
    int64_t now = now_ms(c);
    c->next_connect_ms = now;
    c->next_report_ms = now; /* a first reading at boot */
    return 0;
}

/* run_timers does whatever is due at now. */
static void run_timers(sprout_client *c, int64_t now)
{
    if (c->pump.running && now >= c->pump.end_ms) {
        finish_water(c);
    }
    if (now >= c->next_report_ms) {
        take_reading(c);
        c->next_report_ms = now + report_interval_ms(c);
    }
    if (c->saved_next_seq != c->next_seq && now >= c->seq_retry_ms && save_seq(c)) {
        send_pending(c, false);
    }
    switch (c->state) {
    case SPROUT_STATE_OFFLINE:
        if (now >= c->next_connect_ms) {
            start_connection(c);
        }
        break;
    case SPROUT_STATE_AWAIT_CHALLENGE:
    case SPROUT_STATE_AWAIT_WELCOME:
        if (now >= c->handshake_deadline_ms) {
            logf_(c, SPROUT_LOG_WARN, "handshake timed out in state %s", sprout_state_name(c->state));
            drop_with_backoff(c);
        }
        break;
    case SPROUT_STATE_ONLINE: {
        int64_t hb = heartbeat_ms(c);
        if (c->backoff.attempt != 0 && now - c->online_since_ms >= (int64_t)c->cfg.options.backoff_stable_ms) {
            sprout_backoff_reset(&c->backoff); /* this session has lasted: the link is good again */
        }
        if (now - c->last_rx_ms >= hb * (int64_t)c->cfg.options.silence_factor) {
            logf_(c, SPROUT_LOG_WARN, "server silent for %lld ms", (long long)(now - c->last_rx_ms));
            send_close(c, sprout_device_v1_CloseReason_CLOSE_REASON_IDLE_TIMEOUT, "server silent");
            drop_with_backoff(c);
            break;
        }
        sprout_record *oldest = sprout_ring_at(&c->ring, 0);
        if (oldest != NULL && oldest->sent_ms != 0 && now - oldest->sent_ms >= c->cfg.options.ack_timeout_ms) {
            logf_(c, SPROUT_LOG_WARN, "no ack for seq %llu: reconnecting to resend",
                  (unsigned long long)sprout_record_seq(oldest));
            drop_with_backoff(c);
            break;
        }
        sprout_ota_step(c, now); /* a deferred download whose margins are due a new look */
        if (now - c->last_tx_ms >= hb) {
            frame_t f = sprout_device_v1_Frame_init_zero;
            f.which_body = sprout_device_v1_Frame_ping_tag;
            c->ping_nonce = ((uint64_t)rand32(c) << 32) | rand32(c);
            BODY(&f, ping).nonce = c->ping_nonce;
            send_frame(c, &f);
        }
        break;
    }
    }
}

/* next_deadline is the earliest time a timer needs the loop. */
static int64_t next_deadline(const sprout_client *c, int64_t now)
{
    int64_t d = now + c->cfg.options.max_wait_ms;
    d = min64(d, c->next_report_ms);
    if (c->pump.running) {
        d = min64(d, c->pump.end_ms);
    }
    switch (c->state) {
    case SPROUT_STATE_OFFLINE:
        d = min64(d, c->next_connect_ms);
        break;
    case SPROUT_STATE_AWAIT_CHALLENGE:
    case SPROUT_STATE_AWAIT_WELCOME:
        d = min64(d, c->handshake_deadline_ms);
        break;
    case SPROUT_STATE_ONLINE:
        if (c->backoff.attempt != 0) {
            d = min64(d, c->online_since_ms + (int64_t)c->cfg.options.backoff_stable_ms);
        }
        d = min64(d, c->last_tx_ms + heartbeat_ms(c));
        d = min64(d, c->last_rx_ms + heartbeat_ms(c) * (int64_t)c->cfg.options.silence_factor);
        d = sprout_ota_deadline(c, d);
        break;
    }
    return d;
}

static void do_reboot(sprout_client *c)
{
    logf_(c, SPROUT_LOG_INFO, "rebooting");
    sprout_client_shutdown(c);
    c->port->reboot(c->port->ctx);
    /* A port that only simulates a reboot returns: start over from storage, as a device would. */
    sprout_client_config cfg = c->cfg;
    const sprout_port *port = c->port;
    sprout_client_init(c, port, &cfg);
}

void sprout_client_step(sprout_client *c)
{
    int64_t now = now_ms(c);
    run_timers(c, now);
    if (c->io_error) {
        drop_with_backoff(c);
    }
    if (c->reboot_pending) {
        do_reboot(c);
        return;
    }
    now = now_ms(c);
    int64_t wait = next_deadline(c, now) - now;
    if (wait < 0) {
        wait = 0;
    }
    if (!connected(c)) {
        if (wait > 0) {
            c->port->sleep_ms(c->port->ctx, (uint32_t)wait);
        }
        return;
    }
    int n = c->port->tcp_recv(c->port->ctx, c->rx + c->rx_len, sizeof c->rx - c->rx_len, (uint32_t)wait);
    if (n < 0) {
        logf_(c, SPROUT_LOG_WARN, "connection lost in state %s", sprout_state_name(c->state));
        drop_with_backoff(c);
        return;
    }
    if (n > 0) {
        c->rx_len += (size_t)n;
        c->last_rx_ms = now_ms(c);
        receive(c);
    }
    if (c->io_error) {
        drop_with_backoff(c);
    }
    if (c->reboot_pending) {
        do_reboot(c);
    }
}

void sprout_client_shutdown(sprout_client *c)
{
    sprout_ota_on_disconnect(c); /* persist how far a download got */
    if (c->pump.running) {
        c->port->pump_stop(c->port->ctx);
        c->pump.running = false;
    }
    if (connected(c)) {
        /* Tell the server, so that it marks the pot offline now rather than after its idle
         * timeout. A Close needs no answer; a failed send changes nothing here. */
        send_close(c, sprout_device_v1_CloseReason_CLOSE_REASON_UNSPECIFIED,
                   c->reboot_pending ? "device shutting down: rebooting" : "device shutting down");
        c->port->tcp_close(c->port->ctx);
        c->state = SPROUT_STATE_OFFLINE;
    }
}
