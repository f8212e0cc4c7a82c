/* The ESP-IDF (FreeRTOS + lwIP + NVS) port of sprout_port. Thin on purpose: every decision lives
 * in the portable core, which the host tests cover; this file only moves bytes and pins. */
#pragma once

#include <stdbool.h>

#include "esp_err.h"
#include "sprout_port.h"

/* esp_port_pump_off drives the pump GPIO low as an output with its pull-down on. app_main calls
 * it first thing, so the MOSFET's gate never floats (and the pump never runs) while the rest of
 * the system starts. */
void esp_port_pump_off(void);

/* esp_port_init opens NVS namespace "sprout" on the "nvs" partition, the ADC channels, the pump
 * GPIO and its failsafe timer, and fills out. network_up reports the WiFi station's IP state. */
esp_err_t esp_port_init(sprout_port *out, bool (*network_up)(void *ctx));
