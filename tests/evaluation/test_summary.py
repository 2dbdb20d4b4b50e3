"""Avg.HV / front HV against pymoo and an exact inclusion-exclusion count; correlation NaN policy."""

from __future__ import annotations

import itertools
import json
import math
import warnings

import numpy as np
import pytest
from pymoo.indicators.hv import HV
from scipy import stats

from padirec.evaluation.summary import (
    Scale,
    avg_hv,
    dominance_summary,
    front_hv,
    normalise,
    pareto_front,
    pearson,
    reference_scale,
    report_scale,
    roster_scale,
    spearman,
    summarise,
)


def exact_hv(points: np.ndarray) -> float:
    """Volume of the union of boxes [0, x_i] by inclusion-exclusion (exact, small n only)."""
    total = 0.0
    for r in range(1, len(points) + 1):
        for subset in itertools.combinations(range(len(points)), r):
            total += (-1) ** (r + 1) * float(np.prod(points[list(subset)].min(0)))
    return total


def test_hand_case():
    pts = np.array([[0.5, 0.5], [1.0, 0.2]])
    assert front_hv(pts) == pytest.approx(0.25 + 0.5 * 0.2)
    assert avg_hv(pts) == pytest.approx((0.25 + 0.2) / 2)
    assert avg_hv(np.array([[0.5, 0.5, 0.5]])) == pytest.approx(0.125)
    assert front_hv(np.array([[0.0, 1.0]])) == 0.0


@pytest.mark.parametrize("p", [2, 3, 4])
def test_random_inputs_match_pymoo_and_the_exact_volume(p):
    rng = np.random.default_rng(p)
    for _ in range(5):
        pts = rng.random((7, p))
        ref = HV(ref_point=np.zeros(p))(-pts)
        assert front_hv(pts) == pytest.approx(ref, rel=1e-9)
        assert front_hv(pts) == pytest.approx(exact_hv(pts), rel=1e-9)
        assert avg_hv(pts) == pytest.approx(np.prod(pts, axis=1).mean(), rel=1e-9)


def test_nan_points_are_dropped():
    pts = np.array([[0.5, 0.5], [np.nan, 0.9]])
    assert front_hv(pts) == pytest.approx(0.25)
    assert avg_hv(pts) == pytest.approx(0.25)
    assert math.isnan(avg_hv(np.full((2, 2), np.nan))) and math.isnan(front_hv(np.full((2, 2), np.nan)))


def test_roster_scale_over_all_methods_directions_and_constant_objectives():
    points = {"a": np.array([[0.1, 5.0, 0.2]]), "b": np.array([[0.3, 5.0, 0.0]])}
    out = normalise(points, roster_scale(points, [True, True, False]))
    assert out["a"].tolist() == [[0.0, 1.0, 0.0]]  # constant objective -> 1; gap 0.2 is the worst
    assert out["b"].tolist() == [[1.0, 1.0, 1.0]]


def test_reference_scale_is_retrains_front_ends():
    tasks = np.array([[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]])
    ref = np.array([[0.1, 0.9], [0.25, 0.95], [0.3, 0.7]])  # the middle task beats both ends on diversity
    scale = reference_scale(ref, tasks, [True, True])
    assert scale.worst == (0.1, 0.7) and scale.best == (0.3, 0.9) and "pure tasks" in scale.source
    z = normalise({"m": np.array([[0.2, 1.0], [np.nan, 0.8]])}, scale)["m"]
    assert z[0] == pytest.approx([0.5, 1.5]) and math.isnan(z[1, 0]) and z[1, 1] == pytest.approx(0.5)
    # without every pure task: the reference's best and worst over its tasks, and the source says so
    inner = reference_scale(ref[1:], tasks[1:], [True, True])
    assert inner.worst == (0.25, 0.7) and inner.best == (0.3, 0.95) and "no complete set" in inner.source
    assert Scale.from_dict(scale.to_dict(["a", "b"]), ["a", "b"]) == scale


