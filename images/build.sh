#!/usr/bin/env bash
# Build the project image from images/Dockerfile, the same file for both variants:
#   images/build.sh cuda padirec:0.1.0-<commit>
#   images/build.sh cpu  padirec:0.1.0-<commit>-cpu
# Where packages come from is taken from the environment, else from this machine's pip settings,
# and passed in as build arguments and build-context files (nothing machine-specific is in the
# Dockerfile):
#   BASE                  base image with Python 3.11 (default python:3.11-slim-bookworm; on a machine
#                         with no registry, images/base.sh makes padirec-base:bookworm)
#   PIP_INDEX_URL         package index (default: pip's index-url setting, else PyPI)
#   PIP_EXTRA_INDEX_URL   an extra http(s) index, e.g. a torch CPU index
#   PIP_CERT              CA bundle pip must trust (default: pip's cert setting); copied into the context
#   TORCH_WHEELS          folder holding a torch wheel to use (default: pip's find-links setting)
#   DOCKER                the docker client (default: docker)
# The image's size (docker image inspect) is appended to dist/image-sizes.tsv: variant, tag, bytes.
set -euo pipefail
VARIANT=${1:?usage: images/build.sh cuda|cpu TAG}
TAG=${2:?usage: images/build.sh cuda|cpu TAG}
cd "$(dirname "$0")/.."
case "$VARIANT" in
  cuda) TORCH_SPEC=torch==2.13.0 ;;
  cpu)  TORCH_SPEC=torch==2.13.0+cpu ;;
  *) echo "build.sh: variant must be cuda or cpu, not '$VARIANT'" >&2; exit 2 ;;
esac
case "$TAG" in *:latest|*:) echo "build.sh: tag '$TAG' is not immutable; use <version>-<commit>" >&2; exit 2 ;; esac
pip_setting() { python3 -m pip config list 2>/dev/null | sed -n "s/^\(global\|:env:\)\.$1='\(.*\)'\$/\2/p" | head -n1; }
DOCKER=${DOCKER:-docker}
BASE=${BASE:-python:3.11-slim-bookworm}
INDEX=${PIP_INDEX_URL:-$(pip_setting index-url)}
INDEX=${INDEX:-https://pypi.org/simple}
EXTRA=${PIP_EXTRA_INDEX_URL:-}
case "$EXTRA" in http://*|https://*|"") ;; *) echo "build.sh: PIP_EXTRA_INDEX_URL must be http(s) to be reachable from a build" >&2; exit 2 ;; esac
CERT=${PIP_CERT:-$(pip_setting cert)}
WHEELS=${TORCH_WHEELS:-${PIP_FIND_LINKS:-$(pip_setting find-links)}}

# The build context's machine-specific part: images/build-extra (ignored by git).
EXTRA_DIR=images/build-extra
find "$EXTRA_DIR" -mindepth 1 ! -name README.md -exec rm -rf {} +
CERT_ARG=""
if [ -n "$CERT" ] && [ -f "$CERT" ]; then cp "$CERT" "$EXTRA_DIR/ca.crt"; CERT_ARG=/opt/build/ca.crt; fi
if [ "$VARIANT" = cpu ] && [ -n "$WHEELS" ] && [ -d "$WHEELS" ]; then
  mkdir -p "$EXTRA_DIR/wheels"
  find "$WHEELS" -maxdepth 1 -name 'torch-2.13.0+cpu-cp311-*.whl' -exec cp {} "$EXTRA_DIR/wheels/" \;
fi

echo "building $TAG ($VARIANT) on $BASE; index $INDEX${EXTRA:+ + $EXTRA}${CERT_ARG:+; CA bundle $CERT}; local wheels: $(ls "$EXTRA_DIR/wheels" 2>/dev/null | tr '\n' ' ')"
start=$(date +%s)
"$DOCKER" build --network "${DOCKER_BUILD_NETWORK:-host}" -f images/Dockerfile -t "$TAG" \
  --build-arg BASE="$BASE" --build-arg TORCH_SPEC="$TORCH_SPEC" --build-arg PIP_INDEX_URL="$INDEX" \
  --build-arg PIP_EXTRA_INDEX_URL="$EXTRA" --build-arg PIP_CERT="$CERT_ARG" .
find "$EXTRA_DIR" -mindepth 1 ! -name README.md -exec rm -rf {} +
size=$("$DOCKER" image inspect --format '{{.Size}}' "$TAG")
echo "image $TAG: $((size / 1000000)) MB, built in $(( $(date +%s) - start )) s"
# the README's table of image sizes is rendered from this file (tools/image_sizes.py)
mkdir -p dist && printf '%s\t%s\t%s\n' "$VARIANT" "$TAG" "$size" >> dist/image-sizes.tsv
