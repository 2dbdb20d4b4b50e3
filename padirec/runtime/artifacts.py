"""Artifacts on disk: atomic writes, checksums and the manifest beside every stage output.

Every stage writes its files under a temporary name and renames them into place, so a crash
never leaves a half-written file under the final name. The manifest records the schema version,
the sha256 of every file, the config that made them and summary stats; readers verify it.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from padirec.core.secrets import without_userinfo
from padirec.errors import ArtifactError

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` then rename the temporary file onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    return atomic_write(path, write)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as JSON. Reports and manifests hold the config: a URI's credentials, had one
    slipped past the checks, are removed (``without_userinfo``), since artifacts are copied to MLflow."""
    text = json.dumps(without_userinfo(obj), indent=2, sort_keys=True, default=_jsonable)
    return atomic_write_text(path, text + "\n")


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_manifest(
    out_dir: str | os.PathLike,
    kind: str,
    files: list[str],
    config: dict[str, Any],
    stats: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Write ``out_dir/manifest.json`` listing ``files`` (relative names) with their sha256."""
    out_dir = Path(out_dir)
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "kind": kind,
        "files": {name: {"sha256": sha256_file(out_dir / name), "bytes": (out_dir / name).stat().st_size} for name in sorted(files)},
        "config": config,
        "stats": stats or {},
        **extra,
    }
    atomic_write_json(out_dir / MANIFEST, manifest)
    return manifest


def read_manifest(out_dir: str | os.PathLike, kind: str | None = None, verify: bool = True) -> dict[str, Any]:
    """Read and check a manifest: schema version, kind and (if ``verify``) every checksum."""
    out_dir = Path(out_dir)
    path = out_dir / MANIFEST
    if not path.exists():
        raise ArtifactError(f"{path}: no manifest; is {out_dir} the output of a padirec stage?")
    try:
        manifest = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ArtifactError(f"{path}: not valid JSON ({e})") from e
    check_shape(path, manifest)
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ArtifactError(
            f"{path}: schema_version {version!r} is not supported (this padirec reads {SCHEMA_VERSION}); "
            "re-run the stage that produced it"
        )
    if kind is not None and manifest.get("kind") != kind:
        raise ArtifactError(f"{path}: expected a {kind!r} artifact, found {manifest.get('kind')!r}")
    if verify:
        for name, meta in manifest.get("files", {}).items():
            f = out_dir / name
            if not f.exists():
                raise ArtifactError(f"{f}: listed in the manifest but missing")
            digest = sha256_file(f)
            if digest != meta["sha256"]:
                raise ArtifactError(
                    f"{f}: checksum mismatch (manifest {meta['sha256'][:12]}..., file {digest[:12]}...); "
                    "the file was modified or truncated after it was written"
                )
    return manifest


def check_shape(path: Path, manifest: Any) -> None:
    """A manifest is an object whose ``files`` map each name to an object with its ``sha256``;
    valid JSON of another shape (a hand edit, another tool's file) is refused like bad JSON."""
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{path}: holds a JSON {type(manifest).__name__}, not an object")
    files = manifest.get("files", {})
    if not isinstance(files, dict):
        raise ArtifactError(f"{path}: 'files' is a {type(files).__name__}, not an object of name -> checksum")
    for name, meta in files.items():
        if not (isinstance(meta, dict) and isinstance(meta.get("sha256"), str)):
            raise ArtifactError(f"{path}: the entry of {name!r} in 'files' has no sha256")
