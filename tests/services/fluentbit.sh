#!/usr/bin/env bash
# Builds Fluent Bit from the vendored source tarball (no registry here ships it) and
# caches the binary in the services dir, next to the Elasticsearch install, so a second
# `make test` does not rebuild it. Recipe and traps: shared/vendor/README.md.
# Prints the path of the binary on the last line. Idempotent; fails loudly.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
version=${FLUENTBIT_VERSION:-5.1.1}
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

if [ "$(id -u)" -eq 0 ]; then
  services_dir=${LOGGUARDIAN_SERVICES_DIR:-/opt/logguardian-services}
else
  services_dir=${LOGGUARDIAN_SERVICES_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/logguardian-services}
fi

# The lean build: only the plugins the tests use. -DFLB_AWS=Off breaks v5.1.1 (leave it
# on); FLB_MINIMAL drops in_storage_backlog, which any config with storage.path needs.
flags=(
  -DFLB_RELEASE=On -DFLB_DEBUG=Off -DFLB_IPO=Off -DFLB_MINIMAL=On
  -DFLB_IN_TAIL=On -DFLB_IN_DUMMY=On -DFLB_IN_FORWARD=On -DFLB_IN_STORAGE_BACKLOG=On
  -DFLB_OUT_HTTP=On -DFLB_OUT_FORWARD=On -DFLB_OUT_STDOUT=On
  -DFLB_FILTER_MODIFY=On -DFLB_FILTER_PARSER=On -DFLB_FILTER_RECORD_MODIFIER=On
  -DFLB_EXAMPLES=Off -DFLB_SHARED_LIB=Off -DFLB_WASM=Off -DFLB_LUAJIT=Off
  -DFLB_KAFKA=Off -DFLB_STREAM_PROCESSOR=Off -DFLB_PROXY_GO=Off -DFLB_CUSTOM_CALYPTIA=Off
  -DFLB_ZIG=Off -DFLB_USE_SIMDUTF=No -DFLB_USE_RIPSER=No -DFLB_RIPSER=Off
  -DFLB_UNICODE_ENCODER=Off -DFLB_PREFER_SYSTEM_LIB_SQLITE=On
)
# The cache key covers the flags, so changing them rebuilds instead of reusing.
key=$(printf '%s\n' "$version" "${flags[@]}" | sha256sum | cut -c1-12)
dest="$services_dir/fluent-bit-$version-$key"
if [ -x "$dest/bin/fluent-bit" ]; then
  echo "$dest/bin/fluent-bit"
  exit 0
fi

# shared/ sits next to the clone ($root/../shared); a worktree may sit deeper, so walk up.
tarball=${FLUENTBIT_TARBALL:-}
if [ -z "$tarball" ]; then
  dir=$root
  while [ "$dir" != "/" ]; do
    dir=$(dirname "$dir")
    if [ -f "$dir/shared/vendor/fluent-bit-$version-src.tar.xz" ]; then
      tarball="$dir/shared/vendor/fluent-bit-$version-src.tar.xz"
      break
    fi
  done
fi
if [ -z "$tarball" ] || [ ! -f "$tarball" ]; then
  echo "fluentbit.sh: fluent-bit-$version-src.tar.xz not found in any ../shared/vendor above $root" >&2
  echo "  (set FLUENTBIT_TARBALL to its path)" >&2
  exit 1
fi

need_apt=()
for tool in cmake flex bison make gcc g++ pkg-config; do
  command -v "$tool" >/dev/null || need_apt+=("$tool")
done
for pkg in libyaml-dev libssl-dev libsqlite3-dev; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  need_apt=("${need_apt[@]/#g++/build-essential}")
  need_apt=("${need_apt[@]/#gcc/build-essential}")
  need_apt=("${need_apt[@]/#make/build-essential}")
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    $(printf '%s\n' "${need_apt[@]}" | sort -u)
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/fluent-bit-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
tar -xJf "$tarball" -C "$work"
src="$work/fluent-bit-$version"
mkdir -p "$src/build"
(cd "$src/build" && cmake .. "${flags[@]}" >"$work/cmake.log" 2>&1) \
  || { tail -40 "$work/cmake.log" >&2; exit 1; }
(cd "$src/build" && make -j"$(nproc)" fluent-bit-bin >"$work/make.log" 2>&1) \
  || { tail -60 "$work/make.log" >&2; exit 1; }
mkdir -p "$dest.tmp/bin"
install -m 0755 -s "$src/build/bin/fluent-bit" "$dest.tmp/bin/fluent-bit"
"$dest.tmp/bin/fluent-bit" --version >/dev/null
rm -rf "$dest" && mv "$dest.tmp" "$dest"
echo "$dest/bin/fluent-bit"
