/* The golden frames, built field by field. firmware/golden_test.go builds the same frames in Go;
 * test/golden/go/NAME.bin is Go's encoding (C must produce the same bytes and decode them) and
 * test/golden/c/NAME.bin is C's (Go decodes it and compares). Change both sides together. */
#ifndef SPROUT_GOLDEN_CASES_H
#define SPROUT_GOLDEN_CASES_H

#include <string.h>

#include "frame.h"

typedef struct {
    const char *name;
    void (*build)(sprout_frame *f);
} golden_case;

static void fill(uint8_t *b, size_t n, uint8_t start)
{
    for (size_t i = 0; i < n; i++) {
        b[i] = (uint8_t)(start + i);
    }
}

static void fill_str(char *s, size_t n, char c)
{
    memset(s, c, n);
    s[n] = '\0';
}

static void g_hello(sprout_frame *f)
{
    f->which_body = sprout_device_v1_Frame_hello_tag;
    strcpy(f->body.hello.device_id, "pot-0001");
    strcpy(f->body.hello.firmware_version, "1.2.3");
    f->body.hello.protocol_version = 1;
    fill(f->body.hello.device_nonce, 16, 0x10);
}

static void g_hello_limits(sprout_frame *f)
{
    f->which_body = sprout_device_v1_Frame_hello_tag;
    fill_str(f->body.hello.device_id, 64, 'd');
    fill_str(f->body.hello.firmware_version, 32, 'v');
    f->body.hello.protocol_version = 1;
    fill(f->body.hello.device_nonce, 16, 0xF0);
}

static void g_challenge(sprout_frame *f)
{
    f->which_body = sprout_device_v1_Frame_challenge_tag;
    fill(f->body.challenge.server_nonce, 16, 0xA0);
}

static void g_auth(sprout_frame *f)
{
    f->which_body = sprout_device_v1_Frame_auth_tag;
    fill(f->body.auth.mac, 32, 0x01);
}

static void g_welcome(sprout_frame *f)
{
    f->which_body = sprout_device_v1_Frame_welcome_tag;
    sprout_device_v1_Welcome *w = &f->body.welcome;
    strcpy(w->session_id, "0b7c2f4e-1d2a-4c8e-9f00-123456789abc");
    w->server_time_ms = 1767225600123LL;
    w->has_config = true;
    w->config.report_interval_s = 60;
    w->config.heartbeat_interval_s = 30;
    w->config.max_water_ms = 30000;
    w->config.min_water_interval_s = 60;
    w->config.has_thresholds = true;
    w->config.thresholds.soil_moisture_min_pct = 20.5f;
    w->config.thresholds.temperature_max_c = 35.0f;
    w->config.thresholds.tank_empty_pct = 5.0f;
    w->config.thresholds.hysteresis_pct = 2.25f;
    w->config.thresholds.hysteresis_c = 1.5f;
    w->last_seq = 1099511627776ULL; /* 2^40 */
    w->server_proof.size = 32;
    for (int i = 0; i < 32; i++) {
        w->server_proof.bytes[i] = (uint8_t)(0x40 + i);
    }
}

static void g_telemetry(sprout_frame *f)
{
    f->which_body = sprout_device_v1_Frame_telemetry_tag;
    sprout_device_v1_Telemetry *t = &f->body.telemetry;
    t->seq = 4294967296ULL + 7; /* past 32 bits */
    t->device_time_ms = 1767225600999LL;
    t->soil_moisture_pct = 37.5f;
    t->temperature_c = -4.25f;
    t->tank_level_pct = 100.0f;
    t->supply_mv = 3312;
}

static void g_ack(sprout_frame *f)
{
    f->which_body = sprout_device_v1_Frame_ack_tag;
    f->body.ack.seq = 18446744073709551615ULL; /* max uint64 */
}

