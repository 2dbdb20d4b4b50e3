"""Interpolation: bracketing neighbours for p = 2, barycentric weights over a Delaunay simplex for
p >= 3, the nearest bank task outside the hull; held-out rows never used."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from padirec.core.layout import num_params
from padirec.methods.interpolation import Interpolation
from padirec.methods.nn_lookup import BankLookupConfig

UTIL = ["accuracy", "diversity"]
UTIL3 = ["accuracy", "diversity", "fairness"]


def _method(features, lay, weights, utilities=UTIL, params=None, seed=0):
    w = torch.as_tensor(np.asarray(weights, dtype=np.float64))
    if params is None:
        params = torch.randn(len(w), num_params(lay), generator=torch.Generator().manual_seed(seed))
    return Interpolation(features, utilities, lay, params, w), params


def test_p2_mixes_the_two_bracketing_tasks(features, lay):
    m, params = _method(features, lay, [[0.8, 0.2], [0.2, 0.8], [0.5, 0.5]])  # unsorted on purpose
    idx, coef, fell_back = m.mixture([0.3, 0.7])
    assert idx.tolist() == [1, 2] and coef == pytest.approx([2 / 3, 1 / 3])
    assert not fell_back
    assert torch.allclose(m.prepare([0.3, 0.7]), 2 / 3 * params[1] + 1 / 3 * params[2], atol=1e-6)
    assert torch.equal(m.prepare([0.5, 0.5]), params[2])  # a bank task's own weights: its adapter
    assert m.fallbacks == 0


def test_p2_outside_the_bank_range_falls_back_to_the_nearest(features, lay):
    m, params = _method(features, lay, [[0.8, 0.2], [0.2, 0.8], [0.5, 0.5]])
    assert torch.equal(m.prepare([0.0, 1.0]), params[1])
    assert torch.equal(m.prepare([1.0, 0.0]), params[0])
    assert m.fallbacks == 2


def test_p2_is_exact_on_a_linear_bank(features, lay):
    g = torch.Generator().manual_seed(3)
    base = torch.randn(2, num_params(lay), generator=g)
    w = np.array([[x, 1 - x] for x in (0.0, 0.13, 0.41, 0.77, 1.0)])
    m, _ = _method(features, lay, w, params=torch.as_tensor(w, dtype=torch.float32) @ base)
    for x in (0.05, 0.3, 0.5, 0.9):
        target = torch.tensor([x, 1 - x], dtype=torch.float32) @ base
        assert torch.allclose(m.prepare([x, 1 - x]), target, atol=1e-5)


def test_p3_barycentric_over_the_enclosing_simplex(features, lay):
    g = torch.Generator().manual_seed(4)
    base = torch.randn(3, num_params(lay), generator=g)
    rng = np.random.default_rng(0)
    w = np.concatenate([np.eye(3), rng.dirichlet(np.ones(3), size=12)])
    m, _ = _method(features, lay, w, UTIL3, params=torch.as_tensor(w, dtype=torch.float32) @ base)
    for x in rng.dirichlet(np.ones(3), size=10):
        idx, coef, fell_back = m.mixture(x)
        assert not fell_back and len(idx) <= 3
        assert coef.sum() == pytest.approx(1.0) and (coef >= 0).all()
        assert np.allclose(coef @ m.weights[idx], x, atol=1e-9)  # barycentric: reproduces w
        # an adapter linear in w is reproduced exactly
        assert torch.allclose(m.prepare(x), torch.as_tensor(x, dtype=torch.float32) @ base, atol=1e-5)
    assert m.fallbacks == 0


def test_p3_outside_the_hull_or_untriangulable_falls_back(features, lay):
    w = np.array([[0.6, 0.2, 0.2], [0.2, 0.6, 0.2], [0.2, 0.2, 0.6], [1 / 3, 1 / 3, 1 / 3]])
    m, params = _method(features, lay, w, UTIL3)
    assert torch.equal(m.prepare([1.0, 0.0, 0.0]), params[0])  # a vertex of the simplex, outside the hull
    assert m.fallbacks == 1
    # collinear tasks cannot be triangulated: nearest everywhere, no crash
    line = np.array([[0.5, 0.5, 0.0], [0.25, 0.75, 0.0], [0.75, 0.25, 0.0]])
    m, params = _method(features, lay, line, UTIL3)
    assert m.triangulation is None
    assert torch.equal(m.prepare([0.3, 0.7, 0.0]), params[1])


def test_tasks_with_the_same_weights_are_merged(features, lay):
    params = torch.randn(3, num_params(lay))
    m, _ = _method(features, lay, [[0.2, 0.8], [0.6, 0.4], [0.2, 0.8]], params=params)
    assert m.weights.tolist() == [[0.2, 0.8], [0.6, 0.4]]
    assert torch.allclose(m.prepare([0.2, 0.8]), (params[0] + params[2]) / 2)


def test_built_from_the_bank_training_rows(tmp_path, features, lay):
    from tests.methods.test_nn_lookup import _ctx, write_checkpoint_bank

    weights = np.array([[0.0, 1.0], [0.5, 0.5], [1.0, 0.0], [0.2, 0.8], [0.65, 0.35]])
    bank, params = write_checkpoint_bank(tmp_path / "bank", lay, weights, np.array([True, True, True, False, False]))
    m = Interpolation.build(_ctx(features, lay, bank), BankLookupConfig())
    mean = params.mean(1)
    assert m.weights.tolist() == [[0.2, 0.8], [0.65, 0.35]]  # the held-out grid is not used
    # (0.5, 0.5): between 0.2 and 0.65, not the held-out adapter at 0.5
    lam = (0.5 - 0.2) / 0.45
    assert torch.allclose(m.prepare([0.5, 0.5]), (1 - lam) * mean[3] + lam * mean[4], atol=1e-6)
