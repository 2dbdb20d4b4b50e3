"""Batched adapter training: ``N`` tasks as one tensor program.

All adapters of a bank are rows of one leaf tensor ``params (N, P)`` optimised by one Adam.
Every task sees the same mini-batches and the same sampled negatives; the total loss is the sum
over tasks of each task's scalarised loss ``sum_j w_j loss_j``, so each row receives exactly its
own task's gradient, and Adam (element-wise) updates each row as a separate run would. Hence
training ``N`` tasks batched equals ``N`` sequential runs with the same seed (up to float
summation order), and ``train_adapter`` (the Retrain baseline) is the ``N = 1`` case.

Every task starts from the same initial adapter (identity map, see ``adapter.py``).
Convergence criterion: a fixed budget of ``cfg.epochs`` passes over the training prefixes (an
epoch is capped at ``cfg.steps_per_epoch`` mini-batches), chosen so the training loss has
plateaued (``benchmarks/bench_adapters.py`` prints the relative change over the last epochs);
the last ``cfg.checkpoints_per_task`` epochs give the checkpoints, as in parameter-diffusion work.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import torch

from padirec.adapters.adapter import apply_adapters, init_params
from padirec.adapters.config import AdapterConfig
from padirec.adapters.features import Features
from padirec.adapters.objectives import CandidateBatch, get_utilities, task_losses
from padirec.adapters.utilities import UTILITIES  # noqa: F401 - every built-in utility registered
from padirec.core.layout import adapter_layout
from padirec.core.novelty import long_tail_items
from padirec.core.tasks import validate_weights

log = logging.getLogger("padirec")

_NEGATIVE_ROUNDS = 20  # redraws of negatives that hit the user's train items
_TOPK_CHUNK = 4096


@dataclass
class BankTraining:
    """Result of ``train_bank``."""

    checkpoints: torch.Tensor  # (N, K, P) the adapters after each of the last K epochs
    loss_history: np.ndarray  # (epochs, N) mean scalarised training loss per epoch and task
    utility_history: np.ndarray  # (epochs, N, p) mean loss of each utility
    seconds: float


def sample_negatives(features: Features, users: torch.Tensor, k: int,
                     generator: torch.Generator) -> torch.Tensor:
    """``(B, k)`` uniform items in ``1..I`` never in the user's train sequence.

    Draws come from the CPU ``generator`` (reproducible on any device); collisions with the
    train items are redrawn a bounded number of times.
    """
    b, n = users.shape[0], features.num_items
    neg = torch.randint(1, n + 1, (b, k), generator=generator).to(users.device)
    for _ in range(_NEGATIVE_ROUNDS):
        bad = features.is_seen(users[:, None], neg)
        if not bool(bad.any()):
            break
        fresh = torch.randint(1, n + 1, (b, k), generator=generator).to(users.device)
        neg = torch.where(bad, fresh, neg)
    return neg


def seen_pairs(features: Features, users: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every train item of each of ``users (B,)`` as ``(row, item)`` index pairs."""
    stride = features.num_items + 1
    keys = features.seen_keys
    start = torch.searchsorted(keys, users * stride)
    end = torch.searchsorted(keys, (users + 1) * stride)
    lengths = end - start
    rows = torch.repeat_interleave(torch.arange(len(users), device=users.device), lengths)
    offsets = torch.cumsum(lengths, 0) - lengths
    idx = torch.repeat_interleave(start - offsets, lengths) + torch.arange(int(lengths.sum()), device=users.device)
    return rows, keys[idx] % stride


def candidate_lists(features: Features, idx: torch.Tensor, num_negatives: int, gen: torch.Generator,
                    topk: torch.Tensor | None = None) -> torch.Tensor:
    """The candidate list of each training prefix in a mini-batch, ``(B, L)``: the positive first,
    then ``num_negatives`` fresh negatives, then (``topk`` from ``backbone_topk``) the backbone's
    top items. Shared by the adapters and every baseline trained on the same loss."""
    cands = [features.train_target[idx, None], sample_negatives(features, features.train_user[idx], num_negatives, gen)]
    if topk is not None:
        cands.append(topk[idx])
    return torch.cat(cands, dim=1)