def test_no_figure_moves_when_another_method_leaves_the_roster():
    """The yardstick is fixed by Retrain alone: removing any other method changes nobody's figures."""
    rng = np.random.default_rng(0)
    tasks = np.array([[w, 1 - w] for w in np.linspace(0, 1, 6)])
    results = {m: _rows(rng.random(6) * 0.3, 0.5 + rng.random(6) * 0.4)
               for m in ("retrain", "padirec", "cmr", "mmr", "deepprl")}
    results["deepprl"][0]["alpha_ndcg@10"] = 5.0  # an extreme point would set a roster's exchange rate
    full = summarise(results, tasks, ["accuracy", "diversity"])
    for gone in (m for m in results if m != "retrain"):
        rest = {m: rows for m, rows in results.items() if m != gone}
        part = summarise(rest, tasks, ["accuracy", "diversity"])
        for m in rest:
            assert json.dumps(part[m], sort_keys=True) == json.dumps(full[m], sort_keys=True), (gone, m)


def test_tracking_error_and_dominance_against_retrain():
    tasks = np.array([[0.0, 1.0], [0.5, 0.5], [1.0, 0.0], [0.2, 0.8]])
    ref = _rows([0.1, 0.2, 0.3, 0.15], [0.9, 0.8, 0.7, 0.85])
    m = _rows([0.12, 0.1, 0.3, np.nan], [0.9, 0.85, 0.6, 0.8])
    s = summarise({"retrain": ref, "m": m}, tasks, ["accuracy", "diversity"])["m"]
    assert s["dominance"]["per_task"] == ["dominates", "incomparable", "dominated", None]
    assert s["dominance"]["counts"] == {"dominates": 1, "dominated": 1, "equal": 0, "incomparable": 1}
    err = s["tracking_error"]
    assert err["ndcg@10"]["per_task"][:3] == pytest.approx([0.02, 0.1, 0.0])
    assert err["ndcg@10"]["mean"] == pytest.approx(0.04)  # the NaN task left out
    assert err["alpha_ndcg@10"]["mean"] == pytest.approx((0.0 + 0.05 + 0.1 + 0.05) / 4)
    # a minimised objective (the fairness gap): a smaller gap is better
    fair = dominance_summary(np.array([[0.2, 0.5, 0.01]]), np.array([[0.2, 0.5, 0.02]]), [True, True, False])
    assert fair["per_task"] == ["dominates"]
    assert dominance_summary(np.array([[0.2, 0.5]]), np.array([[0.2, 0.5]]), [True, True])["per_task"] == ["equal"]


def test_without_the_reference_the_roster_scale_is_used_and_named():
    tasks = np.array([[0.0, 1.0], [1.0, 0.0]])
    scale = report_scale({"cmr": _rows([0.1, 0.3], [0.8, 0.6])}, tasks, ["accuracy", "diversity"])
    assert scale.source.startswith("roster") and scale.worst == (0.1, 0.6)


def test_correlations_match_scipy():
    rng = np.random.default_rng(0)
    x, y = rng.random(11), rng.random(11)
    assert pearson(x, y) == pytest.approx(stats.pearsonr(x, y).statistic)
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic)
    assert pearson(x, 2 * x + 1) == pytest.approx(1.0)
    assert spearman(x, -x**3) == pytest.approx(-1.0)


def test_constant_or_short_series_give_nan_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(pearson([1.0, 1.0, 1.0], [0.1, 0.2, 0.3]))
        assert math.isnan(spearman([0.1, 0.2, 0.3], [2.0, 2.0, 2.0]))
        assert math.isnan(pearson([0.1], [0.2]))
        assert math.isnan(pearson([0.1, np.nan, 0.3], [0.2, 0.5, np.nan]))  # one finite pair left
        assert pearson([0.1, np.nan, 0.3, 0.4], [0.2, 0.5, 0.6, 0.9]) == pytest.approx(
            stats.pearsonr([0.1, 0.3, 0.4], [0.2, 0.6, 0.9]).statistic)
    with pytest.raises(ValueError, match="different lengths"):
        pearson([1, 2], [1, 2, 3])


def _rows(ndcg, alpha):
    return [{"ndcg@10": a, "hr@10": 2 * a, "alpha_ndcg@10": b} for a, b in zip(ndcg, alpha, strict=True)]


