"""The uncertainty of the report's figures, on tiny synthetic numbers: the paired bootstrap interval
covers a known mean difference, shrinks with more users, is reproducible given its seed and is
paired; reward/regret replicates reduce to ``summarise`` on the full sample; the Retrain ceiling;
the report schema and markdown carry the new fields; and the stage wiring on the tiny setup."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch
from scipy import stats

from padirec.adapters.objectives import group_gap
from padirec.evaluation.markdown import render_markdown
from padirec.evaluation.report import ReportError, build_report, validate_report
from padirec.evaluation.summary import report_scale, summarise
from padirec.evaluation.uncertainty import (
    bootstrap_counts,
    ceiling_summary,
    evaluation_settings,
    metric_replicates,
    percentile_ci,
    reward_replicates,
    standard_error,
    uncertainty_summary,
)

UTIL = ["accuracy", "diversity"]
TASKS = np.array([[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]])


def _users(n: int, shift: float, seed: int, tasks: int = 3, noise: float = 0.05) -> dict:
    """Per-user NDCG / alpha-NDCG of Retrain and of a method ``shift`` above it on average."""
    rng = np.random.default_rng(seed)
    ref, other = [], []
    for _ in range(tasks):
        base = {"ndcg@10": rng.uniform(0, 1, n), "alpha_ndcg@10": rng.uniform(0, 1, n)}
        ref.append(base)
        other.append({key: v + shift + rng.normal(0, noise, n) for key, v in base.items()})
    return {"retrain": ref, "mmr": other}


def _diff(per_user: dict, resamples: int = 500, seed: int = 0) -> dict:
    return uncertainty_summary(per_user, TASKS, UTIL, 10, "retrain", resamples, 0.95, seed)["mmr"]["vs_reference"]


def test_the_interval_covers_a_known_mean_difference():
    """Over 40 synthetic data sets the 95% interval holds the true difference (0.05) about 95% of
    the time (>= 34 of 40 here), and the point is the sample's mean difference."""
    covered = 0
    for s in range(40):
        per_user = _users(200, 0.05, seed=s, tasks=1)
        d = uncertainty_summary(per_user, TASKS[:1], UTIL, 10, "retrain", 300, 0.95, seed=s)["mmr"]["vs_reference"]
        nd = d["ndcg@10"]
        covered += nd["lo"][0] <= 0.05 <= nd["hi"][0]
        sample = float(np.mean(per_user["mmr"][0]["ndcg@10"] - per_user["retrain"][0]["ndcg@10"]))
        assert nd["mean"][0] == pytest.approx(sample)
        assert nd["lo"][0] <= nd["mean"][0] <= nd["hi"][0]
    assert covered >= 34


def test_the_interval_shrinks_with_more_users():
    small, large = _diff(_users(100, 0.05, 0)), _diff(_users(1600, 0.05, 0))
    for key in ("ndcg@10", "alpha_ndcg@10"):
        w_small = np.subtract(small[key]["hi"], small[key]["lo"])
        w_large = np.subtract(large[key]["hi"], large[key]["lo"])
        assert np.all(w_large < w_small / 2)  # ~ 1 / sqrt(16) = 1/4 of the width
    assert small["ndcg@10"]["task_mean"][1] <= 0.05 <= small["ndcg@10"]["task_mean"][2]


def test_reproducible_with_a_seed():
    per_user = _users(150, 0.02, 3)
    assert _diff(per_user, seed=7) == _diff(per_user, seed=7)
    assert _diff(per_user, seed=7) != _diff(per_user, seed=8)
    a = np.concatenate(list(bootstrap_counts(30, 25, seed=1)))
    assert a.shape == (25, 30) and np.all(a.sum(1) == 30)
    assert np.array_equal(a, np.concatenate(list(bootstrap_counts(30, 25, seed=1))))


def test_the_bootstrap_is_paired():
    """A method exactly 0.05 above Retrain for every user: the difference has no noise at all, although
    each method's own value has a wide standard error."""
    per_user = _users(300, 0.05, 0, noise=0.0)
    out = uncertainty_summary(per_user, TASKS, UTIL, 10, "retrain", 200, 0.95, 0)
    d = out["mmr"]["vs_reference"]["ndcg@10"]
    assert np.allclose(d["lo"], 0.05) and np.allclose(d["hi"], 0.05)
    assert min(out["mmr"]["se"]["ndcg@10"]) > 0.01
    assert out["retrain"]["vs_reference"]["ndcg@10"]["hi"] == [0.0, 0.0, 0.0]
    assert out["retrain"]["regret_ci"] == [0.0, 0.0]


