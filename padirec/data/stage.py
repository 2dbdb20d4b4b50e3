"""The data stage: a configured source -> the prepared folder."""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

from padirec.core.tracker import NullTracker, Tracker
from padirec.data.config import DataConfig
from padirec.data.prepare import MIN_ITEMS, prepare
from padirec.data.registry import SOURCES  # noqa: F401 - every built-in source registered
from padirec.data.sources import load_source
from padirec.runtime.progress import Timer

log = logging.getLogger("padirec")


def run_data_stage(cfg: DataConfig, out_dir: str | Path, tracker: Tracker | None = None,
                   eval_k: int | None = None) -> dict[str, Any]:
    """Load ``cfg.source``, validate, split and write ``out_dir``. Returns the manifest.

    ``eval_k`` (the config's ``evaluation.k``): the data must hold at least ``max(10, eval_k)``
    items, so every top-k list of the later stages can be filled; the data stage refuses less,
    naming the count, instead of the backbone failing on it.

    Logged to ``tracker`` under ``data/``: ``validation.json`` (GX's full result per table, as in
    ``out_dir``), ``manifest.json`` and ``data_docs/`` (the Data Docs, ``index.html``). When a check
    fails, ``validation.json`` (with the error), ``validation_failure.txt`` and ``data_docs/`` are
    logged before the error is raised, and nothing is written to ``out_dir``
    (``padirec.data.validation.Validation``)."""
    tracker = tracker or NullTracker()
    tracker.log_params({f"data.{k}": v for k, v in asdict(cfg).items() if not isinstance(v, dict)})
    with Timer() as t:
        log.info("data: loading source %s", cfg.source)
        interactions, items, users = load_source(cfg)
        manifest = prepare(interactions, items, users, out_dir, cfg, tracker, min_items=max(MIN_ITEMS, eval_k or 0))
    tracker.log_metrics({"data_seconds": t.seconds})
    tracker.log_artifact(Path(out_dir) / "validation.json", "data")
    tracker.log_artifact(Path(out_dir) / "manifest.json", "data")
    if hasattr(tracker, "log_dataset"):
        tracker.log_dataset(Path(out_dir), manifest)
    return manifest
