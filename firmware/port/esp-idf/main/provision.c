/* Provisioning: see provision.h for the three methods and which one is secure.
 * Compile-checked by tools/esp-idf-check.sh with each of the three Kconfig choices. */
#include "provision.h"

#include <stdio.h>
#include <string.h>

#include "driver/gpio.h"
#include "esp_event.h"
#include "esp_log.h"
#include "esp_mac.h"
#include "esp_wifi.h"
#include "freertos/FreeRTOS.h"
#include "freertos/task.h"
#include "nvs.h"
#include "sdkconfig.h"
#include "wifi.h"
#if CONFIG_SPROUT_PROV_BLE
#include "wifi_provisioning/manager.h"
#include "wifi_provisioning/scheme_ble.h"
#else
#include "esp_smartconfig.h"
#endif

static const char *TAG = "provision";
static volatile bool active, joining;
static bool registered;
/* The per-device provisioning secret from the factory partition: the BLE proof of possession,
 * or the ESP-Touch v2 AES key (exactly 16 characters). Empty with SmartConfig v1. */
static char device_secret[65];

#if CONFIG_SPROUT_PROV_BLE
#define SECRET_KEY "pop"
#elif CONFIG_SPROUT_PROV_ESPTOUCH_V2
#define SECRET_KEY "touch_key"
#endif

bool provision_active(void) { return active; }
bool provision_joining(void) { return joining; }

#if CONFIG_SPROUT_PROV_BLE

static void on_prov_event(void *arg, esp_event_base_t base, int32_t id, void *data)
{
    (void)arg;
    (void)base;
    switch (id) {
    case WIFI_PROV_CRED_RECV: {
        const wifi_sta_config_t *sta = data;
        ESP_LOGI(TAG, "BLE: credentials received (encrypted) for SSID %s", (const char *)sta->ssid);
        joining = true;
        break;
    }
    case WIFI_PROV_CRED_FAIL: {
        const wifi_prov_sta_fail_reason_t *why = data;
        ESP_LOGW(TAG, "BLE: joining failed (%s): the app may send other credentials",
                 *why == WIFI_PROV_STA_AUTH_ERROR ? "wrong password" : "network not found");
        joining = false;
        break;
    }
    case WIFI_PROV_CRED_SUCCESS:
        ESP_LOGI(TAG, "BLE: joined; stored in NVS by the WiFi driver");
        break;
    case WIFI_PROV_END:
        wifi_prov_mgr_deinit();
        active = joining = false;
        break;
    default:
        break;
    }
}

esp_err_t provision_start(void)
{
    if (device_secret[0] == '\0') {
        ESP_LOGE(TAG, "no proof of possession (\"" SECRET_KEY "\") on the factory partition: BLE provisioning refused");
        return ESP_ERR_INVALID_STATE;
    }
    /* WIFI_PROV_EVENT_HANDLER_NONE keeps the BLE stack's memory, so that a long press can
     * start provisioning again later without a reboot. */
    wifi_prov_mgr_config_t cfg = {.scheme = wifi_prov_scheme_ble, .scheme_event_handler = WIFI_PROV_EVENT_HANDLER_NONE};
    esp_err_t err = wifi_prov_mgr_init(cfg);
    if (err != ESP_OK) {
        return err;
    }
    uint8_t mac[6] = {0};
    esp_read_mac(mac, ESP_MAC_WIFI_STA);
    char name[16];
    snprintf(name, sizeof name, "SPROUT_%02X%02X%02X", mac[3], mac[4], mac[5]);
    active = true;
    /* security 1's params are the PoP string (wifi_prov_security1_params_t is const char). */
    err = wifi_prov_mgr_start_provisioning(WIFI_PROV_SECURITY_1, (const void *)device_secret, name, NULL);
    if (err != ESP_OK) {
        active = false;
        wifi_prov_mgr_deinit();
        return err;
    }
    ESP_LOGI(TAG, "BLE provisioning as %s (security 1, proof of possession from the pot's label)", name);
    return ESP_OK;
}

void provision_stop(void)
{
    if (active) {
        wifi_prov_mgr_stop_provisioning(); /* WIFI_PROV_END follows */
    }
}

void provision_joined(void) {}

#else /* SmartConfig: AirKiss + ESP-Touch v1, or ESP-Touch v2 with its AES key */