def test_standard_error_is_the_sem():
    x = np.random.default_rng(0).normal(size=50)
    assert standard_error(x) == pytest.approx(float(stats.sem(x)))
    assert math.isnan(standard_error(np.array([1.0])))
    per_user = _users(50, 0.0, 1)
    se = uncertainty_summary(per_user, TASKS, UTIL, 10, "retrain", 0)["mmr"]["se"]["alpha_ndcg@10"]
    assert se == pytest.approx([float(stats.sem(r["alpha_ndcg@10"])) for r in per_user["mmr"]])


def test_reward_and_regret_replicates_are_summarise_on_the_full_sample():
    """One 'draw' of every user once reproduces summarise's reward and regret (normalisation included),
    for two and for three utilities (the fairness gap from weighted group means)."""
    rng = np.random.default_rng(0)
    groups = np.array([0, 1, -1] * 20)
    for utilities, tasks in ((UTIL, TASKS), (UTIL + ["fairness"], np.array([[0.2, 0.3, 0.5], [0.6, 0.2, 0.2]]))):
        per_user = {m: [{"ndcg@10": rng.uniform(0, 1, 60), "alpha_ndcg@10": rng.uniform(0, 1, 60)}
                        for _ in tasks] for m in ("retrain", "mmr", "soup")}
        keys = ["ndcg@10", "alpha_ndcg@10"] + (["ndcg_gap@10"] if len(utilities) == 3 else [])
        reps = metric_replicates(per_user, keys, 10, [np.ones((1, 60))], groups)
        means = {m: [{key: float(reps[m][key][t, 0]) for key in keys} for t in range(len(tasks))] for m in per_user}
        if len(utilities) == 3:
            gap = group_gap(torch.as_tensor(per_user["mmr"][1]["ndcg@10"])[None], torch.as_tensor(groups))[0]
            assert means["mmr"][1]["ndcg_gap@10"] == pytest.approx(float(gap))
        expected = summarise(means, tasks, utilities, 10)
        objs = {m: np.stack([reps[m][key] for key in keys], axis=1) for m in per_user}
        scale = report_scale(means, tasks, utilities, 10)
        reward, regret = reward_replicates(objs, tasks, scale, "retrain")
        for m in per_user:
            assert reward[m][0] == pytest.approx(expected[m]["reward"])
            assert regret[m][0] == pytest.approx(expected[m]["regret"])
        out = uncertainty_summary(per_user, tasks, utilities, 10, "retrain", 300, 0.95, 0, groups)
        for m in per_user:
            lo, hi = out[m]["reward_ci"]
            assert lo <= hi and set(out[m]["vs_reference"]) == set(keys)


def test_dominance_shares_and_tracking_error_interval():
    """A method clearly above Retrain on both objectives dominates in (nearly) every draw; its
    tracking error's interval covers the shift."""
    out = uncertainty_summary(_users(400, 0.1, 0, noise=0.01), TASKS, UTIL, 10, "retrain", 300, 0.95, 0)["mmr"]
    assert min(out["dominance_share"]["dominates"]) > 0.99 and max(out["dominance_share"]["dominated"]) == 0
    lo, hi = out["tracking_error_ci"]["ndcg@10"]
    assert lo < 0.1 < hi + 1e-3


def test_no_interval_moves_when_another_method_leaves_the_roster():
    rng = np.random.default_rng(1)
    per_user = {m: [{"ndcg@10": rng.uniform(0, 1, 50), "alpha_ndcg@10": rng.uniform(0, 1, 50)} for _ in TASKS]
                for m in ("retrain", "mmr", "soup", "cmr")}
    full = uncertainty_summary(per_user, TASKS, UTIL, 10, "retrain", 200, 0.95, 0)
    for gone in ("mmr", "soup", "cmr"):
        part = uncertainty_summary({m: v for m, v in per_user.items() if m != gone}, TASKS, UTIL, 10, "retrain",
                                   200, 0.95, 0)
        for m in part:
            assert json.dumps(part[m], sort_keys=True) == json.dumps(full[m], sort_keys=True), (gone, m)


