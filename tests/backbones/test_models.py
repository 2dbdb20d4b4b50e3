"""Backbone modules: shapes, causality, padding, registry, checkpoints."""

from __future__ import annotations

import json

import pytest
import torch

from padirec.backbones import (
    BACKBONES,
    BackboneConfig,
    build_backbone,
    load_backbone,
    save_backbone,
)
from padirec.backbones.tisasrec import TiSASRecConfig
from padirec.errors import ArtifactError, ConfigError

NAMES = sorted(BACKBONES)


def _batch(b: int = 4, length: int = 8, n: int = 30, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    seqs = torch.randint(1, n + 1, (b, length), generator=g)
    seqs[0, :3] = 0  # one left-padded row
    times = torch.cumsum(torch.randint(0, 500, (b, length), generator=g), 1) * (seqs != 0)
    return seqs, times


@pytest.mark.parametrize("name", NAMES)
def test_shapes_and_scores(name):
    model = build_backbone(name, 30, BackboneConfig(model=name), max_len=8).eval()
    seqs, times = _batch()
    assert model.encode(seqs, times).shape == (4, 8, 64)
    h = model.user_representation(seqs, times)
    assert h.shape == (4, 64) and torch.isfinite(h).all()
    assert model.score_all(h).shape == (4, 31)
    items = torch.randint(1, 31, (4, 5))
    assert torch.allclose(model.score_items(h, items), model.score_all(h).gather(1, items), atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_causal_future_items_do_not_leak(name):
    model = build_backbone(name, 30, BackboneConfig(model=name), max_len=8).eval()
    seqs, times = _batch()
    out = model.encode(seqs, times)
    seqs2 = seqs.clone()
    seqs2[:, -1] = (seqs2[:, -1] % 30) + 1  # change only the last item
    out2 = model.encode(seqs2, times)
    assert torch.allclose(out[:, :-1], out2[:, :-1], atol=1e-5)
    assert not torch.allclose(out[:, -1], out2[:, -1])


@pytest.mark.parametrize("name", ["sasrec", "tisasrec", "lrurec"])
def test_extra_left_padding_changes_nothing(name):
    model = build_backbone(name, 30, BackboneConfig(model=name), max_len=8).eval()
    seqs, times = _batch(length=5)
    padded = torch.cat([torch.zeros(4, 3, dtype=torch.long), seqs], 1)
    padded_t = torch.cat([torch.zeros(4, 3, dtype=torch.long), times], 1)
    assert torch.allclose(model.represent(seqs, times), model.represent(padded, padded_t), atol=1e-5)


def test_tisasrec_uses_time_intervals():
    model = build_backbone("tisasrec", 30, BackboneConfig(model="tisasrec"), max_len=8).eval()
    seqs, times = _batch()
    times2 = times.clone()
    times2[:, -2] = times2[:, -3] + 1  # a different gap pattern, same order
    assert not torch.allclose(model.represent(seqs, times), model.represent(seqs, times2))


def test_adapter_hook_is_applied():
    model = build_backbone("sasrec", 30, BackboneConfig(), max_len=8).eval()
    seqs, times = _batch()
    h = model.represent(seqs, times)
    model.adapter = lambda x: x * 2
    assert torch.allclose(model.user_representation(seqs, times), 2 * h)


def test_unknown_backbone_names_the_valid_ones():
    with pytest.raises(ConfigError, match="gru4rec, lrurec, sasrec, tisasrec"):
        build_backbone("bert4rec", 30, BackboneConfig(), 8)


@pytest.mark.parametrize("name", NAMES)
def test_checkpoint_reloads_to_identical_scores(name, tmp_path):
    cfg = BackboneConfig(model=name, num_layers=1, models={"tisasrec": TiSASRecConfig(max_time_interval=64)})
    model = build_backbone(name, 30, cfg, max_len=8).eval()
    save_backbone(model, tmp_path)
    loaded = load_backbone(tmp_path)
    assert not loaded.training and loaded.cfg.chosen() == cfg.chosen() and loaded.max_len == 8
    seqs, times = _batch()
    assert torch.equal(model.score_all(model.user_representation(seqs, times)),
                       loaded.score_all(loaded.user_representation(seqs, times)))
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["kind"] == "backbone" and manifest["config"]["num_items"] == 30


def test_tampered_checkpoint_is_refused(tmp_path):
    save_backbone(build_backbone("gru4rec", 30, BackboneConfig(model="gru4rec"), 8), tmp_path)
    with open(tmp_path / "backbone.safetensors", "r+b") as f:
        f.seek(-4, 2)
        f.write(b"\x00\x01\x02\x03")
    with pytest.raises(ArtifactError, match="checksum"):
        load_backbone(tmp_path)
