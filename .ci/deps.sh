#!/usr/bin/env bash
# Installs the Debian packages Sprout's tests need, if they are missing. Idempotent.
set -euo pipefail
need=()
command -v protoc >/dev/null || need+=(protobuf-compiler)
command -v protoc-gen-nanopb >/dev/null || need+=(nanopb)
[ -e /usr/include/pb.h ] || [ -e /usr/include/nanopb/pb.h ] || need+=(libnanopb-dev)
[ -e /usr/include/cmocka.h ] || need+=(libcmocka-dev)
[ -e /usr/include/mbedtls/ssl.h ] || need+=(libmbedtls-dev)
[ -e /usr/include/sodium.h ] || need+=(libsodium-dev)
command -v clang >/dev/null || need+=(clang)
ls /usr/lib/llvm-14/lib/clang/14*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1 || need+=(libclang-rt-14-dev)
command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v chromium >/dev/null || need+=(chromium)
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v mosquitto_pub >/dev/null || need+=(mosquitto-clients)
# the simulated WeChat's phone-chat page (simulations/wechatsim) is Chinese: its browser test and screenshot need a CJK font
ls /usr/share/fonts/opentype/noto/NotoSansCJK-*.ttc >/dev/null 2>&1 || need+=(fonts-noto-cjk)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "missing packages: ${need[*]} (run as root, or: sudo apt-get install ${need[*]})" >&2
    exit 1
  fi
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
