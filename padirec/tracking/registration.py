"""The last pipeline step: bundle the trained system, register it as a model version whose run
carries the evaluation its tags claim, and promote it (``padirec.tracking.promotion``: the rule,
the head-to-head on the step's data for a version of other data)."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from padirec.config.checks import check_model_name
from padirec.evaluation.response_time import speedup
from padirec.runtime.artifacts import read_manifest
from padirec.runtime.finite import finite_metadata
from padirec.serving import build_system
from padirec.tracking import MlflowTracker, Tracker, kfp_run_id
from padirec.tracking.core import dataset_reference
from padirec.tracking.head_to_head import head_to_head
from padirec.tracking.model_registry import register_system
from padirec.tracking.pipeline import config_params
from padirec.tracking.promotion import gate, promote
from padirec.tracking.provenance import REPORT_ARTIFACT
from padirec.tracking.quality import evaluation_key, quality, undefined_figures

log = logging.getLogger("padirec")


def register_and_promote_stage(data_dir: str | Path, backbone_dir: str | Path, generator_dir: str | Path,
                               report_dir: str | Path, system_dir: str | Path, cfg: Any,
                               tracker: Tracker) -> dict[str, Any]:
    """``cfg`` is the whole ``padirec.config.Config``. Without MLflow tracking only the system
    folder is written. Returns what the step records (no NaN: ``finite_metadata``).

    Safe to retry: a second attempt in the same pipeline run (``PADIREC_KFP_RUN_ID``) finds the
    version the first registered, even when the first died before promoting, and promotes it.
    """
    build_system(data_dir, backbone_dir, generator_dir, system_dir,
                 summary=finite_metadata(quality(json.loads((Path(report_dir) / "report.json").read_text()))))
    return register_and_promote_system(system_dir, data_dir, report_dir, cfg, tracker, backbone_dir)


def register_and_promote_system(system_dir: str | Path, data_dir: str | Path, report_dir: str | Path, cfg: Any,
                                tracker: Tracker, backbone_dir: str | Path | None = None) -> dict[str, Any]:
    """Register a built system folder and promote it (the stage's second half; tests give it a
    system of their own). A version of other data is compared head to head on ``data_dir``."""
    version, q, undefined = register_system_folder(system_dir, data_dir, report_dir, cfg, tracker)
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
    p, name = cfg.promotion, cfg.tracking.registered_model
    report = json.loads((Path(report_dir) / "report.json").read_text())
    result = promote(tracker.uri, name, version, gate(cfg), experiment=cfg.tracking.experiment, margin=p.margin,
                     on_failing_champion=p.on_failing_champion, compare=compare_on(tracker.uri, name, data_dir, cfg, report))
    tracker.set_tags({"registered_model": name, "model_version": version, "promotion": result["decision"],
                      **({"challenger": result["challenger"]} if result.get("challenger") else {})})
    log.info("registered %s v%s: %s (%s)", name, version, result["decision"], result["reason"])
    return finite_metadata({"registered": True, "version": version, **result, **q})


def register_stage(data_dir: str | Path, backbone_dir: str | Path, generator_dir: str | Path,
                   report_dir: str | Path, system_dir: str | Path, cfg: Any,
                   tracker: Tracker) -> tuple[str | None, dict[str, float], dict[str, str]]:
    """The first half of the stage: write the system folder and register it (reusing this pipeline
    run's version if an earlier attempt made it). Returns ``(version or None, quality, {undefined
    figure: why})``; nothing is registered when a figure is undefined."""
    report = json.loads((Path(report_dir) / "report.json").read_text())
    build_system(data_dir, backbone_dir, generator_dir, system_dir, summary=finite_metadata(quality(report)))
    return register_system_folder(system_dir, data_dir, report_dir, cfg, tracker)


def register_system_folder(system_dir: str | Path, data_dir: str | Path, report_dir: str | Path, cfg: Any,
                           tracker: Tracker) -> tuple[str | None, dict[str, float], dict[str, str]]:
    """Register a built system folder: the run first carries the evaluation the version's tags
    claim (``REPORT_ARTIFACT``, the data checksum), which promotion checks (``provenance``)."""
    report = json.loads((Path(report_dir) / "report.json").read_text())
    data_manifest = read_manifest(data_dir, kind="prepared_data")
    q = quality(report)
    undefined = undefined_figures(report, q)
    if not isinstance(tracker, MlflowTracker):
        log.info("tracking is off: system written to %s, not registered", system_dir)
        return None, q, undefined
    check_model_name(cfg)
    if undefined:
        return None, q, undefined
    checksum = data_manifest.get("data_checksum", "")
    key = evaluation_key(report, checksum)
    tracker.log_artifact(Path(report_dir) / "report.json", str(Path(REPORT_ARTIFACT).parent))
    tracker.set_tags({"data_checksum": checksum, "evaluation_key": key})
    dataset = dataset_reference(data_dir, data_manifest)  # the MLflow dataset the training runs logged as input
    tags = {"data_checksum": checksum, "evaluation_key": key,
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


def compare_on(uri: str, model_name: str, data_dir: str | Path, cfg: Any, report: dict[str, Any] | None = None):
    """The head-to-head ``promote`` runs for a version of other data: on ``data_dir``'s test users,
    on ``report``'s tasks and metrics (else those of the report the version's run carries)."""
    p = cfg.promotion

    def compare(candidate: str, incumbent: str) -> dict[str, Any]:
        evaluation = report if report is not None else _run_report(uri, model_name, candidate)
        return head_to_head(uri, model_name, candidate, incumbent, data_dir, evaluation, cfg.data.max_len,
                            p.bootstrap_samples, p.confidence, cfg.seed)
    return compare


def _run_report(uri: str, model_name: str, version: str) -> dict[str, Any]:
    import tempfile

    from mlflow import MlflowClient

    client = MlflowClient(uri)
    run_id = client.get_model_version(model_name, version).run_id
    with tempfile.TemporaryDirectory(prefix="padirec-report-") as tmp:
        return json.loads(Path(client.download_artifacts(run_id, REPORT_ARTIFACT, tmp)).read_text())
