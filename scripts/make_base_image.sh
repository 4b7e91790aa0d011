#!/usr/bin/env bash
# Make a local Debian bookworm + Python 3.11 base image without any registry:
# debootstrap a minimal root file system from the machine's own Debian mirror, add Python, and
# `docker import` it. Idempotent: does nothing when the image exists. Needs root and a Docker engine.
#   scripts/make_base_image.sh [IMAGE]   (default bench-base/python:3.11-bookworm)
set -euo pipefail
image=${1:-bench-base/python:3.11-bookworm}
if docker image inspect "$image" >/dev/null 2>&1; then
  echo "base image: $image already present"
  exit 0
fi
command -v debootstrap >/dev/null 2>&1 || { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; }
# The mirror this machine already uses (deb822 or one-line sources), never a hardcoded host.
mirror=${DEBIAN_MIRROR:-$( (grep -rhoE '^(URIs:|deb) +https?://[^ ]+' /etc/apt/sources.list.d/ /etc/apt/sources.list 2>/dev/null || true) \
  | awk '$2 ~ /debian/ && $2 !~ /security/ {print $2; exit}')}
[ -n "$mirror" ] || { echo "error: no Debian mirror found in /etc/apt/sources.list*" >&2; exit 1; }
root=$(mktemp -d /tmp/bench-rootfs.XXXXXX)
trap 'rm -rf "$root"' EXIT
echo "base image: debootstrap bookworm from $mirror ..."
debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,python3-dev,ca-certificates,libgomp1,libnuma1,procps,g++,libtcmalloc-minimal4 \
  bookworm "$root" "$mirror" >/tmp/bench-debootstrap.log 2>&1 \
  || { echo "error: debootstrap failed; see /tmp/bench-debootstrap.log" >&2; tail -n 20 /tmp/bench-debootstrap.log >&2; exit 1; }
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
tar -C "$root" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["/bin/bash"]' - "$image" >/dev/null
echo "base image: $image made ($(docker image inspect "$image" --format '{{.Size}}') bytes)"
