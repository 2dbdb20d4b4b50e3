"""Fixtures for the adapter tests: a tiny SASRec fitted in seconds on the synthetic data."""

from __future__ import annotations

import numpy as np
import pytest

from padirec.adapters.config import AdapterConfig
from padirec.adapters.features import compute_features
from padirec.data.dataset import load_prepared
from tests.fixtures import MAX_LEN, train_tiny_backbone


@pytest.fixture(scope="session")
def prepared(synthetic_prepared):
    return load_prepared(synthetic_prepared)


@pytest.fixture(scope="session")
def backbone_dir(synthetic_prepared, tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny_backbone")
    train_tiny_backbone(synthetic_prepared, out)
    return out


@pytest.fixture(scope="session")
def features(prepared, backbone_dir):
    from padirec.backbones.checkpoint import load_backbone

    return compute_features(load_backbone(backbone_dir), prepared, MAX_LEN)


@pytest.fixture
def small_cfg() -> AdapterConfig:
    return AdapterConfig(epochs=6, checkpoints_per_task=2, batch_size=256, lr=1e-2, steps_per_epoch=0,
                         num_random_tasks=3, grid_size=3, candidates="topk", topk_candidates=5)


@pytest.fixture(scope="session")
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
