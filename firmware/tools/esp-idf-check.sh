#!/usr/bin/env bash
# Syntax-only compile of the ESP-IDF port (port/esp-idf/main) and of the core against ESP-IDF's
# real headers, for a RISC-V target (ESP32-C3), with clang. No ESP-IDF toolchain, no CMake, no
# Kconfig run: the configuration is the hand-written port/esp-idf/check/sdkconfig.h, which holds
# the values port/esp-idf/sdkconfig.defaults and Kconfig.projbuild give.
#
#   IDF_PATH=/path/to/esp-idf tools/esp-idf-check.sh      (make -C firmware esp-check)
#
# It needs an ESP-IDF v5.x source tree in IDF_PATH (its components/, with the lwip submodule's
# src/include) and, in NEWLIB_INCLUDE, the newlib headers of Espressif's toolchain (the
# newlib-esp32 sources, branch esp-4.3.0: newlib/libc/include). Debian's libnewlib-dev (3.3)
# does not fit ESP-IDF 5.5's newlib platform headers. Without them it says so and exits 0: CI
# does not fetch ESP-IDF. main/esp_ota.c needs the espressif/libsodium component that
# main/idf_component.yml declares: LIBSODIUM_DIR names its source tree (idf-extra-components'
# libsodium/, with its libsodium submodule checked out); without it that one file is reported as
# not checked. It checks what the host build cannot:
# that every ESP-IDF function, type, macro and header the port uses exists with that signature
# in that version, and that the core compiles for a 32-bit target. It does not link or run.
set -euo pipefail
cd "$(dirname "$0")/.."
FW=$PWD
TARGET=${ESP_TARGET:-esp32c3}
CLANG=${CLANG:-clang}
NEWLIB=${NEWLIB_INCLUDE:-}

skip() { echo "esp-check: SKIPPED: $*"; exit 0; }
[ -n "${IDF_PATH:-}" ] || skip "IDF_PATH is not set (an ESP-IDF v5.x source tree; see firmware/README.md)"
C=$IDF_PATH/components
[ -f "$C/esp_common/include/esp_err.h" ] || skip "no ESP-IDF components in $IDF_PATH"
[ -f "$C/lwip/lwip/src/include/lwip/sockets.h" ] || skip "the lwip submodule's headers are missing in $C/lwip/lwip"
[ -f "$C/mbedtls/mbedtls/include/mbedtls/ssl.h" ] || skip "the mbedtls submodule's headers are missing in $C/mbedtls/mbedtls (Mbed TLS 3.6: its include/)"
[ -n "$NEWLIB" ] && [ -f "$NEWLIB/stdio.h" ] || skip "NEWLIB_INCLUDE does not name Espressif's newlib headers (newlib-esp32, esp-4.3.0: newlib/libc/include)"
command -v "$CLANG" >/dev/null || skip "no clang"
case "$TARGET" in
  esp32c3) ARCH=(--target=riscv32-unknown-elf -march=rv32imc -mabi=ilp32) ;;
  *) skip "target $TARGET: only the RISC-V esp32c3 is checked (clang has no Xtensa backend)" ;;
esac

# nanopb's headers: the fetched sources, or Debian's (linked into a directory of their own, so
# that the host's /usr/include is never on the target's include path).
NANOPB=$FW/build/nanopb
if [ ! -f "$NANOPB/pb.h" ]; then
  NANOPB=$FW/build/esp-check/nanopb
  mkdir -p "$NANOPB"
  for h in pb.h pb_common.h pb_encode.h pb_decode.h; do
    [ -f /usr/include/$h ] || skip "nanopb headers not found (make -C firmware nanopb-src, or apt-get install libnanopb-dev)"
    ln -sf /usr/include/$h "$NANOPB/$h"
  done
fi
version=$(sed -n 's/^#define ESP_IDF_VERSION_\(MAJOR\|MINOR\|PATCH\) *\([0-9]*\).*/\2/p' "$C/esp_common/include/esp_idf_version.h" | paste -sd.)
commit=$(git -C "$IDF_PATH" rev-parse --short HEAD 2>/dev/null || echo "not a git checkout")

