"""NN lookup: the nearest bank task's adapter (mean or last checkpoint), held-out rows never used."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from padirec.adapters.bank import load_bank, write_bank
from padirec.core.layout import num_params
from padirec.errors import ConfigError
from padirec.methods.base import MethodContext, adapted_scores
from padirec.methods.nn_lookup import BankLookupConfig, NNLookup, bank_tasks

UTIL = ["accuracy", "diversity"]


def write_checkpoint_bank(path, lay, weights, held_out, checkpoints=2, seed=0):
    """A bank with ``checkpoints`` rows per task; returns the loaded bank and params (T, K, P)."""
    t, k = len(weights), checkpoints
    params = torch.randn(t, k, num_params(lay), generator=torch.Generator().manual_seed(seed))
    rows = pd.DataFrame({
        "row": np.arange(t * k), "task_id": np.repeat(np.arange(t), k), "checkpoint": np.tile(np.arange(k), t),
        "held_out": np.repeat(held_out, k), "w": [list(map(float, weights[i])) for i in np.repeat(np.arange(t), k)],
        "shard": 0,
    })
    write_bank(path, params.reshape(t * k, -1), rows, lay, UTIL, "0" * 64, config={}, stats={}, held_out={},
               shard={})
    return load_bank(path), params


@pytest.fixture
def bank(tmp_path, lay):
    weights = np.array([[0.0, 1.0], [0.5, 0.5], [1.0, 0.0], [0.2, 0.8], [0.65, 0.35]])
    held_out = np.array([True, True, True, False, False])  # the grid is held out
    return write_checkpoint_bank(tmp_path / "bank", lay, weights, held_out)


def _ctx(features, lay, bank):
    from padirec.adapters.config import AdapterConfig

    return MethodContext(features=features, data=None, layout=lay, adapters=AdapterConfig(bottleneck=4),
                         seed=0, k=10, max_len=20, bank=bank)


def test_bank_tasks_mean_or_last_checkpoint_of_the_training_rows(bank):
    b, params = bank
    mean, w, ids = bank_tasks(b, "mean")
    assert ids.tolist() == [3, 4]  # held-out tasks are not looked up
    assert torch.allclose(mean, params[[3, 4]].mean(1))
    assert w.tolist() == [[0.2, 0.8], [0.65, 0.35]]
    last, _, _ = bank_tasks(b, "last")
    assert torch.equal(last, params[[3, 4], 1])
    with pytest.raises(ConfigError, match="checkpoints"):
        bank_tasks(b, "best")


def test_returns_the_nearest_task(features, lay, bank):
    b, params = bank
    nn = NNLookup.build(_ctx(features, lay, b), BankLookupConfig())
    mean = params.mean(1)
    assert torch.allclose(nn.prepare([0.0, 1.0]), mean[3])  # held-out (0, 1) itself is not in the lookup
    assert torch.allclose(nn.prepare([0.4, 0.6]), mean[3])
    assert torch.allclose(nn.prepare([0.5, 0.5]), mean[4])
    assert torch.allclose(nn.prepare([1.0, 0.0]), mean[4])
    # the midpoint 0.425 ties: the first (smallest task id) wins
    assert torch.allclose(nn.prepare([0.425, 0.575]), mean[3])
    last = NNLookup.build(_ctx(features, lay, b), BankLookupConfig(checkpoints="last"))
    assert torch.equal(last.prepare([0.9, 0.1]), params[4, 1])
    # it ranks with the adapted backbone
    a = nn.prepare([0.3, 0.7])
    assert torch.equal(nn.scores(a, "test"), adapted_scores(features, a[None], lay, "test")[0])


def test_three_utilities_use_the_euclidean_distance(features, lay):
    w = torch.tensor([[0.6, 0.2, 0.2], [0.2, 0.6, 0.2], [0.2, 0.2, 0.6]], dtype=torch.float64)
    params = torch.randn(3, num_params(lay))
    nn = NNLookup(features, ["accuracy", "diversity", "fairness"], lay, params, w)
    assert torch.equal(nn.prepare([0.1, 0.8, 0.1]), params[1])
    assert torch.equal(nn.prepare([0.3, 0.3, 0.4]), params[2])


def test_needs_the_bank_and_matching_shapes(features, lay):
    from padirec.adapters.config import AdapterConfig

    ctx = MethodContext(features=features, data=None, layout=lay, adapters=AdapterConfig(bottleneck=4), seed=0,
                        k=10, max_len=20)
    with pytest.raises(ConfigError, match="needs the adapter bank"):
        NNLookup.build(ctx, BankLookupConfig())
    with pytest.raises(ValueError, match="at least one bank task"):
        NNLookup(features, UTIL, lay, torch.zeros(0, num_params(lay)), torch.zeros(0, 2))
    with pytest.raises(ValueError, match="params must be"):
        NNLookup(features, UTIL, lay, torch.zeros(2, 3), torch.zeros(2, 2))
