/* The pot's firmware entry: NVS, WiFi, then one FreeRTOS task running the portable client.
 * The device identity comes from NVS namespace "sprout_id" (written at the factory from
 * `sprout device add` output): device_id (string), secret (string, hex), servers (string,
 * "host:port[,host:port]"). Not compiled in CI; see firmware/README.md. */
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "esp_log.h"
#include "esp_port.h"
#include "freertos/FreeRTOS.h"
#include "freertos/task.h"
#include "nvs.h"
#include "nvs_flash.h"
#include "wifi.h"

#define MAX_SERVERS 4
static const char *TAG = "sprout";

static char device_id[65], secret_hex[257], server_list[256];
static uint8_t secret[128];
static sprout_server servers[MAX_SERVERS];
static sprout_port port;
static sprout_client client; /* ~8 KB: static, not on the task stack */

static bool read_str(nvs_handle_t h, const char *key, char *out, size_t cap)
{
    size_t len = cap;
    return nvs_get_str(h, key, out, &len) == ESP_OK;
}

static size_t parse_hex(const char *s, uint8_t *out, size_t cap)
{
    size_t n = strlen(s) / 2;
    if (n > cap) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        char byte[3] = {s[2 * i], s[2 * i + 1], 0};
        out[i] = (uint8_t)strtoul(byte, NULL, 16);
    }
    return n;
}

static size_t parse_servers(char *list)
{
    size_t n = 0;
    char *save = NULL;
    for (char *tok = strtok_r(list, ",", &save); tok != NULL && n < MAX_SERVERS; tok = strtok_r(NULL, ",", &save)) {
        char *colon = strrchr(tok, ':');
        if (colon == NULL) {
            continue;
        }
        *colon = '\0';
        servers[n].host = tok;
        servers[n].port = (uint16_t)atoi(colon + 1);
        n++;
    }
    return n;
}

static void client_task(void *arg)
{
    (void)arg;
    for (;;) {
        sprout_client_step(&client);
    }
}

void app_main(void)
{
    esp_err_t err = nvs_flash_init();
    if (err == ESP_ERR_NVS_NO_FREE_PAGES || err == ESP_ERR_NVS_NEW_VERSION_FOUND) {
        ESP_ERROR_CHECK(nvs_flash_erase());
        err = nvs_flash_init();
    }
    ESP_ERROR_CHECK(err);

    nvs_handle_t id;
    if (nvs_open("sprout_id", NVS_READONLY, &id) != ESP_OK || !read_str(id, "device_id", device_id, sizeof device_id) ||
        !read_str(id, "secret", secret_hex, sizeof secret_hex) ||
        !read_str(id, "servers", server_list, sizeof server_list)) {
        ESP_LOGE(TAG, "no identity in NVS namespace sprout_id (device_id, secret, servers): not starting");
        return;
    }
    nvs_close(id);
    size_t secret_len = parse_hex(secret_hex, secret, sizeof secret);
    size_t server_count = parse_servers(server_list);

    ESP_ERROR_CHECK(wifi_start());
    ESP_ERROR_CHECK(esp_port_init(&port, wifi_up));

    sprout_client_config cfg = {
        .device_id = device_id,
        .secret = secret,
        .secret_len = secret_len,
        .firmware_version = "esp-idf-0.1.0",
        .servers = servers,
        .server_count = server_count,
    };
    sprout_options_defaults(&cfg.options);
    if (secret_len == 0 || sprout_client_init(&client, &port, &cfg) != 0) {
        ESP_LOGE(TAG, "bad identity in NVS (secret must be hex, servers host:port)");
        return;
    }
    xTaskCreate(client_task, "sprout_client", 8192, NULL, 5, NULL);
}
