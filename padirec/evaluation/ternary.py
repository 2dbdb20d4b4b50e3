"""Figures of a report over three utilities (p = 3), where one weight no longer orders the tasks:

- ``ternary_regret.png``: each method's regret against the reference at every task, drawn on the
  2-simplex (one triangle per method, each on its own colour scale symmetric about 0 = the reference);
- ``edges.png``: paper Fig. 3 along each edge of the simplex: each objective's metric against the
  weight of the edge's first utility, one line per method (the tasks where the third weight is 0).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from padirec.adapters.utilities import utility_metrics
from padirec.evaluation.figure import plt, save, value
from padirec.evaluation.summary import simplex_edges

# the triangle's corners for utilities 0, 1, 2: a point is its weights' mix of them
CORNERS = np.array([[0.0, 0.0], [1.0, 0.0], [0.5, np.sqrt(3) / 2]])


def to_plane(tasks: np.ndarray) -> np.ndarray:
    """``(T, 3)`` weights on the simplex -> ``(T, 2)`` points in the triangle."""
    return np.asarray(tasks, dtype=np.float64).reshape(-1, 3) @ CORNERS


def _triangle(ax: Any, utilities: list[str]) -> None:
    ax.plot(*np.vstack([CORNERS, CORNERS[:1]]).T, color="0.4", lw=0.8)
    for (x, y), name, dy in zip(CORNERS, utilities, (-0.09, -0.09, 0.04), strict=True):
        ax.text(x, y + dy, name, ha="center", fontsize=8)
    ax.set_xlim(-0.15, 1.15)
    ax.set_ylim(-0.14, 1.0)
    ax.set_aspect("equal")
    ax.set_axis_off()


def plot_ternary_regret(report: dict[str, Any], path: Path) -> str | None:
    summary, utilities, n = report.get("summary") or {}, report["utilities"], len(report["tasks"])
    shown = [m for m, s in summary.items() if len(s.get("regret_per_task") or []) == n]
    if len(utilities) != 3 or not shown:
        return None
    xy = to_plane(np.asarray(report["tasks"]))
    regret = {m: np.array([value(v) for v in summary[m]["regret_per_task"]]) for m in shown}
    cols = min(4, len(shown))
    rows = -(-len(shown) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.9 * cols, 3.2 * rows), squeeze=False, layout="constrained")
    for ax in axes.flat[len(shown):]:
        ax.set_axis_off()
    for ax, m in zip(axes.flat, shown, strict=False):
        _triangle(ax, utilities)
        # each method on its own scale, symmetric about 0 (white: the reference's level), so a panel
        # never changes when another method joins the report
        finite = regret[m][np.isfinite(regret[m])]
        bound = max(float(np.abs(finite).max()) if finite.size else 0.0, 1e-9)
        points = ax.scatter(xy[:, 0], xy[:, 1], c=regret[m], cmap="RdBu_r", vmin=-bound, vmax=bound, s=60,
                            edgecolors="0.3", linewidths=0.4)
        ax.set_title(f"{m} (mean {np.nanmean(regret[m]):+.3f})", fontsize=9)
        fig.colorbar(points, ax=ax, shrink=0.7, label="regret vs the reference")
    return save(fig, path)


def plot_edges(report: dict[str, Any], path: Path) -> str | None:
    utilities, methods = report["utilities"], report["methods"]
    if len(utilities) < 3 or not methods or not report["tasks"]:
        return None
    tasks = np.asarray(report["tasks"], dtype=np.float64).reshape(len(report["tasks"]), -1)
    edges = simplex_edges(tasks, utilities)
    if not edges:
        return None
    keys = [key for key, _ in utility_metrics(utilities, report["k"])]
    fig, axes = plt.subplots(len(edges), len(keys), figsize=(3.6 * len(keys), 2.9 * len(edges)), squeeze=False,
                             layout="constrained")
    for row, (edge, (i, _, on)) in zip(axes, edges.items(), strict=True):
        order = on[np.argsort(tasks[on, i], kind="stable")]
        for ax, key in zip(row, keys, strict=True):
            for method, results in methods.items():
                ax.plot(tasks[order, i], [value(results[t].get(key)) for t in order], marker="o", ms=3, label=method)
            ax.set_xlabel(f"w_{utilities[i]}", fontsize=8)
            ax.set_title(f"{key}, {edge} edge", fontsize=9)
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    return save(fig, path)