@torch.no_grad()
def backbone_topk(features: Features, n: int) -> torch.Tensor:
    """``(M, n)`` the frozen backbone's top items for each training prefix, excluding padding and
    every item of the user's train sequence (the positive joins the list separately).

    Computed once per ``features`` and ``n`` (kept in ``features.topk_cache``): the bank, Retrain's
    every task and CMR share it. Treat the result as read-only."""
    if n in features.topk_cache:
        return features.topk_cache[n]
    seen_per_user = torch.bincount(features.seen_keys // (features.num_items + 1))
    fewest_unseen = features.num_items - int(seen_per_user.max())
    k = n
    if k > fewest_unseen:  # never list a seen item: shorten the list for everyone instead
        log.warning("adapters: topk_candidates=%d exceeds the %d unseen items of the heaviest user; "
                    "using %d", k, fewest_unseen, fewest_unseen)
        k = fewest_unseen
    out = torch.empty(features.train_h.shape[0], k, dtype=torch.int64, device=features.train_h.device)
    emb = features.item_embedding
    for s in range(0, features.train_h.shape[0], _TOPK_CHUNK):
        users = features.train_user[s:s + _TOPK_CHUNK]
        scores = features.train_h[s:s + _TOPK_CHUNK] @ emb.T
        # one seen-row per distinct user (sum n_u index pairs, not one pair per example and item)
        distinct, inverse = torch.unique(users, return_inverse=True)
        rows, cols = seen_pairs(features, distinct)
        seen = torch.zeros(len(distinct), emb.shape[0], dtype=torch.bool, device=scores.device)
        seen[rows, cols] = True
        seen[:, 0] = True  # padding
        scores.masked_fill_(seen[inverse], -torch.inf)
        out[s:s + _TOPK_CHUNK] = scores.topk(k, dim=1).indices
    features.topk_cache[n] = out
    return out


def diversity_columns(cfg: AdapterConfig) -> slice:
    """Which candidate columns the diversity loss ranks (``cfg.candidates``, see ``AdapterConfig``)."""
    if cfg.candidates == "train":
        return slice(0, 1 + cfg.num_negatives)
    if cfg.candidates == "topk":
        return slice(0, None)
    raise ValueError(f"candidates must be 'train' or 'topk', got {cfg.candidates!r}")


def train_bank(features: Features, weights: np.ndarray, cfg: AdapterConfig, seed: int) -> BankTraining:
    """Train one adapter per task in ``weights (N, p)`` (utilities ``cfg.utilities``), batched.

    Returns the last ``cfg.checkpoints_per_task`` epochs' parameters ``(N, K, P)``.
    """
    utilities = get_utilities(cfg.utilities, cfg.utility_settings)
    w = validate_weights(np.atleast_2d(weights), len(utilities))
    k_ckpt = cfg.checkpoints_per_task
    if not 1 <= k_ckpt <= cfg.epochs:
        raise ValueError(f"checkpoints_per_task must be in [1, epochs={cfg.epochs}], got {k_ckpt}")
    device = features.train_h.device
    lay = adapter_layout(features.dim, cfg.bottleneck)
    gen = torch.Generator().manual_seed(seed)
    params = init_params(lay, gen).to(device).repeat(len(w), 1).requires_grad_(True)
    opt = torch.optim.Adam([params], lr=cfg.lr)
    w_t = torch.as_tensor(w, dtype=torch.float32, device=device)

    div_cols = diversity_columns(cfg)
    topk = backbone_topk(features, cfg.topk_candidates) if cfg.candidates == "topk" else None
    m = features.train_h.shape[0]
    steps = min(-(-m // cfg.batch_size), cfg.steps_per_epoch or m)
    groups_all = features.user_group
    tail = long_tail_items(features).to(torch.float32) if "novelty" in cfg.utilities else None
    ckpts, loss_hist, util_hist = [], [], []
    start = time.perf_counter()
    for epoch in range(cfg.epochs):
        if epoch == cfg.epochs - k_ckpt and cfg.checkpoint_lr != 1.0:  # the checkpoints settle
            for group in opt.param_groups:
                group["lr"] = cfg.lr * cfg.checkpoint_lr
        perm = torch.randperm(m, generator=gen).to(device)
        sum_util = torch.zeros(len(w), len(utilities), device=device)
        for step in range(steps):
            idx = perm[step * cfg.batch_size:(step + 1) * cfg.batch_size]
            users = features.train_user[idx]
            cands = candidate_lists(features, idx, cfg.num_negatives, gen, topk)  # (B, L)
            h = apply_adapters(features.train_h[idx], params, lay)  # (N, B, d)
            scores = torch.einsum("nbd,bld->nbl", h, features.item_embedding[cands])
            batch = CandidateBatch(
                scores=scores, categories=features.item_categories[cands],
                num_train=1 + cfg.num_negatives,
                groups=None if groups_all is None else groups_all[users],
                diversity_columns=div_cols, alpha=cfg.alpha, temperature=cfg.temperature,
                novel=None if tail is None else tail[cands],
            )
            losses = task_losses(batch, utilities)  # (N, p)
            opt.zero_grad(set_to_none=True)
            (w_t * losses).sum().backward()  # sum over tasks: each row gets only its own gradient
            opt.step()
            sum_util += losses.detach()
        util = (sum_util / steps).cpu().numpy()
        util_hist.append(util)
        loss_hist.append((util * w).sum(1))
        if epoch >= cfg.epochs - k_ckpt:
            ckpts.append(params.detach().clone())
        log.info("adapters: epoch %d/%d, %d tasks, mean loss %.4f (%.1fs)", epoch + 1, cfg.epochs,
                 len(w), float(loss_hist[-1].mean()), time.perf_counter() - start)
    return BankTraining(
        checkpoints=torch.stack(ckpts, dim=1), loss_history=np.stack(loss_hist),
        utility_history=np.stack(util_hist), seconds=time.perf_counter() - start,
    )


def checkpoint_spread(checkpoints: torch.Tensor) -> dict[str, float]:
    """How much a task's checkpoints ``(N, K, P)`` still differ, means over tasks: ``spread``, the
    mean relative L2 of a checkpoint to the task's checkpoint mean, and ``last_move``, the relative
    L2 of the last epoch's step (0 for a settled adapter)."""
    mean = checkpoints.mean(1, keepdim=True)
    norm = mean.norm(dim=-1).clamp_min(1e-12)
    spread = ((checkpoints - mean).norm(dim=-1) / norm).mean()
    out = {"checkpoint_spread": float(spread)}
    if checkpoints.shape[1] > 1:
        step = (checkpoints[:, -1] - checkpoints[:, -2]).norm(dim=-1) / checkpoints[:, -2].norm(dim=-1).clamp_min(1e-12)
        out["checkpoint_last_move"] = float(step.mean())
    return out


def train_adapter(features: Features, weights: np.ndarray, cfg: AdapterConfig, seed: int) -> torch.Tensor:
    """Retrain: one adapter for one task's weights ``(p,)`` from scratch to the convergence criterion
    (``cfg.epochs`` epochs). Returns ``(P,)``: the bank's recipe for that task, equal to its last
    checkpoint up to float rounding, which training amplifies (see ``padirec.methods.retrain``)."""
    one = AdapterConfig(**{**cfg.__dict__, "checkpoints_per_task": 1})
    return train_bank(features, np.asarray(weights)[None, :], one, seed).checkpoints[0, -1]
