"""Summary figures of the method x task sweep: reward, regret, objective
ranges, Pearson, Spearman, and the paper's Avg.HV and front HV.

Every method's metrics over the tasks become points in objective space, one per task, with one
coordinate per utility, measured by its metric (``padirec.core.utilities``: ``accuracy`` ->
NDCG@k, ``diversity`` -> alpha-NDCG@k, ``fairness`` -> the NDCG@k gap between user groups,
lower is better). Each objective is normalised on a ``Scale`` fixed before the methods are
compared, so that no method's figures depend on which other methods are in the report:
``z = (v - worst) / (best - worst)`` (1 = best), where ``best`` and ``worst`` are the reference
method's (Retrain's) own front ends: per objective, its best and worst value over the simplex's
vertices (the pure tasks; the payoff table of multi-objective optimisation). ``reference_scale``
builds it from the reference's results alone; a report without the reference method falls back
to the old min-max over every method and task (``roster_scale``, labelled "roster" in the
report, and then the figures do depend on the roster). Methods may score outside [0, 1] (beyond
Retrain's ends). Then:

- ``reward``: the mean over tasks of the task's own objective ``sum_j w_j z_j``, with
  ``reward_per_task`` the per-task values (aligned with the tasks);
- ``regret``: the mean over tasks of the reference method's (Retrain's) per-task reward minus the
  method's (``regret_per_task``); positive = worse than Retrain;
- ``range``: per objective metric, ``max - min`` of the method's raw values over the tasks (how
  much of the trade-off the method's weights actually move); ``range_norm`` the same in
  normalised units (the fraction of Retrain's span between its front ends);
- ``avg_hv`` (the paper's metric): mean over tasks of the hypervolume of the method's single point w.r.t. the
  reference point 0 (for one point that is the product of its coordinates);
- ``front_hv``: the hypervolume of all the method's points together (its trade-off front), against
  the fixed reference point ``z = 0`` (Retrain's worst front end in every objective; a point below
  it in any objective adds nothing);
- ``tracking_error``: per objective metric, the mean over tasks of ``|method - reference|`` in raw
  units, and the per-task values (how closely the method follows Retrain's curve);
- ``dominance``: per task, whether the method's point Pareto-dominates (``dominates``), is
  dominated by (``dominated``), equals (``equal``) or is incomparable with (``incomparable``) the
  reference's point at the same task, in raw units, with the counts;
- ``pearson_ra`` / ``pearson_rd`` (and ``pearson_rf`` with the fairness utility, on the NDCG gap):
  Pearson correlation over the tasks between the method's
  NDCG@k (resp. alpha-NDCG@k) and the reference method's (Retrain, assumed optimal);
- ``spearman``: per metric, the Spearman correlation of the metric with ``w_acc`` over the
  tasks (controllability: NDCG should rise and alpha-NDCG fall with ``w_acc``);
- ``edge_spearman`` (p >= 3): along each edge of the simplex (the tasks where every weight but two
  is 0, at least 3 of them), each of the two objectives' Spearman with its OWN weight, signed so
  that +1 is perfect control (a lower-is-better metric's rho is negated): ``{"a-b": {metric: rho}}``.

Hypervolumes use pymoo's ``HV`` (exact for any number of objectives; it minimises, so points
are negated and the reference point is the origin).

NaN policy (no warnings, no crash; NaN becomes ``null`` in report.json):

- a correlation is NaN when fewer than 2 tasks have finite values in both series, or when
  either series is constant over those tasks (the correlation is undefined, not 0);
- a correlation with a missing reference method (no Retrain in the sweep) is NaN;
- an objective whose scale has ``best == worst`` (constant at the reference's ends) does not
  discriminate: it normalises to 1 for every finite point, so hypervolumes reduce to the others;
- a task where a method's metric is NaN contributes no point: ``avg_hv`` averages the tasks with
  finite points and ``front_hv`` uses them; with no finite point both are NaN. Likewise that task's
  reward is NaN (null) and ``reward`` averages the finite ones; ``regret`` averages the tasks where
  both the method's and the reference's rewards are finite, NaN without a reference method;
- a range is NaN when the method has no finite value of that metric.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from pymoo.indicators.hv import HV

from padirec.adapters.utilities import metric_key, utility_metrics
from padirec.runtime.finite import correlation_reason, undefined_reasons


def objective_keys(utilities: Sequence[str], k: int = 10) -> list[str]:
    """The metric of each utility, in order (``ndcg@k``, ``alpha_ndcg@k``, ...)."""
    return [key for key, _ in utility_metrics(utilities, k)]


def objective_points(
    results: Mapping[str, Sequence[Mapping[str, float]]], utilities: Sequence[str], k: int = 10
) -> dict[str, np.ndarray]:
    """Raw objective values ``{method: (num_tasks, p)}`` from per-task metric dicts."""
    keys = [key for key, _ in utility_metrics(utilities, k)]
    return {
        m: np.array([[_as_float(row.get(key)) for key in keys] for row in rows], dtype=np.float64).reshape(-1, len(keys))
        for m, rows in results.items()
    }


@dataclass(frozen=True)
class Scale:
    """Each objective's normalisation ``z = (v - worst) / (best - worst)`` (1 = best), in the order
    of the utilities. ``source``: where the ends came from, as the report states it."""

    worst: tuple[float, ...]
    best: tuple[float, ...]
    source: str

    def to_dict(self, keys: Sequence[str]) -> dict:
        """The report's ``normalisation`` section: ``{"source", "objectives": {metric: {worst, best}}}``."""
        return {"source": self.source,
                "objectives": {key: {"worst": w, "best": b} for key, w, b in zip(keys, self.worst, self.best,
                                                                                 strict=True)}}

    @classmethod
    def from_dict(cls, section: Mapping, keys: Sequence[str]) -> Scale:
        ends = section["objectives"]
        return cls(tuple(_as_float(ends[k]["worst"]) for k in keys), tuple(_as_float(ends[k]["best"]) for k in keys),
                   str(section["source"]))


