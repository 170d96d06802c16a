#!/usr/bin/env bash
# The real browser for the browser tests: Debian's Chromium (Playwright's own browser download
# cannot be fetched here; Playwright drives the system one), and NSS's certutil, with which the
# HTTPS tests make Chromium trust the site's root certificate as a person would import it.
# No-op when both are there.
set -euo pipefail
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
if [ -x "$CHROMIUM" ] && command -v certutil >/dev/null 2>&1; then
  echo "[ensure-browser] $("$CHROMIUM" --version 2>/dev/null) and certutil ready" >&2
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "[ensure-browser] ERROR: install Debian's chromium and libnss3-tools (apt-get install chromium libnss3-tools)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq chromium libnss3-tools >/dev/null
echo "[ensure-browser] installed $("$CHROMIUM" --version) and certutil" >&2