static void on_sc_event(void *arg, esp_event_base_t base, int32_t id, void *data)
{
    (void)arg;
    (void)base;
    if (id == SC_EVENT_GOT_SSID_PSWD) {
        const smartconfig_event_got_ssid_pswd_t *evt = data;
        wifi_config_t cfg;
        memset(&cfg, 0, sizeof cfg);
        memcpy(cfg.sta.ssid, evt->ssid, sizeof cfg.sta.ssid);
        memcpy(cfg.sta.password, evt->password, sizeof cfg.sta.password);
        if (cfg.sta.ssid[0] == 0) {
            ESP_LOGW(TAG, "provisioned with an empty SSID: ignored, still listening");
            return;
        }
        cfg.sta.bssid_set = evt->bssid_set;
        if (evt->bssid_set) {
            memcpy(cfg.sta.bssid, evt->bssid, sizeof cfg.sta.bssid);
        }
        ESP_LOGI(TAG, "provisioned by %s for SSID %s",
                 evt->type == SC_TYPE_AIRKISS        ? "AirKiss (cleartext)"
                 : evt->type == SC_TYPE_ESPTOUCH_V2 ? "ESP-Touch v2 (AES)"
                                                    : "ESP-Touch (cleartext)",
                 (const char *)cfg.sta.ssid);
        esp_wifi_disconnect();
        if (esp_wifi_set_config(WIFI_IF_STA, &cfg) != ESP_OK) { /* stored in NVS by the driver */
            ESP_LOGE(TAG, "cannot store the network");
            return;
        }
        joining = true;
        esp_wifi_connect();
    } else if (id == SC_EVENT_SEND_ACK_DONE) {
        /* The completion broadcast (UDP 10000, AirKiss; ESP-Touch's own) is sent after GOT_IP. */
        esp_smartconfig_stop();
        active = joining = false;
    }
}

esp_err_t provision_start(void)
{
    smartconfig_start_config_t cfg = SMARTCONFIG_START_CONFIG_DEFAULT();
#if CONFIG_SPROUT_PROV_ESPTOUCH_V2
    if (strlen(device_secret) != 16) {
        ESP_LOGE(TAG, "ESP-Touch v2 needs a 16-character \"" SECRET_KEY "\" on the factory partition: refused");
        return ESP_ERR_INVALID_STATE;
    }
    esp_err_t err = esp_smartconfig_set_type(SC_TYPE_ESPTOUCH_V2);
    cfg.esp_touch_v2_enable_crypt = true;
    cfg.esp_touch_v2_key = device_secret;
    const char *what = "ESP-Touch v2 with its AES key";
#else
    esp_err_t err = esp_smartconfig_set_type(SC_TYPE_ESPTOUCH_AIRKISS);
    const char *what = "AirKiss (WeChat) or ESP-Touch v1 -- cleartext: the password is readable on the air";
#endif
    if (err != ESP_OK) {
        return err;
    }
    active = true;
    joining = false;
    if ((err = esp_smartconfig_start(&cfg)) != ESP_OK) {
        active = false;
        return err;
    }
    ESP_LOGI(TAG, "waiting for %s", what);
    return ESP_OK;
}

void provision_stop(void)
{
    if (active) {
        esp_smartconfig_stop();
        active = joining = false;
    }
}

void provision_joined(void) {}

#endif

esp_err_t provision_init(const char *factory_part, const char *factory_ns)
{
    device_secret[0] = '\0';
#ifdef SECRET_KEY
    nvs_handle_t h;
    size_t len = sizeof device_secret;
    if (nvs_open_from_partition(factory_part, factory_ns, NVS_READONLY, &h) == ESP_OK) {
        if (nvs_get_str(h, SECRET_KEY, device_secret, &len) != ESP_OK) {
            device_secret[0] = '\0';
        }
        nvs_close(h);
    }
    if (device_secret[0] == '\0') {
        /* Joining a stored network still works; provisioning will say why it cannot start. */
        ESP_LOGE(TAG, "no \"" SECRET_KEY "\" in %s/%s", factory_part, factory_ns);
    }
#else
    (void)factory_part;
    (void)factory_ns;
#endif
    if (registered) {
        return ESP_OK;
    }
#if CONFIG_SPROUT_PROV_BLE
    esp_err_t err = esp_event_handler_register(WIFI_PROV_EVENT, ESP_EVENT_ANY_ID, on_prov_event, NULL);
#else
    esp_err_t err = esp_event_handler_register(SC_EVENT, ESP_EVENT_ANY_ID, on_sc_event, NULL);
#endif
    registered = err == ESP_OK;
    return err;
}

/* ---- the button ---- */

static void button_task(void *arg)
{
    int gpio = (int)(intptr_t)arg;
    uint32_t held_ms = 0;
    for (;;) {
        vTaskDelay(pdMS_TO_TICKS(50));
        if (gpio_get_level(gpio) != 0) {
            held_ms = 0;
            continue;
        }
        held_ms += 50;
        if (held_ms == CONFIG_SPROUT_BUTTON_LONG_PRESS_MS) {
            ESP_LOGW(TAG, "button held %u ms: provisioning", (unsigned)held_ms);
            wifi_enter_provisioning();
        }
    }
}

void provision_button_start(int gpio)
{
    if (gpio < 0) {
        return;
    }
    gpio_config_t io = {.pin_bit_mask = 1ULL << gpio, .mode = GPIO_MODE_INPUT, .pull_up_en = GPIO_PULLUP_ENABLE,
                        .pull_down_en = GPIO_PULLDOWN_DISABLE, .intr_type = GPIO_INTR_DISABLE};
    if (gpio_config(&io) != ESP_OK ||
        xTaskCreate(button_task, "sprout_button", 2048, (void *)(intptr_t)gpio, 3, NULL) != pdPASS) {
        ESP_LOGE(TAG, "button on GPIO %d not watched: provisioning only when no network is stored or it fails", gpio);
    }
}
