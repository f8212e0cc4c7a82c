/* libFuzzer target: the whole client state machine receiving arbitrary bytes from the server in
 * each connection state (first input byte picks the state), over the fake port, with firmware
 * updates on or off (last byte). It must never crash, overflow or keep a connection after a
 * protocol error. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "fake_port.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static fake_port fake;
static sprout_port port;
static sprout_client client;
static const sprout_server servers[] = {{"fuzz", 1}};
static const uint8_t secret[] = {1, 2, 3, 4};

static void push(pb_size_t which, void (*fill)(sprout_frame *))
{
    sprout_frame f;
    memset(&f, 0, sizeof f);
    f.which_body = which;
    if (fill != NULL) {
        fill(&f);
    }
    fake_push_frame(&fake, &f);
}

static void welcome(sprout_frame *f)
{
    strcpy(f->body.welcome.session_id, "s");
    f->body.welcome.server_time_ms = 1;
    /* the proof of a server that knows the secret, for this connection's nonces (the
     * Challenge above carries a zero server nonce) */
    static const uint8_t zero[SPROUT_NONCE_BYTES];
    sprout_server_proof(secret, sizeof secret, client.device_nonce, zero, f->body.welcome.server_proof.bytes);
    f->body.welcome.server_proof.size = 32;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    fake_init(&fake, &port);
    fake.quiet = true;
    /* The input's last byte turns firmware updates on (any signature passes, so hostile offers
     * and chunks reach the download) and, with it, short margins (the deferred path). */
    uint8_t last = data[size - 1];
    if (last & 1) {
        fake_ota_enable(&fake, &port);
        if (last & 2) {
            fake.margins.supply_mv = 3000;
        }
    }
    sprout_client_config cfg = {
        .device_id = "fuzz-pot", .secret = secret, .secret_len = sizeof secret, .firmware_version = "f",
        .servers = servers, .server_count = 1,
    };
    sprout_options_defaults(&cfg.options);
    if (sprout_client_init(&client, &port, &cfg) != 0) {
        abort();
    }
    sprout_client_step(&client); /* connect, Hello */
    int target = data[0] % 3;
    if (target >= 1) {
        push(sprout_device_v1_Frame_challenge_tag, NULL);
        sprout_client_step(&client);
    }
    if (target >= 2) {
        push(sprout_device_v1_Frame_welcome_tag, welcome);
        sprout_client_step(&client);
    }
    fake.recv_chunk = (size_t)(data[0] >> 2); /* 0: all at once */
    fake_push_bytes(&fake, data + 1, size - 1);
    for (int i = 0; i < 64 && fake.inbound_len > 0 && client.state != SPROUT_STATE_OFFLINE; i++) {
        sprout_client_step(&client);
    }
    /* a few more steps run timers (pump, reports) on whatever state the input left */
    for (int i = 0; i < 4; i++) {
        sprout_client_step(&client);
    }
    if (client.rx_len > sizeof client.rx || client.ring.count > SPROUT_RING_CAP ||
        fake.pump_ms > SPROUT_HARD_MAX_WATER_MS || client.config.max_water_ms > SPROUT_HARD_MAX_WATER_MS ||
        client.ota.rec.offset > client.ota.rec.size || client.ota.saved_offset > client.ota.rec.size) {
        abort();
    }
    return 0;
}
