#!/usr/bin/env bash
# Installs the real services the integration tests start on 127.0.0.1.
# Idempotent; fails loudly when something cannot be installed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

need_apt=()
command -v prometheus >/dev/null || need_apt+=(prometheus)
command -v promtool >/dev/null || need_apt+=(prometheus)
command -v prometheus-alertmanager >/dev/null || need_apt+=(prometheus-alertmanager)
command -v amtool >/dev/null || need_apt+=(prometheus-alertmanager)
if [ ${#need_apt[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    $(printf '%s\n' "${need_apt[@]}" | sort -u)
fi

# Helm for the chart tests (helm lint / helm template), built from the Go module
# proxy into the project-local .tools/bin (git-ignored).
root=$(cd "$here/../.." && pwd)
if [ ! -x "$root/.tools/bin/helm" ]; then
  GO=$(command -v go || echo /usr/local/go/bin/go)
  GOBIN="$root/.tools/bin" "$GO" install helm.sh/helm/v3/cmd/helm@v3.16.4
fi
