#!/bin/sh
# fetch-nanopb.sh DEST: put the nanopb runtime sources (pb_*.c, pb*.h) matching the installed
# libnanopb-dev into DEST, from Debian's source package, verified by apt against Debian's signed
# Sources index. Uses a private apt state under DEST.tmp, so it touches no system configuration.
# Exits non-zero (leaving DEST absent) when the network or apt is unavailable.
set -eu
dest=$1
[ -f "$dest/pb_decode.c" ] && exit 0
version=$(dpkg-query -W -f='${Version}' libnanopb-dev 2>/dev/null || echo 0.4.7-2)
upstream=${version%-*}
mkdir -p "$(dirname "$dest")"
tmp=$(cd "$(dirname "$dest")" && pwd)/$(basename "$dest").tmp
rm -rf "$tmp"
mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial"
. /etc/os-release
echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian ${VERSION_CODENAME:-bookworm} main" > "$tmp/sources.list"
apt() {
    apt-get -q -o Dir::Etc::SourceList="$tmp/sources.list" -o Dir::Etc::SourceParts=/dev/null \
        -o Dir::State::Lists="$tmp/lists" -o Dir::Cache="$tmp/cache" -o Debug::NoLocking=1 \
        -o APT::Sandbox::User="$(id -un)" "$@"
}
apt update >"$tmp/apt.log" 2>&1
(cd "$tmp" && apt source --download-only "nanopb=$version") >>"$tmp/apt.log" 2>&1
tar xzf "$tmp/nanopb_${upstream}.orig.tar.gz" -C "$tmp"
mkdir -p "$dest"
cp "$tmp/nanopb-${upstream}"/pb_*.c "$tmp/nanopb-${upstream}"/pb*.h "$dest/"
cp "$tmp/nanopb-${upstream}/LICENSE.txt" "$dest/" 2>/dev/null || true
rm -rf "$tmp"
echo "nanopb $version runtime sources in $dest"