def test_percentile_ci_and_nan():
    r = np.arange(1001, dtype=float)
    assert percentile_ci(r, 0.95).tolist() == pytest.approx([25.0, 975.0])
    assert np.isnan(percentile_ci(np.full((2, 5), np.nan))).all()
    with pytest.raises(ValueError, match="confidence"):
        percentile_ci(r, 1.0)


def test_the_retrain_ceiling():
    ref = [{"ndcg@10": 0.1 * (i + 1), "hr@10": 0.5, "alpha_ndcg@10": 0.9 - 0.1 * i} for i in range(3)]
    results = {"retrain": ref, "mmr": [{"ndcg@10": 0.0, "hr@10": 0.5, "alpha_ndcg@10": 0.5}] * 3}
    same = ceiling_summary(copy.deepcopy(ref), results, TASKS, UTIL)
    assert same["pearson_ra"] == pytest.approx(1.0) and same["pearson_rd"] == pytest.approx(1.0)
    assert same["regret"] == 0.0
    worse = [{**r, "ndcg@10": r["ndcg@10"] - 0.03} for r in ref]  # Retrain's NDCG ends: 0.1 .. 0.3
    out = ceiling_summary(worse, results, TASKS, UTIL)
    assert out["regret_per_task"] == pytest.approx([0.0, 0.075, 0.15])
    assert out["pearson_ra"] == pytest.approx(1.0)


def test_settings_come_from_the_evaluation_config():
    from padirec.config import EvaluationConfig

    st = evaluation_settings(EvaluationConfig())
    assert (st.resamples, st.confidence, st.retrain_ceiling, st.ceiling_seed) == (1000, 0.95, True, -1)
    chosen = EvaluationConfig(bootstrap_resamples=0, bootstrap_confidence=0.9, retrain_ceiling=False, ceiling_seed=5)
    assert evaluation_settings(chosen) == type(st)(0, 0.9, False, 5)


def _report_with_uncertainty() -> dict:
    rows = [{"ndcg@10": 0.1 * (i + 1), "hr@10": 0.2 * (i + 1), "alpha_ndcg@10": 0.9 - 0.1 * i} for i in range(3)]
    per_user = _users(80, 0.01, 0)
    extra = uncertainty_summary(per_user, TASKS, UTIL, 10, "retrain", 100, 0.95, 0)
    summary = {m: {"reward": 0.6, "regret": 0.01 * i, "avg_hv": 0.3, "front_hv": 0.5, "pearson_ra": 1.0,
                   "pearson_rd": 0.9, "spearman": {}, **extra[m]} for i, m in enumerate(("retrain", "mmr"))}
    summary["retrain"]["pearson_ceiling"] = {
        "seed": 1, "reference_seed": 0, "metrics": rows,
        **ceiling_summary(rows, {"retrain": rows}, TASKS, UTIL), "vs_reference": extra["mmr"]["vs_reference"]}
    return build_report(k=10, alpha=0.5, utilities=UTIL, tasks=TASKS.tolist(), methods={"retrain": rows, "mmr": rows},
                        summary=summary, uncertainty={"method": "paired percentile bootstrap over users",
                                                      "resamples": 100, "confidence": 0.95, "seed": 0, "users": 80})


