"""Response time (paper Table 2, RQ2): from new task weights arriving to a model ready to serve them.

For every method, in one process on one machine: ``fit()`` once (one-off work before any task is
known, reported as ``fit_s`` but not part of the response time), one untimed warm-up task (lazy
initialisation, caches, CUDA kernels), then ``repeats`` tasks never seen before (uniform draws on
the simplex from their own seed, checked against the bank's tasks), each timed from the call to
``prepare(w)`` until its result is ready (CUDA synchronised). Retrain trains to its convergence
criterion (the adapters' epoch budget) and never reuses the bank. ``serve_s`` is the median time
of one ``scores`` call over all test users, for context: MMR and DeepPRL do their work there.

Reported per method: ``median_s``, ``p25_s``, ``p75_s``, ``repeats``, ``times_s``, ``fit_s`` (with
any one-off work ``fit`` reused from another method: ``Method.reused_fit_seconds``),
``serve_s``; the headline is ``retrain.median_s / padirec.median_s`` (the reference method over
the proposed one, ``speedup``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from padirec.core.tasks import random_tasks
from padirec.methods.base import Method
from padirec.methods.registry import method_with_role

log = logging.getLogger("padirec")

# New tasks draw from seed + this prime: a stream of their own, apart from the bank's random tasks
# (drawn from the seed itself), so a "new" task is not a bank task by construction.
NEW_TASK_SEED_OFFSET = 7919


def new_tasks(n: int, p: int, seed: int, seen: np.ndarray | None = None, tol: float = 1e-3) -> np.ndarray:
    """``(n, p)`` uniform simplex draws, each farther than ``tol`` (max-abs) from every ``seen`` task."""
    rng_seed = seed + NEW_TASK_SEED_OFFSET
    out: list[np.ndarray] = []
    while len(out) < n:
        for w in random_tasks(4 * n, p, rng_seed):
            if seen is not None and len(seen) and np.abs(np.asarray(seen) - w).max(1).min() <= tol:
                continue
            if all(np.abs(w - o).max() > tol for o in out):
                out.append(w)
            if len(out) == n:
                break
        rng_seed += 1
    return np.stack(out)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _ready(result: Any) -> None:
    """Make sure lazily computed results exist (a tensor's values are materialised on sync)."""
    if isinstance(result, torch.Tensor) and result.device.type == "cuda":
        torch.cuda.synchronize(result.device)


def time_method(method: Method, tasks: np.ndarray, warmup: np.ndarray | None = None) -> dict[str, Any]:
    """Time ``method.prepare`` on each of ``tasks (R, p)``; see the module docstring."""
    device = method.device
    start = time.perf_counter()
    method.fit()
    _sync(device)
    fit_s = time.perf_counter() - start + method.reused_fit_seconds()
    if warmup is not None:
        method.scores(method.prepare(warmup), "test")
        _sync(device)
    times, serve = [], []
    for w in tasks:
        _sync(device)
        start = time.perf_counter()
        prepared = method.prepare(w)
        _ready(prepared)
        _sync(device)
        times.append(time.perf_counter() - start)
        start = time.perf_counter()
        method.scores(prepared, "test")
        _sync(device)
        serve.append(time.perf_counter() - start)
        # before the next task: a method's prepared output can be (users, items) per split (DeepPRL's
        # ranked lists), and two tasks' at once took 4.5 GB more at 5x ML-1M's size
        del prepared
    t = np.asarray(times)
    return {
        "median_s": float(np.median(t)), "p25_s": float(np.percentile(t, 25)), "p75_s": float(np.percentile(t, 75)),
        "repeats": len(t), "times_s": t.tolist(), "fit_s": fit_s, "serve_s": float(np.median(serve)),
    }


def compare_response_time(
    methods: Mapping[str, Method], p: int, repeats: int = 5, seed: int = 0, seen: np.ndarray | None = None,
) -> dict[str, dict[str, Any]]:
    """``{method: timing}`` for every method on the same ``repeats`` new tasks."""
    if repeats < 1:
        raise ValueError(f"response_time_repeats must be >= 1, got {repeats}")
    draws = new_tasks(repeats + 1, p, seed, seen)
    warmup, tasks = draws[0], draws[1:]
    out = {}
    for key, method in methods.items():
        out[key] = time_method(method, tasks, warmup)
        log.info("response time: %s median %.4fs (p25 %.4f, p75 %.4f, %d repeats; fit %.1fs, serve %.4fs)",
                 key, out[key]["median_s"], out[key]["p25_s"], out[key]["p75_s"], out[key]["repeats"],
                 out[key]["fit_s"], out[key]["serve_s"])
    return out


def speedup(timings: Mapping[str, Mapping[str, Any]], slow: str | None = None, fast: str | None = None) -> float:
    """``timings[slow].median_s / timings[fast].median_s``; NaN when either is missing. By default
    ``slow`` is the reference method (Retrain) and ``fast`` the proposed one (PaDiRec)."""
    slow = slow or method_with_role("reference")
    fast = fast or method_with_role("proposed")
    if slow not in timings or fast not in timings or timings[fast]["median_s"] <= 0:
        return math.nan
    return float(timings[slow]["median_s"] / timings[fast]["median_s"])
