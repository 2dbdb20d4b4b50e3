#!/usr/bin/env bash
# Start a Docker engine for padirec's container tests, or reuse the one that is running.
# Machines here have no bridge networking and no registry: the engine runs with host networking
# only (--iptables=false --bridge=none), on overlay2 (vfs copies the whole image per container and
# KFP's docker client times out), with its own socket and data root, so it never touches a system
# engine. The data root is kept between runs: base image and build layers are cached there.
#   images/engine.sh start   -> prints the DOCKER_HOST to use
#   images/engine.sh stop
set -euo pipefail
ROOT=${PADIREC_DOCKER_ROOT:-/var/lib/padirec-docker}
SOCK=${PADIREC_DOCKER_SOCK:-/run/padirec-docker.sock}
PIDFILE=/run/padirec-docker.pid
HOST="unix://$SOCK"
docker_cli() { DOCKER_HOST="$HOST" DOCKER_BUILDKIT=0 /usr/bin/docker "$@"; }

case "${1:-start}" in
  start)
    if [ -S "$SOCK" ] && docker_cli info >/dev/null 2>&1; then echo "$HOST"; exit 0; fi
    command -v dockerd >/dev/null || { echo "engine.sh: dockerd is missing (apt-get install docker.io)" >&2; exit 1; }
    mkdir -p "$ROOT/data" "$ROOT/exec"
    rm -f "$SOCK"
    nohup dockerd --storage-driver=overlay2 --iptables=false --ip6tables=false --bridge=none \
      --data-root="$ROOT/data" --exec-root="$ROOT/exec" --pidfile="$PIDFILE" -H "$HOST" \
      >"$ROOT/dockerd.log" 2>&1 &
    for _ in $(seq 1 60); do
      if docker_cli info >/dev/null 2>&1; then echo "$HOST"; exit 0; fi
      sleep 1
    done
    echo "engine.sh: dockerd did not start in 60 s; last lines of $ROOT/dockerd.log:" >&2
    tail -n 20 "$ROOT/dockerd.log" >&2
    exit 1
    ;;
  stop)
    [ -f "$PIDFILE" ] && kill "$(cat "$PIDFILE")" 2>/dev/null || true
    ;;
  *) echo "usage: engine.sh start|stop" >&2; exit 2 ;;
esac
