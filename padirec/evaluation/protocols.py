"""Evaluation protocols: which tasks count as unseen, and what each method may learn from.

- ``grid`` (the paper's): the evaluation grid's tasks are held out of the generator's training
  rows, but the bank's random tasks sit arbitrarily close to them (0.0001 to 0.017 in ``w_acc``
  on ML-100K), so a bank lookup already answers them well.
- ``band``: every bank task with ``w_acc`` in the closed band ``[low, high]`` (or, with
  ``evaluation.band_coordinate: centroid_distance``, within that distance of the simplex's
  centroid: ``padirec.core.tasks.Band``) is removed from what
  the methods that learn from tasks see (``Method.learns_from_tasks``: the generator, the
  Hypernetwork, CMR's task draws, the bank baselines). The band's grid tasks are then truly
  unseen; the two ends (``w_acc = 0`` and ``1``, the simplex vertices) are evaluated beside them
  for reference. A second generator, trained on the reduced bank with the pipeline's generator
  settings and seed (``train_band_generator``), samples PaDiRec's adapters: the pipeline's
  ``band_generator`` step trains it (``band_context`` trains one only for a caller that gives
  none: the benchmarks; the evaluate stage refuses to run without that step's output).

Methods that do not learn from tasks (Retrain, Soup, MMR, DeepPRL, MODT4R) give the same result
on a task under either protocol, so their band rows are the grid sweep's rows for those tasks,
not a second run.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from padirec.adapters.bank import AdapterBank
from padirec.core.tasks import Band
from padirec.diffusion.config import GeneratorConfig
from padirec.diffusion.generator import Generator
from padirec.diffusion.stage import training_rows
from padirec.diffusion.train import train_generator
from padirec.errors import ConfigError
from padirec.evaluation.sweep import SweepResult, run_sweep
from padirec.methods.registry import METHODS, MethodContext, build_methods

log = logging.getLogger("padirec")

_TOL = 1e-9  # a task on the band's edge is inside it
GRID_DESCRIPTION = ("the paper's: the grid tasks are held out of the generator's training rows; the bank's random "
                    "tasks may lie close to them")
BAND_DESCRIPTION = ("every bank task with w_acc in the band is removed from what the generator, the Hypernetwork, "
                    "CMR's task draws and the bank baselines learn from; evaluated on the band's grid tasks, plus the "
                    "pure tasks (the ends) for reference")


class EmptyBand(ConfigError):
    """The band holds out every bank task the methods could learn from: the protocol cannot run."""


def band_of(ev: Any) -> Band:
    """The band of the evaluation settings ``ev`` (``band_low``, ``band_high``, ``band_coordinate``)."""
    return Band(ev.band_low, ev.band_high, ev.band_coordinate)


def in_band(weights: np.ndarray | torch.Tensor, utilities: Sequence[str],
            band: Band | tuple[float, float]) -> np.ndarray:
    """``(N,)`` bool: rows of ``weights (N, p)`` inside the closed ``band`` (a ``(low, high)``
    tuple is a band of ``w_acc``)."""
    band = band if isinstance(band, Band) else Band(*band)
    w = np.asarray(weights.cpu() if isinstance(weights, torch.Tensor) else weights, dtype=np.float64)
    return band.contains(w, utilities, _TOL)


def band_task_index(tasks: np.ndarray, utilities: Sequence[str], band: Band | tuple[float, float]) -> np.ndarray:
    """Indices into the grid ``tasks (T, p)`` evaluated by the band protocol: the tasks inside the
    band, then the simplex vertices (the ends) for reference, in grid order."""
    tasks = np.asarray(tasks, dtype=np.float64)
    vertex = np.isclose(tasks.max(1), 1.0)
    return np.flatnonzero(in_band(tasks, utilities, band) | vertex)


def band_bank(bank: AdapterBank, band: Band | tuple[float, float]) -> tuple[AdapterBank, int]:
    """The bank with every task in ``band`` held out, and the number of bank tasks that removed;
    ``EmptyBand`` when no task is left to learn from."""
    inside = in_band(bank.weights, bank.utilities, band)
    removed = len(np.unique(bank.task_id[inside & ~bank.held_out]))
    if (bank.held_out | inside).all():
        raise EmptyBand(f"evaluation.band_low/band_high: the band {list(band)} holds out every bank task; "
                        f"nothing is left to learn from (more adapters.num_random_tasks, or a narrower band)")
    return dataclasses.replace(bank, held_out=bank.held_out | inside), removed


def needs_band_generator(cfg: Any) -> bool:
    """Whether the band protocol samples a second generator: it runs, and a method that learns from
    tasks is built from the generator."""
    return "band" in cfg.evaluation.protocols and any(
        METHODS[m].learns_from_tasks and METHODS[m].uses_generator for m in cfg.evaluation.methods)


def train_band_generator(reduced: AdapterBank, gen_cfg: GeneratorConfig, seed: int,
                         device: torch.device | str) -> Generator:
    """The band's generator: trained on the training rows of the ``band_bank``."""
    params, weights, held_out = training_rows(reduced, gen_cfg.targets)
    return train_generator(params, weights, reduced.layout, gen_cfg, seed=seed, device=device,
                           held_out_mask=held_out, utilities=reduced.utilities)


