/* The WiFi station: joins the stored network, reconnects with a growing delay, and falls back to
 * provisioning (provision.h) when there is no network or it cannot be joined. */
#pragma once

#include <stdbool.h>

#include "esp_err.h"

/* wifi_start initialises the station and joins the stored network, or starts provisioning when
 * none is stored. factory_part/factory_ns name where the provisioning secrets are (the PoP for
 * BLE, the AES key for ESP-Touch v2). It returns at once; wifi_up says whether there is an IP. */
esp_err_t wifi_start(const char *factory_part, const char *factory_ns);

/* wifi_stop undoes a failed wifi_start, so that it can be called again. */
void wifi_stop(void);

bool wifi_up(void *ctx);

/* wifi_enter_provisioning forgets nothing yet: it stops joining and starts provisioning (the
 * button's long press, or CONFIG_SPROUT_WIFI_FAILS_BEFORE_PROVISIONING failed joins). The new
 * network replaces the stored one once received. Safe to call from any task. */
void wifi_enter_provisioning(void);