def test_the_schema_accepts_the_new_fields_and_checks_their_lengths():
    report = _report_with_uncertainty()
    validate_report(report)
    assert report["summary"]["retrain"]["pearson_ceiling"]["pearson_ra"] == pytest.approx(1.0)
    for mutate, field in [
        (lambda r: r["summary"]["mmr"]["se"]["ndcg@10"].pop(), "report.summary.mmr.se.ndcg@10: 2 values"),
        (lambda r: r["summary"]["mmr"]["vs_reference"]["alpha_ndcg@10"]["lo"].pop(),
         "report.summary.mmr.vs_reference.alpha_ndcg@10.lo: 2 values"),
        (lambda r: r["summary"]["mmr"].update(reward_ci=[0.1]), "report.summary.mmr.reward_ci"),
        (lambda r: r["summary"]["retrain"]["pearson_ceiling"].pop("seed"), "'seed' is a required property"),
        (lambda r: r["summary"]["retrain"]["pearson_ceiling"]["metrics"].pop(),
         "report.summary.retrain.pearson_ceiling.metrics: 2 values"),
        (lambda r: r["uncertainty"].update(confidence=1.5), "report.uncertainty.confidence"),
    ]:
        broken = copy.deepcopy(report)
        mutate(broken)
        with pytest.raises(ReportError) as e:
            validate_report(broken)
        assert field in str(e.value)
    old = copy.deepcopy(report)  # a report written before the uncertainty fields
    old.pop("uncertainty")
    for s in old["summary"].values():
        for name in ("se", "vs_reference", "reward_ci", "regret_ci", "pearson_ceiling"):
            s.pop(name, None)
    validate_report(old)
    assert "[" not in render_markdown(old, []).split("## The paper's metrics")[0].split("| method |")[1]


def test_markdown_shows_value_and_interval():
    report = _report_with_uncertainty()
    text = render_markdown(report, [])
    lo, hi = report["summary"]["mmr"]["regret_ci"]
    assert "| mmr | 0.6000 [" in text and f"0.0100 [{lo:.4f}, {hi:.4f}]" in text
    assert "## The Retrain ceiling" in text and "Pearson r-a **1.0000**" in text
    assert "## Differences to retrain (95% paired bootstrap interval over users)" in text
    assert "### ndcg@10 - retrain" in text and "| mean over tasks |" in text
    assert "retrain (seed 1)" in text
    assert " ± " in text.split("## alpha_ndcg@10 per task")[1]
    assert lo <= hi


def test_the_stage_wiring_on_the_tiny_setup(tiny):
    """The sweep's per-user output, the bootstrap and a second Retrain (another seed) on the tiny
    setup, as ``evaluate_stage`` calls them."""
    from padirec.evaluation.sweep import run_sweep
    from padirec.evaluation.uncertainty import add_uncertainty
    from padirec.methods.registry import build_methods

    cfg, ctx = copy.deepcopy(tiny.cfg), tiny.context
    methods = build_methods(["retrain", "mmr"], ctx, cfg.methods)
    sweep = run_sweep(methods, TASKS, ctx.features, "test", 10, 0.5, per_user=True)
    n = ctx.features.test.h.shape[0]
    assert all(r["ndcg@10"].shape == (n,) for r in sweep.per_user["mmr"])
    assert np.mean(sweep.per_user["mmr"][1]["ndcg@10"]) == pytest.approx(sweep.metrics["mmr"][1]["ndcg@10"])
    from padirec.core.novelty import coverage_of  # coverage is no mean: the listed items carry it

    for m in ("retrain", "mmr"):
        assert [coverage_of(items, sweep.tail, 10) for items in sweep.listed[m]] == [
            {key: r[key] for key in ("cv_div@10", "cv_nov@10")} for r in sweep.metrics[m]]
    summary = summarise(sweep.metrics, TASKS, UTIL, 10)
    meta = add_uncertainty(summary, sweep, ctx, cfg, "retrain")
    assert meta["users"] == n and meta["resamples"] == 1000
    ceiling = summary["retrain"]["pearson_ceiling"]
    assert ceiling["seed"] == cfg.seed + 1 and len(ceiling["metrics"]) == 3
    assert ceiling["metrics"] != sweep.metrics["retrain"]  # another seed, another adapter
    assert set(summary["mmr"]) >= {"se", "vs_reference", "reward_ci", "regret_ci", "tracking_error_ci",
                                   "dominance_share"}
    share = summary["mmr"]["dominance_share"]
    assert all(0 <= a + b <= 1 for a, b in zip(share["dominates"], share["dominated"], strict=True))
    assert "ndcg_gap@10" not in summary["mmr"]["vs_reference"]  # two utilities: the objectives only
    report = build_report(k=10, alpha=0.5, utilities=UTIL, tasks=TASKS.tolist(), methods=sweep.metrics,
                          summary=summary, uncertainty=meta)
    assert report["uncertainty"]["users"] == n