def band_context(ctx: MethodContext, gen_cfg: GeneratorConfig, band: Band | tuple[float, float], train_gen: bool,
                 seed: int, generator: Generator | None = None) -> tuple[MethodContext, dict[str, Any]]:
    """What the methods that learn from tasks are rebuilt from under ``band``: the reduced bank, the
    band's generator (when ``train_gen``: ``generator`` if given, the ``band_generator`` step's,
    else trained here), and the band itself (CMR's task draws skip it).
    Returns the context and figures for the report (bank tasks removed, the generator's training)."""
    band = band if isinstance(band, Band) else Band(*band)
    bank = ctx.require_bank("band protocol")
    reduced, removed = band_bank(bank, band)
    info: dict[str, Any] = {"band": list(band), "band_coordinate": band.coordinate, "bank_tasks_removed": removed,
                            "bank_rows_left": int((~reduced.held_out).sum())}
    band_generator = ctx.generator
    if train_gen:
        if generator is None:
            log.info("band protocol: training a generator without the %d bank tasks in w_acc %s", removed, list(band))
            generator = train_band_generator(reduced, gen_cfg, seed, ctx.features.item_embedding.device)
        band_generator = generator
        info["generator"] = {k: float(v) for k, v in generator.stats.items()}
    return dataclasses.replace(ctx, bank=reduced, generator=band_generator, band=band), info


def select_tasks(sweep: SweepResult, index: np.ndarray, methods: Sequence[str]) -> SweepResult:
    """The rows of ``sweep`` for the tasks ``index`` and the given ``methods``."""
    pick = [int(i) for i in index]
    return SweepResult(
        tasks=sweep.tasks[pick],
        metrics={m: [sweep.metrics[m][i] for i in pick] for m in methods},
        adapters={m: sweep.adapters[m][pick] for m in methods if m in sweep.adapters},
        fit_seconds={m: sweep.fit_seconds[m] for m in methods if m in sweep.fit_seconds},
        seconds={m: sweep.seconds[m] for m in methods if m in sweep.seconds},
        per_user={m: [sweep.per_user[m][i] for i in pick] for m in methods if m in sweep.per_user},
        user_groups=sweep.user_groups,
        listed={m: [sweep.listed[m][i] for i in pick] for m in methods if m in sweep.listed},
        tail=sweep.tail,
    )


def merge(order: Sequence[str], *parts: SweepResult) -> SweepResult:
    """Sweeps over the same tasks and different methods as one, methods in ``order``."""
    out = SweepResult(tasks=parts[0].tasks, metrics={}, user_groups=parts[0].user_groups,
                      tail=next((p.tail for p in parts if p.tail is not None), None))
    for m in order:
        part = next(p for p in parts if m in p.metrics)
        out.metrics[m] = part.metrics[m]
        for name in ("adapters", "fit_seconds", "seconds", "per_user", "listed"):
            if m in getattr(part, name):
                getattr(out, name)[m] = getattr(part, name)[m]
    return out


def run_band(grid_sweep: SweepResult, ctx: MethodContext, cfg: Any, band: Band | tuple[float, float],
             split: str = "test", generator: Generator | None = None,
             ) -> tuple[SweepResult, np.ndarray, dict[str, Any]]:
    """The band protocol's sweep: the methods that learn from tasks rebuilt without the band's bank
    tasks and run on the band's tasks; the others' rows taken from ``grid_sweep``. ``generator``:
    the band's generator, trained already (``band_context``).

    Returns the sweep, the band tasks' indices into the grid, and the report's figures."""
    ev = cfg.evaluation
    index = band_task_index(grid_sweep.tasks, ctx.utilities, band)
    names = list(grid_sweep.metrics)
    learners = [m for m in names if METHODS[m].learns_from_tasks]
    fixed = [m for m in names if m not in learners]
    needs_generator = any(METHODS[m].uses_generator for m in learners)
    band_ctx, info = band_context(ctx, cfg.generator, band, needs_generator, cfg.seed, generator)
    info.update({"rerun": learners, "reused_from_grid": fixed, "task_index": index.tolist()})
    parts = [select_tasks(grid_sweep, index, fixed)]
    if learners:
        methods = build_methods(learners, band_ctx, cfg.methods)
        parts.append(run_sweep(methods, grid_sweep.tasks[index], ctx.features, split, ev.k, ev.alpha, ev.sampled,
                               cfg.seed, per_user=True))
    return merge(names, *parts), index, info


def protocol_section(description: str, tasks: np.ndarray, summary: Mapping[str, Any],
                     methods: Mapping[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """One entry of the report's ``protocols``."""
    section: dict[str, Any] = {"description": description, "tasks": np.asarray(tasks).tolist(),
                               "summary": dict(summary)}
    if methods is not None:
        section["methods"] = dict(methods)
    section.update(extra)
    return section
