"""Tasks: preference weights ``w`` on the simplex over ``p`` utilities.

The evaluation grid for ``p = 2`` is ``w_acc in {0, 0.1, ..., 1}`` (``w = (w_acc, 1 - w_acc)``,
utilities ordered as configured, accuracy first by default); for any ``p`` it generalises to every
point of the simplex whose coordinates are multiples of ``1 / (grid_size - 1)`` (66 points for
``p = 3`` and ``grid_size = 11``). Random training tasks are uniform Dirichlet draws.

``validate_weights`` policy: weights must have length ``p``, be finite and non-negative, and sum
to 1 within ``SUM_TOLERANCE`` (1e-6, float round-off of hand-typed decimals such as
(0.1, 0.2, 0.7)); they are then renormalised exactly. A sum further off is an error, never a
silent rescale: a caller passing (0.3, 0.3) most likely made a mistake, and guessing would hide it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from padirec.errors import ConfigError, TaskWeightsError

SUM_TOLERANCE = 1e-6


def validate_weights(weights: Sequence[float] | np.ndarray | torch.Tensor, p: int) -> np.ndarray:
    """Check one task ``(p,)`` or a batch ``(n, p)``; return float64 weights summing exactly to 1.

    The one check of task weights (bank training, every method, the generator, serving). Raises
    ``TaskWeightsError`` naming the problem (and the first bad row, for a batch).
    """
    if isinstance(weights, torch.Tensor):
        weights = weights.detach().cpu().numpy()
    try:
        arr = np.asarray(weights, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise TaskWeightsError(f"task weights must be numbers, got {weights!r}") from e
    single = arr.ndim == 1
    rows = arr[None, :] if single else arr
    if rows.ndim != 2 or rows.shape[1] != p:
        raise TaskWeightsError(
            f"task weights must have {p} entries (one per utility), got shape {tuple(arr.shape)}: {arr.tolist()}"
        )
    checks = (
        (~np.isfinite(rows).all(1), "contain NaN or infinity: {row}"),
        ((rows < 0).any(1), "must be non-negative, got {row}"),
        (np.abs(rows.sum(1) - 1.0) > SUM_TOLERANCE,
         "must sum to 1 (a point of the simplex), got {row} summing to {total:.6g}"),
    )
    for bad, message in checks:
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            where = "" if single else f" (row {i})"
            raise TaskWeightsError(f"task weights{where} " + message.format(row=rows[i].tolist(), total=rows[i].sum()))
    rows = rows / rows.sum(1, keepdims=True)
    return rows[0] if single else rows


def grid(p: int, grid_size: int = 11, centroid: bool = False) -> np.ndarray:
    """Every simplex point with coordinates in ``{0, 1/(grid_size-1), ..., 1}``: ``(G, p)``;
    ``centroid``: the centroid ``(1/p, ..., 1/p)`` appended when the lattice lacks it (p = 3 with
    step 0.25: the 15 lattice points, then the centroid).

    For ``p = 2``: ``w_acc`` ascending, ``[[0, 1], [0.1, 0.9], ..., [1, 0]]``.
    """
    if p < 1 or grid_size < 2:
        raise ValueError(f"need p >= 1 and grid_size >= 2, got p={p}, grid_size={grid_size}")
    steps = grid_size - 1
    points = np.asarray([c for c in itertools.product(range(steps + 1), repeat=p) if sum(c) == steps],
                        dtype=np.float64) / steps
    middle = np.full((1, p), 1.0 / p)
    if centroid and not np.isclose(points, middle).all(1).any():
        points = np.concatenate([points, middle])
    return points


BAND_COORDINATES = ("w_acc", "centroid_distance")


@dataclass(frozen=True)
class Band:
    """A held-out region of the simplex: the tasks whose ``coordinate`` lies in the closed
    ``[low, high]``. ``w_acc``: the accuracy weight (the band of p = 2); ``centroid_distance``: the
    Euclidean distance to the simplex's centroid, so ``[0, r]`` is the disc of radius ``r`` around
    it (p = 3: 0.25 holds out the centroid and the three inner points of the step-0.25 lattice,
    at distance 0.204, and no point of an edge, at 0.408 or more)."""

    low: float
    high: float
    coordinate: str = "w_acc"

    def __iter__(self) -> Iterator[float]:  # ``list(band)`` is ``[low, high]``, as the report has it
        return iter((self.low, self.high))

    def values(self, weights: np.ndarray, utilities: Sequence[str]) -> np.ndarray:
        """``(N,)`` the coordinate of each row of ``weights (N, p)``."""
        w = np.asarray(weights, dtype=np.float64).reshape(len(weights), -1)
        if self.coordinate == "centroid_distance":
            return np.linalg.norm(w - 1.0 / w.shape[1], axis=1)
        if self.coordinate != "w_acc":
            raise ConfigError(f"evaluation.band_coordinate: {self.coordinate!r} is not one of {BAND_COORDINATES}")
        if "accuracy" not in utilities:
            raise ConfigError(f"evaluation.protocols: the band protocol needs the accuracy utility, got {list(utilities)}")
        return w[:, list(utilities).index("accuracy")]

    def contains(self, weights: np.ndarray, utilities: Sequence[str], tol: float = 1e-9) -> np.ndarray:
        """``(N,)`` bool: the rows inside the closed band (a row on its edge is inside)."""
        v = self.values(weights, utilities)
        return (v >= self.low - tol) & (v <= self.high + tol)


def random_tasks(n: int, p: int, seed: int) -> np.ndarray:
    """``n`` tasks uniform on the simplex (Dirichlet(1, ..., 1)): ``(n, p)``."""
    return np.random.default_rng(seed).dirichlet(np.ones(p), size=n) if n else np.zeros((0, p))


def sample_tasks(p: int, grid_size: int, num_random: int, hold_out_grid: bool,
                 seed: int, centroid: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The bank's task list: the evaluation grid then ``num_random`` Dirichlet draws.

    Returns ``weights (T, p)`` and ``held_out (T,)`` bool (the grid when ``hold_out_grid``).
    """
    g = grid(p, grid_size, centroid)
    r = random_tasks(num_random, p, seed)
    weights = np.concatenate([g, r])
    held_out = np.concatenate([np.full(len(g), hold_out_grid), np.zeros(len(r), dtype=bool)])
    return weights, held_out


def shard_tasks(num_tasks: int, shard_index: int, num_shards: int) -> np.ndarray:
    """Task indices of one shard: round-robin, deterministic, every task in exactly one shard."""
    if num_shards < 1 or not 0 <= shard_index < num_shards:
        raise ValueError(f"shard_index must be in [0, num_shards), got {shard_index} of {num_shards}")
    return np.arange(shard_index, num_tasks, num_shards)
