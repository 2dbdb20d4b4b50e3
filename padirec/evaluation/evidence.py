"""The evaluate stage in two halves: the work per user (``gather_evidence``) and the report built
from it (``assemble_report``).

Everything that reads the test users (the method x task sweep, the ceiling's second Retrain, the
band protocol's sweep, the robustness perturbations, the case study's lists) lands in an
``Evidence``: per-user figures, plus what the methods produced (adapters, timings). The report's
figures are then functions of the per-user figures alone, so user shards (``shards.py``) each
gather the evidence of their users and one merge joins it and assembles the same report.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from padirec.config import Config
from padirec.core.tasks import grid
from padirec.errors import ArtifactError
from padirec.evaluation.analyses import case_study, robustness_figures, robustness_per_user
from padirec.evaluation.protocols import (
    BAND_DESCRIPTION,
    GRID_DESCRIPTION,
    EmptyBand,
    band_of,
    needs_band_generator,
    protocol_section,
    run_band,
)
from padirec.evaluation.report import build_report
from padirec.evaluation.response_time import compare_response_time, speedup
from padirec.evaluation.summary import Scale, objective_keys, report_scale, summarise
from padirec.evaluation.sweep import SplitEvaluator, SweepResult, run_sweep
from padirec.evaluation.trained_inputs import read_band_generator, read_ceiling
from padirec.evaluation.uncertainty import CeilingEval, add_uncertainty, evaluate_ceiling
from padirec.methods.registry import METHODS, MethodContext, build_methods, method_with_role
from padirec.runtime.seeding import seed_everything

log = logging.getLogger("padirec")


@dataclass
class BandEvidence:
    """The band protocol's sweep (``run_band``) and its figures, or why it was skipped."""

    sweep: SweepResult | None
    info: dict[str, Any] = field(default_factory=dict)
    skipped: str | None = None


@dataclass
class Evidence:
    """What the report needs from the users: ``sweep`` (``per_user`` kept), the timings of new
    tasks, the ceiling's second Retrain, the band sweep (None: protocol off), the robustness
    per-user values (``robustness_per_user``; None: off) and the case study (None: off)."""

    sweep: SweepResult
    timings: dict[str, Any] = field(default_factory=dict)
    ceiling: CeilingEval | None = None
    band: BandEvidence | None = None
    robustness: dict[str, Any] | None = None
    case_study: dict[str, Any] | None = None


def gather_evidence(ctx: MethodContext, cfg: Config, folders: Any, shard: bool = False) -> Evidence:
    """Fit the methods (timing new tasks first when ``folders.time_responses``), then every piece
    of per-user work in the order the report has always done it (so the global random state each
    sees is unchanged). ``folders``: the stage's ``EvaluationInputs`` (trained inputs' folders);
    ``shard``: ``ctx.features`` holds a range of the test users (``shards.py``)."""
    require_trained_inputs(folders, cfg)
    seed_everything(cfg.seed)
    ev = cfg.evaluation
    device = ctx.features.item_embedding.device
    methods = build_methods(list(ev.methods), ctx, cfg.methods)
    timings: dict[str, Any] = {}
    if folders.time_responses:
        timings = _time_new_tasks(methods, ctx, cfg)
        seed_everything(cfg.seed)  # the sweep's draws do not depend on what the timing drew
    tasks = grid(len(ctx.utilities), cfg.adapters.grid_size, cfg.adapters.grid_centroid)
    log.info("evaluate: %d methods x %d tasks, %d test users", len(methods), len(tasks), ctx.features.test.h.shape[0])
    # No tracker: the sweep would log per-task figures with the task index as the step; they go
    # into one table instead (``stage._log_task_table``).
    sweep = run_sweep(methods, tasks, ctx.features, "test", ev.k, ev.alpha, ev.sampled, cfg.seed, per_user=True,
                      fitted=folders.time_responses)
    if folders.time_responses:
        sweep.fit_seconds = {key: t["fit_s"] for key, t in timings.items()}
    reference = method_with_role("reference")
    ceiling = evaluate_ceiling(sweep, ctx, cfg, reference, second=read_ceiling(folders.ceiling, device))
    evidence = Evidence(sweep, timings, ceiling)
    if "band" in ev.protocols:
        evidence.band = _band(sweep, ctx, cfg, read_band_generator(folders.band_generator, device))
    perturbed = tuple(m for m in sweep.adapters if METHODS[m].robustness)
    if ev.robustness_repeats > 0 and perturbed:
        evaluator = SplitEvaluator(ctx.features, "test", ev.k, ev.alpha)
        evidence.robustness = robustness_per_user(sweep.adapters, ctx.features, ctx.layout, evaluator,
                                                  ev.robustness_noise, ev.robustness_repeats, cfg.seed, perturbed)
    if "diversity" in ctx.utilities and methods:
        # the proposed method's lists, else the reference's, else the first method's
        shown = method_with_role("proposed", methods) or method_with_role("reference", methods) or next(iter(methods))
        evidence.case_study = _case_study(methods[shown], ctx, cfg, shard)
    return evidence


