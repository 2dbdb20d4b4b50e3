"""Task weights: validation errors, the evaluation grid for any p, random draws, shards."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from padirec.core.tasks import grid, random_tasks, sample_tasks, shard_tasks, validate_weights
from padirec.errors import TaskWeightsError


@pytest.mark.parametrize(("w", "p", "message"), [
    ([0.5, 0.5, 0.0], 2, "must have 2 entries"),
    ([[0.5, 0.5]], 3, "must have 3 entries"),
    ([math.nan, 1.0], 2, "NaN"),
    ([math.inf, 0.0], 2, "NaN or infinity"),
    ([-0.2, 1.2], 2, "non-negative"),
    ([0.3, 0.3], 2, "must sum to 1"),
    ([[0.5, 0.5], [0.9, 0.2]], 2, r"\(row 1\) must sum to 1"),
    (["a", "b"], 2, "must be numbers"),
])
def test_validate_weights_names_the_problem(w, p, message):
    with pytest.raises(TaskWeightsError, match=message):
        validate_weights(w, p)


def test_validate_weights_accepts_round_off_and_renormalises_exactly():
    w = validate_weights([0.1, 0.2, 0.7], 3)
    assert w.sum() == pytest.approx(1.0, abs=1e-15)
    w32 = validate_weights(torch.tensor([0.3, 0.7], dtype=torch.float32), 2)
    assert w32.dtype == np.float64 and abs(w32.sum() - 1.0) < 1e-15
    batch = validate_weights(np.array([[1.0, 0.0], [0.25, 0.75]]), 2)
    assert batch.shape == (2, 2)


def test_grid_p2_is_the_eleven_point_w_acc_grid():
    g = grid(2, 11)
    np.testing.assert_allclose(g[:, 0], np.linspace(0, 1, 11))
    np.testing.assert_allclose(g.sum(1), 1.0)


def test_grid_p3_covers_the_simplex():
    g = grid(3, 11)
    assert g.shape == (66, 3)
    assert len({tuple(np.round(r, 6)) for r in g}) == 66
    np.testing.assert_allclose(g.sum(1), 1.0)
    assert (g >= 0).all()


def test_random_tasks_are_on_the_simplex_and_seeded():
    a, b = random_tasks(50, 3, seed=4), random_tasks(50, 3, seed=4)
    np.testing.assert_array_equal(a, b)
    validate_weights(a, 3)
    assert not np.array_equal(a, random_tasks(50, 3, seed=5))


def test_sample_tasks_marks_the_grid_held_out():
    w, held = sample_tasks(2, 11, 5, True, seed=0)
    assert w.shape == (16, 2) and held[:11].all() and not held[11:].any()
    _, held = sample_tasks(2, 11, 5, False, seed=0)
    assert not held.any()


def test_shards_partition_the_tasks():
    parts = [shard_tasks(17, i, 4) for i in range(4)]
    assert sorted(np.concatenate(parts).tolist()) == list(range(17))
    with pytest.raises(ValueError, match="shard_index"):
        shard_tasks(17, 4, 4)
