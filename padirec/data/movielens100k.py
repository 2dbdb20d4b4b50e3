"""MovieLens-100K, embedded by way of the ``recbole==1.2.1`` wheel.

The MovieLens terms forbid redistribution, so the repository holds no data. The first use
downloads the recbole wheel from the package registry with ``pip download --no-deps`` and
extracts only the three data files into a cache outside the repository
(``$PADIREC_CACHE`` or ``~/.cache/padirec``). Later uses read the cache.

A cluster whose pods reach no package index reads a mirror instead: ``padirec mirror-ml100k
s3://bucket/ml-100k/`` copies the three files there once (from a machine that can fetch them), and
``data.path: s3://bucket/ml-100k/`` reads them (``padirec.data.sources.load_source``).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pandas as pd

from padirec.errors import PadirecError
from padirec.runtime.artifacts import atomic_write

log = logging.getLogger("padirec")

WHEEL = "recbole==1.2.1"
FILES = ("ml-100k.inter", "ml-100k.item", "ml-100k.user")


def cache_dir() -> Path:
    return Path(os.environ.get("PADIREC_CACHE", Path.home() / ".cache" / "padirec")) / "ml-100k"


def ensure_ml100k() -> Path:
    """Return the folder holding the three ML-100K files, fetching them once if needed."""
    target = cache_dir()
    if all((target / f).exists() for f in FILES):
        return target
    target.mkdir(parents=True, exist_ok=True)
    log.info("MovieLens-100K not cached; fetching %s (data files only) into %s", WHEEL, target)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", WHEEL, "-d", tmp]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("recbole-*.whl"))
        if proc.returncode != 0 or not wheels:
            raise PadirecError(
                f"could not fetch {WHEEL} to extract MovieLens-100K: {proc.stderr.strip()[-500:]}\n"
                f"Alternatively place {', '.join(FILES)} in {target}."
            )
        with zipfile.ZipFile(wheels[0]) as z:
            for name in FILES:
                data = z.read(f"recbole/dataset_example/ml-100k/{name}")
                atomic_write(target / name, lambda tmp_path, d=data: Path(tmp_path).write_bytes(d))
    return target


def mirror_ml100k(dest: str) -> list[str]:
    """Copy the three files (fetched into the cache first if needed) into folder ``dest``, local or
    ``s3://``; returns the written locations. Re-running writes the same bytes again."""
    from padirec.runtime.storage import is_s3, upload

    source = ensure_ml100k()
    written = []
    for name in FILES:
        target = f"{dest.rstrip('/')}/{name}"
        if is_s3(dest):
            upload(source / name, target)
        else:
            Path(dest).mkdir(parents=True, exist_ok=True)
            data = (source / name).read_bytes()
            atomic_write(Path(target), lambda tmp_path, d=data: Path(tmp_path).write_bytes(d))
        written.append(target)
    return written


def load_ml100k(folder: str | Path | None = None) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Raw tables: interactions (user_id, item_id, timestamp in source row order), items
    (item_id, categories = genre names, title), users (user_id, gender)."""
    folder = Path(folder) if folder else ensure_ml100k()
    # keep_default_na=False: only an empty cell is missing, an id such as "NA" is an id
    inter = pd.read_csv(folder / "ml-100k.inter", sep="\t", dtype=str, keep_default_na=False, na_values=[""])
    inter.columns = [c.split(":")[0] for c in inter.columns]
    interactions = inter[["user_id", "item_id", "timestamp"]].copy()

    item = pd.read_csv(folder / "ml-100k.item", sep="\t", dtype=str, keep_default_na=False)
    item.columns = [c.split(":")[0] for c in item.columns]
    # Genres are space separated; multi-word genres are written without spaces in this file
    # ("Children's", "Film-Noir", "Sci-Fi"), so a split on spaces is exact.
    items = pd.DataFrame({
        "item_id": item["item_id"],
        "categories": [g.split() for g in item["class"]],
        "title": item["movie_title"],
    })
    user = pd.read_csv(folder / "ml-100k.user", sep="\t", dtype=str, keep_default_na=False, na_values=[""])
    user.columns = [c.split(":")[0] for c in user.columns]
    users = user[["user_id", "gender"]].copy()
    return interactions, items, users