def require_trained_inputs(folders: Any, cfg: Config) -> None:
    """The evaluate stage trains no model the pipeline graph does not show: the band protocol's
    generator and the ceiling's second Retrain come from their own steps (``trained_inputs``);
    a folder of theirs that says ``skipped`` is fine, no folder is refused."""
    reference = method_with_role("reference")
    missing = [name for name, needed in (
        ("band_generator", needs_band_generator(cfg)),
        ("ceiling", cfg.evaluation.retrain_ceiling and reference in cfg.evaluation.methods))
        if needed and getattr(folders, name) is None]
    if missing:
        raise ArtifactError(f"the evaluate stage needs the output of the {' and '.join(missing)} step(s) for this "
                            "config (EvaluationInputs." + ", .".join(missing) + "; padirec.evaluation.trained_inputs)")


def _band(sweep: SweepResult, ctx: MethodContext, cfg: Config, generator: Any) -> BandEvidence:
    """``skipped`` with the reason when the bank leaves nothing outside the band to learn from (a
    tiny bank), rather than failing the finished pipeline."""
    band = band_of(cfg.evaluation)
    try:
        band_sweep, _, info = run_band(sweep, ctx, cfg, band, "test", generator)
    except EmptyBand as e:
        log.warning("band protocol skipped: %s", e)
        return BandEvidence(None, skipped=str(e))
    return BandEvidence(band_sweep, info)


def _case_study(method: Any, ctx: MethodContext, cfg: Config, shard: bool) -> dict[str, Any] | None:
    """``analyses.case_study`` on these users; None in a shard without the configured user."""
    user = cfg.evaluation.case_study_user
    if shard and user and user not in set(ctx.features.test.users.cpu().tolist()):
        return None
    return case_study(method, ctx.data, ctx.features, ctx.utilities, cfg.evaluation.k, user)


def assemble_report(evidence: Evidence, cfg: Config, versions: dict[str, Any], backbone: str,
                    extra_analyses: dict[str, Any] | None = None) -> dict[str, Any]:
    """The report from the evidence alone (the summary, the bootstrap, the protocols, the analyses)."""
    ev, sweep = cfg.evaluation, evidence.sweep
    utilities, tasks = list(cfg.adapters.utilities), sweep.tasks
    reference = method_with_role("reference")
    # one scale for every figure of the report, from the reference's own front ends (no roster)
    scale = report_scale(sweep.metrics, tasks, utilities, ev.k, reference)
    summary = summarise(sweep.metrics, tasks, utilities, ev.k, reference=reference, scale=scale)
    uncertainty = add_uncertainty(summary, sweep, None, cfg, reference, scale=scale,  # CIs, Retrain ceiling
                                  evaluated=evidence.ceiling)
    protocols = {"grid": protocol_section(GRID_DESCRIPTION, tasks, summary)}
    if evidence.band is not None:
        protocols["band"] = _band_section(evidence.band, cfg, scale)
    analyses: dict[str, Any] = {"fit_seconds": sweep.fit_seconds, "sweep_seconds": sweep.seconds}
    if evidence.robustness is not None:
        analyses["robustness"] = robustness_figures(evidence.robustness, sweep.adapters, ev.k)
        analyses["robustness_noise_std"] = ev.robustness_noise
    if evidence.case_study is not None:
        analyses["case_study"] = evidence.case_study
    analyses.update(extra_analyses or {})
    return build_report(
        k=ev.k, alpha=ev.alpha, utilities=utilities, tasks=tasks.tolist(), methods=sweep.metrics,
        summary=summary, response_time=evidence.timings, analyses=analyses, config=cfg.to_dict(),
        versions=versions, dataset=cfg.data.source, backbone=backbone, uncertainty=uncertainty,
        protocols=protocols, normalisation=scale.to_dict(objective_keys(utilities, ev.k)),
    )


def _band_section(band: BandEvidence, cfg: Config, scale: Scale) -> dict[str, Any]:
    """The report's ``protocols.band`` on the grid's ``scale``."""
    ev, reference = cfg.evaluation, method_with_role("reference")
    utilities = list(cfg.adapters.utilities)
    if band.sweep is None:
        return protocol_section(BAND_DESCRIPTION, np.zeros((0, len(utilities))), {},
                                band=list(band_of(ev)), skipped=band.skipped)
    s = band.sweep
    band_summary = summarise(s.metrics, s.tasks, utilities, ev.k, reference=reference, scale=scale)
    add_uncertainty(band_summary, s, None, cfg, reference, ceiling=False, scale=scale)
    return protocol_section(BAND_DESCRIPTION, s.tasks, band_summary, s.metrics, **band.info)


def time_new_tasks(ctx: MethodContext, cfg: Config) -> dict[str, Any]:
    """The response-time comparison alone, on freshly built methods: with user shards it runs in
    its own step on every test user, so no shard carries its cost and it times what
    ``gather_evidence`` times."""
    seed_everything(cfg.seed)
    return _time_new_tasks(build_methods(list(cfg.evaluation.methods), ctx, cfg.methods), ctx, cfg)


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
