/* The pot's firmware entry: pump off, NVS, the factory identity, WiFi, then one FreeRTOS task
 * running the portable client on the task watchdog.
 *
 * The identity (device_id, secret, servers, and the provisioning secrets pop / touch_key) lives
 * in NVS namespace "sprout_id" on its own partition "fctry" (partitions.csv), flagged read-only
 * and written once at the factory. Nothing in this firmware erases it: the only erase is of the
 * "nvs" partition (WiFi credentials, the client's seq/config/commands), on the two NVS errors
 * that need it. A pot without an identity says so in its log and waits; it never reboot-loops.
 * Compile-checked by tools/esp-idf-check.sh; see firmware/README.md. */
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "esp_app_desc.h"
#include "esp_log.h"
#include "esp_port.h"
#include "esp_system.h"
#include "esp_task_wdt.h"
#include "freertos/FreeRTOS.h"
#include "freertos/task.h"
#include "nvs.h"
#include "nvs_flash.h"
#include "provision.h"
#include "wifi.h"

#define MAX_SERVERS 4
#define FACTORY_PARTITION "fctry"
#define FACTORY_NAMESPACE "sprout_id"
static const char *TAG = "sprout";

static char device_id[65], secret_hex[257], server_list[256];
static uint8_t secret[128];
static sprout_server servers[MAX_SERVERS];
static sprout_port port;
static sprout_client client; /* ~9 KB: static, not on the task stack */

void app_main(void);

static bool read_str(nvs_handle_t h, const char *key, char *out, size_t cap)
{
    size_t len = cap;
    return nvs_get_str(h, key, out, &len) == ESP_OK;
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9') {
        return ch - '0';
    }
    if (ch >= 'a' && ch <= 'f') {
        return ch - 'a' + 10;
    }
    if (ch >= 'A' && ch <= 'F') {
        return ch - 'A' + 10;
    }
    return -1;
}

/* parse_hex returns the number of bytes, or 0 for an odd length or a non-hex character. */
static size_t parse_hex(const char *s, uint8_t *out, size_t cap)
{
    size_t len = strlen(s);
    if (len % 2 != 0 || len / 2 > cap) {
        return 0;
    }
    for (size_t i = 0; i < len / 2; i++) {
        int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            return 0;
        }
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return len / 2;
}

static size_t parse_servers(char *list)
{
    size_t n = 0;
    char *save = NULL;
    for (char *tok = strtok_r(list, ",", &save); tok != NULL && n < MAX_SERVERS; tok = strtok_r(NULL, ",", &save)) {
        char *colon = strrchr(tok, ':');
        long p = colon != NULL ? strtol(colon + 1, NULL, 10) : 0;
        if (colon == NULL || p <= 0 || p > 65535) {
            continue;
        }
        *colon = '\0';
        servers[n].host = tok;
        servers[n].port = (uint16_t)p;
        n++;
    }
    return n;
}

/* halt keeps the pot alive but idle after a fault no reboot can fix (no identity): a reboot loop
 * would only wear the flash and hide the message. The pump is off. */
static void halt(const char *why)
{
    for (;;) {
        ESP_LOGE(TAG, "%s: not starting (see firmware/README.md, \"factory identity\")", why);
        vTaskDelay(pdMS_TO_TICKS(60000));
    }
}

/* init_app_nvs opens the application's NVS partition. On the two errors that need an erase, only
 * that partition is erased: the identity is on "fctry", which is never erased. */
static esp_err_t init_app_nvs(void)
{
    esp_err_t err = nvs_flash_init_partition(NVS_DEFAULT_PART_NAME);
    if (err == ESP_ERR_NVS_NO_FREE_PAGES || err == ESP_ERR_NVS_NEW_VERSION_FOUND) {
        ESP_LOGW(TAG, "NVS partition \"%s\" unusable (%s): erasing it (WiFi credentials and readings state)",
                 NVS_DEFAULT_PART_NAME, esp_err_to_name(err));
        err = nvs_flash_erase_partition(NVS_DEFAULT_PART_NAME);
        if (err == ESP_OK) {
            err = nvs_flash_init_partition(NVS_DEFAULT_PART_NAME);
        }
    }
    return err;
}

