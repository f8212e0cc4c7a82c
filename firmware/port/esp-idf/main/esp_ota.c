/* Firmware update slots on ESP-IDF (esp_ota_ops), for core/ota.c. Compile-checked by
 * tools/esp-idf-check.sh when its headers are there; not run on hardware. See firmware/README.md.
 *
 * The inactive slot is esp_ota_get_next_update_partition. A fresh download erases it for the
 * image (esp_ota_begin); a resumed one reopens it at the saved offset (esp_ota_resume) without
 * erasing what is written. The SHA-256 check reads the partition back (esp_partition_read).
 * ota_switch ends the image (esp_ota_end checks the app image format) and sets it to boot next;
 * with CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE the bootloader boots it as PENDING_VERIFY and returns
 * to the old slot at the next reset unless the app calls esp_ota_mark_app_valid_cancel_rollback,
 * which the core does only after a proven Welcome.
 *
 * Ed25519 comes from libsodium: the espressif/libsodium component that main/idf_component.yml
 * declares (idf.py fetches it on the first build). The public key is CONFIG_SPROUT_OTA_PUBKEY (64
 * hex digits, sprout firmware keygen's OUT.pub); without one, no hook is installed and the pot
 * answers offers "updates not supported". */
#include "esp_ota.h"

#include <string.h>

#include "esp_log.h"
#include "esp_ota_ops.h"
#include "esp_partition.h"

#include "sodium.h"

static const char *TAG = "sprout_ota";

static struct {
    const esp_partition_t *part;
    esp_ota_handle_t handle;
    bool open;
    uint8_t pubkey[32];
} ota_;

static int hexval(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

static bool ota_verify(void *ctx, const uint8_t *msg, size_t len, const uint8_t sig[64])
{
    (void)ctx;
    return crypto_sign_verify_detached(sig, msg, len, ota_.pubkey) == 0;
}

static uint32_t ota_slot_size(void *ctx)
{
    (void)ctx;
    const esp_partition_t *p = esp_ota_get_next_update_partition(NULL);
    return p != NULL ? (uint32_t)p->size : 0;
}

static int ota_begin(void *ctx, uint32_t size, uint32_t offset)
{
    (void)ctx;
    if (ota_.open) {
        esp_ota_abort(ota_.handle);
        ota_.open = false;
    }
    ota_.part = esp_ota_get_next_update_partition(NULL);
    if (ota_.part == NULL) {
        return -1;
    }
    esp_err_t err = offset == 0 ? esp_ota_begin(ota_.part, size, &ota_.handle)
                                : esp_ota_resume(ota_.part, size, offset, &ota_.handle);
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "esp_ota_%s: %s", offset == 0 ? "begin" : "resume", esp_err_to_name(err));
        return -1;
    }
    ota_.open = true;
    return 0;
}

static int ota_write(void *ctx, uint32_t offset, const uint8_t *buf, size_t len)
{
    (void)ctx;
    if (!ota_.open || esp_ota_write_with_offset(ota_.handle, buf, len, offset) != ESP_OK) {
        return -1;
    }
    return 0;
}

static int ota_read(void *ctx, uint32_t offset, uint8_t *buf, size_t len)
{
    (void)ctx;
    if (ota_.part == NULL || esp_partition_read(ota_.part, offset, buf, len) != ESP_OK) {
        return -1;
    }
    return 0;
}

static int ota_switch(void *ctx)
{
    (void)ctx;
    if (!ota_.open) {
        return -1;
    }
    ota_.open = false;
    esp_err_t err = esp_ota_end(ota_.handle);
    if (err == ESP_OK) {
        err = esp_ota_set_boot_partition(ota_.part);
    }
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "switching to %s: %s", ota_.part->label, esp_err_to_name(err));
        return -1;
    }
    return 0;
}

static int ota_mark_valid(void *ctx)
{
    (void)ctx;
    esp_ota_img_states_t st;
    if (esp_ota_get_state_partition(esp_ota_get_running_partition(), &st) == ESP_OK &&
        st != ESP_OTA_IMG_PENDING_VERIFY) {
        return 0; /* nothing on trial */
    }
    return esp_ota_mark_app_valid_cancel_rollback() == ESP_OK ? 0 : -1;
}

bool esp_ota_port_install(sprout_port *out)
{
    const char *hex = CONFIG_SPROUT_OTA_PUBKEY;
    if (strlen(hex) != 64) {
        ESP_LOGW(TAG, "firmware updates off: CONFIG_SPROUT_OTA_PUBKEY is not 64 hex digits");
        return false;
    }
    for (size_t i = 0; i < 32; i++) {
        int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            ESP_LOGE(TAG, "CONFIG_SPROUT_OTA_PUBKEY is not hex: firmware updates off");
            return false;
        }
        ota_.pubkey[i] = (uint8_t)(hi << 4 | lo);
    }
    if (sodium_init() < 0) {
        ESP_LOGE(TAG, "sodium_init failed: firmware updates off");
        return false;
    }
    out->ota_verify = ota_verify;
    out->ota_slot_size = ota_slot_size;
    out->ota_begin = ota_begin;
    out->ota_write = ota_write;
    out->ota_read = ota_read;
    out->ota_switch = ota_switch;
    out->ota_mark_valid = ota_mark_valid;
    return true;
}
