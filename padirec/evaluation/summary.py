"""Summary figures of the method x task sweep (SPEC sections 7 and 7b): reward, regret, objective
ranges, Pearson, Spearman, and the paper's Avg.HV and front HV.

Every method's metrics over the tasks become points in objective space, one per task, with one
coordinate per utility, measured by its metric (``padirec.core.utilities``: ``accuracy`` ->
NDCG@k, ``diversity`` -> alpha-NDCG@k, ``fairness`` -> the NDCG@k gap between user groups,
lower is better). Each objective is min-max normalised to
[0, 1] across all methods and tasks together, turned so that 1 is best (``normalise``: for each
objective ``z = (v - min) / (max - min)``, or ``(max - v) / (max - min)`` when lower is better, min
and max over every method and task of the report), and then:

- ``reward``: the mean over tasks of the task's own objective ``sum_j w_j z_j`` (SPEC 7b), with
  ``reward_per_task`` the per-task values (aligned with the tasks);
- ``regret``: the mean over tasks of the reference method's (Retrain's) per-task reward minus the
  method's (``regret_per_task``); positive = worse than Retrain. The min of the normalisation
  cancels in the difference, so regret depends on the other methods of the report only through
  each objective's span ``max - min``; reward depends on both;
- ``range``: per objective metric, ``max - min`` of the method's raw values over the tasks (how
  much of the trade-off the method's weights actually move); ``range_norm`` the same in
  normalised units (the fraction of the span all methods together cover);
- ``avg_hv`` (the paper's metric): mean over tasks of the hypervolume of the method's single point w.r.t. the
  reference point 0 (for one point that is the product of its coordinates);
- ``front_hv``: the hypervolume of all the method's points together (its trade-off front);
- ``pearson_ra`` / ``pearson_rd`` (and ``pearson_rf`` with the fairness utility, on the NDCG gap):
  Pearson correlation over the tasks between the method's
  NDCG@k (resp. alpha-NDCG@k) and the reference method's (Retrain, assumed optimal);
- ``spearman``: per metric, the Spearman correlation of the metric with ``w_acc`` over the
  tasks (controllability: NDCG should rise and alpha-NDCG fall with ``w_acc``).

Hypervolumes use pymoo's ``HV`` (exact for any number of objectives; it minimises, so points
are negated and the reference point is the origin).

NaN policy (no warnings, no crash; NaN becomes ``null`` in report.json):

- a correlation is NaN when fewer than 2 tasks have finite values in both series, or when
  either series is constant over those tasks (the correlation is undefined, not 0);
- a correlation with a missing reference method (no Retrain in the sweep) is NaN;
- an objective that is constant across every method and task does not discriminate: it
  normalises to 1 for every point, so hypervolumes reduce to the other objectives;
- a task where a method's metric is NaN contributes no point: ``avg_hv`` averages the tasks with
  finite points and ``front_hv`` uses them; with no finite point both are NaN. Likewise that task's
  reward is NaN (null) and ``reward`` averages the finite ones; ``regret`` averages the tasks where
  both the method's and the reference's rewards are finite, NaN without a reference method;
- a range is NaN when the method has no finite value of that metric.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from pymoo.indicators.hv import HV
from scipy import stats

from padirec.core.utilities import metric_key, utility_metrics
from padirec.runtime.finite import correlation_reason, undefined_reasons


def objective_points(
    results: Mapping[str, Sequence[Mapping[str, float]]], utilities: Sequence[str], k: int = 10
) -> dict[str, np.ndarray]:
    """Raw objective values ``{method: (num_tasks, p)}`` from per-task metric dicts."""
    keys = [key for key, _ in utility_metrics(utilities, k)]
    return {
        m: np.array([[_as_float(row.get(key)) for key in keys] for row in rows], dtype=np.float64).reshape(-1, len(keys))
        for m, rows in results.items()
    }


def normalise(points: Mapping[str, np.ndarray], maximise: Sequence[bool]) -> dict[str, np.ndarray]:
    """Min-max normalise each objective over all methods and tasks; 1 = best, 0 = worst.

    ``points``: ``{method: (num_tasks, p)}``. NaN stays NaN; a constant objective maps to 1.
    """
    p = len(maximise)
    stacked = np.concatenate([np.asarray(v, dtype=np.float64).reshape(-1, p) for v in points.values()]) \
        if points else np.zeros((0, p))
    out: dict[str, np.ndarray] = {}
    lo = np.full(p, np.nan)
    hi = np.full(p, np.nan)
    for j in range(p):
        finite = stacked[np.isfinite(stacked[:, j]), j]
        if finite.size:
            lo[j], hi[j] = finite.min(), finite.max()
    for m, v in points.items():
        v = np.asarray(v, dtype=np.float64).reshape(-1, p)
        z = np.empty_like(v)
        for j in range(p):
            span = hi[j] - lo[j]
            if not np.isfinite(span) or span <= 0:
                z[:, j] = np.where(np.isfinite(v[:, j]), 1.0, np.nan)
            elif maximise[j]:
                z[:, j] = (v[:, j] - lo[j]) / span
            else:
                z[:, j] = (hi[j] - v[:, j]) / span
        out[m] = z
    return out


def hypervolume(points: np.ndarray) -> float:
    """Hypervolume ``float`` of normalised points ``(n, p)`` (larger is better) w.r.t. 0.

    Rows with a NaN are dropped; NaN when no row is left.
    """
    points = np.asarray(points, dtype=np.float64)
    points = points.reshape(-1, points.shape[-1]) if points.ndim else points.reshape(1, 1)
    points = points[np.all(np.isfinite(points), axis=1)]
    if points.shape[0] == 0:
        return math.nan
    indicator = HV(ref_point=np.zeros(points.shape[1]))
    return float(indicator(-points))


def avg_hv(points: np.ndarray) -> float:
    """Mean over tasks of the hypervolume of each task's point, ``points (num_tasks, p)``."""
    values = [hypervolume(row[None, :]) for row in np.asarray(points, dtype=np.float64)]
    values = [v for v in values if math.isfinite(v)]
    return float(np.mean(values)) if values else math.nan