def reference_scale(ref_points: np.ndarray, tasks: np.ndarray, maximise: Sequence[bool],
                    reference: str = "retrain") -> Scale:
    """The scale from the reference method's own points ``(T, p)`` alone: per objective its best and
    worst value over the simplex's vertices among ``tasks (T, p)`` (Retrain's front ends). Without
    every vertex (a task grid that skips one) or with a NaN there, the best and worst over all of
    its tasks, and ``source`` says so."""
    ref_points = np.asarray(ref_points, dtype=np.float64).reshape(len(tasks), -1)
    tasks = np.asarray(tasks, dtype=np.float64).reshape(len(tasks), -1)
    vertex = np.isclose(tasks.max(1), 1.0)
    rows = ref_points[vertex]
    where = f"{reference}'s front ends (its points at the {int(vertex.sum())} pure tasks)"
    if int(vertex.sum()) < tasks.shape[1] or not np.isfinite(rows).all():
        rows = ref_points[np.isfinite(ref_points).all(1)]
        where = f"{reference}'s best and worst over its {len(rows)} tasks (no complete set of pure tasks)"
    return _ends(rows, maximise, where)


def roster_scale(points: Mapping[str, np.ndarray], maximise: Sequence[bool]) -> Scale:
    """The old normalisation: min and max over every method and task of ``points``. Figures then
    depend on who else is in the report; used only without a reference method."""
    p = len(maximise)
    stacked = np.concatenate([np.asarray(v, dtype=np.float64).reshape(-1, p) for v in points.values()]) \
        if points else np.zeros((0, p))
    return _ends(stacked, maximise, "roster: min and max over every method and task of the report (no reference "
                                    "method)")


def _ends(rows: np.ndarray, maximise: Sequence[bool], source: str) -> Scale:
    worst, best = [], []
    for j, mx in enumerate(maximise):
        col = rows[np.isfinite(rows[:, j]), j] if len(rows) else np.zeros(0)
        lo, hi = (float(col.min()), float(col.max())) if col.size else (math.nan, math.nan)
        worst.append(lo if mx else hi)
        best.append(hi if mx else lo)
    return Scale(tuple(worst), tuple(best), source)


