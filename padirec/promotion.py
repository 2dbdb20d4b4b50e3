"""The last pipeline step: bundle the trained system, register it, and promote it if it earns it.

Nothing undefined is registered: when a figure the gate reads (Avg.HV, Pearson r-a, r-d, the
score) is undefined, the gate fails before registration and the reason says why. Synthetic data
never registers under the production model name.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from padirec.artifacts import read_manifest
from padirec.config_checks import check_model_name
from padirec.evaluation.response_time import speedup
from padirec.finite import finite_metadata
from padirec.serving import build_system
from padirec.tracking import MlflowTracker, Tracker, kfp_run_id
from padirec.tracking.champion import promote
from padirec.tracking.core import dataset_reference
from padirec.tracking.pipeline import config_params
from padirec.tracking.registry import (
    GateThresholds,
    evaluation_key,
    quality,
    register_system,
    undefined_figures,
)

log = logging.getLogger("padirec")


def register_and_promote_stage(data_dir: str | Path, backbone_dir: str | Path, generator_dir: str | Path,
                               report_dir: str | Path, system_dir: str | Path, cfg: Any,
                               tracker: Tracker) -> dict[str, Any]:
    """``cfg`` is the whole ``padirec.config.Config``. Without MLflow tracking only the system
    folder is written. Returns what the step records (no NaN: ``finite_metadata``).

    Safe to retry: a second attempt in the same pipeline run (``PADIREC_KFP_RUN_ID``) finds the
    version the first registered, even when the first died before promoting, and promotes it.
    """
    version, q, undefined = register_stage(data_dir, backbone_dir, generator_dir, report_dir, system_dir, cfg, tracker)
    if isinstance(tracker, MlflowTracker):  # the pipeline run's config, figures and data, compared across runs
        report = json.loads((Path(report_dir) / "report.json").read_text())
        parent = tracker.log_to_parent(config_params(cfg), headline(report, backbone_dir))
        if parent:
            MlflowTracker(tracker.uri, parent).log_dataset(Path(data_dir), context="training")
    if version is None:
        if undefined:
            reason = "quality gate failed before registration: " + "; ".join(f"{k} undefined ({v})" for k, v in undefined.items())
            log.warning("not registered: %s", reason)
            tracker.set_tags({"promotion": "rejected", "promotion.reason": reason})
            return finite_metadata({"registered": False, "decision": "rejected", "reason": reason, **q}, undefined)
        return finite_metadata({"registered": False, **q})
    p = cfg.promotion
    result = promote(tracker.uri, cfg.tracking.registered_model, version, gate(cfg),
                     allow_other_data=p.allow_other_data, on_failing_champion=p.on_failing_champion)
    tracker.set_tags({"registered_model": cfg.tracking.registered_model, "model_version": version,
                      "promotion": result["decision"], **({"challenger": result["challenger"]} if result.get("challenger") else {})})
    log.info("registered %s v%s: %s (%s)", cfg.tracking.registered_model, version, result["decision"], result["reason"])
    return finite_metadata({"registered": True, "version": version, **result, **q})


def gate(cfg: Any) -> GateThresholds:
    p = cfg.promotion
    return GateThresholds(p.min_avg_hv, p.min_pearson_ra, p.min_pearson_rd)


def register_stage(data_dir: str | Path, backbone_dir: str | Path, generator_dir: str | Path,
                   report_dir: str | Path, system_dir: str | Path, cfg: Any,
                   tracker: Tracker) -> tuple[str | None, dict[str, float], dict[str, str]]:
    """The first half of the stage: write the system folder and register it (reusing this pipeline
    run's version if an earlier attempt made it). Returns ``(version or None, quality, {undefined
    figure: why})``; nothing is registered when a figure is undefined."""
    report = json.loads((Path(report_dir) / "report.json").read_text())
    data_manifest = read_manifest(data_dir, kind="prepared_data")
    q = quality(report)
    undefined = undefined_figures(report, q)
    build_system(data_dir, backbone_dir, generator_dir, system_dir, summary=finite_metadata(q))
    if not isinstance(tracker, MlflowTracker):
        log.info("tracking is off: system written to %s, not registered", system_dir)
        return None, q, undefined
    check_model_name(cfg)
    if undefined:
        return None, q, undefined
    checksum = data_manifest.get("data_checksum", "")
    dataset = dataset_reference(data_dir, data_manifest)  # the MLflow dataset the training runs logged as input
    tags = {"data_checksum": checksum, "evaluation_key": evaluation_key(report, checksum),
            "dataset.name": dataset["name"], "dataset.digest": dataset["digest"], "dataset.source": dataset["source"],
            "backbone": cfg.backbone.model, "dataset": cfg.data.source, "config": json.dumps(cfg.to_dict(), sort_keys=True)[:5000],
            **{f"quality.{k}": v for k, v in q.items()}}
    version = register_system(tracker.uri, tracker.run_id, system_dir, cfg.tracking.registered_model, tags,
                              tracker.kfp_run_id or kfp_run_id())
    return version, q, {}


def headline(report: dict[str, Any], backbone_dir: str | Path | None = None, method: str = "padirec") -> dict[str, float]:
    """The figures a pipeline run is compared by (the parent run's metrics): ``method``'s Avg.HV,
    front HV, Pearson r-a and r-d, reward and regret (when the report has them), NDCG@k at both ends
    of the grid (``ndcg_at_10_w_acc_1``: the accuracy-only task; ``..._w_acc_0``: the task with no
    weight on accuracy), the response-time ratio of the reference method over ``method``, the
    quality score, and the backbone's test NDCG@k. Undefined figures are left out."""
    k = report.get("k", 10)
    summary = report.get("summary", {}).get(method) or {}
    out = {name: summary.get(name) for name in ("avg_hv", "front_hv", "pearson_ra", "pearson_rd", "reward", "regret")}
    tasks, cells = report.get("tasks") or [], report.get("methods", {}).get(method) or []
    if tasks and len(cells) == len(tasks):
        utilities = report.get("utilities") or ["accuracy"]
        j = utilities.index("accuracy") if "accuracy" in utilities else 0
        acc = [float(w[j]) for w in tasks]
        for label, t in (("1", acc.index(max(acc))), ("0", acc.index(min(acc)))):
            out[f"ndcg_at_{k}_w_acc_{label}"] = cells[t].get(f"ndcg@{k}")
    out["response_time_ratio"] = speedup(report.get("response_time") or {})
    out["quality_score"] = quality(report, method)["score"] if cells else None
    if backbone_dir is not None and (Path(backbone_dir) / "metrics.json").is_file():
        test = json.loads((Path(backbone_dir) / "metrics.json").read_text()).get("test") or {}
        out[f"backbone_test_ndcg_at_{k}"] = test.get(f"ndcg@{k}")
    return {name: float(v) for name, v in out.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)}
