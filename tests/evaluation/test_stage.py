"""End to end on the tiny synthetic setup: every method through the sweep and the evaluate stage,
and the evaluator against the shared metrics."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch

from padirec.adapters.adapter import apply_adapters
from padirec.adapters.evaluate import evaluate_adapters
from padirec.core.metrics import evaluate_scores, mask_history
from padirec.errors import ConfigError
from padirec.evaluation.report import validate_report
from padirec.evaluation.response_time import new_tasks, speedup
from padirec.evaluation.stage import EvaluationInputs, evaluate_stage
from padirec.evaluation.sweep import SplitEvaluator, run_sweep
from padirec.methods.registry import METHODS, build_methods
from padirec.runtime.artifacts import read_manifest
from tests.fixtures import evaluation_inputs


def test_evaluator_matches_the_shared_metrics(tiny):
    f = tiny.features
    ev = SplitEvaluator(f, "test", 10, 0.5)
    scores = torch.randn(f.test.h.shape[0], f.num_items + 1, generator=torch.Generator().manual_seed(0))
    ours = ev(scores)
    ref = evaluate_scores(mask_history(scores, f.test.mask_rows, f.test.mask_cols), f.test.targets,
                          f.item_categories, 10, 0.5)
    for key, value in ref.items():
        assert ours[key] == pytest.approx(value, abs=1e-12)
    assert "ndcg_gap@10" in ours  # the synthetic users have a gender
    # and the same numbers as the adapter bank's own evaluation for an adapter
    bank = tiny.bank
    params = bank.params[:1]
    h = apply_adapters(f.test.h, params, bank.layout)[0]
    theirs = evaluate_adapters(f, params, bank.layout, "test")
    assert ev(h @ f.item_embedding.T)["alpha_ndcg@10"] == pytest.approx(float(theirs["alpha_ndcg@10"][0]))


def test_sweep_runs_every_method(tiny):
    cfg, f = tiny.cfg, tiny.features
    methods = build_methods(list(METHODS), tiny.context, cfg.methods)
    tasks = np.array([[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]])
    result = run_sweep(methods, tasks, f, "test", 10, 0.5)
    assert list(result.metrics) == list(METHODS)
    for m, rows in result.metrics.items():
        assert len(rows) == 3
        for r in rows:
            assert 0 <= r["ndcg@10"] <= r["hr@10"] <= 1, m
            assert 0 <= r["alpha_ndcg@10"] <= 1.0 + 1e-9, m
    assert set(result.adapters) == {key for key, cls in METHODS.items() if cls.produces_adapters}
    assert {"padirec", "retrain", "soup", "cmr", "hypernetwork", "nn_lookup", "interpolation"} <= set(result.adapters)
    assert methods["retrain"].reused == 3  # the grid tasks come from the bank
    # Soup at the pure tasks is Retrain at the pure tasks
    assert torch.equal(result.adapters["soup"][[0, 2]], result.adapters["retrain"][[0, 2]])
    # the bank baselines never read the held-out grid: NN lookup differs from Retrain's bank adapter
    assert not torch.equal(result.adapters["nn_lookup"][1], result.adapters["retrain"][1])
    # MMR at w_acc = 1 is the bare backbone
    bare = SplitEvaluator(f, "test")(f.test.h @ f.item_embedding.T)
    assert result.metrics["mmr"][2]["ndcg@10"] == pytest.approx(bare["ndcg@10"])


def test_unknown_method_is_a_config_error(tiny):
    with pytest.raises(ConfigError, match="unknown method"):
        build_methods(["padirec", "llm"], tiny.context)




@pytest.mark.slow  # about 11 s on the shared 2-core box (every method)
def test_evaluate_stage_writes_the_report(tiny, tmp_path):
    cfg = copy.deepcopy(tiny.cfg)
    cfg.evaluation.methods = list(METHODS)
    report = evaluate_stage(evaluation_inputs(tiny, cfg, tmp_path), tmp_path / "eval", cfg)
    validate_report(report)
    assert report["response_time"] == {}  # no timing asked for
    assert len(report["tasks"]) == 3 and set(report["methods"]) == set(METHODS)
    assert report["summary"]["retrain"]["pearson_ra"] in (None, pytest.approx(1.0))
    assert report["summary"]["retrain"]["regret"] == 0.0 and report["split"] == "test"
    assert all(len(s["reward_per_task"]) == 3 for s in report["summary"].values())
    # issue 14: intervals over users and the Retrain-vs-Retrain ceiling (another seed)
    assert report["uncertainty"]["resamples"] > 0 and report["uncertainty"]["users"] > 0
    assert all(len(s["reward_ci"]) == 2 and len(s["se"]["ndcg@10"]) == 3 for s in report["summary"].values())
    assert report["summary"]["padirec"]["vs_reference"]["alpha_ndcg@10"]["lo"][0] is not None
    assert report["summary"]["retrain"]["pearson_ceiling"]["seed"] == cfg.seed + 1
    assert "## The Retrain ceiling" in (tmp_path / "eval" / "report.md").read_text()
    assert report["choices"]["adapters.candidates"]["split"] in ("valid", "test", "synthetic", "none")
    assert set(report["analyses"]["robustness"]) == {"retrain", "padirec", "hypernetwork"}
    assert len(report["analyses"]["case_study"]["lists"]["0.9"]) == 10
    assert report["versions"]["backbone_sha256"] and report["versions"]["generator_sha256"]
    manifest = read_manifest(tmp_path / "eval", kind="report")
    assert "plots/tradeoff.png" in manifest["files"]
    assert json.loads((tmp_path / "eval" / "report.json").read_text()) == report


def test_evaluate_times_new_tasks_with_the_methods_it_fits_once(tiny, tmp_path, monkeypatch):
    """The pipeline's evaluate step: the response time first, then the sweep on the same fitted
    methods (CMR fitted once, not once for the timing and again for the sweep)."""
    cfg = copy.deepcopy(tiny.cfg)
    cfg.evaluation.methods, cfg.evaluation.protocols = ["padirec", "retrain", "cmr"], ["grid"]
    fits = []
    cmr = METHODS["cmr"]
    original = cmr.fit
    monkeypatch.setattr(cmr, "fit", lambda self: (fits.append(1), original(self))[1])
    report = evaluate_stage(evaluation_inputs(tiny, cfg, tmp_path, time_responses=True), tmp_path / "eval", cfg)
    assert len(fits) == 1
    rt = report["response_time"]
    assert set(rt) == {"padirec", "retrain", "cmr"} and all(r["repeats"] == 2 for r in rt.values())
    assert report["analyses"]["fit_seconds"] == {m: r["fit_s"] for m, r in rt.items()}
    assert speedup(rt) > 1.0 and len(report["methods"]["cmr"]) == 3
    assert "plots/response_time.png" in read_manifest(tmp_path / "eval", kind="report")["files"]
    assert "Response time" in (tmp_path / "eval" / "report.md").read_text()
    # the timing does not shift the sweep's draws: the same figures as a sweep without it
    plain = evaluate_stage(evaluation_inputs(tiny, cfg, tmp_path), tmp_path / "eval2", cfg)
    assert plain["methods"]["padirec"] == report["methods"]["padirec"]


def test_deepprl_context_in_chunks_is_the_context_in_one_pass(tiny, monkeypatch):
    """``user_context`` runs in chunks (one pass held 6.4 GB at ML-1M size): row by row the same."""
    from padirec.methods import deepprl

    ctx = tiny.context
    whole = deepprl.user_context(ctx.data, ctx.features, ctx.max_len)
    assert whole["train"].shape[0] < deepprl._CONTEXT_CHUNK  # one chunk here
    monkeypatch.setattr(deepprl, "_CONTEXT_CHUNK", 7)
    chunked = deepprl.user_context(ctx.data, ctx.features, ctx.max_len)
    assert whole.keys() == chunked.keys() and all(torch.equal(whole[k], chunked[k]) for k in whole)


def test_new_tasks_avoid_the_bank():
    seen = new_tasks(3, 2, seed=0)
    fresh = new_tasks(3, 2, seed=0, seen=seen)
    assert np.abs(fresh[:, None] - seen[None]).max(-1).min() > 1e-3
    assert np.allclose(fresh.sum(1), 1.0) and len(np.unique(fresh[:, 0])) == 3


def test_bank_of_another_backbone_is_refused(tiny, tmp_path):
    import shutil

    from padirec.adapters.bank import load_bank, write_bank
    from padirec.errors import ArtifactError

    bank = load_bank(tiny.bank_dir)
    write_bank(tmp_path / "bank", bank.params, bank.tasks, bank.layout, bank.utilities, "f" * 64, {}, {}, {}, {})
    shutil.copytree(tiny.backbone_dir, tmp_path / "backbone")
    cfg = copy.deepcopy(tiny.cfg)
    cfg.evaluation.methods = ["mmr"]
    with pytest.raises(ArtifactError, match="another backbone"):
        evaluate_stage(EvaluationInputs(tiny.data_dir, tmp_path / "backbone", tmp_path / "bank"), tmp_path / "out", cfg)


@pytest.mark.parametrize("case", ["plain", "ties", "method_masked", "nan", "shuffled_history"])
def test_evaluator_in_user_chunks_equals_the_whole_matrix(case):
    """``per_user`` masks, ranks and sorts a chunk of users at a time: the same per-user values as
    the shared metrics on the whole masked matrix, over several chunks, with ties, with scores a
    method masked itself, with a NaN row, and with history pairs not sorted by user."""
    from tests.fixtures import random_features

    f = random_features(num_users=700, num_items=60, seed=3)
    if case == "shuffled_history":
        order = torch.randperm(len(f.test.mask_rows), generator=torch.Generator().manual_seed(1))
        f.test.mask_rows, f.test.mask_cols = f.test.mask_rows[order], f.test.mask_cols[order]
    scores = torch.randn(700, 61, generator=torch.Generator().manual_seed(2))
    if case == "ties":
        scores = scores.round()
    elif case == "method_masked":
        scores[:, 5:9] = -math.inf
    elif case == "nan":
        scores[300] = math.nan
    ev = SplitEvaluator(f, "test", 10, 0.5)
    assert len(ev._chunks) == 3
    ours = ev.per_user(scores)
    ref = evaluate_scores(mask_history(scores, f.test.mask_rows, f.test.mask_cols), f.test.targets,
                          f.item_categories, 10, 0.5, per_user=True)
    for key, value in ref.items():  # alpha-NDCG: the evaluator divides its ideal out and back in
        assert torch.allclose(ours[key], value, rtol=0, atol=1e-12) if key.startswith("alpha") \
            else torch.equal(ours[key], value), key
