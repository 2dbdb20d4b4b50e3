"""Full-ranking evaluation of many adapters over one split, with the shared metrics.

For each adapter: ``h' = adapter(h)`` for every held-out user, scores over the whole item set,
history and padding masked to ``-inf`` (as ``padirec.core.metrics.mask_history`` does), then NDCG@k, HR@k, alpha-NDCG@k
and, when the data has user groups, the NDCG@k gap between groups (the fairness utility's
metric), and the share of each list in the training split's long tail (``novelty@k``, the novelty
utility's metric). The per-user ideal alpha-DCG depends only on which items are rankable, the same for
every adapter, so it is computed once per split instead of once per adapter; adapters are
scored in chunks as one matrix, so the shared metric functions run once per chunk.
"""

from __future__ import annotations

import numpy as np
import torch

from padirec.adapters.adapter import apply_adapters
from padirec.adapters.features import Features
from padirec.adapters.objectives import group_gap
from padirec.core.layout import Layout
from padirec.core.metrics import (
    alpha_ndcg_at_k,
    history_chunks,
    hr_at_k,
    ideal_alpha_dcg,
    ideal_per_user,
    ndcg_at_k,
    target_rank,
)
from padirec.core.novelty import long_tail_items, novelty_at_k

_SCORES_PER_CHUNK = 1 << 24  # adapters scored at once: (adapters x users x items) up to this
_USER_CHUNK = 256  # users ranked at once: each adapter's (256, N) scores stay in cache


@torch.no_grad()
def evaluate_adapters(features: Features, params: torch.Tensor | None, lay: Layout, split: str = "valid",
                      k: int = 10, alpha: float = 0.5) -> dict[str, np.ndarray]:
    """Metrics of each adapter in ``params (N, P)`` (``None`` = the bare backbone, ``N = 1``).

    Returns ``{"ndcg@k", "hr@k", "alpha_ndcg@k", "novelty@k"[, "ndcg_gap@k"]}``, each ``(N,)`` float64.
    Users are ranked ``_USER_CHUNK`` at a time, so memory is bounded by a chunk's scores, not by
    users x items (one adapter's full matrix and its masks took 5 GB at 5x ML-1M's size).
    """
    sp = features.split(split)
    emb = features.item_embedding
    cats = features.item_categories
    n_users, n_items = sp.h.shape[0], emb.shape[0]
    chunks = history_chunks(sp.mask_rows, sp.mask_cols, n_users, _USER_CHUNK)
    ideal_user = torch.zeros(n_users, dtype=torch.float64, device=emb.device)
    for lo, hi, rows, cols in chunks:
        rankable = torch.ones(hi - lo, n_items, dtype=torch.bool, device=emb.device)
        rankable[rows, cols] = False
        rankable[:, 0] = False
        ideal_user[lo:hi] = ideal_per_user(cats, k, alpha, rankable)
    # alpha_ndcg_at_k without a mask normalises by the one unmasked ideal; undo that to get the DCG
    ideal_all = ideal_alpha_dcg(cats, k, alpha)[0]
    n = 1 if params is None else params.shape[0]
    tail = long_tail_items(features).to(emb.device)
    out: dict[str, list[torch.Tensor]] = {f"ndcg@{k}": [], f"hr@{k}": [], f"alpha_ndcg@{k}": [], f"novelty@{k}": []}
    if sp.groups is not None:
        out[f"ndcg_gap@{k}"] = []
    step = max(1, _SCORES_PER_CHUNK // max(1, n_users * n_items))
    for s in range(0, n, step):
        h = sp.h[None] if params is None else apply_adapters(sp.h, params[s:s + step].to(sp.h), lay)
        c = h.shape[0]
        ranks, dcg, nov = [], [], []
        for lo, hi, rows, cols in chunks:
            # this chunk of users under every adapter of the chunk, as one (c * users, N) matrix
            scores = h[:, lo:hi] @ emb.T
            scores[:, rows, cols] = -torch.inf  # history
            scores[:, :, 0] = -torch.inf  # padding
            scores = scores.reshape(c * (hi - lo), -1)
            ranks.append(target_rank(scores, sp.targets[lo:hi].repeat(c)).reshape(c, hi - lo))
            top = scores.topk(k, dim=1).indices
            dcg.append((alpha_ndcg_at_k(top, cats, alpha) * ideal_all).reshape(c, hi - lo))
            nov.append(novelty_at_k(top, tail).reshape(c, hi - lo))
        rank = torch.cat(ranks, 1) if ranks else torch.zeros(c, 0, dtype=torch.long, device=emb.device)
        dcg_all = torch.cat(dcg, 1) if dcg else torch.zeros(c, 0, dtype=torch.float64, device=emb.device)
        ndcg = ndcg_at_k(rank.reshape(-1), k).reshape(c, n_users)
        a_ndcg = torch.where(ideal_user > 0, dcg_all / ideal_user.clamp_min(1e-300), torch.zeros_like(dcg_all))
        out[f"ndcg@{k}"].append(ndcg.mean(1))
        out[f"hr@{k}"].append(hr_at_k(rank.reshape(-1), k).reshape(c, n_users).mean(1))
        out[f"alpha_ndcg@{k}"].append(a_ndcg.mean(1))
        out[f"novelty@{k}"].append(torch.cat(nov, 1).mean(1) if nov else torch.zeros(c, dtype=torch.float64))
        if sp.groups is not None:
            out[f"ndcg_gap@{k}"].append(group_gap(ndcg, sp.groups))
    return {name: torch.cat(v).double().cpu().numpy() for name, v in out.items()}
