#!/usr/bin/env bash
# Make sure Debian's Chromium is installed, for the HTML report's headless browser test: install
# it if it is missing. Idempotent. Needs root for the install. Prints one line on success.
set -euo pipefail
version() { chromium --version 2>/dev/null | head -n 1; }

if command -v chromium >/dev/null 2>&1; then
  echo "chromium: installed ($(version))"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "error: no chromium and not root: install Debian's chromium (apt-get install chromium)" >&2
  exit 1
fi
echo "chromium: installing Debian's chromium ..."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq chromium >/dev/null
echo "chromium: installed ($(version))"