def test_summarise():
    tasks = np.array([[w, 1 - w] for w in (0.0, 0.5, 1.0)])
    results = {
        "retrain": _rows([0.1, 0.2, 0.3], [0.9, 0.8, 0.7]),
        "padirec": _rows([0.12, 0.18, 0.31], [0.88, 0.81, 0.69]),
        "cmr": _rows([0.2, 0.2, 0.2], [0.8, 0.8, 0.8]),  # ignores the weights
    }
    s = summarise(results, tasks, ["accuracy", "diversity"])
    assert s["retrain"]["pearson_ra"] == pytest.approx(1.0)
    assert s["padirec"]["pearson_rd"] > 0.9
    assert math.isnan(s["cmr"]["pearson_ra"]) and math.isnan(s["cmr"]["spearman"]["ndcg@10"])
    assert s["retrain"]["spearman"]["ndcg@10"] == pytest.approx(1.0)
    assert s["retrain"]["spearman"]["alpha_ndcg@10"] == pytest.approx(-1.0)
    # on Retrain's front ends: ndcg 0.1..0.3, alpha 0.7..0.9, whoever else is in the report
    cmr_point = np.array([(0.2 - 0.1) / 0.2, (0.8 - 0.7) / 0.2])
    assert s["cmr"]["avg_hv"] == pytest.approx(np.prod(cmr_point))
    assert s["cmr"]["front_hv"] == pytest.approx(np.prod(cmr_point))
    no_ref = summarise({"cmr": results["cmr"]}, tasks, ["accuracy", "diversity"])
    assert math.isnan(no_ref["cmr"]["pearson_ra"])
    with pytest.raises(ValueError, match="task results"):
        summarise({"cmr": results["cmr"][:2]}, tasks, ["accuracy", "diversity"])


def test_three_utilities_use_the_fairness_gap_minimised():
    tasks = np.array([[0.5, 0.25, 0.25], [0.2, 0.2, 0.6]])
    rows = [{"ndcg@10": 0.2, "hr@10": 0.3, "alpha_ndcg@10": 0.5, "ndcg_gap@10": 0.05},
            {"ndcg@10": 0.1, "hr@10": 0.2, "alpha_ndcg@10": 0.6, "ndcg_gap@10": 0.01}]
    s = summarise({"retrain": rows}, tasks, ["accuracy", "diversity", "fairness"])
    # points (1, 0, 0) and (0, 1, 1): each task's HV is 0, the front's too (no box has volume)
    assert s["retrain"]["avg_hv"] == 0.0 and s["retrain"]["front_hv"] == 0.0
    assert s["retrain"]["spearman"]["ndcg_gap@10"] == pytest.approx(1.0)


def test_pareto_front():
    pts = np.array([[0.1, 0.9], [0.5, 0.5], [0.4, 0.4], [0.9, 0.1], [np.nan, 1.0]])
    assert pareto_front(pts).tolist() == [0, 1, 3]


def test_reward_regret_and_range_hand_case():
    """Reward is each task's own objective: Retrain doing exactly what the extreme tasks ask wins on
    reward and regret, while Avg.HV prefers a method that ignores the weights."""
    tasks = np.array([[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]])
    results = {"retrain": _rows([0.1, 0.2, 0.3], [0.9, 0.8, 0.7]), "cmr": _rows([0.2, 0.2, 0.2], [0.8, 0.8, 0.8])}
    s = summarise(results, tasks, ["accuracy", "diversity"])
    # normalised: retrain (0, 1), (0.5, 0.5), (1, 0); cmr (0.5, 0.5) everywhere
    assert s["retrain"]["reward_per_task"] == pytest.approx([1.0, 0.5, 1.0])
    assert s["retrain"]["reward"] == pytest.approx(5 / 6)
    assert s["cmr"]["reward_per_task"] == pytest.approx([0.5, 0.5, 0.5])
    assert s["cmr"]["regret_per_task"] == pytest.approx([0.5, 0.0, 0.5])
    assert s["cmr"]["regret"] == pytest.approx(1 / 3)
    assert s["retrain"]["regret"] == 0.0
    assert s["retrain"]["range"] == pytest.approx({"ndcg@10": 0.2, "alpha_ndcg@10": 0.2})
    assert s["retrain"]["range_norm"] == pytest.approx({"ndcg@10": 1.0, "alpha_ndcg@10": 1.0})
    assert s["cmr"]["range"] == {"ndcg@10": 0.0, "alpha_ndcg@10": 0.0}
    # the paper's metric ranks them the other way round
    assert s["cmr"]["avg_hv"] == pytest.approx(0.25) and s["retrain"]["avg_hv"] == pytest.approx(0.25 / 3)
    # shifting every value keeps regret (Retrain's ends move with it)
    shifted = {m: [{k: v + 1.0 for k, v in r.items()} for r in rows] for m, rows in results.items()}
    assert summarise(shifted, tasks, ["accuracy", "diversity"])["cmr"]["regret"] == pytest.approx(1 / 3)


