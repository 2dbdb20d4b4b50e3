"""The data stage: a configured source -> the prepared folder."""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

from padirec.data.config import DataConfig
from padirec.data.prepare import prepare
from padirec.data.sources import load_source
from padirec.progress import Timer
from padirec.tracking import NullTracker, Tracker

log = logging.getLogger("padirec")


def run_data_stage(cfg: DataConfig, out_dir: str | Path, tracker: Tracker | None = None) -> dict[str, Any]:
    """Load ``cfg.source``, validate, split and write ``out_dir``. Returns the manifest."""
    tracker = tracker or NullTracker()
    tracker.log_params({f"data.{k}": v for k, v in asdict(cfg).items() if not isinstance(v, dict)})
    with Timer() as t:
        log.info("data: loading source %s", cfg.source)
        interactions, items, users = load_source(cfg)
        manifest = prepare(interactions, items, users, out_dir, cfg, tracker)
    tracker.log_metrics({"data_seconds": t.seconds})
    tracker.log_artifact(Path(out_dir) / "validation.json", "data")
    tracker.log_artifact(Path(out_dir) / "manifest.json", "data")
    if hasattr(tracker, "log_dataset"):
        tracker.log_dataset(Path(out_dir), manifest)
    return manifest