def front_hv(points: np.ndarray) -> float:
    """Hypervolume of the whole front a method traces over the tasks, ``points (num_tasks, p)``."""
    return hypervolume(points)


def task_rewards(points: np.ndarray, tasks: np.ndarray) -> np.ndarray:
    """Per-task normalised reward ``sum_j w_j z_j``: ``points (T, p)`` normalised objectives (1 =
    best), ``tasks (T, p)`` their weights -> ``(T,)``; NaN where the task's point has a NaN."""
    points = np.asarray(points, dtype=np.float64).reshape(len(tasks), -1)
    tasks = np.asarray(tasks, dtype=np.float64).reshape(len(tasks), -1)
    if points.shape != tasks.shape:
        raise ValueError(f"points {points.shape} and task weights {tasks.shape} differ")
    out = (points * tasks).sum(1)
    out[~np.all(np.isfinite(points), axis=1)] = math.nan
    return out


def finite_mean(values: Sequence[float]) -> float:
    """Mean of the finite values; NaN when there is none."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else math.nan


def value_range(values: Sequence[float]) -> float:
    """``max - min`` of the finite values; NaN when there is none."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    return float(v.max() - v.min()) if v.size else math.nan


def _paired_finite(x: Sequence[float], y: Sequence[float]) -> tuple[np.ndarray, np.ndarray] | None:
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"series of different lengths: {x.shape[0]} and {y.shape[0]}")
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if x.size < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    return x, y


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson r over paired finite values; NaN when undefined (see the module's NaN policy)."""
    pair = _paired_finite(x, y)
    if pair is None:
        return math.nan
    return float(np.clip(stats.pearsonr(*pair).statistic, -1.0, 1.0))


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rho over paired finite values; NaN when undefined (see the module's NaN policy)."""
    pair = _paired_finite(x, y)
    if pair is None:
        return math.nan
    return float(stats.spearmanr(*pair).statistic)


def summarise(
    results: Mapping[str, Sequence[Mapping[str, float]]],
    tasks: np.ndarray,
    utilities: Sequence[str],
    k: int = 10,
    reference: str = "retrain",
) -> dict[str, dict]:
    """Per method: ``reward``, ``regret`` (and per task), ``range``, ``range_norm``, ``pearson_ra``,
    ``pearson_rd``, ``spearman``, ``avg_hv``, ``front_hv``, ``undefined`` (see the module's docstring).

    ``results``: ``{method: [metrics dict per task]}`` aligned with ``tasks (num_tasks, p)``
    (columns in the order of ``utilities``; ``w_acc`` is the ``accuracy`` column).
    ``spearman`` maps every metric key found in the results to its rank correlation with w_acc.
    """
    tasks = np.asarray(tasks, dtype=np.float64).reshape(len(tasks), -1)
    if tasks.shape[1] != len(utilities):
        raise ValueError(f"tasks have {tasks.shape[1]} weights but there are {len(utilities)} utilities")
    for m, rows in results.items():
        if len(rows) != tasks.shape[0]:
            raise ValueError(f"method {m!r} has {len(rows)} task results for {tasks.shape[0]} tasks")
    w_acc = tasks[:, list(utilities).index("accuracy")] if "accuracy" in utilities else np.full(len(tasks), np.nan)
    objectives = utility_metrics(utilities, k)
    raw = objective_points(results, utilities, k)
    normalised = normalise(raw, [mx for _, mx in objectives])
    reward = {m: task_rewards(normalised[m], tasks) for m in results}
    acc_key, div_key = metric_key("accuracy", k), metric_key("diversity", k)
    ref_rows = results.get(reference)

    def series(rows: Sequence[Mapping[str, float]], key: str) -> np.ndarray:
        return np.array([_as_float(r.get(key)) for r in rows], dtype=np.float64)

    summary: dict[str, dict] = {}
    for m, rows in results.items():
        metric_keys = sorted({key for r in rows for key in r})
        regret = reward[reference] - reward[m] if ref_rows is not None else np.full(len(tasks), math.nan)
        summary[m] = {
            "reward": finite_mean(reward[m]),
            "regret": finite_mean(regret),
            "reward_per_task": reward[m].tolist(),
            "regret_per_task": regret.tolist(),
            "range": {key: value_range(raw[m][:, j]) for j, (key, _) in enumerate(objectives)},
            "range_norm": {key: value_range(normalised[m][:, j]) for j, (key, _) in enumerate(objectives)},
            "avg_hv": avg_hv(normalised[m]),
            "front_hv": front_hv(normalised[m]),
            "pearson_ra": pearson(series(rows, acc_key), series(ref_rows, acc_key)) if ref_rows else math.nan,
            "pearson_rd": pearson(series(rows, div_key), series(ref_rows, div_key)) if ref_rows else math.nan,
            "spearman": {key: spearman(series(rows, key), w_acc) for key in metric_keys},
        }
        if "fairness" in utilities:  # the third utility's curve against Retrain's, as r-a and r-d
            fair_key = metric_key("fairness", k)
            summary[m]["pearson_rf"] = (pearson(series(rows, fair_key), series(ref_rows, fair_key)) if ref_rows
                                        else math.nan)
        ref = {key: series(ref_rows, key) if ref_rows else None for key in (acc_key, div_key)}
        why = {f"pearson_{x}": correlation_reason(series(rows, key), ref[key], f"{m} {key}", f"{reference} {key}")
               for x, key in (("ra", acc_key), ("rd", div_key))}
        if "pearson_rf" in summary[m]:
            fair_key = metric_key("fairness", k)
            why["pearson_rf"] = correlation_reason(series(rows, fair_key), series(ref_rows, fair_key) if ref_rows
                                                   else None, f"{m} {fair_key}", f"{reference} {fair_key}")
        why["reward"] = "no task has a defined point"
        why["regret"] = (f"no reference method ({reference}) in the sweep" if ref_rows is None
                         else f"no task where both {m} and {reference} have a defined point")
        summary[m]["undefined"] = undefined_reasons(summary[m], why)  # why a figure is null (padirec.runtime.finite)
    return summary


def pareto_front(points: np.ndarray) -> np.ndarray:
    """Indices of the non-dominated rows of ``points (n, p)`` (larger is better), NaN rows dropped."""
    points = np.asarray(points, dtype=np.float64)
    idx = [i for i in range(len(points)) if np.all(np.isfinite(points[i]))]
    front = []
    for i in idx:
        dominated = any(
            np.all(points[j] >= points[i]) and np.any(points[j] > points[i]) for j in idx if j != i
        )
        if not dominated:
            front.append(i)
    return np.array(front, dtype=np.int64)


def _as_float(v: object) -> float:
    if v is None:
        return math.nan
    try:
        return float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan
