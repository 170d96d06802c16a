#!/usr/bin/env bash
# The real browser for the browser tests: Debian's Chromium (Playwright's own browser download
# cannot be fetched here; Playwright drives the system one), and NSS's certutil, with which the
# HTTPS tests make Chromium trust the site's root certificate as a person would import it, and gcc,
# which builds the small library the test browser starts with (tests/integration/no_netlink.c).
# No-op when all three are there.
set -euo pipefail
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
# gcc alone is not enough: Debian's gcc only recommends the C library's headers (libc6-dev).
compiles() { echo '#include <linux/netlink.h>' | gcc -fsyntax-only -x c - >/dev/null 2>&1; }
if [ -x "$CHROMIUM" ] && command -v certutil >/dev/null 2>&1 && compiles; then
  echo "[ensure-browser] $("$CHROMIUM" --version 2>/dev/null), certutil and gcc ready" >&2
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "[ensure-browser] ERROR: install Debian's chromium, libnss3-tools and gcc (apt-get install chromium libnss3-tools gcc libc6-dev)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq chromium libnss3-tools gcc libc6-dev >/dev/null
echo "[ensure-browser] installed $("$CHROMIUM" --version), certutil and gcc" >&2
