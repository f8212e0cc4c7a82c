/* Not compiled in CI (no ESP-IDF there); follows the ESP-IDF v5 smart_config example's event flow.
 * esp_smartconfig decodes AirKiss itself (in the closed WiFi library) and sends the completion
 * broadcast of the random byte to UDP port 10000 (SC_EVENT_SEND_ACK_DONE). The core's
 * sprout_airkiss decoder is the portable equivalent for radios without smartconfig: feed it the
 * lengths of frames from esp_wifi_set_promiscuous_rx_cb. */
#include "wifi.h"

#include <string.h>

#include "esp_event.h"
#include "esp_log.h"
#include "esp_netif.h"
#include "esp_smartconfig.h"
#include "esp_wifi.h"
#include "freertos/FreeRTOS.h"
#include "freertos/event_groups.h"

static const char *TAG = "wifi";
static EventGroupHandle_t events;
#define CONNECTED_BIT BIT0

static void on_event(void *arg, esp_event_base_t base, int32_t id, void *data)
{
    (void)arg;
    if (base == WIFI_EVENT && id == WIFI_EVENT_STA_DISCONNECTED) {
        xEventGroupClearBits(events, CONNECTED_BIT);
        esp_wifi_connect(); /* the station keeps retrying; the client's backoff covers the server */
    } else if (base == IP_EVENT && id == IP_EVENT_STA_GOT_IP) {
        xEventGroupSetBits(events, CONNECTED_BIT);
    } else if (base == SC_EVENT && id == SC_EVENT_GOT_SSID_PSWD) {
        smartconfig_event_got_ssid_pswd_t *evt = data;
        wifi_config_t cfg;
        memset(&cfg, 0, sizeof cfg);
        memcpy(cfg.sta.ssid, evt->ssid, sizeof cfg.sta.ssid);
        memcpy(cfg.sta.password, evt->password, sizeof cfg.sta.password);
        cfg.sta.bssid_set = evt->bssid_set;
        if (evt->bssid_set) {
            memcpy(cfg.sta.bssid, evt->bssid, sizeof cfg.sta.bssid);
        }
        ESP_LOGI(TAG, "provisioned by %s for SSID %s", evt->type == SC_TYPE_AIRKISS ? "AirKiss" : "ESP-TOUCH",
                 (const char *)cfg.sta.ssid);
        esp_wifi_disconnect();
        esp_wifi_set_config(WIFI_IF_STA, &cfg); /* stored in NVS by the WiFi driver */
        esp_wifi_connect();
    } else if (base == SC_EVENT && id == SC_EVENT_SEND_ACK_DONE) {
        esp_smartconfig_stop();
    }
}

esp_err_t wifi_start(void)
{
    events = xEventGroupCreate();
    ESP_ERROR_CHECK(esp_netif_init());
    ESP_ERROR_CHECK(esp_event_loop_create_default());
    esp_netif_create_default_wifi_sta();
    wifi_init_config_t init = WIFI_INIT_CONFIG_DEFAULT();
    ESP_ERROR_CHECK(esp_wifi_init(&init));
    ESP_ERROR_CHECK(esp_event_handler_register(WIFI_EVENT, ESP_EVENT_ANY_ID, on_event, NULL));
    ESP_ERROR_CHECK(esp_event_handler_register(IP_EVENT, IP_EVENT_STA_GOT_IP, on_event, NULL));
    ESP_ERROR_CHECK(esp_event_handler_register(SC_EVENT, ESP_EVENT_ANY_ID, on_event, NULL));
    ESP_ERROR_CHECK(esp_wifi_set_mode(WIFI_MODE_STA));
    ESP_ERROR_CHECK(esp_wifi_start());

    wifi_config_t stored;
    if (esp_wifi_get_config(WIFI_IF_STA, &stored) == ESP_OK && stored.sta.ssid[0] != 0) {
        ESP_LOGI(TAG, "joining %s", (const char *)stored.sta.ssid);
        return esp_wifi_connect();
    }
    ESP_LOGI(TAG, "no network stored: waiting for AirKiss (WeChat) or ESP-TOUCH");
    ESP_ERROR_CHECK(esp_smartconfig_set_type(SC_TYPE_ESPTOUCH_AIRKISS));
    smartconfig_start_config_t sc = SMARTCONFIG_START_CONFIG_DEFAULT();
    return esp_smartconfig_start(&sc);
}

bool wifi_up(void *ctx)
{
    (void)ctx;
    return events != NULL && (xEventGroupGetBits(events) & CONNECTED_BIT) != 0;
}
