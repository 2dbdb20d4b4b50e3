"""Interpolation: the adapters of the bank tasks around ``w`` mixed linearly.

The second "simplest explanation" baseline, beside ``nn_lookup``: if mixing the stored neighbours
is as good as generating, the generator adds nothing. One adapter per bank task (the mean of its
checkpoints by default, or its last: ``checkpoints``, as in ``nn_lookup.bank_tasks``), over the
bank rows the generator trains on (held-out rows are never used). Then, for task weights ``w``:

- ``p = 2``: the two bank tasks bracketing ``w_acc`` (the first weight), mixed linearly:
  ``theta = (1 - lam) theta_lo + lam theta_hi`` with ``lam = (w_acc - w_lo) / (w_hi - w_lo)``;
  a bank task at exactly ``w_acc`` is returned as it is.
- ``p >= 3``: a Delaunay triangulation (``scipy.spatial.Delaunay``) of the bank tasks' weights
  in the simplex's first ``p - 1`` coordinates (an affine chart of the simplex, so barycentric
  coordinates are the same as on the simplex); ``theta = sum_i b_i theta_i`` over the vertices
  of the simplex enclosing ``w``, ``b`` its barycentric coordinates.

Fallback: ``w`` outside the bank tasks' convex hull (``w_acc`` beyond the extreme bank task, or no
enclosing simplex), or a bank too small or degenerate to triangulate, gets the nearest bank
task's adapter (``nn_lookup``'s answer); ``fallbacks`` counts those tasks. Bank tasks with the
same weights are merged (their adapters averaged) so the triangulation is well defined.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from scipy.spatial import Delaunay, QhullError

from padirec.adapters.features import Features
from padirec.core.layout import Layout
from padirec.core.tasks import validate_weights
from padirec.methods.base import AdapterMethod, MethodContext, register
from padirec.methods.nn_lookup import BankLookupConfig, bank_tasks, check_tasks

log = logging.getLogger("padirec")

_SAME = 1e-9  # a bank task within this of w_acc (p = 2) is w's own task
_INSIDE = 1e-9  # barycentric coordinates down to -_INSIDE count as inside (round-off)


@register
class Interpolation(AdapterMethod):
    key = "interpolation"
    learns_from_tasks = True
    config_class = BankLookupConfig

    def __init__(self, features: Features, utilities: list[str], layout: Layout,
                 params: torch.Tensor, weights: torch.Tensor) -> None:
        """``params (T, P)`` and ``weights (T, p)``: one adapter per bank task (see ``bank_tasks``)."""
        super().__init__(features, utilities, layout)
        check_tasks(self.key, params, weights, self.num_params, len(utilities))
        params, weights = _merge_duplicates(params.float(), torch.as_tensor(weights, dtype=torch.float64).cpu())
        self.params = params.to(self.device)
        self.weights = weights.numpy()  # (T, p) float64
        self.fallbacks = 0  # tasks answered by the nearest bank task (outside the hull)
        self.triangulation: Delaunay | None = None
        p = len(utilities)
        if p >= 3 and len(self.weights) >= p:
            try:
                self.triangulation = Delaunay(self.weights[:, : p - 1])
            except QhullError as e:  # too few or affinely dependent points: nearest only
                log.warning("interpolation: cannot triangulate %d bank tasks (%s); every task falls back to the "
                            "nearest bank task", len(self.weights), str(e).splitlines()[0])

    @classmethod
    def build(cls, ctx: MethodContext, settings: BankLookupConfig) -> Interpolation:
        params, weights, _ = bank_tasks(ctx.require_bank(cls.key), settings.checkpoints)
        return cls(ctx.features, ctx.utilities, ctx.layout, params, weights)

    def mixture(self, weights) -> tuple[np.ndarray, np.ndarray, bool]:
        """``(task indices, coefficients, fell_back)``: the bank tasks mixed for ``weights (p,)``,
        coefficients non-negative and summing to 1."""
        w = validate_weights(weights, len(self.utilities))
        if len(self.utilities) == 2:
            found = self._bracket(w[0])
        else:
            found = self._enclosing(w)
        if found is not None:
            return found[0], found[1], False
        nearest = int(np.argmin(np.linalg.norm(self.weights - w, axis=1)))
        return np.array([nearest]), np.array([1.0]), True

    def _bracket(self, x: float) -> tuple[np.ndarray, np.ndarray] | None:
        t = self.weights[:, 0]
        same = np.flatnonzero(np.abs(t - x) <= _SAME)
        if len(same):
            return same[:1], np.array([1.0])
        below, above = np.flatnonzero(t < x), np.flatnonzero(t > x)
        if not len(below) or not len(above):
            return None
        lo = below[np.argmax(t[below])]
        hi = above[np.argmin(t[above])]
        lam = (x - t[lo]) / (t[hi] - t[lo])
        return np.array([lo, hi]), np.array([1.0 - lam, lam])

    def _enclosing(self, w: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        tri = self.triangulation
        if tri is None:
            return None
        d = len(w) - 1
        x = w[:d]
        s = int(tri.find_simplex(x[None, :])[0])
        if s < 0:
            return None
        affine = tri.transform[s]
        b = affine[:d] @ (x - affine[d])
        bary = np.append(b, 1.0 - b.sum())
        if (bary < -_INSIDE).any():
            return None
        bary = np.clip(bary, 0.0, None)
        bary /= bary.sum()
        keep = bary > 0
        return tri.simplices[s][keep].astype(np.int64), bary[keep]

    def prepare(self, weights) -> torch.Tensor:
        idx, coef, fell_back = self.mixture(weights)
        self.fallbacks += int(fell_back)
        c = torch.as_tensor(coef, dtype=torch.float32, device=self.device)
        return c @ self.params[torch.as_tensor(idx, device=self.device)]


def _merge_duplicates(params: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Average the adapters of tasks with the same weights (rounded to 9 decimals), in order of
    first appearance."""
    _, first, inverse = np.unique(np.round(weights.numpy(), 9), axis=0, return_index=True, return_inverse=True)
    if len(first) == len(weights):
        return params, weights
    order = np.argsort(first)  # groups in order of first appearance
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    group = torch.as_tensor(rank[inverse.reshape(-1)], device=params.device)
    sums = torch.zeros(len(first), params.shape[1], dtype=params.dtype, device=params.device).index_add_(0, group, params)
    counts = torch.bincount(group, minlength=len(first)).to(params.dtype)[:, None]
    return sums / counts, weights[torch.as_tensor(first[order])]
