/* Firmware update slots on ESP-IDF (esp_ota_ops): the ota_* hooks of sprout_port. */
#pragma once

#include <stdbool.h>

#include "sprout_port.h"

/* esp_ota_port_install fills out's ota_* hooks (Ed25519 from the espressif/libsodium component);
 * false (and updates off) without a CONFIG_SPROUT_OTA_PUBKEY. */
bool esp_ota_port_install(sprout_port *out);
