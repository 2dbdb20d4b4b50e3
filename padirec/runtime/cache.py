"""A content-addressed cache of finished stage outputs, for local runs.

On a cluster KFP's own cache does this. Locally the KFP runner has none, so a re-run after a
failure would retrain everything; instead, each deterministic stage's output is stored under
``<run_dir>/cache/<stage>/<key>/`` where the key hashes everything the output depends on: the
stage, its config section, the seed, the code (a hash of the package's source: a version number
stays the same while the code changes; in an image the source is the image's) and the content of
its inputs (the prepared data's checksum, else the checksums of every file its manifest lists).
A changed input, setting or line of code is a new key, so a stale result is never reused. Entries are verified against their manifest before reuse; an entry
that cannot be read (a corrupt ``stage_result.json``, a manifest of the wrong shape, a file that fails
its checksum, a plain file in the entry's place) is a miss:
it is removed and the stage recomputes it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import padirec
from padirec.errors import ArtifactError
from padirec.runtime.artifacts import MANIFEST, atomic_write_json, read_manifest
from padirec.runtime.finite import finite_metadata

log = logging.getLogger("padirec")
RESULT = "stage_result.json"


@functools.cache
def code_version() -> str:
    """The hash of this padirec's source (``source_hash`` of the imported package)."""
    return source_hash(Path(padirec.__file__).parent)


def source_hash(root: Path) -> str:
    """sha256 of the ``*.py`` files under ``root``: their paths and bytes."""
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(path.relative_to(root).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def input_identity(folder: str | Path) -> dict[str, Any]:
    """What an input folder's content is: the prepared data's ``data_checksum`` (its tables; the
    validation report beside them changes with every run), else every listed file's sha256 (other
    kinds, e.g. ``features``, record the data checksum they came from: not their own content)."""
    manifest = json.loads((Path(folder) / MANIFEST).read_text())
    if manifest.get("kind") == "prepared_data" and manifest.get("data_checksum"):
        return {"kind": manifest.get("kind"), "data_checksum": manifest["data_checksum"]}
    return {"kind": manifest.get("kind"), "files": {k: v["sha256"] for k, v in manifest.get("files", {}).items()}}


def cache_key(stage: str, settings: Any, inputs: list[str | Path]) -> str:
    """sha256 over the stage name, its settings (JSON-able), the code and the inputs' content."""
    key = {"stage": stage, "settings": settings, "code": code_version(),
           "inputs": [input_identity(folder) for folder in inputs]}
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:24]


def run_cached(cache_root: str | Path | None, stage: str, key: str, out_dir: str | Path,
               run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Fill ``out_dir`` from the cache entry ``stage/key`` if a valid one exists, else ``run()``
    (which writes ``out_dir`` and returns the stage's summary) and store the result. The summary
    comes back with ``cache`` (hit, miss) and no NaN or inf (``finite_metadata``: steps write it
    to KFP's metadata)."""
    out_dir = Path(out_dir)
    if cache_root is None:
        return finite_metadata(run())
    entry = Path(cache_root) / stage / key
    if entry.exists():
        try:
            result = _read_result(entry)
            read_manifest(entry)
            shutil.rmtree(out_dir, ignore_errors=True)
            shutil.copytree(entry, out_dir, ignore=shutil.ignore_patterns(RESULT))
            log.info("%s: reusing the cached result %s (same inputs and settings)", stage, key)
            return finite_metadata({**result, "cache": "hit"})
        except (ArtifactError, OSError, ValueError) as e:  # unreadable: a miss, and the entry goes
            log.warning("%s: cache entry %s unusable (%s); recomputing", stage, key, e)
            _remove(entry)
    result = run()
    tmp = entry.with_name(f".{key}.{uuid.uuid4().hex[:8]}.tmp")  # one per writer: two runs may race
    try:
        shutil.copytree(out_dir, tmp)
        atomic_write_json(tmp / RESULT, result)
        _remove(entry)
        tmp.rename(entry)  # the entry appears whole or not at all
    except OSError as e:  # another run stored it first, or the disk is full: the result stands
        log.warning("%s: could not store cache entry %s (%s)", stage, key, e)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return finite_metadata({**result, "cache": "miss"})


def _remove(entry: Path) -> None:
    """Remove an entry: a folder, or a file or link in its place (which would block the key forever)."""
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry, ignore_errors=True)
    else:
        entry.unlink(missing_ok=True)


def _read_result(entry: Path) -> dict[str, Any]:
    """The stage's summary stored with an entry; ``ValueError`` when missing, not JSON or not an
    object (a truncated write, a disk error, a hand edit)."""
    try:
        result = json.loads((entry / RESULT).read_text())
    except FileNotFoundError as e:
        raise ValueError(f"{RESULT} is missing") from e
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{RESULT} is not JSON: {e}") from e
    if not isinstance(result, dict):
        raise ValueError(f"{RESULT} holds {type(result).__name__}, not an object")
    return result
