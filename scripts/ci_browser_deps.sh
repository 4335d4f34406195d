#!/usr/bin/env bash
# Installs what the console's browser test (tests/console) needs on a fresh Debian machine;
# idempotent, and quick when everything is already there:
#   bash scripts/ci_browser_deps.sh [VENV]
# - Debian's chromium and chromium-driver (apt), when either is missing;
# - with VENV given: checks that the venv has selenium (the dev extra of pyproject.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${1:-}

have() { command -v "$1" >/dev/null 2>&1; }

need=()
have chromium || need+=(chromium)
have chromedriver || need+=(chromium-driver)
# Fonts, so that screenshots show text (Debian's chromium pulls a default font, but a minimal
# image may lack it).
[ -n "$(fc-list 2>/dev/null | head -n 1)" ] || need+=(fonts-dejavu-core)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]}" >&2
  if [ "$(id -u)" = 0 ]; then sudo=(); else sudo=(sudo); fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
have chromium || { echo "chromium is still missing after apt-get install" >&2; exit 1; }
have chromedriver || { echo "chromedriver is still missing after apt-get install" >&2; exit 1; }
if [ -n "$venv" ]; then
  "$venv/bin/python" -c 'import selenium' 2>/dev/null \
    || { echo "no selenium in $venv: pip install -e '.[dev]'" >&2; exit 1; }
fi
echo "browser test dependencies ready: $(chromium --version 2>/dev/null | head -n 1)" >&2
