"""The fairness weight as a signed per-user accuracy term, for the methods that rank per user
(MMR, DeepPRL, DeepPRL-static, MODT4R).

The fairness utility's metric is the NDCG@k gap between user groups (``padirec.core.utilities``),
``L = sum_g |m_g - mean_h m_h|`` with ``m_g`` the mean NDCG@k of group ``g``'s users (two groups:
``|m_A - m_B|``). A per-user ranker cannot see a group mean, but ``L`` is piecewise linear in the
per-user NDCG: near the operating point, with the sign of each ``m_g - mean m`` fixed,

    dL / dNDCG_u = (sign_g - mean_h sign_h) / |g|       for user u of group g.

So the task objective ``w_acc U_acc + w_div U_div - w_fair L`` is, to first order, the per-user
objective ``(w_acc + w_fair s_u) NDCG_u + w_div U_div,u`` with ``s_u = -c dL / dNDCG_u``. Two
groups with A the better served: ``s_u = -N / (2 |A|)`` in A and ``+N / (2 |B|)`` in B. ``c`` makes
the mean of ``|s_u|`` over the users 1 (the accuracy weight's own per-user coefficient), and
``sum_u s_u = 0``: the fairness weight moves accuracy emphasis from the better-served group to the
worse-served one without changing its total. A large ``w_fair`` makes the better-served group's
coefficient negative (the list ranks against the backbone's relevance for them): that is what the
gap metric rewards, and it can overshoot (flip the sign of the gap), since the linearisation does
not know where the gap reaches 0.

The signs come from the frozen backbone's own full-ranking NDCG@k on the VALIDATION split,
computed once (``group_signs``), never from the test split. Users without a group get 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from padirec.core.metrics import mask_history, ndcg_at_k, target_rank


@dataclass(frozen=True)
class GroupSigns:
    """``s_g`` of each group id (users of a group share it) and the validation NDCG@k it came from."""

    sign: dict[int, float]  # group id -> s_g
    ndcg: dict[int, float]  # group id -> the backbone's mean validation NDCG@k
    size: dict[int, int]  # group id -> validation users

    def per_user(self, groups: torch.Tensor) -> torch.Tensor:
        """``s_u (U,)`` float32 for users of ``groups (U,)`` (-1 or an unseen group: 0)."""
        out = torch.zeros(groups.shape, dtype=torch.float32, device=groups.device)
        for g, s in self.sign.items():
            out = torch.where(groups == g, torch.full_like(out, s), out)
        return out


def signs_from(ndcg: torch.Tensor, groups: torch.Tensor) -> GroupSigns:
    """``GroupSigns`` from per-user NDCG ``(U,)`` and groups ``(U,)`` (see the module docstring);
    every sign is 0 with fewer than two groups or no gap."""
    ndcg, groups = ndcg.detach().double().cpu(), groups.detach().cpu()
    present = [int(g) for g in torch.unique(groups[groups >= 0])]
    size = {g: int((groups == g).sum()) for g in present}
    means = {g: float(ndcg[groups == g].mean()) for g in present}
    if len(present) < 2:
        return GroupSigns({g: 0.0 for g in present}, means, size)
    centre = sum(means.values()) / len(present)
    side = {g: (means[g] > centre) - (means[g] < centre) for g in present}
    mean_side = sum(side.values()) / len(present)
    grad = {g: (side[g] - mean_side) / size[g] for g in present}  # dL/dNDCG_u, up to 1/N
    total = sum(abs(grad[g]) * size[g] for g in present) / sum(size.values())  # mean |dL/dNDCG_u|
    sign = {g: (-grad[g] / total if total > 0 else 0.0) for g in present}
    return GroupSigns(sign, means, size)


@torch.no_grad()
def group_signs(features: Any, k: int = 10) -> GroupSigns | None:
    """The backbone's ``GroupSigns`` on the validation split (full ranking, history masked); None when
    the data has no user groups. ``features``: ``padirec.adapters.features.Features`` (not imported:
    the ground floor sits below the adapters)."""
    s = features.valid
    if s.groups is None:
        return None
    scores = mask_history(s.h @ features.item_embedding.T, s.mask_rows, s.mask_cols)
    return signs_from(ndcg_at_k(target_rank(scores, s.targets), k), s.groups)


def fairness_weight(w: torch.Tensor, utilities: Sequence[str]) -> float:
    """The task's fairness weight (0 without the fairness utility)."""
    return float(w[list(utilities).index("fairness")]) if "fairness" in utilities else 0.0


def relevance_coefficients(lam: float | torch.Tensor, w_acc: float, w_div: float, w_fair: float,
                           signs: torch.Tensor) -> torch.Tensor:
    """Each user's weight on relevance, ``lam + w_fair s_u / (w_acc + w_div)``, when ``lam`` (a float
    or per-user, broadcast with ``signs``) is accuracy's share of ``w_acc + w_div``: the task
    objective divided by ``w_acc + w_div`` (the same ranking). ``s_u`` alone when ``w_acc + w_div = 0``
    (pure fairness; the diversity weight is then 0 too)."""
    total = w_acc + w_div
    return lam + (w_fair / total) * signs if total > 0 else signs
