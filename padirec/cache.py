"""A content-addressed cache of finished stage outputs, for local runs.

On a cluster KFP's own cache does this. Locally the KFP runner has none, so a re-run after a
failure would retrain everything; instead, each deterministic stage's output is stored under
``<run_dir>/cache/<stage>/<key>/`` where the key hashes everything the output depends on: the
stage, its config section, the seed, the padirec version and the manifests of its inputs (which
carry the checksums of every input file). A changed input, setting or version is a new key, so a
stale result is never reused. Entries are verified against their manifest before reuse.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from padirec import __version__
from padirec.artifacts import MANIFEST, atomic_write_json, read_manifest
from padirec.errors import ArtifactError

log = logging.getLogger("padirec")
RESULT = "stage_result.json"


def cache_key(stage: str, settings: Any, inputs: list[str | Path]) -> str:
    """sha256 over the stage name, its settings (JSON-able), the code version and the input
    folders' manifests."""
    h = hashlib.sha256()
    h.update(json.dumps({"stage": stage, "settings": settings, "version": __version__}, sort_keys=True,
                        default=str).encode())
    for folder in inputs:
        h.update((Path(folder) / MANIFEST).read_bytes())
    return h.hexdigest()[:24]


def run_cached(cache_root: str | Path | None, stage: str, key: str, out_dir: str | Path,
               run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Fill ``out_dir`` from the cache entry ``stage/key`` if a valid one exists, else ``run()``
    (which writes ``out_dir`` and returns the stage's summary) and store the result."""
    out_dir = Path(out_dir)
    if cache_root is None:
        return run()
    entry = Path(cache_root) / stage / key
    if (entry / RESULT).exists():
        try:
            read_manifest(entry)
            shutil.rmtree(out_dir, ignore_errors=True)
            shutil.copytree(entry, out_dir, ignore=shutil.ignore_patterns(RESULT))
            log.info("%s: reusing the cached result %s (same inputs and settings)", stage, key)
            return {**json.loads((entry / RESULT).read_text()), "cache": "hit"}
        except (ArtifactError, OSError) as e:
            log.warning("%s: cache entry %s unusable (%s); recomputing", stage, key, e)
            shutil.rmtree(entry, ignore_errors=True)
    result = run()
    tmp = entry.with_name(f".{key}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(out_dir, tmp)
    atomic_write_json(tmp / RESULT, result)
    shutil.rmtree(entry, ignore_errors=True)
    tmp.rename(entry)  # the entry appears whole or not at all
    return {**result, "cache": "miss"}
