#!/usr/bin/env bash
# Make sure a Docker engine answers on this machine: install Debian's docker.io if dockerd is
# missing, start dockerd in the background if it is not running (no systemd here), wait for it.
# Idempotent. Needs root for the install and the start. Prints one line on success.
set -euo pipefail
log=${DOCKERD_LOG:-/var/log/bench-dockerd.log}
answers() { timeout 10 docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

if command -v docker >/dev/null 2>&1 && answers; then
  echo "docker engine: running ($(docker version --format '{{.Server.Version}}'))"
  exit 0
fi
if ! command -v dockerd >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then
    echo "error: no Docker engine and not root: install docker (apt-get install docker.io) and start it" >&2
    exit 1
  fi
  echo "docker engine: installing Debian's docker.io ..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq docker.io >/dev/null
fi
if [ -S /var/run/docker.sock ] && answers; then
  exit 0
fi
echo "docker engine: starting dockerd (log: $log) ..."
setsid dockerd >"$log" 2>&1 < /dev/null &
for _ in $(seq 1 60); do
  if answers; then
    echo "docker engine: running ($(docker version --format '{{.Server.Version}}'))"
    exit 0
  fi
  sleep 1
done
echo "error: dockerd did not answer within 60 s; its log ends with:" >&2
tail -n 20 "$log" >&2
exit 1
