"""Objectives: diversity-loss direction and gradient, soft rank, BCE, fairness, the registry."""

from __future__ import annotations

import math

import pytest
import torch

from padirec.adapters.objectives import (
    CandidateBatch,
    bce_loss,
    category_slots,
    diversity_loss,
    get_utilities,
    group_gap,
    soft_ndcg,
    soft_rank,
    task_losses,
)
from padirec.adapters.utilities import UTILITIES


def reference_diversity(scores, y, alpha=0.5, temperature=0.1):
    """The smoothed alpha-DCG written out literally with autograd, all categories, no tricks."""
    above = torch.sigmoid((scores[..., None, :] - scores[..., :, None]) / temperature)
    eye = torch.eye(scores.shape[-1], dtype=scores.dtype)
    above = above * (1 - eye)  # j != k
    rank = 1 + above.sum(-1)
    count = above @ y  # C[k, l] = sum_j y[j, l] sigmoid((s_j - s_k) / T)
    gain = (y * (1 - alpha) ** count).sum(-1)
    return -(gain / torch.log2(1 + rank)).sum(-1).mean(-1)


def test_direction_second_item_of_a_repeated_category_is_discounted():
    # scores (3, 2, 1), categories (A, A, B): ranks 1, 2, 3; only the second A item is discounted
    scores = torch.tensor([[[3.0, 2.0, 1.0]]])
    cats = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]])
    loss = diversity_loss(scores, cats, alpha=0.5, temperature=1e-3)
    right = -(1 / math.log2(2) + 0.5 / math.log2(3) + 1 / math.log2(4))
    wrong = -(0.5 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4))  # counting items BELOW k
    assert loss.item() == pytest.approx(right, abs=1e-5)
    assert abs(loss.item() - wrong) > 0.1


def test_swapping_to_put_the_other_category_second_lowers_the_loss():
    cats = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]])
    redundant = diversity_loss(torch.tensor([[[3.0, 2.0, 1.0]]]), cats, temperature=1e-3)
    diverse = diversity_loss(torch.tensor([[[3.0, 1.0, 2.0]]]), cats, temperature=1e-3)
    assert diverse < redundant


def test_soft_rank_tends_to_hard_rank_as_temperature_vanishes():
    scores = torch.tensor([0.3, -1.2, 2.5, 0.31, 1.0])
    hard = torch.tensor([4.0, 5.0, 1.0, 3.0, 2.0])
    errors = [float((soft_rank(scores, t) - hard).abs().max()) for t in (1.0, 0.1, 0.01, 1e-4)]
    assert errors[-1] < 1e-6
    assert all(a >= b for a, b in zip(errors, errors[1:], strict=False))


def test_matches_the_literal_formula_value_and_gradient():
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(3, 6, 8, dtype=torch.float64, generator=g, requires_grad=True)
    y = (torch.rand(6, 8, 5, generator=g) < 0.35).double()
    w = torch.rand(3, dtype=torch.float64, generator=g)
    ours = diversity_loss(scores, y, 0.5, 0.2)
    ref = reference_diversity(scores, y, 0.5, 0.2)
    torch.testing.assert_close(ours, ref)
    g1 = torch.autograd.grad((w * ours).sum(), scores)[0]
    g2 = torch.autograd.grad((w * reference_diversity(scores, y, 0.5, 0.2)).sum(), scores)[0]
    torch.testing.assert_close(g1, g2)
    assert torch.autograd.gradcheck(lambda s: diversity_loss(s, y, 0.3, 0.5), (scores,))


def test_finite_and_differentiable_in_float32_for_5000_candidates():
    g = torch.Generator().manual_seed(0)
    scores = (torch.randn(1, 1, 5000, generator=g) * 20).requires_grad_(True)  # wide score range
    y = (torch.rand(1, 5000, 19, generator=g) < 0.1).float()
    loss = diversity_loss(scores, y)
    loss.sum().backward()
    assert torch.isfinite(loss).all() and torch.isfinite(scores.grad).all()
    assert scores.grad.abs().sum() > 0


def test_category_slots_pick_each_items_own_categories():
    y = torch.tensor([[[1.0, 0, 1], [0, 1, 0], [1, 1, 0]]])
    shares, valid = category_slots(y)
    assert valid.shape == (1, 3, 2)
    assert valid[0].sum(-1).tolist() == [2.0, 1.0, 2.0]
    # item 1 has only category 1; items sharing it: 1 and 2
    assert shares[0, 1, 0].tolist() == [0.0, 1.0, 1.0]


def test_bce_matches_formula():
    s = torch.tensor([[[2.0, -1.0, 0.5]]])
    expect = -(math.log(torch.sigmoid(torch.tensor(2.0))) + math.log(1 - torch.sigmoid(torch.tensor(-1.0)))
               + math.log(1 - torch.sigmoid(torch.tensor(0.5))))
    assert bce_loss(s).item() == pytest.approx(expect, rel=1e-6)


def test_fairness_gap_is_the_group_ndcg_difference():
    values = torch.tensor([[0.9, 0.7, 0.2, 0.4, 0.5]])
    groups = torch.tensor([0, 0, 1, 1, -1])  # -1 unknown: ignored
    assert group_gap(values, groups).item() == pytest.approx(0.8 - 0.3)
    assert group_gap(values, torch.tensor([0, 0, 0, -1, -1])).item() == 0.0
    s = torch.tensor([[[5.0, 1.0, 0.0], [0.0, 1.0, 2.0]]])
    nd = soft_ndcg(s, temperature=1e-3)
    torch.testing.assert_close(nd, torch.tensor([[1.0, 1 / math.log2(4)]]))


def test_registry_and_task_losses_for_three_utilities():
    assert set(UTILITIES) >= {"accuracy", "diversity", "fairness", "novelty"}  # each a class with its loss and metric
    with pytest.raises(ValueError, match="unknown utility 'serendipity'"):
        get_utilities(["accuracy", "serendipity"])
    with pytest.raises(ValueError, match="distinct"):
        get_utilities(["accuracy", "accuracy"])
    g = torch.Generator().manual_seed(0)
    batch = CandidateBatch(
        scores=torch.randn(4, 6, 10, generator=g), categories=(torch.rand(6, 10, 3, generator=g) < 0.5).float(),
        num_train=10, groups=torch.tensor([0, 1, 0, 1, -1, 0]), diversity_columns=slice(0, 10),
    )
    losses = task_losses(batch, get_utilities(["accuracy", "diversity", "fairness"]))
    assert losses.shape == (4, 3) and torch.isfinite(losses).all()
    no_groups = CandidateBatch(**{**batch.__dict__, "groups": None})
    with pytest.raises(ValueError, match="needs user groups"):
        task_losses(no_groups, get_utilities(["fairness"]))
