#!/usr/bin/env bash
# Tag local images for a registry and push them:
#   images/push.sh [--dry-run] REGISTRY TAG...      (make push REGISTRY=registry.example.com/team)
# Each TAG (e.g. padirec:0.1.0-<commit>) becomes REGISTRY/TAG. --dry-run prints the commands only.
# Log in first (docker login REGISTRY): credentials never go in REGISTRY.
set -euo pipefail
DRY=""
if [ "${1:-}" = --dry-run ]; then DRY=1; shift; fi
REGISTRY=${1:-}
[ -n "$REGISTRY" ] || { echo "push.sh: give the registry, e.g. make push REGISTRY=registry.example.com/team" >&2; exit 2; }
shift
[ $# -gt 0 ] || { echo "push.sh: no image tag to push" >&2; exit 2; }
case "$REGISTRY" in
  *://*) echo "push.sh: REGISTRY '$REGISTRY' is a host and path, without a scheme" >&2; exit 2 ;;
  *@*) echo "push.sh: REGISTRY holds credentials; use docker login instead" >&2; exit 2 ;;
esac
DOCKER=${DOCKER:-docker}
run() { if [ -n "$DRY" ]; then echo "$*"; else "$@"; fi; }
for tag in "$@"; do
  case "$tag" in *:latest|*:) echo "push.sh: tag '$tag' is not immutable; use <version>-<commit>" >&2; exit 2 ;; esac
  run "$DOCKER" tag "$tag" "${REGISTRY%/}/$tag"
  run "$DOCKER" push "${REGISTRY%/}/$tag"
done
