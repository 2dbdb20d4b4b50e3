"""The p = 3 figures: each task where its weights put it in the triangle, regret on one colour
scale, and paper Fig. 3 along the simplex's edges; a p = 2 report gets neither."""

from __future__ import annotations

import numpy as np
import pytest

from padirec.core.tasks import sample_tasks
from padirec.evaluation.plots import make_plots
from padirec.evaluation.ternary import CORNERS, to_plane

UTILITIES = ["accuracy", "diversity", "novelty"]


def report_p3() -> dict:
    tasks, _ = sample_tasks(3, 5, 0, True, 0, centroid=True)  # the step-0.25 lattice and the centroid
    rows = [{"ndcg@10": 0.1 + 0.1 * w[0], "alpha_ndcg@10": 0.5 + 0.2 * w[1], "novelty@10": 0.3 + 0.4 * w[2]}
            for w in tasks]
    regret = {"retrain": [0.0] * len(tasks), "padirec": list(0.05 * tasks[:, 2] - 0.01)}
    return {"utilities": UTILITIES, "k": 10, "tasks": tasks.tolist(),
            "methods": {"retrain": rows, "padirec": rows[::-1]},
            "summary": {m: {"regret_per_task": r} for m, r in regret.items()}}


def test_weights_land_on_the_triangle():
    assert np.allclose(to_plane(np.eye(3)), CORNERS)
    assert np.allclose(to_plane(np.full((1, 3), 1 / 3)), CORNERS.mean(0))  # the centroid
    assert np.allclose(to_plane(np.array([[0.5, 0.5, 0.0]])), [[0.5, 0.0]])  # the accuracy-diversity edge


def test_a_three_utility_report_gets_the_ternary_and_edge_figures(tmp_path):
    plots = make_plots(report_p3(), tmp_path)
    assert {"ternary_regret.png", "edges.png"} <= set(plots)
    assert not {"metrics_vs_wacc.png", "reward_vs_wacc.png"} & set(plots)  # w_acc orders nothing at p = 3
    for name in plots:
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("drop", ["summary", "methods"])
def test_without_what_they_draw_there_is_no_figure(tmp_path, drop):
    report = {**report_p3(), drop: {}}
    plots = make_plots(report, tmp_path)
    assert ("ternary_regret.png" in plots) == (drop != "summary") and ("edges.png" in plots) == (drop != "methods")
