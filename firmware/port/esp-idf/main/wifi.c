/* The WiFi station. Joins the stored network; after a disconnect it waits 1 s, 2 s, 4 s ... up
 * to 60 s (with jitter) before the next try, instead of retrying at once in a tight loop; after
 * CONFIG_SPROUT_WIFI_FAILS_BEFORE_PROVISIONING failed joins in a row (the router is gone, or its
 * password changed) it starts provisioning again, as a long press of the button does.
 * Compile-checked by tools/esp-idf-check.sh; see firmware/README.md. */
#include "wifi.h"

#include <string.h>

#include "esp_event.h"
#include "esp_log.h"
#include "esp_netif.h"
#include "esp_random.h"
#include "esp_timer.h"
#include "esp_wifi.h"
#include "freertos/FreeRTOS.h"
#include "freertos/event_groups.h"
#include "provision.h"

static const char *TAG = "wifi";
static EventGroupHandle_t events;
static esp_netif_t *netif;
static esp_timer_handle_t retry_timer;
static volatile uint32_t failures; /* failed joins since the last IP */
static bool initialised;
#define CONNECTED_BIT BIT0

#define RETRY_BASE_MS 1000u
#define RETRY_MAX_MS 60000u

static void retry_cb(void *arg)
{
    (void)arg;
    /* While provisioning listens the radio is its own; once it has handed over credentials,
     * their join is retried like any other. */
    if (!provision_active() || provision_joining()) {
        esp_wifi_connect();
    }
}

/* schedule_retry arms the next join after an exponential delay with equal jitter. */
static void schedule_retry(void)
{
    uint32_t d = RETRY_BASE_MS;
    for (uint32_t i = 1; i < failures && d < RETRY_MAX_MS; i++) {
        d = d > RETRY_MAX_MS / 2 ? RETRY_MAX_MS : d * 2;
    }
    d = d / 2 + esp_random() % (d / 2 + 1);
    esp_timer_stop(retry_timer); /* not armed is fine */
    if (esp_timer_start_once(retry_timer, (uint64_t)d * 1000) != ESP_OK) {
        ESP_LOGE(TAG, "cannot arm the reconnect timer");
    }
    ESP_LOGI(TAG, "join failed %u time(s): next try in %u ms", (unsigned)failures, (unsigned)d);
}

static void on_event(void *arg, esp_event_base_t base, int32_t id, void *data)
{
    (void)arg;
    (void)data;
    if (base == WIFI_EVENT && id == WIFI_EVENT_STA_DISCONNECTED) {
        xEventGroupClearBits(events, CONNECTED_BIT);
        if (provision_active() && !provision_joining()) {
            return; /* provisioning owns the radio: no joins meanwhile */
        }
        failures++;
        if (failures >= CONFIG_SPROUT_WIFI_FAILS_BEFORE_PROVISIONING) {
            ESP_LOGW(TAG, "%u failed joins: the stored network is gone or its password changed", (unsigned)failures);
            failures = 0;
            wifi_enter_provisioning();
            return;
        }
        schedule_retry();
    } else if (base == IP_EVENT && id == IP_EVENT_STA_GOT_IP) {
        failures = 0;
        xEventGroupSetBits(events, CONNECTED_BIT);
        provision_joined();
    }
}

void wifi_stop(void)
{
    if (!initialised) {
        return;
    }
    esp_wifi_stop();
    esp_wifi_deinit();
    initialised = false;
}

esp_err_t wifi_start(const char *factory_part, const char *factory_ns)
{
    esp_err_t err;
    if (events == NULL) {
        events = xEventGroupCreate();
        if (events == NULL) {
            return ESP_ERR_NO_MEM;
        }
        /* Created once: a second wifi_start after a failure reuses them. */
        if ((err = esp_netif_init()) != ESP_OK) {
            return err;
        }
        err = esp_event_loop_create_default();
        if (err != ESP_OK && err != ESP_ERR_INVALID_STATE) {
            return err;
        }
        netif = esp_netif_create_default_wifi_sta();
        esp_timer_create_args_t targs = {.callback = retry_cb, .name = "wifi_retry"};
        if ((err = esp_timer_create(&targs, &retry_timer)) != ESP_OK) {
            return err;
        }
        if ((err = esp_event_handler_register(WIFI_EVENT, WIFI_EVENT_STA_DISCONNECTED, on_event, NULL)) != ESP_OK ||
            (err = esp_event_handler_register(IP_EVENT, IP_EVENT_STA_GOT_IP, on_event, NULL)) != ESP_OK) {
            return err;
        }
    }
    if (netif == NULL) {
        return ESP_FAIL;
    }
    wifi_init_config_t init = WIFI_INIT_CONFIG_DEFAULT();
    if ((err = esp_wifi_init(&init)) != ESP_OK) {
        return err;
    }
    initialised = true;
    if ((err = provision_init(factory_part, factory_ns)) != ESP_OK || (err = esp_wifi_set_mode(WIFI_MODE_STA)) != ESP_OK ||
        (err = esp_wifi_start()) != ESP_OK) {
        return err;
    }
    wifi_config_t stored;
    memset(&stored, 0, sizeof stored);
    if (esp_wifi_get_config(WIFI_IF_STA, &stored) == ESP_OK && stored.sta.ssid[0] != 0) {
        ESP_LOGI(TAG, "joining %s", (const char *)stored.sta.ssid);
        /* A failure here is a failed join like any other: the disconnect event retries it. */
        if (esp_wifi_connect() != ESP_OK) {
            failures++;
            schedule_retry();
        }
        return ESP_OK;
    }
    ESP_LOGI(TAG, "no network stored");
    return provision_start();
}

bool wifi_up(void *ctx)
{
    (void)ctx;
    return events != NULL && (xEventGroupGetBits(events) & CONNECTED_BIT) != 0;
}

void wifi_enter_provisioning(void)
{
    if (provision_active()) {
        if (!provision_joining()) {
            return; /* already listening */
        }
        provision_stop(); /* the network it received does not work (a wrong password): listen again */
    }
    esp_timer_stop(retry_timer);
    esp_wifi_disconnect();
    esp_err_t err = provision_start();
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "provisioning did not start (%s): joining the stored network again", esp_err_to_name(err));
        schedule_retry();
    }
}
