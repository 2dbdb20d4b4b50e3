"""How much of a gap is noise: paired bootstrap over users, standard errors, the Retrain ceiling.

The sweep's figures are means over the held-out users of one split, measured once. Three
measures of their uncertainty (issue 14), all over the same users:

- ``se``: per method, task and objective metric, the standard error of the per-task value over
  users, ``std(ddof=1) / sqrt(U)`` for a per-user mean (NDCG@k, alpha-NDCG@k); for the NDCG@k
  gap between user groups (not a mean over users) the standard deviation of its bootstrap
  replicates.
- ``vs_reference``: per method, task and objective metric, the difference to the reference
  method (Retrain), ``mean`` (the method's value minus Retrain's) with a paired percentile
  bootstrap interval ``[lo, hi]``: ``resamples`` draws of the users with replacement, the *same*
  draw for every method and task (paired), each draw's per-task means recomputed;
  ``task_mean`` = ``[point, lo, hi]`` of the difference averaged over the tasks.
- ``reward_ci`` / ``regret_ci``: ``[lo, hi]`` of reward and regret (``summary.py``) recomputed on
  every draw: per-task means on the report's fixed scale (``summary.Scale``: Retrain's front ends
  of the full sample), then reward and regret. The point figures stay the full sample's.
- ``tracking_error_ci``: per objective metric, ``[lo, hi]`` of the mean over tasks of
  ``|method - Retrain|``; ``dominance_share``: per task, the share of draws in which the method's
  point dominates (``dominates``) or is dominated by (``dominated``) Retrain's (``summary.dominance``).

Percentile intervals at ``confidence`` (default 0.95: the 2.5% and 97.5% quantiles of the
finite replicates; ``null`` when there is none). The draws come from
``numpy.random.default_rng(seed)``: the same seed gives the same intervals.

``pearson_ceiling`` (in the reference method's summary): a second Retrain (``train_ceiling``; the
pipeline's ``retrain_ceiling`` step trains it), trained with another seed on every task (``train_bank`` batched, which equals ``train_adapter`` per task, see
``padirec.adapters.train``), and the Pearson r-a / r-d of its curve against Retrain's -- no
method can be expected to follow Retrain more closely than Retrain follows itself. Its
``regret`` (on the report's normalisation spans, the min cancels) is the seed-noise floor of
regret, and its ``vs_reference`` the seed noise of every per-task metric.

Settings (``cfg.evaluation``): ``bootstrap_resamples`` (1000; 0 turns the bootstrap off), ``bootstrap_confidence``
(0.95), ``retrain_ceiling`` (True: one more Retrain of every grid task, batched),
``ceiling_seed`` (-1 = ``seed + 1``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from padirec.adapters.bank import served_adapter
from padirec.adapters.config import AdapterConfig
from padirec.adapters.features import Features
from padirec.adapters.train import train_bank
from padirec.adapters.utilities import metric_key, utility_metrics
from padirec.core.layout import Layout
from padirec.errors import ArtifactError
from padirec.evaluation.summary import (
    DOMINANCE,
    Scale,
    dominance,
    normalise,
    objective_points,
    pearson,
    reference_scale,
    report_scale,
    roster_scale,
)
from padirec.evaluation.sweep import SplitEvaluator
from padirec.methods.base import adapted_scores

PerUser = Mapping[str, Sequence[Mapping[str, np.ndarray]]]  # method -> per task -> {metric: (U,)}

_CHUNK_CELLS = 4_000_000  # counts held at once: resamples x users


@dataclass(frozen=True)
class UncertaintySettings:
    resamples: int = 1000
    confidence: float = 0.95
    retrain_ceiling: bool = True
    ceiling_seed: int = -1  # -1: the run's seed + 1


def evaluation_settings(ev: Any) -> UncertaintySettings:
    """The settings from an ``EvaluationConfig``."""
    return UncertaintySettings(resamples=ev.bootstrap_resamples, confidence=ev.bootstrap_confidence,
                               retrain_ceiling=ev.retrain_ceiling, ceiling_seed=ev.ceiling_seed)


# ----------------------------------------------------------------------------- resampling


def bootstrap_counts(n_users: int, resamples: int, seed: int) -> Iterator[np.ndarray]:
    """Chunks ``(b, U)`` of how often each user is drawn, ``resamples`` rows in all (each row sums
    to ``U``); reproducible given ``seed`` (and ``n_users``)."""
    if n_users < 1 or resamples < 1:
        return
    rng = np.random.default_rng(seed)
    chunk = max(1, min(resamples, _CHUNK_CELLS // n_users))
    p = np.full(n_users, 1.0 / n_users)
    done = 0
    while done < resamples:
        b = min(chunk, resamples - done)
        yield rng.multinomial(n_users, p, size=b).astype(np.float64)
        done += b


def _gap(values: np.ndarray, groups: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``group_gap`` of weighted means: ``values (R, U)``, ``weights (B, U)`` -> ``(R, B)``;
    ``sum_g |m_g - mean_g m_g|`` over the groups drawn at least once (0 with fewer than two)."""
    present = np.unique(groups[groups >= 0])
    if present.size < 2:
        return np.zeros((values.shape[0], weights.shape[0]))
    means = []
    for g in present:
        w = weights * (groups == g)[None, :]  # (B, U)
        den = w.sum(1)  # (B,)
        with np.errstate(invalid="ignore", divide="ignore"):
            means.append((values @ w.T) / den[None, :])  # NaN where the group was not drawn
    m = np.stack(means)  # (G, R, B)
    drawn = np.isfinite(m)
    count = drawn.sum(0)
    centre = np.where(drawn, m, 0.0).sum(0) / np.maximum(count, 1)
    gap = np.where(drawn, np.abs(m - centre[None]), 0.0).sum(0)
    return np.where(count >= 2, gap, 0.0)


