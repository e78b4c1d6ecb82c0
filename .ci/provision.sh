#!/usr/bin/env bash
# Provision what occ's tests need on a fresh Debian 12 machine: Node >= 24.15 (or 22.22.2+),
# a running Docker engine, the debian:bookworm-slim base image (no registry is reachable), chromium
# for the browser tests, and Debian's docker-registry (the tests' own local registry).
# Idempotent: each step is skipped when its result is already there.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cache="$root/.cache"
mkdir -p "$cache"

log() { printf '[provision] %s\n' "$*" >&2; }

node_ok() {
  command -v node >/dev/null 2>&1 || return 1
  node -e 'const [a,b,c]=process.versions.node.split(".").map(Number);
    const ok=(a===22&&(b>22||(b===22&&c>=2)))||(a===24&&b>=15)||a>=26; process.exit(ok?0:1)'
}

# --- Node -------------------------------------------------------------------------------
if ! node_ok; then
  if [ ! -x "$cache/node/node_modules/.bin/node" ]; then
    log "installing Node 24 from the npm registry into .cache/node"
    npm install --prefix "$cache/node" --no-save --no-audit --no-fund node@24 >&2
  fi
  export PATH="$cache/node/node_modules/.bin:$PATH"
fi
node_ok || { log "Node is still too old: $(node --version)"; exit 1; }
log "node $(node --version)"

# --- Docker engine ----------------------------------------------------------------------
engine_up() { curl -sf --unix-socket /var/run/docker.sock http://localhost/_ping >/dev/null 2>&1; }
if ! engine_up; then
  if ! command -v dockerd >/dev/null 2>&1; then
    log "installing docker.io"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq docker.io >&2
  fi
  log "starting dockerd"
  setsid dockerd >/var/log/dockerd.log 2>&1 < /dev/null &
  for _ in $(seq 1 120); do engine_up && break; sleep 0.5; done
  engine_up || { log "dockerd did not answer; see /var/log/dockerd.log"; tail -20 /var/log/dockerd.log >&2; exit 1; }
fi
log "docker engine answers"

# --- Base image -------------------------------------------------------------------------
if ! docker image inspect debian:bookworm-slim >/dev/null 2>&1; then
  command -v debootstrap >/dev/null 2>&1 || {
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2; apt-get install -y -qq debootstrap >&2; }
  mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  mirror=${mirror:-http://deb.debian.org/debian}
  dir="$cache/bookworm-rootfs"
  rm -rf "$dir"
  log "debootstrap bookworm from $mirror"
  debootstrap --variant=minbase bookworm "$dir" "$mirror" >&2
  tar -C "$dir" -c . | docker import - debian:bookworm-slim >&2
  rm -rf "$dir"
fi
log "debian:bookworm-slim present"

# --- systemd-analyze (unit file checks) ------------------------------------------------
if ! command -v systemd-analyze >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2; apt-get install -y -qq systemd >&2
fi

# --- chromium (the update button's browser tests drive Debian's chromium via playwright-core) ---
if ! command -v chromium >/dev/null 2>&1; then
  log "installing chromium"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2; apt-get install -y -qq chromium >&2
fi

# --- docker-registry (the integration tests run their own registry on a loopback port) -----
# The tests run the binary themselves (test/helpers/registry.ts); the package's own service, where
# a service manager started it on :5000, is stopped and disabled so it plays no part.
if ! command -v docker-registry >/dev/null 2>&1; then
  log "installing docker-registry"
  export DEBIAN_FRONTEND=noninteractive
  # Its package would start the service (init script or unit); a policy-rc.d saying "no" for the
  # install keeps it from starting, and a unit that a systemd machine enabled is disabled.
  policy_added=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 0755 /usr/sbin/policy-rc.d && policy_added=1
  fi
  apt-get update -qq >&2; apt-get install -y -qq docker-registry >&2
  if [ -n "$policy_added" ]; then rm -f /usr/sbin/policy-rc.d; fi
  if [ -d /run/systemd/system ]; then systemctl disable --now docker-registry >/dev/null 2>&1 || true; fi
fi
log "docker-registry $(docker-registry --version 2>/dev/null | awk '{print $3}')"

# --- shellcheck (npm run lint checks the release store script) ----------------------------
if ! command -v shellcheck >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2; apt-get install -y -qq shellcheck >&2
fi
log "shellcheck $(shellcheck --version | sed -n 's/^version: //p')"

# Print the PATH line so callers can `eval` it.
echo "export PATH=\"$PATH\""
