#!/usr/bin/env bash
# The real browser for the browser tests: Debian's Chromium (Playwright's own browser download
# cannot be fetched here; Playwright drives the system one). No-op when it is already there.
set -euo pipefail
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
if [ -x "$CHROMIUM" ]; then
  echo "[ensure-browser] $("$CHROMIUM" --version 2>/dev/null) ready" >&2
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "[ensure-browser] ERROR: $CHROMIUM is missing: install Debian's chromium (apt-get install chromium)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq chromium >/dev/null
echo "[ensure-browser] installed $("$CHROMIUM" --version)" >&2