INC=()
for d in \
  newlib/platform_include \
  esp_common/include esp_system/include esp_system/port/include \
  esp_hw_support/include esp_hw_support/include/soc esp_hw_support/include/soc/$TARGET esp_hw_support/port/$TARGET/include \
  esp_hw_support/port/include esp_hw_support/dma/include esp_hw_support/ldo/include esp_hw_support/debug_probe/include \
  esp_rom/include esp_rom/$TARGET/include esp_rom/$TARGET esp_rom/include/$TARGET \
  soc/include soc/$TARGET/include soc/$TARGET/register \
  hal/include hal/$TARGET/include hal/platform_port/include \
  log/include heap/include riscv/include esp_timer/include \
  freertos/FreeRTOS-Kernel/include freertos/config/include freertos/config/include/freertos \
  freertos/config/riscv/include freertos/FreeRTOS-Kernel/portable/riscv/include \
  freertos/FreeRTOS-Kernel/portable/riscv/include/freertos freertos/esp_additions/include \
  nvs_flash/include esp_partition/include spi_flash/include \
  app_update/include esp_app_format/include esp_bootloader_format/include bootloader_support/include \
  esp_event/include esp_netif/include esp_wifi/include esp_wifi/wifi_apps/include esp_wifi/wifi_apps/nan_app/include \
  esp_phy/include esp_coex/include esp_pm/include \
  lwip/include lwip/port/include lwip/port/freertos/include lwip/port/esp32xx/include lwip/lwip/src/include \
  esp_adc/include esp_adc/interface esp_adc/$TARGET/include esp_driver_gpio/include \
  wifi_provisioning/include protocomm/include/common protocomm/include/security protocomm/include/transports \
  protocomm/include/crypto/srp6a \
  esp-tls esp-tls/esp-tls-crypto mbedtls/esp_crt_bundle/include mbedtls/mbedtls/include; do
  [ -d "$C/$d" ] && INC+=(-isystem "$C/$d")
done

FLAGS=("${ARCH[@]}" -fsyntax-only -std=gnu17 -nostdinc -DESP_PLATFORM -D_GNU_SOURCE -DIDF_VER=\"v$version\"
  -include "$FW/port/esp-idf/check/sdkconfig.h" -isystem "$FW/port/esp-idf/check"
  "${INC[@]}" -isystem "$NEWLIB" -isystem "$($CLANG -print-resource-dir)/include"
  -I"$FW/core" -I"$FW/proto" -I"$NANOPB" -I"$FW/port/esp-idf/main"
  -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Werror)

echo "esp-check: ESP-IDF $version ($commit) in $IDF_PATH, target $TARGET, $($CLANG --version | head -1)"
fail=0
check() { # check FILE [extra flags...]
  local f=$1; shift
  if "$CLANG" "${FLAGS[@]}" "$@" "$f" 2>"$FW/build/esp-check/log"; then
    echo "  ok   ${f#$FW/} $*"
  else
    echo "  FAIL ${f#$FW/} $*"; sed 's/^/       /' "$FW/build/esp-check/log" | head -40; fail=1
  fi
}
# The managed component libsodium (main/idf_component.yml): its port_include/ before the upstream
# headers, as its CMakeLists.txt orders them.
SODIUM=${LIBSODIUM_DIR:-}
sodium_note=""
if [ -n "$SODIUM" ] && [ -f "$SODIUM/port_include/sodium.h" ] && [ -f "$SODIUM/libsodium/src/libsodium/include/sodium.h" ]; then
  sodium_version=$(sed -n 's/^version: *"\(.*\)"/\1/p' "$SODIUM/idf_component.yml" 2>/dev/null)
  echo "esp-check: espressif/libsodium ${sodium_version:-?} in $SODIUM"
  SODIUM_INC=(-isystem "$SODIUM/port_include" -isystem "$SODIUM/libsodium/src/libsodium/include")
else
  SODIUM_INC=()
  sodium_note=" (main/esp_ota.c NOT checked: LIBSODIUM_DIR does not name the espressif/libsodium component)"
fi
for f in "$FW"/port/esp-idf/main/*.c "$FW"/core/*.c "$FW"/proto/devicepb/device.pb.c; do
  if [ "${f##*/}" = esp_ota.c ]; then
    if [ ${#SODIUM_INC[@]} -gt 0 ]; then
      check "$f" "${SODIUM_INC[@]}"
    else
      echo "  skip ${f#$FW/} (no LIBSODIUM_DIR)"
    fi
    continue
  fi
  check "$f"
done
# esp_port.c once more for each of the other TLS choices (Kconfig "Link to the node (TLS)"). Mbed
# TLS is configured by its own default mbedtls_config.h here, not ESP-IDF's esp_config.h (which
# needs the whole CONFIG_MBEDTLS_* set): the check is of esp-tls's and Mbed TLS's API as the port
# uses it.
check "$FW/port/esp-idf/main/esp_port.c" -DSPROUT_CHECK_TLS_BUNDLE
check "$FW/port/esp-idf/main/esp_port.c" -DSPROUT_CHECK_TLS_NONE
# provision.c once more for each of the other provisioning choices (Kconfig "Provisioning").
check "$FW/port/esp-idf/main/provision.c" -DSPROUT_CHECK_PROV_ESPTOUCH_V2
check "$FW/port/esp-idf/main/provision.c" -DSPROUT_CHECK_PROV_BLE
[ $fail = 0 ] && echo "esp-check: the port and the core compile against ESP-IDF $version headers for $TARGET$sodium_note"
exit $fail
