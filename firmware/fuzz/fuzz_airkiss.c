/* libFuzzer target: the AirKiss decoder fed arbitrary frame lengths (little-endian uint16s).
 * Whatever it decodes must respect its own limits and be NUL-terminated. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "airkiss.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static sprout_airkiss ak;
    sprout_airkiss_reset(&ak);
    for (size_t i = 0; i + 1 < size; i += 2) {
        uint16_t len = (uint16_t)(data[i] | data[i + 1] << 8);
        if (sprout_airkiss_feed(&ak, len) == SPROUT_AIRKISS_COMPLETE) {
            if (ak.ssid_len == 0 || ak.ssid_len > SPROUT_AIRKISS_MAX_SSID ||
                ak.password_len > SPROUT_AIRKISS_MAX_PASSWORD || ak.ssid[ak.ssid_len] != '\0' ||
                ak.password[ak.password_len] != '\0' ||
                sprout_airkiss_crc8((const uint8_t *)ak.ssid, ak.ssid_len) != ak.ssid_crc) {
                abort();
            }
            break;
        }
    }
    return 0;
}
