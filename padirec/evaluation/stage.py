"""The ``evaluate`` stage: folders in (``EvaluationInputs``), a report folder out.

It reads the prepared data, the frozen backbone, the adapter bank and the generator, reads the
frozen features (the ``features`` artifact; without one, computed once), builds the methods of
``cfg.evaluation.methods`` and writes ``report.json`` (schema in ``report.py``), ``report.md``,
``plots/*.png`` and a manifest of kind ``report``: the method x task sweep over the evaluation
grid, the summary, the protocols (``protocols.py``) and the analyses. The band protocol's
generator and the ceiling's second Retrain come from their own steps (``trained_inputs.py``):
the stage trains no model itself. With ``time_responses`` (the pipeline's evaluate step) it first times new
tasks with the very methods it has fitted, so each method is fitted once per pipeline run
(MODT4R's fit alone took about 200 s at ML-1M size).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from padirec.adapters.bank import load_bank
from padirec.adapters.features_stage import frozen_features
from padirec.backbones.checkpoint import backbone_sha256
from padirec.config import Config
from padirec.core.tracker import NullTracker, Tracker
from padirec.data.dataset import load_prepared
from padirec.errors import ArtifactError, ConfigError
from padirec.evaluation.evidence import assemble_report, gather_evidence
from padirec.evaluation.markdown import render_markdown
from padirec.evaluation.report import metric_name, validate_report
from padirec.evaluation.response_time import speedup
from padirec.methods.registry import MethodContext, method_with_role
from padirec.runtime.artifacts import (
    atomic_write_json,
    atomic_write_text,
    read_manifest,
    write_manifest,
)
from padirec.runtime.seeding import pick_device, seed_everything

log = logging.getLogger("padirec")

REPORT_FILE = "report.json"
MARKDOWN_FILE = "report.md"
PLOT_DIR = "plots"


@dataclass(frozen=True)
class EvaluationInputs:
    """The evaluate stage's folders. ``generator``: read only when a method asks for it;
    ``features``: the frozen features (computed here when None); ``band_generator`` and
    ``ceiling``: the outputs of the steps that train them, required when the config needs them
    (the stage trains no model itself: ``evidence.require_trained_inputs``).
    ``time_responses``: time every method on new tasks first (``_time_new_tasks``)."""

    data: str | Path
    backbone: str | Path
    bank: str | Path
    generator: str | Path | None = None
    features: str | Path | None = None
    band_generator: str | Path | None = None
    ceiling: str | Path | None = None
    time_responses: bool = False


@dataclass
class StageInputs:
    context: MethodContext  # what the methods are built from
    backbone_name: str
    versions: dict[str, str | None]


def load_inputs(folders: EvaluationInputs, cfg: Config) -> StageInputs:
    """Read and cross-check every input folder; the frozen features come from ``folders.features``
    (the pipeline's ``features`` artifact), else are computed once here (the generator is read only
    when a method asks for it)."""
    device = pick_device(cfg.device)
    utilities = list(cfg.adapters.utilities)
    data_dir, backbone_dir, bank_dir, generator_dir = folders.data, folders.backbone, folders.bank, folders.generator
    data = load_prepared(data_dir)
    bank = load_bank(bank_dir, device)
    if bank.utilities != utilities:
        raise ConfigError(f"adapters.utilities {utilities} differ from the bank's {bank.utilities} ({bank_dir})")
    backbone_sha = backbone_sha256(backbone_dir)
    if bank.manifest.get("backbone_sha256") not in (None, backbone_sha):
        raise ArtifactError(f"{bank_dir}: the adapter bank was trained on another backbone "
                            f"({str(bank.manifest['backbone_sha256'])[:12]}..., not {backbone_sha[:12]}... in {backbone_dir})")
    features = frozen_features(data, backbone_dir, folders.features, cfg.adapters, cfg.data.max_len, device)
    versions = {
        "data_sha256": data.manifest.get("data_checksum"),
        "backbone_sha256": backbone_sha,
        "bank_sha256": _file_sha(bank_dir, "adapters.safetensors"),
        "generator_sha256": _file_sha(generator_dir, "generator.safetensors") if generator_dir else None,
    }
    name = read_manifest(backbone_dir, kind="backbone", verify=False)["config"].get("model", "")
    context = MethodContext(features=features, data=data, layout=bank.layout, adapters=cfg.adapters, seed=cfg.seed,
                            k=cfg.evaluation.k, max_len=cfg.data.max_len, bank=bank, generator=generator_dir)
    return StageInputs(context, name, versions)


def _file_sha(folder: str | Path, name: str) -> str | None:
    files = read_manifest(folder, verify=False).get("files", {})
    return files.get(name, {}).get("sha256")


def write_report(out_dir: str | Path, report: dict[str, Any], cfg: Config) -> dict[str, Any]:
    """Write report.json, report.md, the plots and the manifest into ``out_dir``."""
    out_dir = Path(out_dir)
    validate_report(report)
    # imported here: matplotlib costs every step that imports this module half a second
    from padirec.evaluation.plots import make_plots

    plots = make_plots(report, out_dir / PLOT_DIR)
    atomic_write_json(out_dir / REPORT_FILE, report)
    atomic_write_text(out_dir / MARKDOWN_FILE, render_markdown(report, plots, PLOT_DIR))
    files = [REPORT_FILE, MARKDOWN_FILE] + [f"{PLOT_DIR}/{p}" for p in plots]
    return write_manifest(out_dir, "report", files, cfg.to_dict(), versions=report["versions"])


def _following(prefix: str, s: dict[str, Any]) -> dict[str, float]:
    """Tracking error per metric and the dominance counts against the reference, as metrics."""
    out = {f"{prefix}/tracking_error_{metric_name(key)}": e["mean"]
           for key, e in (s.get("tracking_error") or {}).items() if e.get("mean") is not None}
    counts = (s.get("dominance") or {}).get("counts") or {}
    out.update({f"{prefix}/{name}_tasks": float(n) for name, n in counts.items() if name in ("dominates", "dominated")})
    return out


def _log_summary(tracker: Tracker, report: dict[str, Any]) -> None:
    metrics: dict[str, float] = {}
    for m, s in report["summary"].items():
        for name in ("reward", "regret", "avg_hv", "front_hv", "pearson_ra", "pearson_rd"):
            if s.get(name) is not None:
                metrics[f"{m}/{name}"] = s[name]
        for metric, rho in s["spearman"].items():
            if rho is not None:
                metrics[f"{m}/spearman_{metric_name(metric)}"] = rho
        metrics.update(_following(m, s))
    band = (report.get("protocols") or {}).get("band")
    for m, s in (band["summary"] if band else {}).items():  # the band protocol's, under band/
        for name in ("reward", "regret", "pearson_ra", "pearson_rd", "avg_hv"):
            if s.get(name) is not None:
                metrics[f"band/{m}/{name}"] = s[name]
        metrics.update(_following(f"band/{m}", s))
    for m, r in (report.get("response_time") or {}).items():
        metrics[f"{m}/response_median_s"] = r["median_s"]
    ratio = speedup(report.get("response_time") or {})
    if math.isfinite(ratio):
        metrics[f"speedup_{method_with_role('reference')}_over_{method_with_role('proposed')}"] = ratio
    if metrics:
        tracker.log_metrics(metrics)


TASK_TABLE = "per_task_results.json"


def task_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per method and grid task: ``method``, ``task`` (index in ``report["tasks"]``), the
    weights ``w_<utility>`` and every metric of the cell (``ndcg_at_10``, ...)."""
    rows = []
    for method, cells in report["methods"].items():
        summary = report.get("summary", {}).get(method) or {}
        for t, (w, cell) in enumerate(zip(report["tasks"], cells, strict=True)):
            row: dict[str, Any] = {"method": method, "task": t}
            row.update({f"w_{u}": float(x) for u, x in zip(report["utilities"], w, strict=True)})
            row.update({metric_name(m): v for m, v in cell.items()})
            for name in ("reward", "regret"):  # per task, where the summary has them
                per_task = summary.get(f"{name}_per_task")
                if isinstance(per_task, list) and len(per_task) == len(cells):
                    row[name] = per_task[t]
            rows.append(row)
    return rows


def _log_task_table(tracker: Tracker, report: dict[str, Any]) -> None:
    """The sweep's per-task results as the run's table ``per_task_results.json`` (``mlflow.log_table``):
    keyed by method and task, not on a metric's step axis."""
    rows = task_rows(report)
    if rows:
        tracker.log_table(rows, TASK_TABLE)


def evaluate_stage(folders: EvaluationInputs, out_dir: str | Path, cfg: Config,
                   tracker: Tracker | None = None) -> dict[str, Any]:
    """Every method x every grid task on the test split -> the report folder. Returns the report."""
    seed_everything(cfg.seed)
    inputs = load_inputs(folders, cfg)
    report = assemble_report(gather_evidence(inputs.context, cfg, folders), cfg, inputs.versions, inputs.backbone_name)
    publish_report(out_dir, report, cfg, tracker)
    return report


def publish_report(out_dir: str | Path, report: dict[str, Any], cfg: Config, tracker: Tracker | None = None) -> None:
    """The report folder, and its figures, table and files in the step's tracked run."""
    tracker = tracker or NullTracker()
    write_report(out_dir, report, cfg)
    _log_summary(tracker, report)
    _log_task_table(tracker, report)
    tracker.log_artifacts(str(out_dir), "report")
