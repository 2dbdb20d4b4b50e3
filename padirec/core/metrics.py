"""Ranking metrics shared by every stage: NDCG@k, HR@k and alpha-NDCG@k, vectorised in torch.

Conventions:

- Full ranking: scores ``(B, N)`` cover every item id, column 0 is padding. History items are
  masked to ``-inf`` with ``mask_history`` before ranking; the target is never masked.
- The rank of the single held-out target is 1-based and ties count against the model: every
  other item whose score is ``>=`` the target's is ranked above it.
- alpha-NDCG treats every listed item as relevant to each of its own categories and
  normalises by an ideal list built greedily (as the TREC ``ndeval`` tool does) over the items
  that could be ranked (the candidates: every finite-scored item).
- ``evaluate_sampled`` (1 target + 99 negatives never in the history) exists only to compare
  with published sampled numbers; it is never the default.
"""

from __future__ import annotations

import math

import torch

_ALPHA_CHUNK = 1024  # users per chunk in the greedy ideal list, bounds memory at (chunk, N)


def mask_history(
    scores: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, inplace: bool = False
) -> torch.Tensor:
    """``scores (B, N)`` with ``-inf`` at every ``(rows[m], cols[m])`` and in column 0 (padding).

    ``rows``/``cols`` ``(M,)`` come from ``PreparedData.seen_items(split)`` (numpy or torch); the
    target is not among them, so it stays rankable. Returns a new tensor unless ``inplace``.
    """
    if scores.dim() != 2:
        raise ValueError(f"scores must be (batch, num_items + 1), got shape {tuple(scores.shape)}")
    rows = torch.as_tensor(rows, dtype=torch.long, device=scores.device)
    cols = torch.as_tensor(cols, dtype=torch.long, device=scores.device)
    if rows.shape != cols.shape:
        raise ValueError(f"rows {tuple(rows.shape)} and cols {tuple(cols.shape)} must match")
    if rows.numel() and (int(rows.max()) >= scores.shape[0] or int(cols.max()) >= scores.shape[1]):
        raise ValueError(
            f"history index out of range for scores of shape {tuple(scores.shape)}: "
            f"max row {int(rows.max())}, max item {int(cols.max())}"
        )
    out = scores if inplace else scores.clone()
    out[rows, cols] = -math.inf
    out[:, 0] = -math.inf
    return out


def history_chunks(rows: torch.Tensor, cols: torch.Tensor, n_users: int,
                    size: int) -> list[tuple[int, int, torch.Tensor, torch.Tensor]]:
    """``(lo, hi, rows - lo, cols)`` per chunk of ``size`` users: the history pairs of users
    ``lo..hi-1``, rows made relative to the chunk."""
    order = torch.argsort(rows, stable=True)
    rows, cols = rows[order], cols[order]
    starts = torch.arange(0, n_users, size, device=rows.device)
    bounds = torch.searchsorted(rows, torch.cat([starts, starts.new_tensor([n_users])])).tolist()
    return [(lo, min(lo + size, n_users), rows[a:b] - lo, cols[a:b])
            for lo, a, b in zip(starts.tolist(), bounds[:-1], bounds[1:], strict=True)]


