/* sprout_port on ESP-IDF v5.3+. Compile-checked against ESP-IDF's headers by
 * tools/esp-idf-check.sh (make -C firmware esp-check); not run on hardware. See firmware/README.md. */
#include "esp_port.h"

#include "esp_ota.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <string.h>

#include "driver/gpio.h"
#include "esp_adc/adc_oneshot.h"
#include "esp_check.h"
#include "esp_wifi.h"
#include "esp_log.h"
#include "esp_random.h"
#include "esp_system.h"
#include "esp_timer.h"
#include "freertos/FreeRTOS.h"
#include "freertos/task.h"
#include "sprout_limits.h"
#include "lwip/netdb.h"
#include "lwip/sockets.h"
#include "nvs.h"

#if CONFIG_SPROUT_TLS_PINNED_CA || CONFIG_SPROUT_TLS_CRT_BUNDLE
#define SPROUT_USE_TLS 1
#include "esp_tls.h"
#if CONFIG_SPROUT_TLS_CRT_BUNDLE
#include "esp_crt_bundle.h"
#endif
#else
#define SPROUT_USE_TLS 0
#endif

#if CONFIG_SPROUT_TLS_PINNED_CA
/* main/server_ca.pem, embedded NUL-terminated by EMBED_TXTFILES (main/CMakeLists.txt). */
extern const uint8_t server_ca_pem_start[] asm("_binary_server_ca_pem_start");
extern const uint8_t server_ca_pem_end[] asm("_binary_server_ca_pem_end");
#endif

static const char *TAG = "sprout";

typedef struct {
    int fd;                       /* the connection's socket (owned by tls when TLS is on) */
#if SPROUT_USE_TLS
    esp_tls_t *tls;
#endif
    nvs_handle_t nvs;
    adc_oneshot_unit_handle_t adc;
    esp_timer_handle_t pump_timer;
    bool (*network_up)(void *ctx);
} esp_ctx;

static esp_ctx ctx_ = {.fd = -1};

static int64_t mono_ms(void *ctx)
{
    (void)ctx;
    return esp_timer_get_time() / 1000;
}

static void sleep_ms(void *ctx, uint32_t ms)
{
    (void)ctx;
    vTaskDelay(pdMS_TO_TICKS(ms) > 0 ? pdMS_TO_TICKS(ms) : 1);
}

static void random_bytes(void *ctx, uint8_t *buf, size_t len)
{
    (void)ctx;
    esp_fill_random(buf, len); /* a true RNG while the radio is on, which it is before connecting */
}

static bool network_up(void *ctx)
{
    esp_ctx *c = ctx;
    return c->network_up == NULL || c->network_up(c);
}

/* ---- TCP over lwIP sockets, or TLS over them (esp-tls) ---- */

static void tcp_close(void *ctx)
{
    esp_ctx *c = ctx;
#if SPROUT_USE_TLS
    if (c->tls != NULL) {
        esp_tls_conn_destroy(c->tls); /* sends close_notify, closes the socket, frees */
        c->tls = NULL;
        c->fd = -1;
        return;
    }
#endif
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
}

static int wait_fd(int fd, bool write, uint32_t timeout_ms)
{
    fd_set set;
    FD_ZERO(&set);
    FD_SET(fd, &set);
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    return select(fd + 1, write ? NULL : &set, write ? &set : NULL, NULL, &tv);
}

#if SPROUT_USE_TLS
/* tls_connect connects and verifies the node (the pinned CA or the bundle, and the name) before
 * anything is sent: a refused certificate is a failed connect, and the core backs off. */
