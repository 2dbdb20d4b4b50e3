"""Phase 1 on 2 data-parallel CPU ranks (torchrun, gloo) against one process: the same data and
epochs, validation NDCG@10 within 0.005, and a checkpoint the single-process code loads."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from padirec.backbones import BackboneConfig, load_backbone
from padirec.backbones.stage import train_backbone_stage
from padirec.backbones.train import BCEStep, bce_loss, training_windows

SETTINGS = {"num_layers": 1, "lr": 5e-3, "batch_size": 64, "train_stride": 5, "epochs": 6, "patience": 100}


def test_a_rank_share_of_a_batch_gives_the_whole_batch_gradient(small_data):
    """Two halves, each divided by half the whole batch's target count, average to the whole
    batch's gradient: what DDP's gradient average makes of the ranks' losses."""
    cfg = BackboneConfig(**SETTINGS)
    from padirec.backbones import build_backbone

    model = build_backbone("sasrec", small_data.num_items, cfg, 10)
    model.eval()  # no dropout: the same function for both passes
    ex = training_windows(small_data, 10, 5)
    idx = torch.arange(40)
    negs = torch.randint(1, small_data.num_items + 1, (40, 5, 3), generator=torch.Generator().manual_seed(0))

    def grads(loss):
        model.zero_grad()
        loss.backward()
        return torch.cat([p.grad.reshape(-1) for p in model.parameters() if p.grad is not None])

    whole = grads(bce_loss(model, ex.seqs[idx], ex.times[idx], ex.targets[idx], negs))
    denominator = (ex.targets[idx] != 0).sum().float() / 2
    halves = [grads(BCEStep(model)(ex.seqs[i], ex.times[i], ex.targets[i], negs[i], denominator))
              for i in (idx[0::2], idx[1::2])]
    assert torch.allclose((halves[0] + halves[1]) / 2, whole, atol=1e-6)


@pytest.mark.slow
def test_two_ranks_match_one_process(synthetic_prepared, tmp_path):
    data_dir = synthetic_prepared
    cfg = BackboneConfig(**SETTINGS)
    single = train_backbone_stage(data_dir, tmp_path / "one", cfg, 10, 0, "cpu")
    ddp = train_backbone_stage(data_dir, tmp_path / "two", dataclasses.replace(cfg, processes=2), 10, 0, "cpu")
    assert ddp["processes"] == 2 and single["processes"] == 1
    assert ddp["epochs"] == single["epochs"] == SETTINGS["epochs"]
    assert abs(ddp["valid"]["ndcg@10"] - single["valid"]["ndcg@10"]) <= 0.005, (ddp["valid"], single["valid"])
    model = load_backbone(tmp_path / "two")  # the single-process loader
    assert json.loads((tmp_path / "two" / "metrics.json").read_text())["valid"] == ddp["valid"]
    assert sum(p.numel() for p in model.parameters()) == single["num_parameters"]