def target_rank(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """1-based rank ``(B,)`` of ``targets (B,)`` under ``scores (B, N)``; ties count against.

    ``rank = 1 + #{j != target : score_j >= score_target}``. A NaN target score gets rank N.
    """
    targets = torch.as_tensor(targets, dtype=torch.long, device=scores.device)
    if targets.shape != scores.shape[:1]:
        raise ValueError(f"targets {tuple(targets.shape)} must be (batch,) for scores {tuple(scores.shape)}")
    target_score = scores.gather(1, targets[:, None])  # (B, 1)
    # The target itself satisfies >=, so the count already includes the "1 +".
    ranks = (scores >= target_score).sum(1)
    n = scores.shape[1]
    return torch.where(torch.isnan(target_score[:, 0]), torch.full_like(ranks, n), ranks)


def ndcg_at_k(ranks: torch.Tensor, k: int) -> torch.Tensor:
    """Per-user NDCG@k ``(B,)`` for one relevant item at 1-based ``ranks (B,)``."""
    ranks = ranks.to(torch.float64)
    return torch.where(ranks <= k, 1.0 / torch.log2(ranks + 1.0), torch.zeros_like(ranks))


def hr_at_k(ranks: torch.Tensor, k: int) -> torch.Tensor:
    """Per-user hit rate @k ``(B,)``: 1 when the target is in the top k."""
    return (ranks <= k).to(torch.float64)


def _alpha_dcg(
    lists: torch.Tensor, cats: torch.Tensor, alpha: float, listed_ok: torch.Tensor | None = None
) -> torch.Tensor:
    """alpha-DCG ``(B,)`` of ``lists (B, k)`` item ids with multi-hot ``cats (N, C)`` float;
    ``listed_ok (B, k)`` bool zeroes entries that are not candidates (e.g. masked fill-ins)."""
    y = cats[lists]  # (B, k, C)
    if listed_ok is not None:
        y = y * listed_ok[..., None]
    # count of category l among the items ranked strictly above position r
    above = torch.cumsum(y, dim=1) - y
    gain = (y * (1.0 - alpha) ** above).sum(-1)  # (B, k)
    discount = 1.0 / torch.log2(torch.arange(2, lists.shape[1] + 2, device=lists.device, dtype=y.dtype))
    return (gain * discount).sum(-1)


def ideal_alpha_dcg(
    item_categories: torch.Tensor, k: int, alpha: float = 0.5, candidates_mask: torch.Tensor | None = None,
    batch: int | None = None,
) -> torch.Tensor:
    """alpha-DCG ``(B,)`` of the greedy ideal list of length k over each user's candidates.

    Greedy as in ``ndeval``: at each rank pick the candidate with the largest marginal gain
    ``sum_l y_l (1 - alpha)^{count_l}``; ties go to the highest item id, which reproduces
    ``ndeval`` exactly (checked against it through ir-measures/pyndeval with zero-padded ids).
    ``candidates_mask (B, N)`` bool, True = the item could be ranked; None = every item except
    padding (``batch`` users).
    """
    cats = item_categories.to(torch.float64)
    n = cats.shape[0]
    if candidates_mask is None:
        candidates_mask = torch.ones(batch or 1, n, dtype=torch.bool, device=cats.device)
        candidates_mask[:, 0] = False
    # Work in reversed item order so that the first maximum (what max returns) is the highest id.
    cats_rev_t = cats.flip(0).T.contiguous()  # (C, N)
    taken = ~candidates_mask.flip(1)  # (B, N), True = cannot be picked
    b = taken.shape[0]
    counts = torch.zeros(b, cats.shape[1], dtype=torch.float64, device=cats.device)
    total = torch.zeros(b, dtype=torch.float64, device=cats.device)
    rows = torch.arange(b, device=cats.device)
    for r in range(k):
        gains = ((1.0 - alpha) ** counts) @ cats_rev_t  # (B, N)
        gains.masked_fill_(taken, -1.0)  # never wins against a candidate, even a 0-gain one
        best_gain, best = gains.max(dim=1)
        has = best_gain >= 0
        total += best_gain.clamp_min(0.0) / math.log2(r + 2)
        counts += cats[n - 1 - best] * has[:, None]
        taken[rows, best] = True
    return total


def alpha_ndcg_at_k(
    topk: torch.Tensor,
    item_categories: torch.Tensor,
    alpha: float = 0.5,
    candidates_mask: torch.Tensor | None = None,
    ideal: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-user alpha-NDCG@k ``(B,)`` of the ranked lists ``topk (B, k)`` (item ids).

    ``item_categories (N, C)`` bool/float multi-hot; ``candidates_mask (B, N)`` bool, True for the
    items that could be ranked (e.g. ``torch.isfinite(masked_scores)``); None = all but padding.
    A user whose candidates cover no category gets 0. The greedy ideal is not always optimal,
    so (as with ``ndeval``) a value can in rare cases exceed 1; it is not clipped. ``ideal (B,)``:
    ``ideal_per_user`` of ``candidates_mask`` already computed (a caller that evaluates the same
    candidates again, e.g. every epoch), else computed here.
    """
    if topk.dim() != 2:
        raise ValueError(f"topk must be (batch, k) item ids, got shape {tuple(topk.shape)}")
    cats = item_categories.to(device=topk.device, dtype=torch.float64)
    if candidates_mask is not None and candidates_mask.shape != (topk.shape[0], cats.shape[0]):
        raise ValueError(
            f"candidates_mask must be (batch, num_items + 1) = {(topk.shape[0], cats.shape[0])}, "
            f"got {tuple(candidates_mask.shape)}"
        )
    k = topk.shape[1]
    listed_ok = None if candidates_mask is None else candidates_mask.to(topk.device).gather(1, topk)
    dcg = _alpha_dcg(topk, cats, alpha, listed_ok)
    if ideal is not None:
        ideal = ideal.to(dcg)
    elif candidates_mask is None:  # same ideal for every user
        ideal = ideal_alpha_dcg(cats, k, alpha).expand(topk.shape[0])
    else:
        ideal = ideal_per_user(cats, k, alpha, candidates_mask.to(topk.device))
    return torch.where(ideal > 0, dcg / ideal.clamp_min(1e-300), torch.zeros_like(dcg))


def ideal_per_user(item_categories: torch.Tensor, k: int, alpha: float, candidates_mask: torch.Tensor) -> torch.Tensor:
    """``ideal_alpha_dcg`` ``(B,)`` float64 for each row of ``candidates_mask (B, N)``, in chunks of
    users (memory bounded at ``(chunk, N)``): the denominator ``alpha_ndcg_at_k`` uses."""
    cats = item_categories.to(device=candidates_mask.device, dtype=torch.float64)
    if not candidates_mask.shape[0]:
        return torch.zeros(0, dtype=torch.float64, device=candidates_mask.device)
    return torch.cat([ideal_alpha_dcg(cats, k, alpha, candidates_mask[s:s + _ALPHA_CHUNK])
                      for s in range(0, candidates_mask.shape[0], _ALPHA_CHUNK)])


def evaluate_scores(
    scores: torch.Tensor,
    targets: torch.Tensor,
    item_categories: torch.Tensor,
    k: int = 10,
    alpha: float = 0.5,
    per_user: bool = False,
    ideal: torch.Tensor | None = None,
) -> dict[str, float] | dict[str, torch.Tensor]:
    """NDCG@k, HR@k and alpha-NDCG@k for already-masked ``scores (B, N)`` and ``targets (B,)``.

    Keys ``ndcg@{k}``, ``hr@{k}``, ``alpha_ndcg@{k}``: means as floats, or ``(B,)`` tensors with
    ``per_user=True``. The alpha-NDCG candidates are the finite-scored items; ``ideal``: their
    ``ideal_per_user``, when the caller has it.
    """
    if scores.shape[1] != item_categories.shape[0]:
        raise ValueError(
            f"scores have {scores.shape[1]} columns but item_categories has {item_categories.shape[0]} "
            "rows; both must be num_items + 1 (column 0 = padding)"
        )
    if k > scores.shape[1]:
        raise ValueError(f"k={k} exceeds the number of items ({scores.shape[1]})")
    ranks = target_rank(scores, targets)
    topk = scores.topk(k, dim=1).indices
    out = {
        f"ndcg@{k}": ndcg_at_k(ranks, k),
        f"hr@{k}": hr_at_k(ranks, k),
        f"alpha_ndcg@{k}": alpha_ndcg_at_k(topk, item_categories, alpha, torch.isfinite(scores), ideal),
    }
    if per_user:
        return out
    return {name: float(v.mean()) if v.numel() else 0.0 for name, v in out.items()}


def sample_negatives(
    scores_shape: tuple[int, int],
    rows: torch.Tensor,
    cols: torch.Tensor,
    targets: torch.Tensor,
    num_negatives: int = 99,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``(B, num_negatives)`` distinct item ids per user, uniform over items never in the history
    (``rows``/``cols`` as for ``mask_history``), never the target nor padding."""
    b, n = scores_shape
    keys = torch.rand(b, n, generator=generator)
    keys[torch.as_tensor(rows, dtype=torch.long).cpu(), torch.as_tensor(cols, dtype=torch.long).cpu()] = -1.0
    keys[torch.arange(b), torch.as_tensor(targets, dtype=torch.long).cpu()] = -1.0
    keys[:, 0] = -1.0
    allowed = (keys >= 0).sum(1)
    if b and int(allowed.min()) < num_negatives:
        raise ValueError(f"a user has only {int(allowed.min())} items outside the history; "
                         f"cannot sample {num_negatives} negatives")
    return keys.topk(num_negatives, dim=1).indices  # top of uniform keys = uniform without replacement


def evaluate_sampled(
    scores: torch.Tensor,
    targets: torch.Tensor,
    negatives: torch.Tensor,
    item_categories: torch.Tensor,
    k: int = 10,
    alpha: float = 0.5,
    per_user: bool = False,
) -> dict[str, float] | dict[str, torch.Tensor]:
    """Sampled evaluation (for comparison with published numbers only): rank the target among
    ``negatives (B, n_neg)`` (from ``sample_negatives``); alpha-NDCG over those candidates.

    Every other item is masked out, then ``evaluate_scores`` runs unchanged (ties against).
    """
    targets = torch.as_tensor(targets, dtype=torch.long, device=scores.device)
    keep = torch.zeros_like(scores, dtype=torch.bool)
    keep.scatter_(1, negatives.to(scores.device), True)
    keep.scatter_(1, targets[:, None], True)
    sampled = scores.masked_fill(~keep, -math.inf)
    return evaluate_scores(sampled, targets, item_categories, k=k, alpha=alpha, per_user=per_user)
