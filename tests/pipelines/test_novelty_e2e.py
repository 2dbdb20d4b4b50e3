"""The whole tiny pipeline with p = 3 utilities (accuracy, diversity, novelty), as
configs/ml100k-3.yaml sets them, on the smoke data: the step-0.25 lattice with the centroid, the
held-out disc around the centroid, and every method of that config. The report measures novelty
(``novelty@10``) for every method and task, gives the thesis' coverage (``cv_div@10``,
``cv_nov@10``) and each objective's Spearman along every edge of the simplex."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from padirec.config import load_config
from padirec.core.tasks import sample_tasks
from tests.fixtures import ROOT, run_tiny_pipeline

pytestmark = pytest.mark.slow
THREE = load_config(ROOT / "configs" / "ml100k-3.yaml")
RANDOM_TASKS = 12


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    a, ev = THREE.adapters, THREE.evaluation
    out = run_tiny_pipeline(tmp_path_factory, {
        "adapters.utilities": a.utilities, "adapters.grid_size": a.grid_size, "adapters.grid_centroid": True,
        # 12 Dirichlet draws: with seed 0, one lands in the disc, so the band has a bank task to remove
        "adapters.num_random_tasks": RANDOM_TASKS,
        "evaluation.methods": ev.methods, "evaluation.band_coordinate": ev.band_coordinate,
        "evaluation.band_low": ev.band_low, "evaluation.band_high": ev.band_high})
    out["report"] = json.loads((Path(out["art"]["report"].path) / "report.json").read_text())
    out["markdown"] = (Path(out["art"]["report"].path) / "report.md").read_text()
    return out


def test_every_method_is_measured_on_the_lattice(run):
    report = run["report"]
    assert report["utilities"] == ["accuracy", "diversity", "novelty"]
    assert len(report["tasks"]) == 16 and report["tasks"][-1] == pytest.approx([1 / 3] * 3)
    assert set(report["methods"]) == set(THREE.evaluation.methods)
    for method, rows in report["methods"].items():
        for row in rows:
            for key in ("novelty@10", "cv_div@10", "cv_nov@10"):
                assert row[key] is not None and 0.0 <= row[key] <= 1.0, (method, key, row)
        summary = report["summary"][method]
        assert "novelty@10" in summary["range"] and len(summary["se"]["novelty@10"]) == 16, method
        edges = summary["edge_spearman"]
        assert set(edges) == {"accuracy-diversity", "accuracy-novelty", "diversity-novelty"}, method
        assert set(edges["accuracy-novelty"]) == {"ndcg@10", "novelty@10"}
    assert "## Controllability along the simplex's edges" in run["markdown"]
    plots = {p.name for p in (Path(run["art"]["report"].path) / "plots").iterdir()}
    assert {"ternary_regret.png", "edges.png"} <= plots and "metrics_vs_wacc.png" not in plots
    assert "![ternary_regret.png](plots/ternary_regret.png)" in run["markdown"]


def test_the_disc_around_the_centroid_is_held_out(run):
    band = run["report"]["protocols"]["band"]
    assert "skipped" not in band, band.get("skipped")
    assert band["band_coordinate"] == "centroid_distance" and band["band"] == [0.0, 0.25]
    assert len(band["tasks"]) == 7  # the centroid, the three inner lattice points and the vertices
    weights, held_out = sample_tasks(3, THREE.adapters.grid_size, RANDOM_TASKS, True, run["cfg"].seed, centroid=True)
    inside = (np.linalg.norm(weights - 1 / 3, axis=1) <= 0.25) & ~held_out
    assert band["bank_tasks_removed"] == int(inside.sum()) > 0 and "padirec" in band["rerun"]


def test_mmr_honours_the_novelty_weight(run):
    report = run["report"]
    tasks = [tuple(w) for w in report["tasks"]]
    mmr = report["methods"]["mmr"]
    acc, nov = mmr[tasks.index((1.0, 0.0, 0.0))], mmr[tasks.index((0.0, 0.0, 1.0))]
    assert nov["novelty@10"] > acc["novelty@10"] and math.isfinite(acc["ndcg@10"])
