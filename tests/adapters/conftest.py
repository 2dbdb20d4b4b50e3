"""Fixtures for the adapter tests: a tiny SASRec fitted in seconds on the synthetic data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from padirec.adapters.config import AdapterConfig
from padirec.adapters.features import compute_features, training_prefixes
from padirec.backbones.checkpoint import save_backbone
from padirec.backbones.config import BackboneConfig
from padirec.backbones.registry import build_backbone
from padirec.data.dataset import load_prepared

MAX_LEN = 10


def fit_tiny_sasrec(data, epochs: int = 8, seed: int = 0):
    """A 16-dim one-layer SASRec trained briefly with BCE (1 positive + 1 negative)."""
    torch.manual_seed(seed)
    cfg = BackboneConfig(dim=16, num_layers=1, dropout=0.0)
    model = build_backbone("sasrec", data.num_items, cfg, MAX_LEN)
    pre = training_prefixes(data, MAX_LEN)
    seqs, times = torch.as_tensor(pre["seqs"]), torch.as_tensor(pre["times"])
    targets = torch.as_tensor(pre["targets"])
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(len(seqs), generator=g)
        for s in range(0, len(seqs), 256):
            i = perm[s:s + 256]
            h = model.represent(seqs[i], times[i])
            neg = torch.randint(1, data.num_items + 1, (len(i),), generator=g)
            pos_s = model.score_items(h, targets[i, None])[:, 0]
            neg_s = model.score_items(h, neg[:, None])[:, 0]
            loss = -(F.logsigmoid(pos_s) + F.logsigmoid(-neg_s)).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


@pytest.fixture(scope="session")
def prepared(synthetic_prepared):
    return load_prepared(synthetic_prepared)


@pytest.fixture(scope="session")
def backbone_dir(prepared, tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny_backbone")
    save_backbone(fit_tiny_sasrec(prepared), out)
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
