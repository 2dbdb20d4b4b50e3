"""Soup: the pure weights give the pure adapters; other weights mix them linearly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from padirec.core.layout import num_params
from padirec.errors import TaskWeightsError
from padirec.methods.base import adapted_scores
from padirec.methods.soup import Soup


@pytest.fixture
def pure(lay):
    return torch.randn(2, num_params(lay), generator=torch.Generator().manual_seed(1))


def test_pure_weights_give_the_pure_adapters(features, lay, pure):
    soup = Soup(features, ["accuracy", "diversity"], lay, pure)
    assert torch.equal(soup.prepare([1.0, 0.0]), pure[0])
    assert torch.equal(soup.prepare([0.0, 1.0]), pure[1])
    # and so the ranking is the pure adapter's
    assert torch.equal(soup.scores(soup.prepare([1.0, 0.0]), "test"), adapted_scores(features, pure[:1], lay, "test")[0])


def test_mixes_linearly(features, lay, pure):
    soup = Soup(features, ["accuracy", "diversity"], lay, pure)
    assert torch.allclose(soup.prepare([0.3, 0.7]), 0.3 * pure[0] + 0.7 * pure[1], atol=1e-6)


def test_trains_missing_pure_adapters(features, lay, pure):
    calls = []

    def trainer(w):
        calls.append(np.asarray(w).tolist())
        return pure[int(np.argmax(w))]

    soup = Soup(features, ["accuracy", "diversity"], lay, None, trainer)
    soup.fit()
    assert calls == [[1.0, 0.0], [0.0, 1.0]]
    assert torch.equal(soup.prepare([0.0, 1.0]), pure[1])


def test_rejects_bad_input(features, lay, pure):
    with pytest.raises(ValueError, match="pure adapters must be"):
        Soup(features, ["accuracy", "diversity"], lay, pure[:1])
    soup = Soup(features, ["accuracy", "diversity"], lay, pure)
    with pytest.raises(TaskWeightsError, match="sum to 1"):
        soup.prepare([0.3, 0.3])
