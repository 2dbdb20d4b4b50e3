"""Each backbone learns the planted next-item rule of the synthetic data to near-perfect HR@10."""

from __future__ import annotations

import pytest
import torch

from padirec.backbones import BackboneConfig, build_backbone
from padirec.backbones.tisasrec import TiSASRecConfig
from padirec.backbones.train import Evaluator, train_backbone

FAST = {"num_layers": 1, "dropout": 0.0, "lr": 5e-3, "batch_size": 128, "train_stride": 5, "patience": 100,
        "models": {"tisasrec": TiSASRecConfig(max_time_interval=64)}}
EPOCHS = {"sasrec": 10, "gru4rec": 25, "tisasrec": 10, "lrurec": 10}  # the GRU learns slower per epoch


@pytest.fixture(scope="module")
def data(small_data):
    return small_data


@pytest.mark.slow  # four backbones trained to convergence: 5-25 s each
@pytest.mark.parametrize("name", ["sasrec", "gru4rec", "tisasrec", "lrurec"])
def test_backbone_learns_planted_rule(name, data):
    torch.manual_seed(0)
    cfg = BackboneConfig(model=name, epochs=EPOCHS[name], **FAST)
    model = build_backbone(name, data.num_items, cfg, max_len=10)
    result = train_backbone(model, data, cfg, 10, seed=0, device=torch.device("cpu"))  # speed: make bench-backbones
    test = Evaluator(data, "test", 10, torch.device("cpu"))(model)
    assert test["hr@10"] >= 0.85, (name, test, result.best_epoch)
    assert result.best_valid["hr@10"] >= 0.85