def test_reward_and_regret_nan_policy():
    tasks = np.array([[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]])
    ref = _rows([0.1, 0.2, 0.3], [0.9, 0.8, 0.7])
    gappy = _rows([0.2, np.nan, 0.2], [0.8, 0.8, 0.8])
    s = summarise({"retrain": ref, "cmr": gappy}, tasks, ["accuracy", "diversity"])
    assert math.isnan(s["cmr"]["reward_per_task"][1]) and math.isnan(s["cmr"]["regret_per_task"][1])
    assert s["cmr"]["reward"] == pytest.approx(0.5) and s["cmr"]["regret"] == pytest.approx(0.5)
    assert s["cmr"]["range"]["ndcg@10"] == 0.0  # over the finite values
    no_ref = summarise({"cmr": gappy}, tasks, ["accuracy", "diversity"])["cmr"]
    assert math.isnan(no_ref["regret"]) and "no reference method" in no_ref["undefined"]["regret"]
    empty = summarise({"retrain": ref, "cmr": _rows([np.nan] * 3, [0.8] * 3)}, tasks, ["accuracy", "diversity"])
    assert math.isnan(empty["cmr"]["reward"]) and empty["cmr"]["undefined"]["reward"] == "no task has a defined point"


def test_reward_with_a_minimised_fairness_gap():
    tasks = np.array([[0.5, 0.25, 0.25], [0.2, 0.2, 0.6]])
    rows = [{"ndcg@10": 0.2, "hr@10": 0.3, "alpha_ndcg@10": 0.5, "ndcg_gap@10": 0.05},
            {"ndcg@10": 0.1, "hr@10": 0.2, "alpha_ndcg@10": 0.6, "ndcg_gap@10": 0.01}]
    s = summarise({"retrain": rows}, tasks, ["accuracy", "diversity", "fairness"])["retrain"]
    # points (1, 0, 0) and (0, 1, 1): the smaller gap normalises to 1
    assert s["reward_per_task"] == pytest.approx([0.5, 0.8]) and s["reward"] == pytest.approx(0.65)
    assert s["range"]["ndcg_gap@10"] == pytest.approx(0.04)


def test_fairness_gets_its_own_pearson():
    tasks = np.array([[1.0, 0.0, 0.0], [0.5, 0.0, 0.5], [0.0, 0.5, 0.5], [0.0, 0.0, 1.0]])
    gap = [0.05, 0.03, 0.02, 0.01]
    rows = {m: [{"ndcg@10": 0.1 - 0.01 * t, "alpha_ndcg@10": 0.5 + 0.01 * t, "ndcg_gap@10": g * scale}
                for t, g in enumerate(gap)] for m, scale in (("retrain", 1.0), ("padirec", 2.0))}
    rows["mmr"] = [{**r, "ndcg_gap@10": 0.02} for r in rows["retrain"]]  # a flat gap: no correlation
    s = summarise(rows, tasks, ["accuracy", "diversity", "fairness"])
    assert s["padirec"]["pearson_rf"] == pytest.approx(1.0) and s["retrain"]["pearson_rf"] == pytest.approx(1.0)
    assert math.isnan(s["mmr"]["pearson_rf"]) and "pearson_rf" in s["mmr"]["undefined"]
    two = {m: [{k: v for k, v in r.items() if k != "ndcg_gap@10"} for r in rs] for m, rs in rows.items()}
    assert "pearson_rf" not in summarise(two, np.array([[1.0, 0.0], [0.7, 0.3], [0.3, 0.7], [0.0, 1.0]]),
                                         ["accuracy", "diversity"])["padirec"]