static void g_command_water(sprout_frame *f)
{
    f->which_body = sprout_device_v1_Frame_command_tag;
    strcpy(f->body.command.command_id, "cmd-0001");
    f->body.command.kind = sprout_device_v1_CommandKind_COMMAND_KIND_WATER;
    f->body.command.water_ms = 3000;
    f->body.command.deadline_ms = 10000;
}

static void g_command_set_config(sprout_frame *f)
{
    f->which_body = sprout_device_v1_Frame_command_tag;
    sprout_device_v1_Command *c = &f->body.command;
    fill_str(c->command_id, 36, 'c');
    c->kind = sprout_device_v1_CommandKind_COMMAND_KIND_SET_CONFIG;
    c->has_config = true;
    c->config.report_interval_s = 300;
    c->config.heartbeat_interval_s = 45;
    c->config.max_water_ms = 12000;
    c->config.min_water_interval_s = 600;
    c->config.has_thresholds = true;
    c->config.thresholds.soil_moisture_min_pct = 25.0f;
    c->config.thresholds.temperature_max_c = 40.0f;
    c->config.thresholds.tank_empty_pct = 10.0f;
    c->config.thresholds.hysteresis_pct = 5.0f;
}

static void g_command_result(sprout_frame *f)
{
    f->which_body = sprout_device_v1_Frame_command_result_tag;
    sprout_device_v1_CommandResult *r = &f->body.command_result;
    strcpy(r->command_id, "cmd-0001");
    r->status = sprout_device_v1_CommandStatus_COMMAND_STATUS_REJECTED;
    fill_str(r->detail, 64, 'x');
    r->watered_ml = 0;
}

static void g_command_result_done(sprout_frame *f)
{
    f->which_body = sprout_device_v1_Frame_command_result_tag;
    sprout_device_v1_CommandResult *r = &f->body.command_result;
    strcpy(r->command_id, "cmd-0002");
    r->status = sprout_device_v1_CommandStatus_COMMAND_STATUS_DONE;
    strcpy(r->detail, "watered 3000 ms");
    r->watered_ml = 60;
}

static void g_event(sprout_frame *f)
{
    f->which_body = sprout_device_v1_Frame_event_tag;
    f->body.event.seq = 42;
    f->body.event.device_time_ms = 1767225601000LL;
    f->body.event.kind = sprout_device_v1_EventKind_EVENT_KIND_TANK_EMPTY;
    strcpy(f->body.event.detail, "tank at 3.0% \xe6\xb0\xb4"); /* UTF-8 survives */
}

static void g_ping(sprout_frame *f)
{
    f->which_body = sprout_device_v1_Frame_ping_tag;
    f->body.ping.nonce = 9223372036854775813ULL; /* 2^63 + 5 */
}

static void g_pong(sprout_frame *f)
{
    f->which_body = sprout_device_v1_Frame_pong_tag;
    f->body.pong.nonce = 1;
}

static void g_close(sprout_frame *f)
{
    f->which_body = sprout_device_v1_Frame_close_tag;
    f->body.close.reason = sprout_device_v1_CloseReason_CLOSE_REASON_SERVER_SHUTDOWN;
    strcpy(f->body.close.detail, "node draining");
    f->body.close.reconnect_after_ms = 2500;
}

static void g_empty_ping(sprout_frame *f)
{
    /* All fields default: the body is an empty submessage, which must still select the oneof. */
    f->which_body = sprout_device_v1_Frame_ping_tag;
}

static const golden_case golden_cases[] = {
    {"hello", g_hello},
    {"hello_limits", g_hello_limits},
    {"challenge", g_challenge},
    {"auth", g_auth},
    {"welcome", g_welcome},
    {"telemetry", g_telemetry},
    {"ack", g_ack},
    {"command_water", g_command_water},
    {"command_set_config", g_command_set_config},
    {"command_result", g_command_result},
    {"command_result_done", g_command_result_done},
    {"event", g_event},
    {"ping", g_ping},
    {"pong", g_pong},
    {"close", g_close},
    {"empty_ping", g_empty_ping},
};

#define GOLDEN_CASES (sizeof golden_cases / sizeof golden_cases[0])

#endif