def metric_replicates(
    per_user: PerUser, metrics: Sequence[str], k: int, counts: Iterator[np.ndarray] | Sequence[np.ndarray],
    groups: np.ndarray | None = None,
) -> dict[str, dict[str, np.ndarray]]:
    """``{method: {metric: (T, B)}}``: each task's metric on every resample of the users.

    ``counts``: chunks ``(b, U)`` of draw counts (``bootstrap_counts``), shared by every method
    (paired). A per-user metric's replicate is its weighted mean; ``ndcg_gap@k`` is the gap of
    the weighted group means of ``ndcg@k`` (NaN without ``groups (U,)``).
    """
    gap_key = f"ndcg_gap@{k}"
    cells = [(m, key, t) for m, rows in per_user.items() for key in metrics for t in range(len(rows))]
    source = [(m, f"ndcg@{k}" if key == gap_key else key, t) for m, key, t in cells]
    is_gap = np.array([key == gap_key for _, key, _ in cells], dtype=bool)
    values = np.stack([np.asarray(per_user[m][t][key], dtype=np.float64) for m, key, t in source]) \
        if cells else np.zeros((0, 0))
    # one product per method: a BLAS product's rounding can depend on how many rows it holds, and a
    # method's intervals must not move, not even in the last bit, when another method joins the roster
    owner = np.array([m for m, _, _ in cells], dtype=object)
    blocks = [((owner == m) & ~is_gap, (owner == m) & is_gap) for m in per_user]  # (plain, gap) rows per method
    parts = []
    for c in counts:
        rep = np.full((len(cells), c.shape[0]), math.nan)
        for plain, gap in blocks:
            if plain.any():
                rep[plain] = values[plain] @ c.T / c.sum(1)[None, :]
            if gap.any() and groups is not None:
                rep[gap] = _gap(values[gap], np.asarray(groups), c)
        parts.append(rep)
    reps = np.concatenate(parts, axis=1) if parts else np.zeros((len(cells), 0))
    out: dict[str, dict[str, np.ndarray]] = {m: {} for m in per_user}
    for i, (m, key, t) in enumerate(cells):
        out[m].setdefault(key, np.full((len(per_user[m]), reps.shape[1]), math.nan))[t] = reps[i]
    return out


