"""MMR: lambda = 1 is the backbone's order, lambda = 0 maximises novelty, lists are lifted intact."""

from __future__ import annotations

import math

import torch

from padirec.core.metrics import mask_history
from padirec.methods.mmr import MMR, lift_list, mmr_lambda, mmr_rerank


def _masked_scores(features):
    s = features.test
    return mask_history(s.h @ features.item_embedding.T, s.mask_rows, s.mask_cols)


def test_lambda_one_returns_the_backbone_order(features):
    scores = _masked_scores(features)
    lists = mmr_rerank(scores, features.item_categories, lam=1.0, k=10, num_candidates=25)
    assert torch.equal(lists, scores.topk(10, dim=1).indices)


def test_method_at_pure_accuracy_ranks_like_the_backbone(features):
    mmr = MMR(features, ["accuracy", "diversity"], k=10, num_candidates=25)
    lam = mmr.prepare([1.0, 0.0])
    assert lam == 1.0
    out = mask_history(mmr.scores(lam, "test"), features.test.mask_rows, features.test.mask_cols)
    assert torch.equal(out.topk(10, dim=1).indices, _masked_scores(features).topk(10, dim=1).indices)


def test_hand_case_prefers_a_new_category_when_diversity_weighs():
    # items 1..3: scores 3, 2, 1; categories A, A, B. The first pick is item 1 (top score);
    # with lambda = 0.3 the second pick is item 3 (new category B), with lambda = 1 it is item 2.
    cats = torch.tensor([[0, 0], [1, 0], [1, 0], [0, 1]], dtype=torch.float32)
    scores = torch.tensor([[-math.inf, 3.0, 2.0, 1.0]])
    assert mmr_rerank(scores, cats, lam=0.3, k=3).tolist() == [[1, 3, 2]]
    assert mmr_rerank(scores, cats, lam=1.0, k=3).tolist() == [[1, 2, 3]]


def test_lambda_zero_covers_more_categories(features):
    scores = _masked_scores(features)
    cats = features.item_categories

    def coverage(lists):
        return float((cats[lists].amax(1) > 0).sum(1).float().mean())

    div = mmr_rerank(scores, cats, lam=0.0, k=5, num_candidates=40)
    acc = mmr_rerank(scores, cats, lam=1.0, k=5, num_candidates=40)
    assert coverage(div) >= coverage(acc)
    assert torch.equal(div[:, 0], acc[:, 0])  # first pick = top score, always


def test_never_lists_a_masked_item(features):
    scores = _masked_scores(features)
    lists = mmr_rerank(scores, features.item_categories, lam=0.5, k=10, num_candidates=30)
    assert torch.isfinite(scores.gather(1, lists)).all()
    assert (lists.sort(1).values.diff(dim=1) != 0).all()  # no item twice


def test_lift_list_puts_the_list_on_top_and_keeps_the_candidates():
    scores = torch.tensor([[-math.inf, 0.5, 0.9, -math.inf, 0.1, 0.7]])
    lists = torch.tensor([[4, 1]])
    lifted = lift_list(scores, lists)
    assert lifted.topk(2, dim=1).indices.tolist() == [[4, 1]]
    assert torch.equal(torch.isfinite(lifted), torch.isfinite(scores))


def test_lift_list_in_chunks_and_in_place_is_the_one_pass_formula():
    """Over several chunks of users, with rows that have no finite score and NaN: each row's list
    goes above its largest finite score, in list order; ``inplace`` writes into the given scores."""
    gen = torch.Generator().manual_seed(0)
    scores = torch.randn(1100, 40, generator=gen)
    scores[scores < -1.0] = -math.inf
    scores[3] = -math.inf
    scores[5, 7] = math.nan
    lists = torch.rand(1100, 40, generator=gen).argsort(1)[:, :6]
    finite_top = torch.where(torch.isfinite(scores), scores, torch.full_like(scores, -math.inf)).max(1, keepdim=True).values
    top = torch.where(torch.isfinite(finite_top), finite_top, torch.zeros_like(finite_top))
    want = scores.scatter(1, lists, (top + 1.0 + torch.arange(6, 0, -1.0)).expand(1100, 6).contiguous())
    got = lift_list(scores, lists)
    assert torch.equal(got.nan_to_num(), want.nan_to_num()) and got.data_ptr() != scores.data_ptr()
    same = scores.clone()
    assert lift_list(same, lists, inplace=True).data_ptr() == same.data_ptr()
    assert torch.equal(same.nan_to_num(), want.nan_to_num())


def test_lambda_from_three_utilities():
    w = torch.tensor([0.2, 0.6, 0.2])
    assert abs(mmr_lambda(w, ["accuracy", "diversity", "fairness"]) - 0.25) < 1e-6
    assert mmr_lambda(torch.tensor([0.0, 0.0, 1.0]), ["accuracy", "diversity", "fairness"]) == 1.0
