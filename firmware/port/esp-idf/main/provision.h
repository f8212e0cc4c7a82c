/* Getting the home network's name and password into the pot, chosen in Kconfig ("Sprout pot" >
 * "Provisioning"):
 *   - BLE (ESP-IDF wifi_provisioning, protocomm security 1: X25519 key exchange, proof of
 *     possession, AES-CTR): the secure path. The PoP is per device, on the factory partition
 *     (key "pop"), printed on the pot's label; the ESP BLE Provisioning app asks for it.
 *   - ESP-Touch v2 with its AES key (per device, factory key "touch_key", 16 characters): the
 *     password is encrypted on the air; the phone app needs the same key.
 *   - SmartConfig AirKiss + ESP-Touch v1: what WeChat's page speaks. CLEARTEXT: anyone who
 *     listens on the channel during provisioning learns the WiFi password.
 * Compile-checked by tools/esp-idf-check.sh (all three); see firmware/README.md. */
#pragma once

#include <stdbool.h>

#include "esp_err.h"

/* provision_init reads the provisioning secret from the factory partition (after esp_wifi_init). */
esp_err_t provision_init(const char *factory_part, const char *factory_ns);
/* provision_start starts the method chosen in Kconfig; the result comes as WiFi events. */
esp_err_t provision_start(void);
/* provision_active: provisioning runs (the station must not join meanwhile). */
bool provision_active(void);
/* provision_joining: credentials were received and the station is trying them. */
bool provision_joining(void);
/* provision_stop ends provisioning (the received network failed; wifi.c starts it again). */
void provision_stop(void);
/* provision_joined tells provisioning that the station got an IP (it then stops). */
void provision_joined(void);
/* provision_button_start watches a button (active low, -1: none); holding it for
 * CONFIG_SPROUT_BUTTON_LONG_PRESS_MS starts provisioning. */
void provision_button_start(int gpio);
