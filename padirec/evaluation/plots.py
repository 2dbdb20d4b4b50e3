"""Figures of the report (matplotlib, Agg backend: no display needed). Each takes a report dict.

- ``metrics_vs_wacc.png``: each metric against ``w_acc``, one line per method (paper Fig. 3);
- ``tradeoff.png``: the normalised accuracy/diversity plane, each method's points and front;
- ``reward_vs_wacc.png``: each method's per-task reward and regret against ``w_acc``;
- ``response_time.png``: median response time per method on a log scale (p25-p75 whiskers);
- ``robustness.png``: metric change under the same noise, per method (paper Fig. 4);
- with three utilities, ``ternary_regret.png`` and ``edges.png`` (``padirec.evaluation.ternary``)
  instead of the figures against ``w_acc``, which no longer orders the tasks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from padirec.evaluation.figure import plt
from padirec.evaluation.figure import save as _save
from padirec.evaluation.figure import value as _value
from padirec.evaluation.summary import normalise, objective_points, pareto_front, scale_of
from padirec.evaluation.ternary import plot_edges, plot_ternary_regret


def _w_acc(report: dict[str, Any]) -> np.ndarray:
    tasks = np.asarray(report["tasks"], dtype=float).reshape(len(report["tasks"]), -1)
    return tasks[:, report["utilities"].index("accuracy")]


def plot_metrics_vs_wacc(report: dict[str, Any], path: Path) -> str | None:
    if not report["methods"] or not report["tasks"] or len(report["utilities"]) != 2:
        return None
    x = _w_acc(report)
    order = np.argsort(x, kind="stable")
    metrics = sorted({m for rows in report["methods"].values() for r in rows for m in r})
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.4), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        for method, rows in report["methods"].items():
            y = np.array([_value(r.get(metric)) for r in rows])
            ax.plot(x[order], y[order], marker="o", ms=3, label=method)
        ax.set_xlabel("w_acc")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    return _save(fig, path)


def plot_tradeoff(report: dict[str, Any], path: Path) -> str | None:
    utilities = report["utilities"]
    if not report["methods"] or "diversity" not in utilities:
        return None
    k = report["k"]
    norm = normalise(objective_points(report["methods"], utilities, k), scale_of(report))
    ia, idv = utilities.index("accuracy"), utilities.index("diversity")
    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    for method, pts in norm.items():
        (line,) = ax.plot(pts[:, ia], pts[:, idv], "o", ms=4, alpha=0.7, label=method)
        front = pareto_front(pts[:, [ia, idv]])
        if len(front):
            f = pts[front][np.argsort(pts[front, ia])]
            ax.plot(f[:, ia], f[:, idv], "-", color=line.get_color(), alpha=0.8)
    ax.set_xlabel(f"accuracy (NDCG@{k}, normalised)")
    ax.set_ylabel(f"diversity (alpha-NDCG@{k}, normalised)")
    # Retrain's front ends are 0 and 1; a method beyond them is drawn, not clipped
    shown = np.vstack([[0.0, 0.0], [1.0, 1.0], *(p[:, [ia, idv]] for p in norm.values())])
    shown = shown[np.isfinite(shown).all(1)]
    lo, hi = shown.min(0), shown.max(0)
    ax.set_xlim(lo[0] - 0.05, hi[0] + 0.05)
    ax.set_ylim(lo[1] - 0.05, hi[1] + 0.05)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)


def plot_reward_vs_wacc(report: dict[str, Any], path: Path) -> str | None:
    summary = report.get("summary") or {}
    n = len(report["tasks"])
    shown = [m for m, s in summary.items() if len(s.get("reward_per_task") or []) == n]
    if not shown or not n or "accuracy" not in report["utilities"] or len(report["utilities"]) != 2:
        return None
    x = _w_acc(report)
    order = np.argsort(x, kind="stable")
    fig, axes = plt.subplots(1, 2, figsize=(8.6, 3.4), squeeze=False)
    for ax, name, title in ((axes[0][0], "reward_per_task", "reward (sum_j w_j z_j)"),
                            (axes[0][1], "regret_per_task", "regret vs the reference")):
        for m in shown:
            y = np.array([_value(v) for v in summary[m].get(name) or [None] * n])
            ax.plot(x[order], y[order], marker="o", ms=3, label=m)
        ax.set_xlabel("w_acc")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    return _save(fig, path)


def plot_response_time(report: dict[str, Any], path: Path) -> str | None:
    rt = report.get("response_time") or {}
    if not rt:
        return None
    names = list(rt)
    med = np.array([max(rt[m]["median_s"], 1e-7) for m in names])
    lo = med - np.array([max(rt[m]["p25_s"], 1e-7) for m in names])
    hi = np.array([max(rt[m]["p75_s"], 1e-7) for m in names]) - med
    fig, ax = plt.subplots(figsize=(5.5, 0.45 * len(names) + 1.2))
    ax.barh(names, med, xerr=[np.clip(lo, 0, None), np.clip(hi, 0, None)], color="tab:blue", alpha=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("seconds from new task weights to a ready model (median, p25-p75)")
    ax.grid(alpha=0.3, axis="x")
    return _save(fig, path)


def plot_robustness(report: dict[str, Any], path: Path) -> str | None:
    rob = (report.get("analyses") or {}).get("robustness") or {}
    if not rob:
        return None
    names = list(rob)
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(5.0, 3.4))
    for i, (metric, label) in enumerate((("ndcg_change", "NDCG"), ("alpha_ndcg_change", "alpha-NDCG"))):
        ax.bar(x + (i - 0.5) * 0.38, [_value(rob[m][f"{metric}_mean"]) for m in names], 0.38,
               yerr=[_value(rob[m][f"{metric}_std"]) for m in names], label=f"|change| {label}", alpha=0.85)
    ax.set_xticks(x, names)
    ax.set_ylabel("mean absolute change under noise")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    return _save(fig, path)


def make_plots(report: dict[str, Any], plot_dir: str | Path) -> list[str]:
    """Write every figure that has data into ``plot_dir``; returns the file names written."""
    plot_dir = Path(plot_dir)
    plot_dir.mkdir(parents=True, exist_ok=True)
    made = [
        plot_metrics_vs_wacc(report, plot_dir / "metrics_vs_wacc.png"),
        plot_tradeoff(report, plot_dir / "tradeoff.png"),
        plot_reward_vs_wacc(report, plot_dir / "reward_vs_wacc.png"),
        plot_response_time(report, plot_dir / "response_time.png"),
        plot_robustness(report, plot_dir / "robustness.png"),
        plot_ternary_regret(report, plot_dir / "ternary_regret.png"),
        plot_edges(report, plot_dir / "edges.png"),
    ]
    return [m for m in made if m]
