"""The novelty utility's training loss: a smoothed discounted gain of the long-tail candidates.

The metric (``padirec.core.novelty``) counts the long-tail items of the top-k list. Its surrogate,
like the diversity loss's smoothed alpha-DCG, replaces each candidate's hard rank by the soft rank
``Rank_k = 1 + sum_{j != k} sigmoid((s_j - s_k) / T)`` and discounts as DCG does:

    L_nov = - sum_k nov_k / log2(1 + Rank_k)        nov_k = 1 if candidate k is in I_nov, else 0

averaged over the batch, per adapter ``(N,)``. Lowering it ranks long-tail candidates above the
popular ones. The pairwise ``(N, b, L, L)`` terms are computed a chunk of the batch at a time
with a hand-written gradient (``padirec.adapters.pairwise``), as the diversity loss is.
"""

from __future__ import annotations

import math

import torch

from padirec.adapters.pairwise import chunked_loss


def novelty_loss(scores: torch.Tensor, novel: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """``scores (N, B, L)``, ``novel (B, L)`` (1 for a long-tail candidate) -> ``(N,)``."""
    if novel.shape != scores.shape[1:]:
        raise ValueError(f"novel {tuple(novel.shape)} must be (batch, list) for scores {tuple(scores.shape)}")
    novel = novel.to(scores.dtype)
    return chunked_loss(scores, lambda sl, g: _terms(scores[:, sl], novel[sl], temperature, g))


def _terms(s: torch.Tensor, novel: torch.Tensor, temperature: float,
           grad: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The loss summed over the chunk ``(N,)`` and (if ``grad``) its gradient w.r.t. ``s (N, b, L)``."""
    above = torch.sigmoid((s[..., None, :] - s[..., :, None]) / temperature)  # [k, j]: j above k
    above = above * (1.0 - torch.eye(s.shape[-1], dtype=s.dtype, device=s.device))
    rank = 1.0 + above.sum(-1)  # (N, b, L)
    disc = torch.log2(1.0 + rank)
    loss = -(novel / disc).sum((1, 2))
    if not grad:
        return loss, None
    d_rank = novel / (disc * disc * (1.0 + rank) * math.log(2.0))  # dL / dRank_k
    q = d_rank[..., None] * above * (1.0 - above) / temperature  # [k, j]
    return loss, q.sum(-2) - q.sum(-1)  # s_j enters Rank_k with +, s_k with -
