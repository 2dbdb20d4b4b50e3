"""The whole tiny pipeline with p = 3 utilities (accuracy, diversity, fairness) on the synthetic data
(whose users have a gender): every stage runs, and the report measures the fairness utility (the
NDCG@10 gap between the groups) for every method and task, with its Spearman correlation and its
standard error."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.fixtures import run_tiny_pipeline

pytestmark = pytest.mark.slow
UTIL3 = ["accuracy", "diversity", "fairness"]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    run = run_tiny_pipeline(tmp_path_factory, {"adapters.utilities": UTIL3, "adapters.grid_size": 3})
    return json.loads((Path(run["art"]["report"].path) / "report.json").read_text())


def test_report_measures_fairness_for_every_method_and_task(report):
    assert report["utilities"] == UTIL3
    tasks = report["tasks"]
    assert len(tasks) == 6 and all(len(w) == 3 for w in tasks)  # the 3-simplex grid with 3 points per edge
    assert {"padirec", "retrain", "mmr", "deepprl_static", "modt4r"} <= set(report["methods"])
    for method, rows in report["methods"].items():
        assert len(rows) == len(tasks)
        for row in rows:
            gap = row["ndcg_gap@10"]
            assert gap is not None and math.isfinite(gap) and gap >= 0, (method, row)
        summary = report["summary"][method]
        assert "ndcg_gap@10" in summary["spearman"], method
        assert "ndcg_gap@10" in summary["range"], method  # an objective of the report's points
        se = summary["se"]["ndcg_gap@10"]
        assert len(se) == len(tasks) and all(v is not None and v >= 0 for v in se), method


def test_the_per_user_rankers_honour_the_fairness_weight(report):
    # pure accuracy vs pure fairness: the fairness weight changes what MMR and DeepPRL rank
    tasks = [tuple(w) for w in report["tasks"]]
    acc, fair = tasks.index((1.0, 0.0, 0.0)), tasks.index((0.0, 0.0, 1.0))
    for method in ("mmr", "deepprl_static", "modt4r"):  # deepprl: tests/methods/test_fairness.py
        rows = report["methods"][method]
        assert rows[acc] != rows[fair], method
