"""Ranking metrics: hand-computed cases, ties, masking, and alpha-NDCG against ndeval."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from padirec.core.metrics import (
    alpha_ndcg_at_k,
    evaluate_sampled,
    evaluate_scores,
    hr_at_k,
    mask_history,
    ndcg_at_k,
    sample_negatives,
    target_rank,
)

NEG = -math.inf

# items 1..4; categories A=0, B=1: item1 {A}, item2 {A}, item3 {B}, item4 {A, B}
CATS = torch.tensor([[0, 0], [1, 0], [1, 0], [0, 1], [1, 1]], dtype=torch.bool)


def test_target_rank_ties_count_against_the_model():
    scores = torch.tensor([[NEG, 3.0, 2.0, 1.0, 2.0], [NEG, 1.0, 1.0, 1.0, 1.0], [NEG, 5.0, 1.0, 0.0, 0.0]])
    ranks = target_rank(scores, torch.tensor([2, 3, 1]))
    assert ranks.tolist() == [3, 4, 1]  # item 4 ties item 2 -> above it; all-equal -> last


def test_target_rank_nan_is_last():
    scores = torch.tensor([[NEG, float("nan"), 1.0, 2.0]])
    assert target_rank(scores, torch.tensor([1])).tolist() == [4]


def test_ndcg_and_hr_hand_computed():
    ranks = torch.tensor([1, 3, 10, 11])
    assert ndcg_at_k(ranks, 10).tolist() == pytest.approx([1.0, 0.5, 1 / math.log2(11), 0.0])
    assert hr_at_k(ranks, 10).tolist() == [1.0, 1.0, 1.0, 0.0]
    assert ndcg_at_k(ranks, 2).tolist() == pytest.approx([1.0, 0.0, 0.0, 0.0])


def test_evaluate_scores_means_and_keys():
    scores = torch.tensor([[NEG, 3.0, 2.0, 1.0, 2.0], [NEG, 0.0, 9.0, 1.0, 2.0]])
    out = evaluate_scores(scores, torch.tensor([2, 2]), CATS, k=2)
    assert set(out) == {"ndcg@2", "hr@2", "alpha_ndcg@2"}
    assert out["hr@2"] == pytest.approx(0.5)  # rank 3 misses, rank 1 hits
    assert out["ndcg@2"] == pytest.approx(0.5)
    per_user = evaluate_scores(scores, torch.tensor([2, 2]), CATS, k=2, per_user=True)
    assert per_user["hr@2"].tolist() == [0.0, 1.0]


def test_alpha_ndcg_hand_computed():
    # list (1, 2, 3): gains 1, 0.5 (second A discounted), 1 -> DCG = 1 + 0.5/log2(3) + 1/2
    # ideal over {1, 2, 3}: (1, 3, 2) -> 1 + 1/log2(3) + 0.5/2
    cand = torch.tensor([[False, True, True, True, False]])
    got = alpha_ndcg_at_k(torch.tensor([[1, 2, 3]]), CATS, 0.5, cand)
    want = (1 + 0.5 / math.log2(3) + 0.5) / (1 + 1 / math.log2(3) + 0.25)
    assert got.item() == pytest.approx(want)
    assert alpha_ndcg_at_k(torch.tensor([[1, 3, 2]]), CATS, 0.5, cand).item() == pytest.approx(1.0)


def test_alpha_ndcg_multi_category_item_and_candidates():
    # with item 4 {A, B} available the ideal starts with it (gain 2)
    got = alpha_ndcg_at_k(torch.tensor([[1, 3]]), CATS, 0.5)  # all items are candidates
    want = (1 + 1 / math.log2(3)) / (2 + 0.5 / math.log2(3))
    assert got.item() == pytest.approx(want)
    # masking item 4 out of the candidates changes the ideal: (1, 3) is then ideal
    cand = torch.tensor([[False, True, True, True, False]])
    assert alpha_ndcg_at_k(torch.tensor([[1, 3]]), CATS, 0.5, cand).item() == pytest.approx(1.0)


def test_alpha_ndcg_direction_items_above_discount():
    # the item ranked below is the discounted one: (3, 1, 2) -> gains 1, 1, 0.5
    cand = torch.tensor([[False, True, True, True, False]])
    got = alpha_ndcg_at_k(torch.tensor([[3, 1, 2]]), CATS, 0.5, cand).item()
    assert got == pytest.approx((1 + 1 / math.log2(3) + 0.25) / (1 + 1 / math.log2(3) + 0.25))


def test_alpha_ndcg_zero_when_no_categories():
    cats = torch.zeros(5, 2, dtype=torch.bool)
    assert alpha_ndcg_at_k(torch.tensor([[1, 2]]), cats).item() == 0.0


def _reference_alpha_ndcg(ranked: list[int], candidates: list[int], cats: np.ndarray, k: int, alpha: float) -> float:
    """Straight from the ndeval definition, in plain python (independent of the torch code)."""
    def dcg(items):
        seen = [0] * cats.shape[1]
        total = 0.0
        for r, it in enumerate(items[:k]):
            g = sum((1 - alpha) ** seen[c] for c in range(cats.shape[1]) if cats[it, c])
            total += g / math.log2(r + 2)
            for c in range(cats.shape[1]):
                seen[c] += int(cats[it, c])
        return total
    ideal, pool, seen = [], sorted(candidates), [0] * cats.shape[1]
    for _ in range(min(k, len(pool))):
        gains = [sum((1 - alpha) ** seen[c] for c in range(cats.shape[1]) if cats[it, c]) for it in pool]
        best = pool.pop(len(gains) - 1 - int(np.argmax(gains[::-1])))  # ties: highest id
        ideal.append(best)
        for c in range(cats.shape[1]):
            seen[c] += int(cats[best, c])
    i = dcg(ideal)
    return dcg(ranked) / i if i > 0 else 0.0


def _random_case(seed: int, b: int = 12, n: int = 40, c: int = 5, k: int = 10):
    g = torch.Generator().manual_seed(seed)
    cats = torch.rand(n, c, generator=g) < 0.3
    cats[0] = False
    scores = torch.randn(b, n, generator=g)
    rows = torch.randint(0, b, (60,), generator=g)
    cols = torch.randint(1, n, (60,), generator=g)
    masked = mask_history(scores, rows, cols)
    return cats, masked, masked.topk(k, dim=1).indices


@pytest.mark.parametrize("seed", range(5))
def test_alpha_ndcg_matches_plain_python_reference(seed):
    cats, masked, topk = _random_case(seed)
    cand = torch.isfinite(masked)
    got = alpha_ndcg_at_k(topk, cats, 0.5, cand)
    for u in range(topk.shape[0]):
        want = _reference_alpha_ndcg(topk[u].tolist(), torch.nonzero(cand[u])[:, 0].tolist(), cats.numpy(), 10, 0.5)
        assert got[u].item() == pytest.approx(want, abs=1e-9)


@pytest.mark.parametrize("seed", range(3))
def test_alpha_ndcg_matches_ndeval(seed):
    ir_measures = pytest.importorskip("ir_measures")
    pytest.importorskip("pyndeval")
    cats, masked, topk = _random_case(seed)
    cand = torch.isfinite(masked)
    got = alpha_ndcg_at_k(topk, cats, 0.5, cand)
    # qrels: every candidate is relevant to each of its categories (subtopic = iteration)
    qrels = [ir_measures.Qrel(str(u), f"{i:05d}", 1, str(c))
             for u in range(cand.shape[0]) for i in torch.nonzero(cand[u])[:, 0].tolist()
             for c in torch.nonzero(cats[i])[:, 0].tolist()]
    run = [ir_measures.ScoredDoc(str(u), f"{i:05d}", float(10 - r))
           for u in range(topk.shape[0]) for r, i in enumerate(topk[u].tolist())]
    measure = ir_measures.alpha_nDCG(alpha=0.5) @ 10
    want = {m.query_id: m.value for m in ir_measures.iter_calc([measure], qrels, run)}
    for u in range(topk.shape[0]):
        assert got[u].item() == pytest.approx(want[str(u)], abs=1e-9), u


def test_mask_history_never_lets_history_into_topk():
    g = torch.Generator().manual_seed(0)
    b, n = 30, 50
    scores = torch.randn(b, n, generator=g)
    rows = torch.randint(0, b, (400,), generator=g)
    cols = torch.randint(0, n, (400,), generator=g)
    scores[rows, cols] += 100.0  # history items would otherwise dominate
    masked = mask_history(scores, rows, cols)
    seen = set(zip(rows.tolist(), cols.tolist(), strict=True))
    topk = masked.topk(10, dim=1).indices
    for u in range(b):
        for i in topk[u].tolist():
            assert i != 0 and (u, i) not in seen
    assert torch.equal(scores[:, 1:][~torch.isinf(masked[:, 1:])], masked[:, 1:][~torch.isinf(masked[:, 1:])])


def test_mask_history_rejects_bad_indices():
    with pytest.raises(ValueError, match="out of range"):
        mask_history(torch.zeros(2, 5), torch.tensor([2]), torch.tensor([1]))


def test_evaluate_scores_rejects_mismatched_categories():
    with pytest.raises(ValueError, match="item_categories"):
        evaluate_scores(torch.zeros(2, 5), torch.tensor([1, 1]), torch.zeros(4, 2))


def test_sampled_negatives_avoid_history_and_target():
    g = torch.Generator().manual_seed(1)
    b, n = 8, 300
    rows = torch.arange(b).repeat_interleave(20)
    cols = torch.randint(1, n, (b * 20,), generator=g)
    targets = torch.randint(1, n, (b,), generator=g)
    neg = sample_negatives((b, n), rows, cols, targets, 99, generator=g)
    assert neg.shape == (b, 99)
    for u in range(b):
        items = set(neg[u].tolist())
        assert len(items) == 99 and 0 not in items and targets[u].item() not in items
        assert not items & set(cols[rows == u].tolist())


def test_sampled_rank_among_candidates_only():
    n = 200
    scores = torch.arange(n, dtype=torch.float32)[None].clone()  # higher id, higher score
    targets = torch.tensor([150])
    negatives = torch.arange(1, 100)[None]  # all below the target
    out = evaluate_sampled(scores, targets, negatives, torch.ones(n, 1, dtype=torch.bool), k=10)
    assert out["hr@10"] == 1.0 and out["ndcg@10"] == 1.0  # full ranking would put it at 50
