#!/usr/bin/env bash
# The newest CPython on this machine, in a venv of the checkout's own (.tools/), with
# the sidecar installed: the shutdown tests run `logguardian serve` under it as well as
# under the project's 3.11, because asyncio changed under them (from 3.12.1
# `Server.wait_closed` waits for every open client connection; issue 13).
# Idempotent; prints the venv's `logguardian`; fails when no CPython >= 3.12 is found.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
pyenv_root=${PYENV_ROOT:-${HOME:-/root}/.pyenv}

best="" best_v=0
for exe in $(compgen -c python3. | sort -u) "$pyenv_root"/versions/*/bin/python3 \
           /usr/bin/python3.* /usr/local/bin/python3.*; do
  path=$(command -v "$exe" 2>/dev/null) || continue
  v=$("$path" -c 'import sys
ok = sys.implementation.name == "cpython" and sys.version_info >= (3, 12)
print(sys.version_info[0] * 100 + sys.version_info[1] if ok else 0)' 2>/dev/null) || continue
  if [ "$v" -gt "$best_v" ]; then best=$path best_v=$v; fi
done
if [ -z "$best" ]; then
  echo "newest_python.sh: no CPython >= 3.12 on this machine (PATH, $pyenv_root)" >&2
  exit 1
fi

venv="$root/.tools/python-$best_v"
if [ ! -x "$venv/bin/logguardian" ] || [ "$root/pyproject.toml" -nt "$venv/.installed" ]; then
  "$best" -m venv "$venv"
  "$venv/bin/pip" install --quiet --upgrade pip
  "$venv/bin/pip" install --quiet -e "$root"
  touch "$venv/.installed"
fi
echo "$venv/bin/logguardian"
