#!/bin/sh
# pip with this build's package sources. An empty build argument means pip's own default.
[ -n "$PIP_CERT" ] || unset PIP_CERT
[ -n "$PIP_EXTRA_INDEX_URL" ] || unset PIP_EXTRA_INDEX_URL
export PIP_FIND_LINKS=/opt/build/wheels
exec pip "$@"
