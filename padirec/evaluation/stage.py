"""The ``evaluate`` stage: folders in (``EvaluationInputs``), a report folder out.

It reads the prepared data, the frozen backbone, the adapter bank and the generator, reads the
frozen features (the ``features`` artifact; without one, computed once), builds the methods of
``cfg.evaluation.methods`` and writes ``report.json`` (schema in ``report.py``), ``report.md``,
``plots/*.png`` and a manifest of kind ``report``: the method x task sweep over the evaluation
grid, the summary, the protocols (``protocols.py``) and the analyses. The band protocol's
generator and the ceiling's second Retrain come from their own steps (``trained_inputs.py``),
else are trained here. With ``time_responses`` (the pipeline's evaluate step) it first times new
tasks with the very methods it has fitted, so each method is fitted once per pipeline run
(MODT4R's fit alone took about 200 s at ML-1M size).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from padirec.adapters.bank import load_bank
from padirec.adapters.features_stage import frozen_features
from padirec.backbones.checkpoint import backbone_sha256
from padirec.config import Config
from padirec.core.tasks import grid
from padirec.core.tracker import NullTracker, Tracker
from padirec.data.dataset import load_prepared
from padirec.diffusion.generator import Generator
from padirec.errors import ArtifactError, ConfigError
from padirec.evaluation.analyses import case_study, robustness
from padirec.evaluation.markdown import render_markdown
from padirec.evaluation.plots import make_plots
from padirec.evaluation.protocols import (
    BAND_DESCRIPTION,
    GRID_DESCRIPTION,
    EmptyBand,
    band_of,
    protocol_section,
    run_band,
)
from padirec.evaluation.report import build_report, metric_name, validate_report
from padirec.evaluation.response_time import compare_response_time, speedup
from padirec.evaluation.summary import Scale, objective_keys, report_scale, summarise
from padirec.evaluation.sweep import SplitEvaluator, SweepResult, run_sweep
from padirec.evaluation.trained_inputs import read_band_generator, read_ceiling
from padirec.evaluation.uncertainty import add_uncertainty
from padirec.methods.registry import METHODS, MethodContext, build_methods, method_with_role
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
    ``ceiling``: the outputs of the steps that train them (trained here when None).
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
    tracker = tracker or NullTracker()
    seed_everything(cfg.seed)
    ev = cfg.evaluation
    timings: dict[str, Any] = {}
    inputs = load_inputs(folders, cfg)
    ctx = inputs.context
    device = ctx.features.item_embedding.device
    methods = build_methods(list(ev.methods), ctx, cfg.methods)
    if folders.time_responses:
        timings = _time_new_tasks(methods, ctx, cfg)
        seed_everything(cfg.seed)  # the sweep's draws do not depend on what the timing drew
    tasks = grid(len(ctx.utilities), cfg.adapters.grid_size, cfg.adapters.grid_centroid)
    log.info("evaluate: %d methods x %d tasks, %d test users", len(methods), len(tasks), ctx.features.test.h.shape[0])
    # No tracker: the sweep would log per-task figures with the task index as the step; they go
    # into one table instead (``_log_task_table``).
    sweep = run_sweep(methods, tasks, ctx.features, "test", ev.k, ev.alpha, ev.sampled, cfg.seed, per_user=True,
                      fitted=folders.time_responses)
    if folders.time_responses:
        sweep.fit_seconds = {key: t["fit_s"] for key, t in timings.items()}
    reference = method_with_role("reference")
    # one scale for every figure of the report, from the reference's own front ends (no roster)
    scale = report_scale(sweep.metrics, tasks, ctx.utilities, ev.k, reference)
    summary = summarise(sweep.metrics, tasks, ctx.utilities, ev.k, reference=reference, scale=scale)
    uncertainty = add_uncertainty(summary, sweep, ctx, cfg, reference, scale=scale,  # CIs, Retrain ceiling
                                  second=read_ceiling(folders.ceiling, device))
    protocols = {"grid": protocol_section(GRID_DESCRIPTION, tasks, summary)}
    if "band" in ev.protocols:
        protocols["band"] = _band_protocol(sweep, ctx, cfg, scale, read_band_generator(folders.band_generator, device))

    analyses: dict[str, Any] = {
        "fit_seconds": sweep.fit_seconds,
        "sweep_seconds": sweep.seconds,
    }
    perturbed = tuple(m for m in sweep.adapters if METHODS[m].robustness)
    if ev.robustness_repeats > 0 and perturbed:
        evaluator = SplitEvaluator(ctx.features, "test", ev.k, ev.alpha)
        analyses["robustness"] = robustness(sweep.adapters, ctx.features, ctx.layout, evaluator,
                                            ev.robustness_noise, ev.robustness_repeats, cfg.seed, perturbed)
        analyses["robustness_noise_std"] = ev.robustness_noise
    if "diversity" in ctx.utilities and methods:
        # the proposed method's lists, else the reference's, else the first method's
        shown = method_with_role("proposed", methods) or method_with_role("reference", methods) or next(iter(methods))
        analyses["case_study"] = case_study(methods[shown], ctx.data, ctx.features, ctx.utilities,
                                            ev.k, ev.case_study_user)
    report = build_report(
        k=ev.k, alpha=ev.alpha, utilities=ctx.utilities, tasks=tasks.tolist(), methods=sweep.metrics,
        summary=summary, response_time=timings, analyses=analyses, config=cfg.to_dict(),
        versions=inputs.versions, dataset=cfg.data.source, backbone=inputs.backbone_name, uncertainty=uncertainty,
        protocols=protocols, normalisation=scale.to_dict(objective_keys(ctx.utilities, ev.k)),
    )
    write_report(out_dir, report, cfg)
    _log_summary(tracker, report)
    _log_task_table(tracker, report)
    tracker.log_artifacts(str(out_dir), "report")
    return report


def _band_protocol(sweep: SweepResult, ctx: MethodContext, cfg: Config, scale: Scale,
                   generator: Generator | None) -> dict[str, Any]:
    """The report's ``protocols.band`` on the grid's ``scale``; ``skipped`` with the reason when the
    bank leaves nothing outside the band to learn from (a tiny bank), rather than failing the
    finished pipeline. ``generator``: the band's, trained already (else trained here)."""
    ev, reference = cfg.evaluation, method_with_role("reference")
    band = band_of(ev)
    try:
        band_sweep, _, info = run_band(sweep, ctx, cfg, band, "test", generator)
    except EmptyBand as e:
        log.warning("band protocol skipped: %s", e)
        return protocol_section(BAND_DESCRIPTION, np.zeros((0, len(ctx.utilities))), {}, band=list(band),
                                skipped=str(e))
    band_summary = summarise(band_sweep.metrics, band_sweep.tasks, ctx.utilities, ev.k, reference=reference,
                             scale=scale)
    add_uncertainty(band_summary, band_sweep, ctx, cfg, reference, ceiling=False, scale=scale)
    return protocol_section(BAND_DESCRIPTION, band_sweep.tasks, band_summary, band_sweep.metrics, **info)


def _time_new_tasks(methods: dict[str, Any], ctx: MethodContext, cfg: Config) -> dict[str, Any]:
    """``compare_response_time`` on ``methods`` (fitting each: the sweep then reuses them). New
    tasks are never in the bank (``new_tasks`` keeps them apart from its tasks), so a Retrain
    built with the bank trains every one of them."""
    assert ctx.bank is not None
    seen = ctx.bank.weights.cpu().numpy().astype(np.float64)
    timings = compare_response_time(methods, len(ctx.utilities), cfg.evaluation.response_time_repeats, cfg.seed, seen)
    ratio = speedup(timings)
    log.info("response time: %s / %s = %s", method_with_role("reference"), method_with_role("proposed"),
             f"{ratio:.1f}x" if math.isfinite(ratio) else "n/a")
    return timings
