"""The utilities a task weighs: accuracy (BCE), diversity (smoothed alpha-DCG), fairness, novelty.

Each utility is a differentiable loss over a batch of candidate lists scored by ``N`` adapters
at once, returning one value per adapter ``(N,)``; a task ``w`` on the simplex over the chosen
utilities trains on ``sum_j w_j loss_j`` (paper Eq. 4/7). Each utility is a registered class with its loss and its
metric (``padirec.core.utilities``); the built-ins register here, a plugin's in its own file;
nothing here assumes two of them. ``padirec.adapters.utilities`` imports this module and every other
that defines utilities: the modules that read the registry import it from there.

Candidate lists are ``(B, L)`` item ids: column 0 is the positive (the next item), columns
``1..k`` the ``k`` sampled negatives (the "train" list of the paper), and optionally further
columns with the backbone's top items (``candidates = "topk"``, see ``train.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from padirec.adapters.novelty_loss import novelty_loss
from padirec.adapters.pairwise import chunked_loss
from padirec.core.utilities import UTILITIES, Utility, register_utility


@dataclass
class CandidateBatch:
    """One mini-batch as the losses see it."""

    scores: torch.Tensor  # (N, B, L) score of each candidate under each adapter
    categories: torch.Tensor  # (B, L, C) float multi-hot categories of each candidate
    num_train: int  # 1 + k: columns [0, num_train) are the positive and the negatives
    groups: torch.Tensor | None  # (B,) user group, -1 unknown
    diversity_columns: slice  # which columns the diversity loss ranks
    alpha: float = 0.5
    temperature: float = 0.1
    novel: torch.Tensor | None = None  # (B, L) 1 for a long-tail candidate (``padirec.core.novelty``)


# ----------------------------------------------------------------------------- accuracy

def bce_loss(scores: torch.Tensor) -> torch.Tensor:
    """``-log s(pos) - sum_j log(1 - s(neg_j))`` averaged over the batch.

    ``scores (N, B, 1 + k)`` with the positive in column 0 -> ``(N,)``.
    """
    return -(F.logsigmoid(scores[..., 0]) + F.logsigmoid(-scores[..., 1:]).sum(-1)).mean(-1)


# ----------------------------------------------------------------------------- diversity

def soft_rank(scores: torch.Tensor, temperature: float) -> torch.Tensor:
    """``Rank_k = 1 + sum_{j != k} sigmoid((s_j - s_k) / T)``, same shape as ``scores (..., L)``.

    As ``T -> 0`` it tends to the hard 1-based rank (ties count one half each).
    """
    above = torch.sigmoid((scores[..., None, :] - scores[..., :, None]) / temperature)
    return 0.5 + above.sum(-1)  # 0.5 = 1 - the diagonal's sigmoid(0)


def diversity_loss(scores: torch.Tensor, categories: torch.Tensor, alpha: float = 0.5,
                   temperature: float = 0.1) -> torch.Tensor:
    """Smoothed alpha-DCG (paper Eq. 5/6), negated; lower = more diverse top of the list.

    ``L_div = - sum_k sum_l y_{k,l} (1 - alpha)^{C_{k,l}} / log2(1 + Rank_k)`` with the soft count
    of items ranked ABOVE ``k`` that cover category ``l``:
    ``C_{k,l} = sum_{j != k} y_{j,l} sigmoid((s_j - s_k) / T)``. (The authors' code counts the
    items below ``k``; with scores (3, 2, 1) and categories (A, A, B) it is the second A item
    whose gain is discounted, which ``tests/adapters/test_objectives.py`` pins.)

    ``scores (N, B, L)``, ``categories (B, L, C)`` float -> ``(N,)``, averaged over the batch.
    float32 stays finite for large ``L``: the sigmoid saturates to 0/1 and ``log2(1 + Rank) >= 1``.

    Only the categories an item has enter its gain, so counts are kept per (item, own category)
    slot, ``G = max categories per item`` instead of all ``C``; the pairwise ``(N, B, L, L)`` terms
    are computed in cache-sized chunks of the batch with a hand-written backward (recomputed,
    not stored), which is several times faster than autograd on CPU and bounds memory.
    """
    if not 0.0 <= alpha < 1.0:
        raise ValueError(f"alpha must be in [0, 1), got {alpha}")
    if categories.shape[:2] != scores.shape[1:]:
        raise ValueError(f"categories {tuple(categories.shape)} must be (batch, list, C) for scores "
                         f"{tuple(scores.shape)}")
    slots, valid = category_slots(categories.to(scores.dtype))
    # -sum_k G_k / log2(1 + R_k) averaged over the batch, per adapter (N,)
    return chunked_loss(scores, lambda sl, g: _alpha_dcg_terms(scores[:, sl], slots[sl], valid[sl], alpha, temperature, g))


def category_slots(categories: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Multi-hot ``(B, L, C)`` -> ``shares (B, L, G, L)`` and ``valid (B, L, G)``.

    ``valid[b, k, g]``: item ``k`` has a ``g``-th category ``c``; ``shares[b, k, g, j] = y[b, j, c]``
    (zero where not valid).
    """
    b, n, _ = categories.shape
    g = max(1, int(categories.sum(-1).max()))
    valid, idx = categories.topk(g, dim=-1)  # 1s first: the item's own categories
    shares = categories.transpose(1, 2).gather(1, idx.reshape(b, n * g, 1).expand(b, n * g, n))
    return shares.reshape(b, n, g, n) * valid[..., None], valid


