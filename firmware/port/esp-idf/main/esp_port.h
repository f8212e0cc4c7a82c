/* The ESP-IDF (FreeRTOS + lwIP + NVS) port of sprout_port. Thin on purpose: every decision lives
 * in the portable core, which the host tests cover; this file only moves bytes and pins. */
#pragma once

#include "sprout_port.h"

/* esp_port_init opens NVS namespace "sprout", the ADC channels and the pump GPIO, and fills out.
 * network_up reports the WiFi station's IP state (wifi.c). */
esp_err_t esp_port_init(sprout_port *out, bool (*network_up)(void *ctx));
