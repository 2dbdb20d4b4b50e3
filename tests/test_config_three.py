"""configs/ml100k-3.yaml: three objectives on the 2-simplex, its lattice and its held-out disc."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from padirec.config import load_config
from padirec.core.tasks import Band, grid, sample_tasks
from padirec.evaluation.protocols import band_of, band_task_index, in_band
from padirec.evaluation.summary import edge_measurable, edge_spearman, simplex_edges

ROOT = Path(__file__).resolve().parents[1]


def test_the_three_objective_config_loads_and_its_tasks():
    cfg = load_config(ROOT / "configs" / "ml100k-3.yaml")
    a, ev = cfg.adapters, cfg.evaluation
    assert a.utilities == ["accuracy", "diversity", "novelty"]
    tasks = grid(3, a.grid_size, a.grid_centroid)
    assert len(tasks) == 16 and np.allclose(tasks.sum(1), 1.0)
    assert np.isclose(tasks, 1.0).any(1).sum() == 3 and np.allclose(tasks[-1], 1 / 3)  # vertices, centroid
    assert {0.0, 0.25, 0.5, 0.75, 1.0} == set(np.round(tasks[:15].ravel(), 6))
    band = band_of(ev)
    assert band == Band(0.0, 0.25, "centroid_distance")
    inside = in_band(tasks, a.utilities, band)
    assert inside.sum() == 4 and np.allclose(tasks[inside].max(1), [0.5, 0.5, 0.5, 1 / 3])
    index = band_task_index(tasks, a.utilities, band)  # the disc and the three vertices
    assert len(index) == 7
    weights, held = sample_tasks(3, a.grid_size, a.num_random_tasks, a.hold_out_grid, cfg.seed, a.grid_centroid)
    assert weights.shape == (16 + 89, 3) and held[:16].all() and not held[16:].any()
    assert 0 < in_band(weights[16:], a.utilities, band).sum() < 89  # the disc removes some bank draws
    assert "deepprl" not in ev.methods and "padirec" in ev.methods


def test_grid_centroid_is_added_once():
    assert len(grid(3, 7, centroid=True)) == len(grid(3, 7)) == 28  # step 1/6 has the centroid already
    assert len(grid(2, 11, centroid=True)) == 11


def test_edge_spearman_signs_and_measurability():
    tasks = grid(3, 5, centroid=True)
    utilities = ["accuracy", "diversity", "novelty"]
    edges = simplex_edges(tasks, utilities)
    assert list(edges) == ["accuracy-diversity", "accuracy-novelty", "diversity-novelty"]
    assert all(len(on) == 5 for _, _, on in edges.values())
    rows = [{"ndcg@10": w[0], "alpha_ndcg@10": w[1] ** 2, "novelty@10": 1 - w[2]} for w in tasks]
    es = edge_spearman(rows, tasks, utilities)
    assert es["accuracy-diversity"] == {"ndcg@10": pytest.approx(1.0), "alpha_ndcg@10": pytest.approx(1.0)}
    assert es["diversity-novelty"]["novelty@10"] == pytest.approx(-1.0)
    se = {"ndcg@10": [0.6] * len(tasks), "alpha_ndcg@10": [0.01] * len(tasks)}
    seen = edge_measurable(rows, se, tasks, utilities)
    assert seen["accuracy-diversity"] == {"ndcg@10": False, "alpha_ndcg@10": True}
    assert seen["accuracy-novelty"]["novelty@10"] is None  # no standard errors
    fair = edge_spearman([{"ndcg@10": w[0], "ndcg_gap@10": w[2]} for w in tasks], tasks,
                         ["accuracy", "diversity", "fairness"])
    assert fair["accuracy-fairness"]["ndcg_gap@10"] == pytest.approx(-1.0)  # lower is better: negated