static int tls_connect(esp_ctx *c, const char *host, uint16_t port, uint32_t timeout_ms)
{
    esp_tls_cfg_t cfg = {
        /* esp-tls bounds the connect and the handshake together, and uses it as the socket's
         * send/receive timeout afterwards (tcp_recv waits with select first). */
        .timeout_ms = (int)(timeout_ms + CONFIG_SPROUT_TLS_HANDSHAKE_TIMEOUT_MS),
        .common_name = CONFIG_SPROUT_TLS_SERVER_NAME[0] != '\0' ? CONFIG_SPROUT_TLS_SERVER_NAME : NULL,
        /* mbedTLS 3 in ESP-IDF 5 speaks TLS 1.2 and 1.3, nothing older; the node needs 1.2+. */
        .tls_version = ESP_TLS_VER_ANY,
#if CONFIG_SPROUT_TLS_PINNED_CA
        .cacert_buf = server_ca_pem_start,
        .cacert_bytes = (unsigned int)(server_ca_pem_end - server_ca_pem_start),
#else
        .crt_bundle_attach = esp_crt_bundle_attach,
#endif
    };
    esp_tls_t *tls = esp_tls_init();
    if (tls == NULL) {
        ESP_LOGE(TAG, "TLS: out of memory");
        return -1;
    }
    if (esp_tls_conn_new_sync(host, (int)strlen(host), port, &cfg, tls) != 1) {
        int code = 0, flags = 0;
        esp_tls_error_handle_t eh = NULL;
        esp_err_t last = ESP_FAIL;
        if (esp_tls_get_error_handle(tls, &eh) == ESP_OK) {
            last = esp_tls_get_and_clear_last_error(eh, &code, &flags);
        }
        /* flags are mbedTLS's MBEDTLS_X509_BADCERT_* bits: 0x08 not trusted, 0x04 name mismatch */
        ESP_LOGW(TAG, "TLS to %s:%u failed: %s (TLS error -0x%x, certificate flags 0x%x)", host, (unsigned)port,
                 esp_err_to_name(last), (unsigned)-code, (unsigned)flags);
        esp_tls_conn_destroy(tls);
        return -1;
    }
    int fd = -1;
    if (esp_tls_get_conn_sockfd(tls, &fd) != ESP_OK || fd < 0) {
        esp_tls_conn_destroy(tls);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->tls = tls;
    c->fd = fd;
    ESP_LOGI(TAG, "TLS to %s:%u: server verified", host, (unsigned)port);
    return 0;
}
#endif

static int tcp_connect(void *ctx, const char *host, uint16_t port, uint32_t timeout_ms)
{
    esp_ctx *c = ctx;
    tcp_close(c);
#if SPROUT_USE_TLS
    return tls_connect(c, host, port, timeout_ms);
#else
    char service[8];
    snprintf(service, sizeof service, "%u", (unsigned)port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    if (getaddrinfo(host, service, &hints, &res) != 0 || res == NULL) {
        return -1;
    }
    int fd = socket(res->ai_family, res->ai_socktype, res->ai_protocol);
    if (fd < 0) {
        freeaddrinfo(res);
        return -1;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL, 0) | O_NONBLOCK);
    int rc = connect(fd, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    if (rc != 0) {
        int err = 0;
        socklen_t len = sizeof err;
        if (errno != EINPROGRESS || wait_fd(fd, true, timeout_ms) != 1 ||
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
            close(fd);
            return -1;
        }
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->fd = fd;
    return 0;
#endif
}

static int tcp_send(void *ctx, const uint8_t *buf, size_t len, uint32_t timeout_ms)
{
    esp_ctx *c = ctx;
#if SPROUT_USE_TLS
    if (c->tls == NULL) {
        return -1;
    }
    while (len > 0) {
        ssize_t n = esp_tls_conn_write(c->tls, buf, len);
        if (n > 0) {
            buf += n;
            len -= (size_t)n;
        } else if ((n == ESP_TLS_ERR_SSL_WANT_WRITE || n == ESP_TLS_ERR_SSL_WANT_READ) &&
                   wait_fd(c->fd, n == ESP_TLS_ERR_SSL_WANT_WRITE, timeout_ms) == 1) {
            continue;
        } else {
            return -1;
        }
    }
    return 0;
#else
    while (len > 0) {
        if (c->fd < 0) {
            return -1;
        }
        int n = send(c->fd, buf, len, 0);
        if (n > 0) {
            buf += n;
            len -= (size_t)n;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && wait_fd(c->fd, true, timeout_ms) == 1) {
            continue;
        } else {
            return -1;
        }
    }
    return 0;
#endif
}

static int tcp_recv(void *ctx, uint8_t *buf, size_t cap, uint32_t timeout_ms)
{
    esp_ctx *c = ctx;
    if (c->fd < 0) {
        return -1;
    }
#if SPROUT_USE_TLS
    if (c->tls == NULL) {
        return -1;
    }
    /* Bytes mbedTLS already decrypted are returned at once; otherwise wait for the socket. */
    if (esp_tls_get_bytes_avail(c->tls) <= 0) {
        int w = wait_fd(c->fd, false, timeout_ms);
        if (w == 0) {
            return 0;
        }
        if (w < 0) {
            return -1;
        }
    }
    ssize_t got = esp_tls_conn_read(c->tls, buf, cap);
    if (got > 0) {
        return (int)got;
    }
    if (got == ESP_TLS_ERR_SSL_WANT_READ || got == ESP_TLS_ERR_SSL_WANT_WRITE) {
        return 0; /* part of a record: the rest comes with the next call */
    }
    return -1; /* 0: the node closed the connection (close_notify); < 0: broken */
#else
    int r = wait_fd(c->fd, false, timeout_ms);
    if (r == 0) {
        return 0;
    }
    if (r < 0) {
        return -1;
    }
    int n = recv(c->fd, buf, cap, 0);
    if (n > 0) {
        return n;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        return 0;
    }
    return -1;
#endif
}

/* ---- NVS ---- */

static int kv_get(void *ctx, const char *key, uint8_t *buf, size_t cap, size_t *len)
{
    esp_ctx *c = ctx;
    size_t need = 0;
    esp_err_t err = nvs_get_blob(c->nvs, key, NULL, &need);
    if (err == ESP_ERR_NVS_NOT_FOUND) {
        return SPROUT_KV_NOT_FOUND;
    }
    if (err != ESP_OK) {
        return -1;
    }
    *len = need;
    if (need > cap) {
        return 0; /* the core sees len > cap and treats the value as corrupt */
    }
    size_t got = cap;
    return nvs_get_blob(c->nvs, key, buf, &got) == ESP_OK ? 0 : -1;
}

static int kv_set(void *ctx, const char *key, const uint8_t *buf, size_t len)
{
    esp_ctx *c = ctx;
    if (nvs_set_blob(c->nvs, key, buf, len) != ESP_OK || nvs_commit(c->nvs) != ESP_OK) {
        return -1;
    }
    return 0;
}

/* ---- sensors and pump ---- */

static int adc_read(esp_ctx *c, int channel, int *raw)
{
    /* average a few samples: the capacitive probe is noisy */
    int sum = 0;
    for (int i = 0; i < 8; i++) {
        int v = 0;
        if (adc_oneshot_read(c->adc, (adc_channel_t)channel, &v) != ESP_OK) {
            return -1;
        }
        sum += v;
    }
    *raw = sum / 8;
    return 0;
}

static float scale_pct(int raw, int at0, int at100)
{
    float pct = 100.0f * (float)(raw - at0) / (float)(at100 - at0);
    return pct < 0 ? 0 : pct > 100 ? 100 : pct;
}

/* supply_mv converts the supply channel's raw reading: a 1:2 divider at 12 dB attenuation (~3.1 V
 * full scale), so up to 6.2 V (a Li-ion cell, or USB's 5 V); uncalibrated, +-5 %. */
static uint32_t supply_mv(int raw)
{
    return (uint32_t)(raw * 3100 / 4095 * 2);
}

static int read_sensors(void *ctx, sprout_reading *out)
{
    esp_ctx *c = ctx;
    int moisture, tank, ntc, supply;
    if (adc_read(c, CONFIG_SPROUT_ADC_MOISTURE_CHANNEL, &moisture) != 0 ||
        adc_read(c, CONFIG_SPROUT_ADC_TANK_CHANNEL, &tank) != 0 || adc_read(c, CONFIG_SPROUT_ADC_NTC_CHANNEL, &ntc) != 0 ||
        adc_read(c, CONFIG_SPROUT_ADC_SUPPLY_CHANNEL, &supply) != 0) {
        return -1;
    }
    if (ntc <= 0 || ntc >= 4095) {
        return -1; /* NTC open or shorted */
    }
    out->soil_moisture_pct = scale_pct(moisture, CONFIG_SPROUT_MOISTURE_RAW_DRY, CONFIG_SPROUT_MOISTURE_RAW_WET);
    out->tank_level_pct = scale_pct(tank, CONFIG_SPROUT_TANK_RAW_EMPTY, CONFIG_SPROUT_TANK_RAW_FULL);
    /* 10k NTC to ground, 10k to 3V3: R = 10k * raw / (4095 - raw); Beta equation, B = 3950 */
    float r = 10000.0f * (float)ntc / (float)(4095 - ntc);
    out->temperature_c = 1.0f / (logf(r / 10000.0f) / 3950.0f + 1.0f / 298.15f) - 273.15f;
    out->supply_mv = supply_mv(supply);
    return 0;
}

/* ota_margins: what a firmware download may draw on (core/ota.h), measured now. */
static int ota_margins(void *ctx, sprout_ota_margins *out)
{
    esp_ctx *c = ctx;
    int supply;
    if (adc_read(c, CONFIG_SPROUT_ADC_SUPPLY_CHANNEL, &supply) != 0) {
        return -1;
    }
    out->supply_mv = supply_mv(supply);
    wifi_ap_record_t ap;
    out->rssi_dbm = esp_wifi_sta_get_ap_info(&ap) == ESP_OK ? ap.rssi : 0; /* 0: not joined, unknown */
    out->free_heap = esp_get_free_heap_size();
    out->pump_busy = esp_timer_is_active(c->pump_timer); /* the failsafe timer runs while the pump does */
    return 0;
}

static void pump_off_cb(void *arg)
{
    (void)arg;
    gpio_set_level(CONFIG_SPROUT_PUMP_GPIO, 0); /* the failsafe: runs even if the client task stalls */
}

void esp_port_pump_off(void)
{
    /* Level first, then output: the pin goes from input (high impedance, with the pull-down) to
     * driven low, never high. */
    gpio_set_level(CONFIG_SPROUT_PUMP_GPIO, 0);
    gpio_config_t io = {.pin_bit_mask = 1ULL << CONFIG_SPROUT_PUMP_GPIO, .mode = GPIO_MODE_OUTPUT,
                        .pull_down_en = GPIO_PULLDOWN_ENABLE, .pull_up_en = GPIO_PULLUP_DISABLE,
                        .intr_type = GPIO_INTR_DISABLE};
    gpio_config(&io);
    gpio_set_level(CONFIG_SPROUT_PUMP_GPIO, 0);
}

static int pump_start(void *ctx, uint32_t ms)
{
    esp_ctx *c = ctx;
    if (ms == 0 || ms > SPROUT_HARD_MAX_WATER_MS) {
        /* The port's own guard (sprout_limits.h, Kconfig "Hard limits"): whatever the core asks, the
         * pump never runs longer than the build-time limit, and the failsafe timer below is
         * armed for at most that long. */
        ESP_LOGE(TAG, "pump run of %u ms refused: over the hard limit %u ms", (unsigned)ms,
                 (unsigned)SPROUT_HARD_MAX_WATER_MS);
        return -1;
    }
    esp_timer_stop(c->pump_timer); /* not running is fine */
    if (esp_timer_start_once(c->pump_timer, (uint64_t)ms * 1000) != ESP_OK) {
        return -1;
    }
    if (gpio_set_level(CONFIG_SPROUT_PUMP_GPIO, 1) != ESP_OK) {
        esp_timer_stop(c->pump_timer);
        return -1;
    }
    return 0;
}

static void pump_stop(void *ctx)
{
    esp_ctx *c = ctx;
    gpio_set_level(CONFIG_SPROUT_PUMP_GPIO, 0);
    esp_timer_stop(c->pump_timer);
}

static void reboot(void *ctx)
{
    pump_stop(ctx);
    esp_restart();
}

static void log_msg(void *ctx, sprout_log_level level, const char *msg)
{
    (void)ctx;
    switch (level) {
    case SPROUT_LOG_ERROR: ESP_LOGE(TAG, "%s", msg); break;
    case SPROUT_LOG_WARN: ESP_LOGW(TAG, "%s", msg); break;
    case SPROUT_LOG_INFO: ESP_LOGI(TAG, "%s", msg); break;
    default: ESP_LOGD(TAG, "%s", msg); break;
    }
}

esp_err_t esp_port_init(sprout_port *out, bool (*up)(void *ctx))
{
    esp_ctx *c = &ctx_;
    c->network_up = up;
    ESP_RETURN_ON_ERROR(nvs_open("sprout", NVS_READWRITE, &c->nvs), TAG, "nvs_open");

    esp_port_pump_off();
    esp_timer_create_args_t targs = {.callback = pump_off_cb, .name = "pump_off"};
    ESP_RETURN_ON_ERROR(esp_timer_create(&targs, &c->pump_timer), TAG, "pump timer");

    adc_oneshot_unit_init_cfg_t ucfg = {.unit_id = ADC_UNIT_1};
    ESP_RETURN_ON_ERROR(adc_oneshot_new_unit(&ucfg, &c->adc), TAG, "adc unit");
    adc_oneshot_chan_cfg_t ccfg = {.bitwidth = ADC_BITWIDTH_12, .atten = ADC_ATTEN_DB_12};
    const int channels[] = {CONFIG_SPROUT_ADC_MOISTURE_CHANNEL, CONFIG_SPROUT_ADC_TANK_CHANNEL,
                            CONFIG_SPROUT_ADC_NTC_CHANNEL, CONFIG_SPROUT_ADC_SUPPLY_CHANNEL};
    for (size_t i = 0; i < sizeof channels / sizeof channels[0]; i++) {
        ESP_RETURN_ON_ERROR(adc_oneshot_config_channel(c->adc, (adc_channel_t)channels[i], &ccfg), TAG, "adc channel");
    }

    memset(out, 0, sizeof *out);
    out->ctx = c;
    out->monotonic_ms = mono_ms;
    out->wall_ms = NULL; /* no RTC: the core takes the time from Welcome.server_time_ms */
    out->sleep_ms = sleep_ms;
    out->random_bytes = random_bytes;
    out->network_up = network_up;
    out->tcp_connect = tcp_connect;
    out->tcp_send = tcp_send;
    out->tcp_recv = tcp_recv;
    out->tcp_close = tcp_close;
    out->kv_get = kv_get;
    out->kv_set = kv_set;
    out->read_sensors = read_sensors;
    out->pump_start = pump_start;
    out->pump_stop = pump_stop;
    out->reboot = reboot;
    out->log = log_msg;
    if (esp_ota_port_install(out)) { /* firmware updates, if a key is built in */
        out->ota_margins = ota_margins;
    }
    return ESP_OK;
}
