"""A synthetic adapter bank whose rows are a known smooth function of the task weights.

For tests and benchmarks before (or without) a real bank: ``params(w) = base + A phi(w)`` plus
small per-checkpoint noise, with ``phi(w) = [w, w^2, sin(pi w)]`` (``3p`` features) and tensors of
different scales (weights ~0.1, biases ~0.01), like trained adapters. ``true_params(w)`` gives the
noise-free mean a generator should reproduce for unseen ``w``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from padirec.core.layout import Layout, adapter_layout, layout_sizes

DEFAULT_LAYOUT: Layout = adapter_layout(64, 8)


@dataclass
class SyntheticBank:
    params: torch.Tensor  # (N, P)
    weights: torch.Tensor  # (N, p) task weights of each row
    held_out: torch.Tensor  # (N,) bool: the evaluation grid
    task_id: torch.Tensor  # (N,) long
    layout: Layout
    base: torch.Tensor  # (P,)
    mixing: torch.Tensor  # (3p, P)

    def true_params(self, w: torch.Tensor) -> torch.Tensor:
        """Noise-free adapter ``(n, P)`` for weights ``(n, p)``."""
        return self.base + features(w) @ self.mixing


def features(w: torch.Tensor) -> torch.Tensor:
    """``(n, p)`` -> ``(n, 3p)``."""
    return torch.cat([w, w ** 2, torch.sin(math.pi * w)], dim=1)


def simplex_grid(p: int, points: int) -> torch.Tensor:
    """Evaluation grid: for p = 2, ``w_acc in linspace(0, 1, points)``; for p > 2, the vertices,
    the centre and the edge midpoints."""
    if p == 2:
        a = torch.linspace(0, 1, points)
        return torch.stack([a, 1 - a], dim=1)
    eye = torch.eye(p)
    mids = [(eye[i] + eye[j]) / 2 for i in range(p) for j in range(i + 1, p)]
    return torch.cat([eye, torch.full((1, p), 1 / p), torch.stack(mids)])


def make_synthetic_bank(num_tasks: int = 100, checkpoints: int = 5, p: int = 2,
                        noise: float = 0.02, grid_points: int = 11, seed: int = 0,
                        layout: Layout | None = None) -> SyntheticBank:
    """``num_tasks`` tasks (the grid, held out, plus uniform Dirichlet draws) x ``checkpoints`` rows.

    ``noise`` is the per-checkpoint noise relative to each tensor's scale.
    """
    layout = layout or DEFAULT_LAYOUT
    g = torch.Generator().manual_seed(seed)
    grid = simplex_grid(p, grid_points)
    n_random = max(0, num_tasks - len(grid))
    random_w = -torch.log(torch.rand(n_random, p, generator=g))  # normalised: Dirichlet(1)
    random_w = random_w / random_w.sum(1, keepdim=True)
    tasks = torch.cat([grid, random_w])
    scales = torch.cat([torch.full((s,), 0.1 if len(e["shape"]) > 1 else 0.01)
                        for e, s in zip(layout, layout_sizes(layout), strict=True)])
    base = torch.randn(scales.shape, generator=g) * scales
    mixing = torch.randn(3 * p, len(scales), generator=g) * scales * 0.5
    w = tasks.repeat_interleave(checkpoints, dim=0)
    params = base + features(w) @ mixing
    params = params + noise * scales * torch.randn(params.shape, generator=g)
    held_out = torch.zeros(len(tasks), dtype=torch.bool)
    held_out[:len(grid)] = True
    task_id = torch.arange(len(tasks)).repeat_interleave(checkpoints)
    return SyntheticBank(params, w, held_out.repeat_interleave(checkpoints), task_id, layout,
                         base, mixing)