def percentile_ci(replicates: np.ndarray, confidence: float = 0.95) -> np.ndarray:
    """``[lo, hi]`` along the last axis of ``replicates (..., B)``, from the finite values; NaN
    where there is none. -> ``(..., 2)``."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    r = np.asarray(replicates, dtype=np.float64)
    q = [(1 - confidence) / 2, 1 - (1 - confidence) / 2]
    r = r if r.ndim else r.reshape(1)
    flat = r.reshape(int(np.prod(r.shape[:-1])), r.shape[-1])
    out = np.full((flat.shape[0], 2), math.nan)
    for i, row in enumerate(flat):
        row = row[np.isfinite(row)]
        if row.size:
            out[i] = np.quantile(row, q)
    return out.reshape(*r.shape[:-1], 2)


def standard_error(values: np.ndarray) -> float:
    """Standard error of the mean of per-user ``values (U,)`` (finite ones); NaN with fewer than 2."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    return float(v.std(ddof=1) / math.sqrt(v.size)) if v.size >= 2 else math.nan


# ----------------------------------------------------------------------------- reward and regret


def _finite_mean(x: np.ndarray, axis: int) -> np.ndarray:
    ok = np.isfinite(x)
    n = ok.sum(axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, np.where(ok, x, 0.0).sum(axis) / np.maximum(n, 1), math.nan)


