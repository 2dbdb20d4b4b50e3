#!/usr/bin/env bash
# Make the base image on a machine that reaches no image registry: a minimal Debian bookworm
# (Python 3.11) from the Debian mirror apt already uses, imported into the engine. Skipped when the
# image exists. Where a registry is reachable, use BASE=python:3.11-slim-bookworm instead.
#   DOCKER_HOST=... images/base.sh [NAME]   (default padirec-base:bookworm)
set -euo pipefail
NAME=${1:-padirec-base:bookworm}
DOCKER="/usr/bin/docker"
if $DOCKER image inspect "$NAME" >/dev/null 2>&1; then echo "base image $NAME is there"; exit 0; fi
command -v debootstrap >/dev/null || { echo "base.sh: debootstrap is missing (apt-get install debootstrap)" >&2; exit 1; }
MIRROR=${DEBIAN_MIRROR:-$(grep -h -m1 -oE '^URIs: *\S+' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1 | awk '{print $2}')}
MIRROR=${MIRROR:-$(grep -h -m1 -oE '^deb +\S+' /etc/apt/sources.list 2>/dev/null | awk '{print $2}')}
DIR=$(mktemp -d /var/tmp/padirec-base.XXXXXX)
trap 'rm -rf "$DIR"' EXIT
echo "debootstrap bookworm from $MIRROR into $DIR"
debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates bookworm "$DIR" "$MIRROR" >"$DIR.log" 2>&1 \
  || { tail -n 20 "$DIR.log" >&2; exit 1; }
rm -rf "$DIR"/var/cache/apt/archives/*.deb "$DIR"/var/lib/apt/lists/*
tar -C "$DIR" -c . | $DOCKER import --change 'CMD ["/bin/bash"]' - "$NAME"
rm -f "$DIR.log"
echo "base image $NAME: $($DOCKER image inspect -f '{{.Size}}' "$NAME" | awk '{printf "%.0f MB", $1/1e6}')"
