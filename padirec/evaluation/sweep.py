"""The method x task sweep: every method ranks every test user's full item set for every task.

For each method: ``fit()`` once, then for each task ``prepare(w)`` and ``scores(prepared,
split)``; the history is masked here (every item of the user's history except the target) and
NDCG@k, HR@k and alpha-NDCG@k are computed with ``padirec.core.metrics``, plus the NDCG@k
gap between user groups (the fairness utility's metric) when the data has groups, the share of
each list in the long tail (``novelty@k``, the novelty utility's metric) and the thesis' system-level
coverage of the catalogue and of the long tail (``cv_div@k``, ``cv_nov@k``: ``padirec.core.novelty``).
The sweep does not know which method is which.

The per-user ideal alpha-DCG depends only on which items can be ranked (the same for every
method: history and padding masked), so it is computed once per split, not once per
(method, task). Sampled evaluation (1 + 99 negatives, ``sampled=True``) exists only to compare
with published sampled numbers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from padirec.adapters.features import Features
from padirec.adapters.objectives import group_gap
from padirec.core.metrics import (
    alpha_ndcg_at_k,
    evaluate_sampled,
    evaluate_scores,
    history_chunks,
    hr_at_k,
    ideal_alpha_dcg,
    ideal_per_user,
    mask_history,
    ndcg_at_k,
    sample_negatives,
    target_rank,
)
from padirec.core.novelty import coverage_of, listed_items, long_tail_items, novelty_at_k
from padirec.core.tracker import NullTracker, Tracker
from padirec.evaluation.report import metric_name
from padirec.methods.base import Method

log = logging.getLogger("padirec")

_RANK_CHUNK = 256  # users per chunk when ranking: a (256, N) float32 copy fits in cache up to N ~ 10^4


class SplitEvaluator:
    """Metrics of full-ranking scores for the held-out users of one split.

    ``__call__(scores (U, num_items + 1))`` masks the history and returns
    ``{"ndcg@k", "hr@k", "alpha_ndcg@k", "novelty@k", "cv_div@k", "cv_nov@k"[, "ndcg_gap@k"]}`` as floats.
    """

    def __init__(self, features: Features, split: str = "test", k: int = 10, alpha: float = 0.5,
                 sampled: bool = False, seed: int = 0) -> None:
        self.split_name = split
        self.split = features.split(split)
        self.cats = features.item_categories
        self.k, self.alpha = k, alpha
        self.tail = long_tail_items(features).to(self.split.h.device)  # from the training split only
        s = self.split
        n_users, n_items = s.h.shape[0], features.item_embedding.shape[0]
        self.negatives = None
        if sampled:
            gen = torch.Generator().manual_seed(seed)
            self.negatives = sample_negatives((n_users, n_items), s.mask_rows.cpu(), s.mask_cols.cpu(),
                                              s.targets.cpu(), 99, gen).to(s.h.device)
            return
        self.rankable = torch.ones(n_users, n_items, dtype=torch.bool, device=s.h.device)
        self.rankable[s.mask_rows, s.mask_cols] = False
        self.rankable[:, 0] = False
        self._chunks = history_chunks(s.mask_rows, s.mask_cols, n_users, _RANK_CHUNK)
        self.ideal = ideal_per_user(self.cats, k, alpha, self.rankable)
        # alpha_ndcg_at_k without a mask divides by the single unmasked ideal; multiply it back
        self.ideal_all = ideal_alpha_dcg(self.cats, k, alpha)[0]

    def per_user(self, scores: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-user metrics ``{name: (U,)}`` of raw ``scores (U, num_items + 1)``."""
        return self.per_user_lists(scores)[0]

    @torch.no_grad()
    def per_user_lists(self, scores: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """``per_user``'s metrics and the top-k lists ``(U, k)`` they were measured on (what the
        system-level coverage of ``aggregate`` needs)."""
        out, top = self._per_user(scores)
        out[f"novelty@{self.k}"] = novelty_at_k(top, self.tail)
        return out, top

    def _per_user(self, scores: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        s, k = self.split, self.k
        if scores.shape != (s.h.shape[0], self.cats.shape[0]):
            raise ValueError(f"scores must be (users, num_items + 1) = {(s.h.shape[0], self.cats.shape[0])}, "
                             f"got {tuple(scores.shape)}")
        scores = scores.to(s.h.device)
        if self.negatives is not None:
            scores = mask_history(scores, s.mask_rows, s.mask_cols)
            out = evaluate_sampled(scores, s.targets, self.negatives, self.cats, k, self.alpha, per_user=True)
            keep = torch.zeros_like(scores, dtype=torch.bool).scatter_(1, self.negatives, True)
            keep[torch.arange(len(keep), device=keep.device), s.targets] = True
            return out, scores.masked_fill(~keep, -torch.inf).topk(k, dim=1).indices
        # Every raw score finite (a finite sum: one cheap pass) means the masked scores are finite
        # exactly where ``rankable``; otherwise check that, a chunk of users at a time.
        if not bool(torch.isfinite(scores.sum())) and not self._finite_where_rankable(scores):
            # a method masked more items than the history: the ideal list must follow its candidates
            masked = mask_history(scores, s.mask_rows, s.mask_cols)
            out = evaluate_scores(masked, s.targets, self.cats, k, self.alpha, per_user=True)
            return out, masked.topk(k, dim=1).indices
        ranks, top = self._ranks_and_top(scores)
        dcg = alpha_ndcg_at_k(top, self.cats, self.alpha) * self.ideal_all
        return {
            f"ndcg@{k}": ndcg_at_k(ranks, k),
            f"hr@{k}": hr_at_k(ranks, k),
            f"alpha_ndcg@{k}": torch.where(self.ideal > 0, dcg / self.ideal.clamp_min(1e-300), torch.zeros_like(dcg)),
        }, top

    def _finite_where_rankable(self, scores: torch.Tensor) -> bool:
        return all(torch.equal(torch.isfinite(mask_history(scores[lo:hi], rows, cols)), self.rankable[lo:hi])
                   for lo, hi, rows, cols in self._chunks)

    def _ranks_and_top(self, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The target's rank ``(U,)`` and the top-k items ``(U, k)`` under the history-masked
        ``scores``, a chunk of users at a time: each chunk's copy stays in cache, about 3x faster
        than masking, comparing and sorting the whole ``(U, N)`` matrix (the same values)."""
        ranks, top = [], []
        for lo, hi, rows, cols in self._chunks:
            x = mask_history(scores[lo:hi], rows, cols)
            ranks.append(target_rank(x, self.split.targets[lo:hi]))
            top.append(x.topk(self.k, dim=1).indices)
        if not ranks:
            empty = scores.new_zeros((0,), dtype=torch.long)
            return empty, scores.new_zeros((0, self.k), dtype=torch.long)
        return torch.cat(ranks), torch.cat(top)

    def __call__(self, scores: torch.Tensor) -> dict[str, float]:
        return self.aggregate(*self.per_user_lists(scores))

    def listed(self, top: torch.Tensor) -> torch.Tensor:
        """``(num_items + 1,)`` bool: the items some list of ``top (U, k)`` contains (``listed_items``)."""
        return listed_items(top, self.tail.shape[0] - 1)

    def aggregate(self, out: Mapping[str, torch.Tensor], top: torch.Tensor | None = None,
                  listed: torch.Tensor | None = None) -> dict[str, float]:
        """The split's metrics from ``per_user``'s output: the means, the group gap, and (given the
        lists ``top (U, k)``, or the items they contain ``listed``) the coverage of the catalogue and
        of the long tail."""
        if top is not None:
            listed = self.listed(top)
        return aggregate(out, self.split.groups, self.k, listed, self.tail)


def aggregate(out: Mapping[str, torch.Tensor], groups: torch.Tensor | None, k: int,
              listed: torch.Tensor | None = None, tail: torch.Tensor | None = None) -> dict[str, float]:
    """Per-user metrics ``{name: (U,)}`` -> the means, the NDCG@k gap between ``groups (U,)``
    (none without groups) and, given the items some user's list contains ``listed`` and the long
    tail ``tail`` (both ``(num_items + 1,)`` bool), the coverage ``cv_div@k``/``cv_nov@k``. The merge
    of user shards calls it on the shards' users joined (their ``listed`` OR-ed), so its figures
    are the unsharded ones."""
    metrics = {name: float(v.mean()) if v.numel() else 0.0 for name, v in out.items()}
    if groups is not None:
        ndcg = out[f"ndcg@{k}"].to(torch.float64)
        metrics[f"ndcg_gap@{k}"] = float(group_gap(ndcg[None, :], groups.to(ndcg.device))[0])
    if listed is not None and tail is not None:
        metrics.update(coverage_of(listed, tail, k))
    return metrics


@dataclass
class SweepResult:
    tasks: np.ndarray  # (T, p)
    metrics: dict[str, list[dict[str, float]]]  # method -> per task
    adapters: dict[str, torch.Tensor] = field(default_factory=dict)  # adapter methods: (T, P)
    fit_seconds: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)  # whole sweep per method (fit excluded)
    # ``per_user=True``: method -> per task -> {metric: (U,) float64}, the users in the split's order
    per_user: dict[str, list[dict[str, np.ndarray]]] = field(default_factory=dict)
    user_groups: np.ndarray | None = None  # (U,) the split's user groups (-1 = none), when it has them
    # ``per_user=True``: method -> per task -> (num_items + 1,) bool, the items some user's top-k
    # contains (``novelty.listed_items``: coverage is no mean over users), and the long tail used
    listed: dict[str, list[np.ndarray]] = field(default_factory=dict)
    tail: np.ndarray | None = None  # (num_items + 1,) bool


def run_sweep(
    methods: Mapping[str, Method],
    tasks: Sequence[Sequence[float]] | np.ndarray,
    features: Features,
    split: str = "test",
    k: int = 10,
    alpha: float = 0.5,
    sampled: bool = False,
    seed: int = 0,
    tracker: Tracker | None = None,
    per_user: bool = False,
    fitted: bool = False,
) -> SweepResult:
    """Fit every method once (unless ``fitted``: already done, e.g. by the response-time
    comparison), then evaluate it on every task of ``tasks (T, p)``.

    ``per_user``: also keep every user's metric values (``SweepResult.per_user``, for the
    bootstrap of ``padirec.evaluation.uncertainty``) and the items listed per task with the long
    tail (``SweepResult.listed``, ``tail``: the coverage of users joined from shards).

    Logs ``<method>/<metric>`` with ``step`` = task index to the tracker, one log line per method.
    """
    tracker = tracker or NullTracker()
    tasks = np.asarray(tasks, dtype=np.float64)
    evaluator = SplitEvaluator(features, split, k, alpha, sampled, seed)
    result = SweepResult(tasks=tasks, metrics={})
    if per_user and evaluator.split.groups is not None:
        result.user_groups = evaluator.split.groups.cpu().numpy().astype(np.int64)
    if per_user:
        result.tail = evaluator.tail.cpu().numpy().astype(bool)
    for key, method in methods.items():
        start = time.perf_counter()
        if not fitted:
            method.fit()
        result.fit_seconds[key] = time.perf_counter() - start + (0.0 if fitted else method.reused_fit_seconds())
        start = time.perf_counter()
        rows, adapters, users, listed = [], [], [], []
        for t, w in enumerate(tasks):
            prepared = method.prepare_split(w, split)  # the split read here only
            out, top = evaluator.per_user_lists(method.scores(prepared, split))
            items = evaluator.listed(top)
            metrics = evaluator.aggregate(out, listed=items)
            rows.append(metrics)
            if per_user:
                users.append({m: v.detach().to(torch.float64).cpu().numpy() for m, v in out.items()})
                listed.append(items.cpu().numpy())
            if method.produces_adapters:
                adapters.append(torch.as_tensor(prepared).detach().reshape(-1).float().cpu())
            tracker.log_metrics({f"{key}/{metric_name(m)}": v for m, v in metrics.items()}, step=t)
        result.metrics[key] = rows
        if per_user:
            result.per_user[key] = users
            result.listed[key] = listed
        if adapters:
            result.adapters[key] = torch.stack(adapters)
        result.seconds[key] = time.perf_counter() - start
        log.info("sweep: %s, %d tasks, %s (fit %.1fs, tasks %.1fs)", key, len(tasks),
                 _span(rows, k), result.fit_seconds[key], result.seconds[key])
    return result


def _span(rows: list[dict[str, Any]], k: int) -> str:
    parts = []
    for name in (f"ndcg@{k}", f"alpha_ndcg@{k}"):
        vals = [r[name] for r in rows if name in r]
        if vals:
            parts.append(f"{name} {min(vals):.4f}..{max(vals):.4f}")
    return ", ".join(parts)
