"""MMR (Carbonell & Goldstein 1998): greedy re-ranking of the backbone's list.

At each position pick ``argmax_i lambda rel(i) - (1 - lambda) max_{j in S} sim(i, j)`` among the
backbone's top-N candidates not yet picked, with ``lambda = w_acc``, ``rel`` the backbone score
min-max normalised per user over its candidates, ``sim`` the cosine of the items' category
vectors and ``S`` the items picked so far. The first pick is always the top-scored item.
Vectorised over users (chunks of users bound the ``(users, N, N)`` similarity tensor).

With a fairness weight (``padirec.core.fairness``): ``lambda = w_acc / (w_acc + w_div)`` as
before, and user ``u``'s relevance term is weighted ``lambda + w_fair s_u / (w_acc + w_div)``
instead of ``lambda`` (the task objective linearised per user; ``s_u < 0`` in the group the
backbone serves better on validation, decided once in ``fit``). All-fairness weights rank by
``s_u rel`` alone (no redundancy term). Then the first pick is the best value, not always the top
score (a negative relevance weight ranks the backbone's candidates from the bottom). Without a
fairness weight (p = 2, or ``w_fair = 0``) nothing changes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from padirec.adapters.features import Features
from padirec.core.fairness import (
    GroupSigns,
    fairness_weight,
    group_signs,
    relevance_coefficients,
)
from padirec.core.metrics import mask_history
from padirec.core.novelty import long_tail_items
from padirec.core.typed_config import setting
from padirec.methods.base import HELD_OUT, Method, MethodContext, register

_USER_CHUNK = 512


@torch.no_grad()
def mmr_rerank(
    scores: torch.Tensor, item_categories: torch.Tensor, lam: float, k: int, num_candidates: int = 100,
    relevance: torch.Tensor | None = None, item_bonus: torch.Tensor | None = None,
) -> torch.Tensor:
    """Re-ranked top-``k`` lists ``(U, k)`` of item ids.

    ``scores (U, num_items + 1)`` already masked (history and padding ``-inf``);
    ``item_categories (num_items + 1, C)`` multi-hot. ``lam = 1`` returns the backbone's order.
    ``relevance (U,)``: each user's weight on relevance instead of ``lam`` (the redundancy weight
    stays ``1 - lam``); ``item_bonus (num_items + 1,)``: a per-item term added to every value (the
    novelty weight's). With either, the first pick is the best value, not always the top score.
    """
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"MMR lambda must be in [0, 1], got {lam}")
    n = min(max(num_candidates, k), scores.shape[1])
    if k > n:
        raise ValueError(f"k={k} exceeds the number of items ({scores.shape[1]})")
    cats = item_categories.to(scores.device, torch.float32)
    unit = cats / cats.norm(dim=1, keepdim=True).clamp_min(1e-12)  # zero rows stay zero: sim 0
    out = []
    for s in range(0, scores.shape[0], _USER_CHUNK):
        chunk = scores[s:s + _USER_CHUNK]
        top = chunk.topk(n, dim=1)  # sorted: column 0 is the top score
        cand, rel = top.indices, top.values
        finite = torch.isfinite(rel)
        lo = torch.where(finite, rel, torch.full_like(rel, math.inf)).min(1, keepdim=True).values
        hi = torch.where(finite, rel, torch.full_like(rel, -math.inf)).max(1, keepdim=True).values
        rel = torch.where(finite, (rel - lo) / (hi - lo).clamp_min(1e-12), torch.full_like(rel, -math.inf))
        vec = unit[cand]  # (u, n, C)
        sim = vec @ vec.transpose(1, 2)  # (u, n, n)
        rows = torch.arange(cand.shape[0], device=cand.device)
        picked = torch.zeros_like(rel, dtype=torch.bool)
        max_sim = torch.zeros_like(rel)
        order = []
        weight = None if relevance is None else relevance[s:s + _USER_CHUNK, None].to(rel)
        bonus = None if item_bonus is None else item_bonus.to(rel)[cand]  # (u, n)
        for r in range(k):
            if weight is not None or bonus is not None:
                value = (lam if weight is None else weight) * rel - (1.0 - lam) * max_sim
                if bonus is not None:
                    value = value + bonus
                # a negative weight times -inf is +inf: mask what cannot be ranked explicitly
                value = torch.where(finite, value, torch.full_like(rel, -math.inf))
                best = value.masked_fill(picked, -math.inf).argmax(1)
            elif r == 0:
                best = torch.zeros(cand.shape[0], dtype=torch.long, device=cand.device)
            else:
                value = lam * rel - (1.0 - lam) * max_sim
                # masked candidates (-inf rel) can only be picked when nothing finite is left
                value = value.masked_fill(picked, -math.inf)
                value = torch.where(torch.isnan(value), torch.full_like(value, -math.inf), value)
                best = value.argmax(1)  # first maximum: ties keep the backbone's order
            order.append(best)
            picked[rows, best] = True
            max_sim = torch.maximum(max_sim, sim[rows, best])
        out.append(cand.gather(1, torch.stack(order, 1)))
    return torch.cat(out) if out else scores.new_zeros((0, k), dtype=torch.long)


def lift_list(scores: torch.Tensor, lists: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """Scores ``(U, N)`` with the items of ``lists (U, k)`` placed above all others, in list order.

    Other items keep their relative order (and their ``-inf`` when masked), so the set of items
    that could be ranked is unchanged. Returns a new tensor unless ``inplace``. Works a chunk of
    users at a time: its temporaries are ``(chunk, N)``, not more ``(U, N)`` matrices (2.2 GB
    each at 5x ML-1M's size).
    """
    out = scores if inplace else scores.clone()
    k = lists.shape[1]
    above = torch.arange(k, 0, -1, device=scores.device, dtype=scores.dtype)
    for s in range(0, out.shape[0], _USER_CHUNK):
        rows = out[s:s + _USER_CHUNK]
        top = torch.where(torch.isfinite(rows), rows, torch.full_like(rows, -math.inf)).max(1, keepdim=True).values
        top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
        rows.scatter_(1, lists[s:s + _USER_CHUNK], (top + 1.0 + above).expand(rows.shape[0], k).contiguous())
    return out


def mmr_lambda(w: torch.Tensor, utilities: list[str]) -> float:
    """``lambda`` from task weights: ``w_acc / (w_acc + w_div)`` (``w_acc`` when p = 2)."""
    acc = float(w[utilities.index("accuracy")])
    div = float(w[utilities.index("diversity")]) if "diversity" in utilities else 0.0
    return acc / (acc + div) if acc + div > 0 else 1.0


def novelty_coefficient(w: torch.Tensor, utilities: list[str]) -> float:
    """``nu = w_nov / (w_acc + w_div)`` (0 without the novelty utility, 2 when ``w_acc + w_div = 0``)."""
    if "novelty" not in utilities:
        return 0.0
    nov = float(w[utilities.index("novelty")])
    acc = float(w[utilities.index("accuracy")])
    div = float(w[utilities.index("diversity")]) if "diversity" in utilities else 0.0
    if nov == 0:
        return 0.0
    return nov / (acc + div) if acc + div > 0 else 2.0


@dataclass(frozen=True)
class FairTask:
    """A prepared task with a fairness or novelty weight: ``lam``, each held-out user's relevance
    weight (None without a fairness weight) and the novelty coefficient ``nu``."""

    lam: float
    relevance: dict[str, torch.Tensor] | None  # split -> (U,)
    novelty: float = 0.0


@dataclass
class MMRConfig:
    candidates: int = setting(100, range="[1, inf)")  # MMR re-ranks the backbone's top-N


@register
class MMR(Method):
    """MMR re-ranking of the (unadapted) backbone's top-N list."""

    key = "mmr"
    config_class = MMRConfig

    def __init__(self, features: Features, utilities: list[str], k: int = 10, num_candidates: int = 100) -> None:
        super().__init__(features, utilities)
        if "accuracy" not in utilities:
            raise ValueError(f"MMR needs the 'accuracy' utility, got {utilities}")
        self.k = k
        self.num_candidates = num_candidates
        self.signs: GroupSigns | None = None
        self.tail = long_tail_items(features).to(torch.float32) if "novelty" in utilities else None

    @classmethod
    def build(cls, ctx: MethodContext, settings: MMRConfig) -> MMR:
        return cls(ctx.features, ctx.utilities, ctx.k, settings.candidates)

    def fit(self) -> None:
        if "fairness" in self.utilities and self.signs is None:
            self.signs = group_signs(self.features, self.k)

    def prepare(self, weights) -> float | FairTask:
        """``lambda``, or a ``FairTask`` when the task has a fairness or a novelty weight."""
        w = self.task_weights(weights)
        lam = mmr_lambda(w, self.utilities)
        w_fair = fairness_weight(w, self.utilities)
        nu = novelty_coefficient(w, self.utilities)
        if w_fair == 0:
            return lam if nu == 0 else FairTask(lam, None, nu)
        self.fit()
        if self.signs is None:
            raise ValueError("MMR: a fairness weight needs user groups")
        acc = float(w[self.utilities.index("accuracy")])
        div = float(w[self.utilities.index("diversity")]) if "diversity" in self.utilities else 0.0
        return FairTask(lam, {split: relevance_coefficients(lam, acc, div, w_fair,
                                                            self.signs.per_user(self.features.split(split).groups))
                              for split in HELD_OUT}, nu)

    @torch.no_grad()
    def scores(self, prepared: Any, split: str) -> torch.Tensor:
        s = self.features.split(split)
        masked = mask_history(s.h @ self.features.item_embedding.T, s.mask_rows, s.mask_cols, inplace=True)
        if isinstance(prepared, FairTask):
            lam, relevance = prepared.lam, None if prepared.relevance is None else prepared.relevance[split]
            bonus = None if prepared.novelty == 0 or self.tail is None else prepared.novelty * self.tail
        else:
            lam, relevance, bonus = prepared, None, None
        lists = mmr_rerank(masked, self.features.item_categories, lam, self.k, self.num_candidates, relevance, bonus)
        return lift_list(masked, lists, inplace=True)
