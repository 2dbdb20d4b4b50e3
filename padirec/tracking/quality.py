"""The figures a version is judged by, from its evaluation (``report.json``), and the key that says
which evaluation it was (data checksum and task grid): versions compare by score only when their
keys are equal."""

from __future__ import annotations

import json
import math
from typing import Any

from padirec.adapters.utilities import metric_key
from padirec.tracking.model_registry import to_float


def quality(report: dict[str, Any], method: str = "padirec") -> dict[str, float]:
    """The figures a version is judged by, from a ``report.json`` (NaN where undefined: see
    ``undefined_figures``).

    ``score`` is the mean over tasks of NDCG@k x alpha-NDCG@k (the raw hypervolume of each task's
    point w.r.t. the origin): unlike Avg.HV it is not normalised across the methods of one report,
    so two reports on the same data compare.
    """
    k = report.get("k", 10)
    cells = report["methods"][method]
    cells = cells.values() if isinstance(cells, dict) else cells
    accuracy, diversity = metric_key("accuracy", k), metric_key("diversity", k)
    points = [to_float(c.get(accuracy)) * to_float(c.get(diversity)) for c in cells]
    summary = report["summary"][method]
    return {
        "score": sum(points) / len(points) if points else math.nan,
        "avg_hv": to_float(summary.get("avg_hv")),
        "pearson_ra": to_float(summary.get("pearson_ra")),
        "pearson_rd": to_float(summary.get("pearson_rd")),
    }


def undefined_figures(report: dict[str, Any], figures: dict[str, float], method: str = "padirec") -> dict[str, str]:
    """``{figure: why}`` for each figure of ``quality`` that is not a finite number, with the reason
    the report gives (``summary.<method>.undefined``) where it gives one."""
    reasons = (report.get("summary", {}).get(method) or {}).get("undefined") or {}
    return {k: reasons.get(k) or ("no task has a finite NDCG x alpha-NDCG" if k == "score" else "null in the report")
            for k, v in figures.items() if not math.isfinite(v)}


def evaluation_key(report: dict[str, Any], data_checksum: str) -> str:
    import hashlib

    tasks = json.dumps(report.get("tasks"), sort_keys=True)
    return hashlib.sha256(f"{data_checksum}|{tasks}".encode()).hexdigest()[:16]