static bool load_identity(void)
{
    esp_err_t err = nvs_flash_init_partition(FACTORY_PARTITION);
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "factory partition \"%s\": %s", FACTORY_PARTITION, esp_err_to_name(err));
        return false;
    }
    nvs_handle_t id;
    if (nvs_open_from_partition(FACTORY_PARTITION, FACTORY_NAMESPACE, NVS_READONLY, &id) != ESP_OK) {
        return false;
    }
    bool ok = read_str(id, "device_id", device_id, sizeof device_id) &&
              read_str(id, "secret", secret_hex, sizeof secret_hex) &&
              read_str(id, "servers", server_list, sizeof server_list);
    nvs_close(id);
    return ok;
}

/* client_task runs the portable client forever, on the task watchdog: a step blocks at most
 * about connect_timeout + send_timeout (10 s), well under CONFIG_ESP_TASK_WDT_TIMEOUT_S (30). */
static void client_task(void *arg)
{
    (void)arg;
    esp_err_t err = esp_task_wdt_add(NULL);
    if (err != ESP_OK) {
        ESP_LOGW(TAG, "client task not on the task watchdog: %s", esp_err_to_name(err));
    }
    for (;;) {
        sprout_client_step(&client);
        if (err == ESP_OK) {
            esp_task_wdt_reset();
        }
    }
}

void app_main(void)
{
    esp_port_pump_off(); /* before anything else: the pump's gate must not float during start-up */

    esp_err_t err = init_app_nvs();
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "NVS: %s", esp_err_to_name(err));
        halt("no usable NVS partition");
    }
    if (!load_identity()) {
        halt("no identity in NVS namespace " FACTORY_NAMESPACE " on partition " FACTORY_PARTITION
             " (device_id, secret, servers)");
    }
    size_t secret_len = parse_hex(secret_hex, secret, sizeof secret);
    size_t server_count = parse_servers(server_list);
    if (secret_len == 0 || server_count == 0) {
        halt("bad identity (secret must be hex, servers host:port[,host:port])");
    }

    /* WiFi start-up failures are retried with a growing delay, not turned into a reboot loop. */
    for (uint32_t delay_ms = 1000; (err = wifi_start(FACTORY_PARTITION, FACTORY_NAMESPACE)) != ESP_OK;) {
        ESP_LOGE(TAG, "WiFi start failed (%s): retrying in %u ms", esp_err_to_name(err), (unsigned)delay_ms);
        wifi_stop();
        vTaskDelay(pdMS_TO_TICKS(delay_ms));
        delay_ms = delay_ms < 60000 ? delay_ms * 2 : 60000;
    }
    provision_button_start(CONFIG_SPROUT_BUTTON_GPIO);

    if ((err = esp_port_init(&port, wifi_up)) != ESP_OK) {
        ESP_LOGE(TAG, "port: %s", esp_err_to_name(err));
        halt("sensors or pump could not be set up (check the Kconfig GPIO and ADC choices)");
    }
    sprout_client_config cfg = {
        .device_id = device_id,
        .secret = secret,
        .secret_len = secret_len,
        .firmware_version = esp_app_get_description()->version, /* the running slot's (PROJECT_VER) */
        .servers = servers,
        .server_count = server_count,
    };
    sprout_options_defaults(&cfg.options);
    if (sprout_client_init(&client, &port, &cfg) != 0) {
        halt("bad identity (device_id must be 1..64 bytes)");
    }
    if (xTaskCreate(client_task, "sprout_client", CONFIG_SPROUT_CLIENT_TASK_STACK, NULL, 5, NULL) != pdPASS) {
        /* Out of memory at boot: a configuration error a restart cannot fix, but one that a
         * different heap layout after a restart might; wait so that it is not a tight loop. */
        ESP_LOGE(TAG, "cannot create the client task (%u bytes of stack): restarting in 10 s",
                 (unsigned)CONFIG_SPROUT_CLIENT_TASK_STACK);
        vTaskDelay(pdMS_TO_TICKS(10000));
        esp_restart();
    }
}
