/* WiFi station with provisioning by esp_smartconfig (AirKiss from WeChat, or ESP-TOUCH). */
#pragma once

#include <stdbool.h>

#include "esp_err.h"

/* wifi_start joins the stored network, or runs SmartConfig (SC_TYPE_ESPTOUCH_AIRKISS) when none
 * is stored. It returns at once; wifi_up says whether the station has an IP. */
esp_err_t wifi_start(void);
bool wifi_up(void *ctx);
