"""The last pipeline step: bundle the trained system, register it, and promote it if it earns it."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from padirec.artifacts import read_manifest
from padirec.serving import build_system
from padirec.tracking import MlflowTracker, Tracker
from padirec.tracking.registry import (
    GateThresholds,
    evaluation_key,
    promote,
    quality,
    register_system,
)

log = logging.getLogger("padirec")


def register_and_promote_stage(data_dir: str | Path, backbone_dir: str | Path, generator_dir: str | Path,
                               report_dir: str | Path, system_dir: str | Path, cfg: Any,
                               tracker: Tracker) -> dict[str, Any]:
    """``cfg`` is the whole ``padirec.config.Config``. Without MLflow tracking only the system
    folder is written."""
    report = json.loads((Path(report_dir) / "report.json").read_text())
    data_manifest = read_manifest(data_dir, kind="prepared_data")
    q = quality(report)
    build_system(data_dir, backbone_dir, generator_dir, system_dir, summary=q)
    if not isinstance(tracker, MlflowTracker):
        log.info("tracking is off: system written to %s, not registered", system_dir)
        return {"registered": False, **q}
    checksum = data_manifest.get("data_checksum", "")
    tags = {"data_checksum": checksum, "evaluation_key": evaluation_key(report, checksum),
            "backbone": cfg.backbone.model, "dataset": cfg.data.source, "config": json.dumps(cfg.to_dict(), sort_keys=True)[:5000],
            **{f"quality.{k}": v for k, v in q.items()}}
    version = register_system(tracker.uri, tracker.run_id, system_dir, cfg.tracking.registered_model, tags)
    p = cfg.promotion
    result = promote(tracker.uri, cfg.tracking.registered_model, version,
                     GateThresholds(p.min_avg_hv, p.min_pearson_ra, p.min_pearson_rd))
    tracker.set_tags({"registered_model": cfg.tracking.registered_model, "model_version": version,
                      "promotion": result["decision"]})
    log.info("registered %s v%s: %s (%s)", cfg.tracking.registered_model, version, result["decision"], result["reason"])
    return {"registered": True, "version": version, **result, **q}
