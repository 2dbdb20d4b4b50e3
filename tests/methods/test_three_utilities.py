"""Everything downstream handles p = 3 utilities (accuracy, diversity, fairness)."""

from __future__ import annotations

import math

import numpy as np
import torch

from padirec.adapters.config import AdapterConfig
from padirec.core.layout import adapter_layout, num_params
from padirec.core.tasks import grid
from padirec.evaluation.report import build_report
from padirec.evaluation.summary import summarise
from padirec.evaluation.sweep import run_sweep
from padirec.methods.cmr import CMR, uniform_simplex
from padirec.methods.deepprl_static import DeepPRLStatic
from padirec.methods.hypernetwork import Hypernetwork
from padirec.methods.mmr import MMR
from padirec.methods.soup import Soup

UTIL = ["accuracy", "diversity", "fairness"]


def test_sweep_and_summary_with_fairness(features_factory):
    f = features_factory(groups=True)
    lay = adapter_layout(f.dim, 4)
    cfg = AdapterConfig(bottleneck=4, utilities=UTIL, epochs=1, steps_per_epoch=2, batch_size=64)
    g = torch.Generator().manual_seed(0)
    w = uniform_simplex(30, 3, g)
    methods = {
        "soup": Soup(f, UTIL, lay, torch.randn(3, num_params(lay), generator=g) * 0.1),
        "mmr": MMR(f, UTIL, k=10, num_candidates=20),
        "cmr": CMR(f, UTIL, lay, cfg, epochs=1, tasks_per_batch=2),
        "hypernetwork": Hypernetwork(f, UTIL, lay, w @ torch.randn(3, num_params(lay), generator=g), w, steps=20),
        "deepprl_static": DeepPRLStatic(f, UTIL, cfg, epochs=1, hidden=8),
    }
    tasks = grid(3, 3)  # 6 points of the 3-simplex
    result = run_sweep(methods, tasks, f, "test", 10, 0.5)
    for rows in result.metrics.values():
        assert len(rows) == len(tasks) and all("ndcg_gap@10" in r and r["ndcg_gap@10"] >= 0 for r in rows)
    summary = summarise(result.metrics, tasks, UTIL)
    for s in summary.values():
        assert 0.0 <= s["avg_hv"] <= 1.0 and 0.0 <= s["front_hv"] <= 1.0
        assert math.isnan(s["pearson_ra"])  # no Retrain in this sweep
    report = build_report(k=10, alpha=0.5, utilities=UTIL, tasks=tasks.tolist(), methods=result.metrics,
                          summary=summary)
    assert report["utilities"] == UTIL
    # the accuracy/diversity mix renormalises without the fairness weight, which weights relevance
    # per user on top (padirec.core.fairness; tests/methods/test_fairness.py)
    assert methods["deepprl_static"].mix_weights([0.25, 0.25, 0.5]) == (0.5, 0.5)
    assert abs(methods["mmr"].prepare(np.array([0.3, 0.1, 0.6])).lam - 0.75) < 1e-6
