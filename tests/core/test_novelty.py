"""The novelty utility: the long tail, novelty@k, the coverage figures and the smoothed loss."""

from __future__ import annotations

import math

import pytest
import torch

from padirec.adapters.novelty_loss import novelty_loss
from padirec.adapters.objectives import CandidateBatch, get_utilities, task_losses
from padirec.adapters.utilities import UTILITIES
from padirec.core.novelty import (
    coverage,
    coverage_of,
    item_popularity,
    listed_items,
    long_tail,
    novelty_at_k,
)
from padirec.core.utilities import metric_key


def test_long_tail_is_all_but_the_most_popular_tenth():
    # 10 items: item 3 has the most users, then 7; ties go to the lower id
    keys = torch.tensor(sorted([u * 11 + i for u, i in [(1, 3), (2, 3), (3, 3), (1, 7), (2, 7), (1, 1), (2, 2)]]))
    pop = item_popularity(keys, 10)
    assert pop.tolist() == [0, 1, 1, 3, 0, 0, 0, 2, 0, 0, 0]
    assert long_tail(pop, 0.1).tolist() == [False] + [i != 3 for i in range(1, 11)]  # ceil(1.0) = 1 head item
    assert long_tail(pop, 0.2).nonzero().flatten().tolist() == [1, 2, 4, 5, 6, 8, 9, 10]  # head: 3, 7
    assert long_tail(pop, 0.3).nonzero().flatten().tolist() == [2, 4, 5, 6, 8, 9, 10]  # tie 1 vs 2: 1 is head
    with pytest.raises(ValueError):
        long_tail(pop, 1.0)


def test_novelty_at_k_and_coverage_by_hand():
    tail = torch.tensor([False, False, True, True, True, False])  # items 1 and 5 are popular
    top = torch.tensor([[1, 2, 3], [1, 5, 2]])
    assert novelty_at_k(top, tail).tolist() == pytest.approx([2 / 3, 1 / 3])
    cv = coverage(top, tail, 3)
    assert cv == {"cv_div@3": pytest.approx(4 / 5), "cv_nov@3": pytest.approx(2 / 3)}  # {1,2,3,5}; {2,3} of {2,3,4}
    assert metric_key("novelty", 10) == "novelty@10"


def test_coverage_of_groups_of_users_is_the_coverage_of_their_listed_items_or_ed():
    tail = torch.tensor([False, False, True, True, True, False])
    top = torch.tensor([[1, 2, 3], [1, 5, 2], [0, 4, 1]])  # padding (0) never counts as listed
    assert listed_items(top[2:], 5).tolist() == [False, True, False, False, True, False]
    whole = coverage(top, tail, 3)
    parts = listed_items(top[:1], 5) | listed_items(top[1:], 5)  # user shards: their sets OR-ed
    assert coverage_of(parts, tail, 3) == whole == {"cv_div@3": 1.0, "cv_nov@3": 1.0}
    assert coverage_of(parts.numpy(), tail.numpy(), 3) == whole  # as a shard's arrays hold them
    assert coverage_of(listed_items(top[:0], 5), tail, 3) == {"cv_div@3": 0.0, "cv_nov@3": 0.0}
    with pytest.raises(ValueError, match="differ in size"):
        coverage_of(parts[:-1], tail, 3)


def reference_novelty(scores, novel, temperature):
    """The smoothed novelty-DCG written out literally with autograd."""
    above = torch.sigmoid((scores[..., None, :] - scores[..., :, None]) / temperature)
    above = above * (1 - torch.eye(scores.shape[-1], dtype=scores.dtype))
    rank = 1 + above.sum(-1)
    return -(novel / torch.log2(1 + rank)).sum(-1).mean(-1)


def test_loss_by_hand_a_novel_item_on_top_scores_better():
    # scores (3, 2, 1): the candidate at rank r has discount 1 / log2(1 + r)
    novel = torch.tensor([[0.0, 1.0, 1.0]])
    popular_first = novelty_loss(torch.tensor([[[3.0, 2.0, 1.0]]]), novel, temperature=1e-3)
    assert popular_first.item() == pytest.approx(-(1 / math.log2(3) + 1 / math.log2(4)), abs=1e-5)
    novel_first = novelty_loss(torch.tensor([[[1.0, 3.0, 2.0]]]), novel, temperature=1e-3)
    assert novel_first.item() == pytest.approx(-(1 / math.log2(2) + 1 / math.log2(3)), abs=1e-5)


def test_loss_gradient_matches_autograd_and_finite_differences():
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(3, 5, 7, dtype=torch.float64, generator=g, requires_grad=True)
    novel = (torch.rand(5, 7, generator=g) < 0.5).double()
    assert torch.autograd.gradcheck(lambda s: novelty_loss(s, novel, 0.3), (scores,))
    ours = torch.autograd.grad(novelty_loss(scores, novel, 0.3).sum(), scores)[0]
    ref = torch.autograd.grad(reference_novelty(scores, novel, 0.3).sum(), scores)[0]
    torch.testing.assert_close(ours, ref)
    # raising a popular candidate's score only pushes the novel ones down: the loss rises
    assert ours.permute(1, 2, 0)[novel == 0].gt(0).all()


def test_registered_and_needs_the_flags():
    assert "novelty" in UTILITIES
    g = torch.Generator().manual_seed(0)
    batch = CandidateBatch(scores=torch.randn(2, 4, 6, generator=g), categories=torch.ones(4, 6, 1), num_train=6,
                           groups=None, diversity_columns=slice(0, 6), novel=(torch.rand(4, 6, generator=g) < .5).float())
    losses = task_losses(batch, get_utilities(["accuracy", "diversity", "novelty"]))
    assert losses.shape == (2, 3) and torch.isfinite(losses).all()
    with pytest.raises(ValueError, match="long-tail"):
        task_losses(CandidateBatch(**{**batch.__dict__, "novel": None}), get_utilities(["novelty"]))