def _alpha_dcg_terms(s: torch.Tensor, shares: torch.Tensor, valid: torch.Tensor, alpha: float,
                     temperature: float, grad: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Loss summed over the chunk ``(N,)`` and (if ``grad``) its gradient w.r.t. ``s (N, b, L)``.

    Works in the layout ``(b, k, N, j)`` so both contractions with ``shares (b, k, G, j)`` are
    plain batched matmuls over ``(b, k)`` without copies (measured 2.5x faster than ``einsum``
    over ``(N, b, k, j)``).
    """
    log_q = math.log1p(-alpha)
    sb = s.permute(1, 0, 2)  # (b, N, L)
    above = torch.sigmoid((sb[:, None, :, :] - sb.transpose(1, 2)[..., None]) / temperature)
    length = s.shape[-1]
    off_diag = 1.0 - torch.eye(length, dtype=s.dtype, device=s.device)[None, :, None, :]
    above = above * off_diag  # (b, k, N, j), zero where j == k
    rank = 1.0 + above.sum(-1)  # (b, k, N)
    count = torch.matmul(above, shares.transpose(-1, -2))  # (b, k, N, G): C at k's own categories
    gains = valid[:, :, None, :] * torch.exp(count * log_q)  # (1 - alpha)^C
    gain = gains.sum(-1)  # (b, k, N)
    disc = torch.log2(1.0 + rank)
    loss = -(gain / disc).sum((0, 1))
    if not grad:
        return loss, None
    d_rank = gain / (disc * disc * (1.0 + rank) * math.log(2.0))
    d_count = -(log_q / disc)[..., None] * gains
    d_above = d_rank[..., None] + torch.matmul(d_count, shares)  # (b, k, N, j)
    q = d_above * above * (1.0 - above) / temperature  # the zeroed diagonal contributes nothing
    # s_j enters with +, s_k with -
    return loss, (q.sum(1) - q.sum(-1).transpose(1, 2)).permute(1, 0, 2)


# ----------------------------------------------------------------------------- fairness

def soft_ndcg(scores: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Differentiable NDCG of the positive (column 0) in its list: ``1 / log2(1 + Rank_0)``.

    ``scores (N, B, L)`` -> ``(N, B)``.
    """
    rank0 = 1.0 + torch.sigmoid((scores[..., 1:] - scores[..., :1]) / temperature).sum(-1)
    return 1.0 / torch.log2(1.0 + rank0)


def group_gap(values: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """Spread of per-group means: ``sum_g |m_g - mean_g' m_g'|`` over groups present (>= 0).

    For two groups this is exactly ``|m_0 - m_1|`` (the NDCG gap). ``values (N, B)``,
    ``groups (B,)`` -> ``(N,)``; zero when fewer than two groups are present.
    """
    present = torch.unique(groups[groups >= 0])
    if present.numel() < 2:
        return values.new_zeros(values.shape[0])
    onehot = (groups[:, None] == present[None, :]).to(values.dtype)  # (B, G)
    means = (values @ onehot) / onehot.sum(0)  # (N, G)
    return (means - means.mean(-1, keepdim=True)).abs().sum(-1)


# ----------------------------------------------------------------------------- the built-in utilities

@register_utility
class Accuracy(Utility):
    name, metric = "accuracy", "ndcg@{k}"

    def loss(self, b: CandidateBatch) -> torch.Tensor:
        return bce_loss(b.scores[..., :b.num_train])


@register_utility
class Diversity(Utility):
    name, metric, needs = "diversity", "alpha_ndcg@{k}", "categories"

    def loss(self, b: CandidateBatch) -> torch.Tensor:
        cols = b.diversity_columns
        return diversity_loss(b.scores[..., cols], b.categories[:, cols], b.alpha, b.temperature)


@register_utility
class Fairness(Utility):
    name, metric, higher_is_better, needs = "fairness", "ndcg_gap@{k}", False, "groups"

    def loss(self, b: CandidateBatch) -> torch.Tensor:
        if b.groups is None:
            raise ValueError("the fairness utility needs user groups (users.parquet with a 'group' column)")
        return group_gap(soft_ndcg(b.scores[..., :b.num_train], b.temperature), b.groups)


@register_utility
class Novelty(Utility):
    name, metric = "novelty", "novelty@{k}"

    def loss(self, b: CandidateBatch) -> torch.Tensor:
        if b.novel is None:
            raise ValueError("the novelty utility needs the long-tail flag of every candidate (CandidateBatch.novel)")
        cols = b.diversity_columns  # the same list the diversity loss ranks: it reaches the full-ranking top
        return novelty_loss(b.scores[..., cols], b.novel[:, cols], b.temperature)


# ----------------------------------------------------------------------------- lookup

def get_utilities(names: list[str], settings: dict[str, Any] | None = None) -> list[Utility]:
    """The utilities ``names`` (registered: built in or a plugin's), each with its settings from
    ``settings`` (``adapters.utility_settings``; defaults where absent). An unknown or repeated name
    is an error that lists the valid ones."""
    unknown = [n for n in names if n not in UTILITIES]
    if unknown:
        raise ValueError(f"unknown utility {unknown[0]!r}; valid: {', '.join(UTILITIES)}")
    if len(set(names)) != len(names) or not names:
        raise ValueError(f"utilities must be a non-empty list of distinct names, got {names}")
    return [UTILITIES[n]((settings or {}).get(n)) for n in names]


def task_losses(batch: CandidateBatch, utilities: list[Utility]) -> torch.Tensor:
    """Every utility's loss for every adapter: ``(N, p)``."""
    return torch.stack([u.loss(batch) for u in utilities], dim=-1)
