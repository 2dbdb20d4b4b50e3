"""CMR, Hypernetwork, Retrain, PaDiRec and the bank reader on small random features."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from padirec.adapters.adapter import init_params
from padirec.adapters.bank import load_bank, write_bank
from padirec.adapters.config import AdapterConfig
from padirec.adapters.train import train_bank
from padirec.core.layout import num_params
from padirec.diffusion.config import GeneratorConfig
from padirec.diffusion.train import train_generator
from padirec.methods.base import Method
from padirec.methods.cmr import CMR, uniform_simplex
from padirec.methods.hypernetwork import Hypernetwork
from padirec.methods.padirec import PaDiRec
from padirec.methods.retrain import Retrain

UTIL = ["accuracy", "diversity"]


@pytest.fixture
def small_cfg() -> AdapterConfig:
    return AdapterConfig(bottleneck=4, epochs=2, steps_per_epoch=3, batch_size=64, checkpoints_per_task=1)


def _check_ranks(method: Method, prepared, features):
    scores = method.scores(prepared, "test")
    assert scores.shape == (features.test.h.shape[0], features.num_items + 1)
    assert torch.isfinite(scores[:, 1:]).all()


def test_uniform_simplex_draws():
    w = uniform_simplex(500, 3, torch.Generator().manual_seed(0))
    assert torch.allclose(w.sum(1), torch.ones(500)) and (w >= 0).all()
    assert abs(float(w[:, 0].mean()) - 1 / 3) < 0.05


def test_cmr_starts_at_the_identity_and_learns_a_weight_dependent_adapter(features, lay, small_cfg):
    cmr = CMR(features, UTIL, lay, small_cfg, seed=0, epochs=2, tasks_per_batch=4)
    cmr.fit()
    a, b = cmr.prepare([1.0, 0.0]), cmr.prepare([0.0, 1.0])
    assert a.shape == (num_params(lay),)
    assert not torch.allclose(a, b)  # the weights matter
    mid = cmr.prepare([0.5, 0.5])
    assert torch.allclose(mid, (a + b) / 2, atol=1e-5)  # each tensor is a linear map of w
    _check_ranks(cmr, a, features)


def test_hypernetwork_regresses_the_bank(features, lay):
    g = torch.Generator().manual_seed(0)
    w = uniform_simplex(40, 2, g)
    base = torch.randn(2, num_params(lay), generator=g)
    params = w @ base  # a smooth function of w
    hn = Hypernetwork(features, UTIL, lay, params, w, steps=400, lr=3e-3, hidden=64)
    hn.fit()
    pred = torch.stack([hn.prepare(x.tolist()) for x in w[:5].double()])
    rel = (pred - params[:5]).norm() / params[:5].norm()
    assert rel < 0.2
    _check_ranks(hn, pred[0], features)


def _write_bank(path, lay, weights, params, held_out):
    n = len(weights)
    tasks = pd.DataFrame({"row": np.arange(n), "task_id": np.arange(n), "checkpoint": 0, "held_out": held_out,
                          "w": [list(map(float, w)) for w in weights], "shard": 0})
    write_bank(path, params, tasks, lay, UTIL, "0" * 64, config={}, stats={}, held_out={}, shard={})


def test_bank_reader_and_retrain_reuse(tmp_path, features, lay, small_cfg):
    weights = np.array([[0.0, 1.0], [0.5, 0.5], [1.0, 0.0], [0.3, 0.7]])
    params = torch.randn(4, num_params(lay))
    _write_bank(tmp_path / "bank", lay, weights, params, np.array([True, True, True, False]))
    bank = load_bank(tmp_path / "bank")
    assert torch.equal(bank.vertices(), params[[2, 0]])
    assert bank.training_rows().tolist() == [3]
    assert bank.find([0.5, 0.5]) == 1 and bank.find([0.4, 0.6]) is None
    retrain = Retrain(features, UTIL, lay, small_cfg, bank=bank)
    assert torch.equal(retrain.prepare([0.5, 0.5]), params[1]) and retrain.reused == 1
    trained = retrain.prepare([0.4, 0.6])  # not in the bank: trains from the identity start
    assert trained.shape == (num_params(lay),) and retrain.reused == 1
    assert not torch.equal(trained, init_params(lay, torch.Generator().manual_seed(0)))


def test_retrain_serves_its_checkpoints_mean_like_the_methods_it_judges(tmp_path, features, lay, small_cfg):
    """From the bank: the mean of the task's checkpoints (or the last, by setting); freshly trained:
    the bank's recipe for one task, the same mean."""
    weights = np.array([[0.5, 0.5]] * 3 + [[0.3, 0.7]] * 3)
    params = torch.randn(6, num_params(lay))
    n = len(weights)
    tasks = pd.DataFrame({"row": np.arange(n), "task_id": [0, 0, 0, 1, 1, 1], "checkpoint": [2, 0, 1] * 2,
                          "held_out": False, "w": [list(map(float, w)) for w in weights], "shard": 0})
    write_bank(tmp_path / "bank", params, tasks, lay, UTIL, "0" * 64, config={}, stats={}, held_out={}, shard={})
    bank = load_bank(tmp_path / "bank")
    assert bank.checkpoints_of(bank.find([0.5, 0.5])).tolist() == [1, 2, 0]
    mean = Retrain(features, UTIL, lay, small_cfg, bank=bank).prepare([0.5, 0.5])
    assert torch.allclose(mean, params[:3].mean(0))
    last = Retrain(features, UTIL, lay, small_cfg, bank=bank, checkpoints="last").prepare([0.5, 0.5])
    assert torch.equal(last, params[0])  # checkpoint 2 is the latest
    three = AdapterConfig(**{**small_cfg.__dict__, "epochs": 3, "checkpoints_per_task": 3})
    fresh = Retrain(features, UTIL, lay, three, seed=5).prepare([0.4, 0.6])
    recipe = train_bank(features, np.array([[0.4, 0.6]]), three, 5).checkpoints[0]  # (3, P)
    assert torch.allclose(fresh, recipe.mean(0))
    assert torch.allclose(Retrain(features, UTIL, lay, three, seed=5, checkpoints="last").prepare([0.4, 0.6]),
                          recipe[-1])


def test_padirec_wraps_the_generator(features, lay):
    g = torch.Generator().manual_seed(0)
    w = uniform_simplex(16, 2, g)
    params = w @ torch.randn(2, num_params(lay), generator=g)
    cfg = GeneratorConfig(size="tiny", train_steps=5, batch_size=8, num_train_timesteps=20, num_inference_steps=4,
                          warmup_steps=1, log_every=5)
    gen = train_generator(params, w, lay, cfg, utilities=UTIL)
    method = PaDiRec(features, UTIL, lay, gen, seed=3)
    a = method.prepare([0.3, 0.7])
    assert a.shape == (num_params(lay),)
    assert torch.equal(a, method.prepare([0.3, 0.7]))  # noise fixed by (seed, task)
    assert not torch.equal(a, method.prepare([0.7, 0.3]))
    _check_ranks(method, a, features)
    with pytest.raises(ValueError, match="utilities"):
        PaDiRec(features, ["diversity", "accuracy"], lay, gen)
