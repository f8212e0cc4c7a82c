#!/usr/bin/env bash
# Prints the path of a Consul v1.16.1 binary on stdout, building and caching it if needed. Idempotent.
#
# Consul has no Debian package, and `go install github.com/hashicorp/consul@...` is refused (its
# go.mod has replace directives), so this builds it from the module source: download the module,
# copy it, drop the replace directives that point into its own tree, `go build`. v1.16.1 is the last
# MPL-2.0 release (1.16.2 and later are BUSL): do not bump the version.
#
# Cache: ${SPROUT_CACHE:-$HOME/.cache/sprout}/consul-1.16.1/consul (outside the repo; ~160 MiB).
# A cold build takes a few minutes on 2 cores and ~2 GB of RAM. Concurrent callers are serialised
# with flock, so only one builds. Only the binary's path goes to stdout; progress goes to stderr.
#
# Needs: Go and the Go module proxy. Env: SPROUT_CACHE, CONSUL_BUILD_PARALLELISM (default 2).
set -euo pipefail

VERSION=1.16.1
MODULE=github.com/hashicorp/consul
exec 3>&1 1>&2 # stdout is for the path only

cache_root=${SPROUT_CACHE:-${HOME:?HOME is not set}/.cache/sprout}
dir=$cache_root/consul-$VERSION
bin=$dir/consul

is_good() {
  [ -x "$bin" ] || return 1
  local v
  v=$("$bin" version 2>/dev/null | head -n1) || return 1
  [ "$v" = "Consul v$VERSION" ]
}

if is_good; then
  echo "$bin" >&3
  exit 0
fi

mkdir -p "$dir"
# Serialise concurrent builds (parallel test binaries may all ask at once).
if command -v flock >/dev/null; then
  exec 9>"$dir/.lock"
  if ! flock -n 9; then
    echo "consul.sh: another process is building Consul $VERSION; waiting..."
    flock 9
  fi
  if is_good; then
    echo "$bin" >&3
    exit 0
  fi
fi

command -v go >/dev/null || { echo "consul.sh: go not found in PATH" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/sprout-consul-build.XXXXXX")
partial=
cleanup() {
  chmod -R u+w "$work" 2>/dev/null || true
  rm -rf "$work"
  [ -z "$partial" ] || rm -f "$partial"
}
trap cleanup EXIT

start=$(date +%s)
echo "consul.sh: building Consul v$VERSION into $bin (takes a few minutes)"

# Go settings for the whole build: no toolchain switching, no cgo (as Consul's own release builds),
# the caller's module settings ignored.
export GOTOOLCHAIN=local CGO_ENABLED=0 GO111MODULE=on GOWORK=off
export GOFLAGS="-mod=mod -p=${CONSUL_BUILD_PARALLELISM:-2} -buildvcs=false"
unset GOOS GOARCH GOARM GOAMD64 2>/dev/null || true

# 1. Download the module source (into the module cache) from a scratch module.
mkdir -p "$work/scratch"
(cd "$work/scratch" && go mod init sprout-consul-scratch >/dev/null 2>&1)
json=$(cd "$work/scratch" && go mod download -json "$MODULE@v$VERSION" 9>&-)
src=$(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' | head -n1)
if [ -z "$src" ] || [ ! -f "$src/go.mod" ]; then
  echo "consul.sh: go mod download gave no module directory:" >&2
  printf '%s\n' "$json" >&2
  exit 1
fi

# 2. Writable copy; drop the replace directives pointing at its submodules (../api etc.), so the
#    published versions required by its go.mod are used instead.
cp -R "$src" "$work/consul"
chmod -R u+w "$work/consul"
cd "$work/consul"
for sub in api envoyextensions proto-public sdk troubleshoot; do
  go mod edit -dropreplace="$MODULE/$sub"
done

# 3. Build next to the final location, then rename into place (atomic on one filesystem).
partial=$(mktemp "$dir/.consul.tmp.XXXXXX")
GONOSUMDB=$MODULE/envoyextensions go build -trimpath -ldflags='-s -w' -o "$partial" . 9>&- # the build must not hold the lock if this script dies
chmod 0755 "$partial"
v=$("$partial" version 2>/dev/null | head -n1 || true)
if [ "$v" != "Consul v$VERSION" ]; then
  echo "consul.sh: built binary reports '$v', want 'Consul v$VERSION'" >&2
  exit 1
fi
mv -f "$partial" "$bin"
partial=
echo "consul.sh: built $bin in $(( $(date +%s) - start ))s"
echo "$bin" >&3
