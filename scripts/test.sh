#!/usr/bin/env bash
# Install everything the test suite needs, then run all of it:
# node --test (the JavaScript engine) and pytest (Python, servers, Redis, browser).
set -euo pipefail
cd "$(dirname "$0")/.."

sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v node >/dev/null || missing+=(nodejs npm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} from Debian's packages"
  sudo_if_needed apt-get update -qq
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
python3 -m pip install -q --disable-pip-version-check -e '.[test]'
if [ -f package.json ]; then npm install --no-audit --no-fund --silent; fi

if ls tests/js/*.test.mjs >/dev/null 2>&1; then node --test tests/js/; fi
python3 -m pytest "$@"