def normalise(points: Mapping[str, np.ndarray], scale: Scale) -> dict[str, np.ndarray]:
    """Each objective of ``points {method: (num_tasks, p)}`` on ``scale``; 1 = best.

    NaN stays NaN; an objective with ``best == worst`` (or undefined ends) maps to 1."""
    worst = np.asarray(scale.worst, dtype=np.float64)
    span = np.asarray(scale.best, dtype=np.float64) - worst
    ok = np.isfinite(span) & (span != 0)
    out: dict[str, np.ndarray] = {}
    for m, v in points.items():
        v = np.asarray(v, dtype=np.float64).reshape(-1, len(worst))
        z = np.where(ok, (v - worst) / np.where(ok, span, 1.0), 1.0)
        out[m] = np.where(np.isfinite(v), z, np.nan)
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
    # imported here: scipy.stats costs every step that imports this module a third of a second
    from scipy import stats

    return float(np.clip(stats.pearsonr(*pair).statistic, -1.0, 1.0))


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rho over paired finite values; NaN when undefined (see the module's NaN policy)."""
    pair = _paired_finite(x, y)
    if pair is None:
        return math.nan
    from scipy import stats

    return float(stats.spearmanr(*pair).statistic)


def simplex_edges(tasks: np.ndarray, utilities: Sequence[str]) -> dict[str, tuple[int, int, np.ndarray]]:
    """``{"a-b": (i, j, task indices)}``: for each pair of utilities, the tasks ``(T, p)`` whose other
    weights are all 0 (the edge between the two vertices), in task order; edges with fewer than 3
    tasks are left out (a rank correlation needs them)."""
    tasks = np.asarray(tasks, dtype=np.float64).reshape(len(tasks), -1)
    out = {}
    for i in range(len(utilities)):
        for j in range(i + 1, len(utilities)):
            others = np.delete(tasks, [i, j], axis=1)
            on = np.flatnonzero(np.isclose(others, 0.0, atol=1e-9).all(1))
            if len(on) >= 3:
                out[f"{utilities[i]}-{utilities[j]}"] = (i, j, on)
    return out


def edge_spearman(rows: Sequence[Mapping[str, float]], tasks: np.ndarray, utilities: Sequence[str],
                  k: int = 10) -> dict[str, dict[str, float]]:
    """``{"a-b": {metric: rho}}`` along each edge of the simplex: each of the two objectives' Spearman
    with its own weight over the edge's tasks, negated for a lower-is-better metric (+1 = control)."""
    objectives = utility_metrics(utilities, k)
    tasks = np.asarray(tasks, dtype=np.float64).reshape(len(tasks), -1)
    out = {}
    for edge, (i, j, on) in simplex_edges(tasks, utilities).items():
        out[edge] = {}
        for u in (i, j):
            key, maximise = objectives[u]
            rho = spearman([_as_float(rows[t].get(key)) for t in on], tasks[on, u])
            out[edge][key] = rho if maximise else -rho
    return out


def edge_measurable(rows: Sequence[Mapping[str, float]], se: Mapping[str, Sequence[float]], tasks: np.ndarray,
                    utilities: Sequence[str], k: int = 10) -> dict[str, dict[str, bool | None]]:
    """``{"a-b": {metric: measurable}}``: whether the objective's range along the edge exceeds twice
    its largest standard error over users on the edge's tasks (``se``: the summary's per-task
    standard errors; None where they are missing)."""
    objectives = utility_metrics(utilities, k)
    out: dict[str, dict[str, bool | None]] = {}
    for edge, (i, j, on) in simplex_edges(tasks, utilities).items():
        out[edge] = {}
        for u in (i, j):
            key = objectives[u][0]
            errors = np.array([_as_float(se[key][t]) if key in se and t < len(se[key]) else math.nan for t in on])
            values = np.array([_as_float(rows[t].get(key)) for t in on])
            out[edge][key] = (None if not np.isfinite(errors).any()
                              else bool(value_range(values) > 2 * np.nanmax(errors)))
    return out


def summarise(
    results: Mapping[str, Sequence[Mapping[str, float]]],
    tasks: np.ndarray,
    utilities: Sequence[str],
    k: int = 10,
    reference: str = "retrain",
    scale: Scale | None = None,
) -> dict[str, dict]:
    """Per method: ``reward``, ``regret`` (and per task), ``range``, ``range_norm``, ``pearson_ra``,
    ``pearson_rd``, ``spearman``, ``avg_hv``, ``front_hv``, ``tracking_error``, ``dominance``,
    ``undefined`` (see the module's docstring).

    ``results``: ``{method: [metrics dict per task]}`` aligned with ``tasks (num_tasks, p)``
    (columns in the order of ``utilities``; ``w_acc`` is the ``accuracy`` column).
    ``spearman`` maps every metric key found in the results to its rank correlation with w_acc.
    ``scale``: the normalisation (default ``report_scale`` of these results: Retrain's front ends).
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
    maximise = [mx for _, mx in objectives]
    scale = scale or report_scale(results, tasks, utilities, k, reference)
    normalised = normalise(raw, scale)
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
        if ref_rows is not None:
            summary[m]["tracking_error"] = tracking_error(raw[m], raw[reference], [key for key, _ in objectives])
            summary[m]["dominance"] = dominance_summary(raw[m], raw[reference], maximise)
        if len(utilities) >= 3:
            summary[m]["edge_spearman"] = edge_spearman(rows, tasks, utilities, k)
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


def report_scale(results: Mapping[str, Sequence[Mapping[str, float]]], tasks: np.ndarray,
                 utilities: Sequence[str], k: int = 10, reference: str = "retrain") -> Scale:
    """The report's scale: ``reference_scale`` of the reference method's results, else (no reference
    in ``results``) ``roster_scale``."""
    maximise = [mx for _, mx in utility_metrics(utilities, k)]
    if reference in results:
        ref = objective_points({reference: results[reference]}, utilities, k)[reference]
        return reference_scale(ref, tasks, maximise, reference)
    return roster_scale(objective_points(results, utilities, k), maximise)


def scale_of(report: Mapping) -> Scale:
    """The scale a report's figures are on: its ``normalisation``, else (a report written before it
    existed) ``report_scale`` of its results."""
    keys = objective_keys(report["utilities"], report["k"])
    if report.get("normalisation"):
        return Scale.from_dict(report["normalisation"], keys)
    return report_scale(report["methods"], np.asarray(report["tasks"]), report["utilities"], report["k"])


def tracking_error(points: np.ndarray, ref_points: np.ndarray, keys: Sequence[str]) -> dict[str, dict]:
    """``{metric: {"mean", "per_task"}}``: ``|method - reference|`` per task of raw points ``(T, p)``
    and its mean over the finite tasks (NaN when none)."""
    diff = np.abs(np.asarray(points, dtype=np.float64) - np.asarray(ref_points, dtype=np.float64))
    return {key: {"mean": finite_mean(diff[:, j]), "per_task": diff[:, j].tolist()} for j, key in enumerate(keys)}


DOMINANCE = ("dominates", "dominated", "equal", "incomparable")


def dominance(points: np.ndarray, ref_points: np.ndarray, maximise: Sequence[bool]) -> np.ndarray:
    """Per row of raw points ``(..., p)`` against the reference's at the same index: 0 dominates,
    1 dominated, 2 equal, 3 incomparable (``DOMINANCE``), -1 where either has a NaN. -> ``(...)``."""
    sign = np.where(np.asarray(maximise, dtype=bool), 1.0, -1.0)
    d = (np.asarray(points, dtype=np.float64) - np.asarray(ref_points, dtype=np.float64)) * sign
    better, worse = (d > 0).any(-1), (d < 0).any(-1)
    out = np.select([better & ~worse, worse & ~better, ~better & ~worse], [0, 1, 2], default=3)
    return np.where(np.isfinite(d).all(-1), out, -1)


def dominance_summary(points: np.ndarray, ref_points: np.ndarray, maximise: Sequence[bool]) -> dict:
    """``{"per_task": [verdict or None], "counts": {verdict: n}}`` of ``dominance``."""
    codes = dominance(points, ref_points, maximise)
    return {"per_task": [DOMINANCE[c] if c >= 0 else None for c in codes.tolist()],
            "counts": {name: int((codes == i).sum()) for i, name in enumerate(DOMINANCE)}}


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