def reward_replicates(
    objectives: Mapping[str, np.ndarray], tasks: np.ndarray, scale: Scale, reference: str,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Reward and regret ``{method: (B,)}`` of objective replicates ``{method: (T, p, B)}``: every
    replicate on the report's fixed ``scale`` (``summary.normalise``), then ``summary``'s reward and
    regret. Regret is NaN without the reference method."""
    names = list(objectives)
    v = np.stack([np.asarray(objectives[m], dtype=np.float64) for m in names])  # (M, T, p, B)
    w = np.asarray(tasks, dtype=np.float64)[None, :, :, None]  # (1, T, p, 1)
    flat = np.moveaxis(v, 2, -1)  # (M, T, B, p): normalise works on the last axis
    z = np.moveaxis(normalise({"": flat}, scale)[""].reshape(flat.shape), -1, 2)  # (M, T, p, B)
    per_task = (z * w).sum(2)  # (M, T, B)
    per_task[~np.isfinite(v).all(2)] = math.nan
    reward = {m: _finite_mean(per_task[i], 0) for i, m in enumerate(names)}
    if reference in names:
        ref = per_task[names.index(reference)]
        regret = {m: _finite_mean(ref - per_task[i], 0) for i, m in enumerate(names)}
    else:
        regret = {m: np.full(v.shape[-1], math.nan) for m in names}
    return reward, regret


# ----------------------------------------------------------------------------- the whole summary


def _objectives(utilities: Sequence[str], k: int) -> list[tuple[str, bool]]:
    return list(utility_metrics(list(utilities), k))


def uncertainty_summary(
    per_user: PerUser,
    tasks: np.ndarray,
    utilities: Sequence[str],
    k: int = 10,
    reference: str = "retrain",
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    groups: np.ndarray | None = None,
    scale: Scale | None = None,
) -> dict[str, dict[str, Any]]:
    """Per method of ``per_user``: ``se``, ``vs_reference``, ``tracking_error_ci`` and
    ``dominance_share`` (these three absent without the reference method), ``reward_ci`` and
    ``regret_ci`` (see the module's docstring). ``tasks (T, p)`` in the order of ``utilities``;
    ``groups (U,)`` the users' groups for the fairness gap; ``scale`` the report's normalisation
    (default: from the full sample's points, as ``summary.report_scale``)."""
    tasks = np.asarray(tasks, dtype=np.float64).reshape(len(tasks), -1)
    objectives = _objectives(utilities, k)
    keys = [key for key, _ in objectives]
    gap_key = f"ndcg_gap@{k}"
    n_users = _n_users(per_user)
    reps = metric_replicates(per_user, keys, k, bootstrap_counts(n_users, resamples, seed), groups)
    out: dict[str, dict[str, Any]] = {}
    for m, rows in per_user.items():
        se = {key: [_rep_std(reps[m][key][t]) if key == gap_key else standard_error(rows[t][key])
                    for t in range(len(rows))] for key in keys}
        out[m] = {"se": se}
    maximise = [mx for _, mx in objectives]
    points = {m: _points(per_user[m], keys, k, groups) for m in per_user}  # {m: (T, p)}
    if scale is None:
        scale = (reference_scale(points[reference], tasks, maximise, reference) if reference in per_user
                 else roster_scale(points, maximise))
    objs = {m: np.stack([reps[m][key] for key in keys], axis=1) for m in per_user if reps[m]}  # (T, p, B)
    if reference in per_user:
        for m in per_user:
            out[m]["vs_reference"] = _differences(points[m], points[reference], reps[m], reps[reference], keys,
                                                  confidence)
            if m in objs and reference in objs:
                out[m].update(_against_reference(objs[m], objs[reference], keys, maximise, confidence))
    if reps and all(reps[m] for m in reps):
        reward, regret = reward_replicates(objs, tasks, scale, reference)
        for m in per_user:
            out[m]["reward_ci"] = percentile_ci(reward[m], confidence).tolist()
            out[m]["regret_ci"] = percentile_ci(regret[m], confidence).tolist()
    return out


def _against_reference(reps: np.ndarray, ref_reps: np.ndarray, keys: Sequence[str], maximise: Sequence[bool],
                       confidence: float) -> dict[str, Any]:
    """``tracking_error_ci`` ``{metric: [lo, hi]}`` of the mean over tasks of ``|method - reference|``
    and ``dominance_share`` ``{"dominates", "dominated": [share of draws per task]}``, from paired
    replicates ``(T, p, B)``."""
    error = np.abs(reps - ref_reps)  # (T, p, B)
    codes = dominance(np.moveaxis(reps, 1, -1), np.moveaxis(ref_reps, 1, -1), maximise)  # (T, B)
    valid = (codes >= 0).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = {name: np.where(valid > 0, (codes == i).sum(1) / np.maximum(valid, 1), math.nan).tolist()
                 for i, name in enumerate(DOMINANCE[:2])}
    return {"tracking_error_ci": {key: percentile_ci(_finite_mean(error[:, j], 0), confidence).tolist()
                                  for j, key in enumerate(keys)},
            "dominance_share": share}


def _n_users(per_user: PerUser) -> int:
    sizes = {int(np.asarray(v).shape[0]) for rows in per_user.values() for row in rows for v in row.values()}
    if len(sizes) > 1:
        raise ValueError(f"per-user values of different lengths: {sorted(sizes)}")
    return sizes.pop() if sizes else 0


def _rep_std(r: np.ndarray) -> float:
    r = np.asarray(r, dtype=np.float64)
    r = r[np.isfinite(r)]
    return float(r.std(ddof=1)) if r.size >= 2 else math.nan


def _points(rows: Sequence[Mapping[str, np.ndarray]], keys: Sequence[str], k: int,
            groups: np.ndarray | None) -> np.ndarray:
    """The full sample's ``(T, p)`` objective values (one draw of every user once)."""
    ones = [np.ones((1, _n_users({"m": rows})))]
    reps = metric_replicates({"m": rows}, keys, k, ones, groups)["m"]
    return np.stack([reps[key][:, 0] for key in keys], axis=1)


def _differences(point: np.ndarray, ref_point: np.ndarray, reps: Mapping[str, np.ndarray],
                 ref_reps: Mapping[str, np.ndarray], keys: Sequence[str], confidence: float) -> dict[str, Any]:
    out = {}
    for j, key in enumerate(keys):
        diff = reps[key] - ref_reps[key]  # (T, B), paired: the same draws
        ci = percentile_ci(diff, confidence)  # (T, 2)
        d = point[:, j] - ref_point[:, j]
        task_mean = _finite_mean(diff, 0)  # (B,)
        out[key] = {"mean": d.tolist(), "lo": ci[:, 0].tolist(), "hi": ci[:, 1].tolist(),
                    "task_mean": [float(_finite_mean(d, 0)), *percentile_ci(task_mean, confidence).tolist()]}
    return out


# ----------------------------------------------------------------------------- the Retrain ceiling


def second_retrain(
    features: Features, tasks: np.ndarray, cfg: AdapterConfig, seed: int, checkpoints: str = "mean",
) -> torch.Tensor:
    """Retrain's adapters ``(T, P)`` for every task, trained with ``seed`` (batched ``train_bank``,
    Retrain's recipe task by task up to float rounding) and served as Retrain serves them
    (``checkpoints``: the mean of the task's checkpoints, or the last)."""
    return served_adapter(train_bank(features, np.asarray(tasks, dtype=np.float64), cfg, seed).checkpoints,
                          checkpoints)


@dataclass(frozen=True)
class Ceiling:
    """The ceiling's second Retrain: its ``seed``, the grid ``tasks (T, p)`` and its served
    adapters ``params (T, P)``."""

    seed: int
    tasks: np.ndarray
    params: torch.Tensor


def ceiling_seed(cfg: Any) -> int:
    """The second Retrain's seed: ``evaluation.ceiling_seed``, or the run's seed + 1."""
    return cfg.evaluation.ceiling_seed if cfg.evaluation.ceiling_seed >= 0 else int(cfg.seed) + 1


def train_ceiling(features: Features, tasks: np.ndarray, adapters: AdapterConfig, cfg: Any, reference: str) -> Ceiling:
    """The second Retrain of ``tasks``, served as the reference serves its adapters."""
    seed = ceiling_seed(cfg)
    served = getattr(cfg.methods.get(reference), "checkpoints", "mean")
    return Ceiling(seed, np.asarray(tasks, dtype=np.float64), second_retrain(features, tasks, adapters, seed, served))


def evaluate_adapters_per_user(evaluator: SplitEvaluator, features: Features, params: torch.Tensor, layout: Layout,
                               ) -> tuple[list[dict[str, float]], list[dict[str, np.ndarray]], list[np.ndarray]]:
    """``(metrics per task, per-user metrics per task, items listed per task)`` of adapters
    ``(T, P)`` on the evaluator's split (the listed items: ``SweepResult.listed``)."""
    rows, users, listed = [], [], []
    for t in range(params.shape[0]):
        scores = adapted_scores(features, params[t:t + 1], layout, evaluator.split_name)[0]
        out, top = evaluator.per_user_lists(scores)
        items = evaluator.listed(top)
        rows.append(evaluator.aggregate(out, listed=items))
        users.append({m: v.detach().to(torch.float64).cpu().numpy() for m, v in out.items()})
        listed.append(items.cpu().numpy())
    return rows, users, listed


def ceiling_summary(
    second: Sequence[Mapping[str, float]],
    results: Mapping[str, Sequence[Mapping[str, float]]],
    tasks: np.ndarray,
    utilities: Sequence[str],
    k: int = 10,
    reference: str = "retrain",
    scale: Scale | None = None,
) -> dict[str, Any]:
    """``{"pearson_ra", "pearson_rd", "regret", "regret_per_task"}`` of a second Retrain's per-task
    metrics ``second`` against ``results[reference]``, regret on the report's ``scale`` (default:
    ``summary.report_scale`` of ``results``; the second Retrain never moves it)."""
    tasks = np.asarray(tasks, dtype=np.float64).reshape(len(tasks), -1)
    ref = results[reference]
    acc, div = metric_key("accuracy", k), metric_key("diversity", k)

    def series(rows: Sequence[Mapping[str, float]], key: str) -> np.ndarray:
        return np.array([math.nan if r.get(key) is None else float(r[key]) for r in rows])

    scale = scale or report_scale(results, tasks, utilities, k, reference)
    z = normalise(objective_points({"second": second, reference: ref}, utilities, k), scale)
    per_task = ((z[reference] - z["second"]) * tasks).sum(1)
    return {
        "pearson_ra": pearson(series(second, acc), series(ref, acc)),
        "pearson_rd": pearson(series(second, div), series(ref, div)),
        "regret": float(_finite_mean(per_task, 0)),
        "regret_per_task": per_task.tolist(),
    }


# ----------------------------------------------------------------------------- the stage's entry point


@dataclass(frozen=True)
class CeilingEval:
    """The second Retrain on the split's users: its ``seed``, the metrics per task, the per-user
    values per task and the items listed per task (``evaluate_adapters_per_user``; the coverage of
    users joined from shards)."""

    seed: int
    rows: list[dict[str, float]]
    users: list[dict[str, np.ndarray]]
    listed: list[np.ndarray] = field(default_factory=list)


def evaluate_ceiling(sweep: Any, ctx: Any, cfg: Any, reference: str | None, evaluator: SplitEvaluator | None = None,
                     second: Ceiling | None = None) -> CeilingEval | None:
    """The second Retrain (``second``, else trained here) on ``ctx.features``' users; None when the
    ceiling is off or the reference method did not run."""
    ev = cfg.evaluation
    if not (ev.retrain_ceiling and reference and reference in sweep.metrics):
        return None
    second = second or train_ceiling(ctx.features, sweep.tasks, ctx.adapters, cfg, reference)
    if second.seed != ceiling_seed(cfg) or not np.array_equal(second.tasks, sweep.tasks):
        raise ArtifactError(f"the second Retrain was trained with seed {second.seed} on {len(second.tasks)} tasks, "
                            f"not seed {ceiling_seed(cfg)} on this sweep's {len(sweep.tasks)}")
    evaluator = evaluator or SplitEvaluator(ctx.features, "test", ev.k, ev.alpha, ev.sampled, cfg.seed)
    rows, users, listed = evaluate_adapters_per_user(evaluator, ctx.features, second.params, ctx.layout)
    return CeilingEval(second.seed, rows, users, listed)


def add_uncertainty(summary: dict[str, dict[str, Any]], sweep: Any, ctx: Any, cfg: Any, reference: str | None,
                    evaluator: SplitEvaluator | None = None, ceiling: bool = True,
                    scale: Scale | None = None, second: Ceiling | None = None,
                    evaluated: CeilingEval | None = None) -> dict[str, Any]:
    """Add ``se``, ``vs_reference``, ``reward_ci``, ``regret_ci`` to ``summary`` (in place) from
    ``sweep`` (a ``SweepResult`` run with ``per_user=True``), and the reference method's
    ``pearson_ceiling`` when ``retrain_ceiling``; returns the report's ``uncertainty`` section.

    ``ctx``: the stage's ``MethodContext``; ``cfg``: the ``Config``; ``evaluator``: the split's
    ``SplitEvaluator`` for the second Retrain (built when None); ``ceiling=False`` skips that Retrain
    (the band protocol: its tasks are grid tasks, whose ceiling the grid's summary already has);
    ``scale``: the report's normalisation (default: from this sweep, ``summary.report_scale``);
    ``second``: the second Retrain, trained already (the ``retrain_ceiling`` step's), else trained here;
    ``evaluated``: that Retrain evaluated already (``evaluate_ceiling``; the merge of user shards),
    when ``ctx`` is None."""
    ev = cfg.evaluation
    st = evaluation_settings(ev)
    utilities = list(ctx.utilities if ctx is not None else cfg.adapters.utilities)
    n_users = _n_users(sweep.per_user) if sweep.per_user else 0
    section: dict[str, Any] = {"method": "paired percentile bootstrap over users", "resamples": st.resamples,
                               "confidence": st.confidence, "seed": int(cfg.seed), "users": n_users}
    if st.resamples > 0 and sweep.per_user:
        extra = uncertainty_summary(sweep.per_user, sweep.tasks, utilities, ev.k, reference or "", st.resamples,
                                    st.confidence, cfg.seed, sweep.user_groups, scale)
        for m, figures in extra.items():
            summary.setdefault(m, {}).update(figures)
    if ceiling and st.retrain_ceiling and reference and reference in sweep.metrics:
        evaluated = evaluated or evaluate_ceiling(sweep, ctx, cfg, reference, evaluator, second)
        assert evaluated is not None
        rows, users = evaluated.rows, evaluated.users
        ceiling = {"seed": evaluated.seed, "reference_seed": int(cfg.seed), "metrics": rows,
                   **ceiling_summary(rows, sweep.metrics, sweep.tasks, utilities, ev.k, reference, scale)}
        if st.resamples > 0 and reference in sweep.per_user:
            pair = {reference: sweep.per_user[reference], "second": users}
            extra = uncertainty_summary(pair, sweep.tasks, utilities, ev.k, reference, st.resamples, st.confidence,
                                        cfg.seed, sweep.user_groups, scale)
            ceiling["vs_reference"] = extra["second"]["vs_reference"]
        summary[reference]["pearson_ceiling"] = ceiling
    return section
