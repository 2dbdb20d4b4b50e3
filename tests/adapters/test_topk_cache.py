"""The backbone's masked top-k: the same lists as the old per-pair masking (kept here as the
reference), computed once per features and shared by the bank, Retrain and CMR."""

from __future__ import annotations

import numpy as np
import torch

from padirec.adapters import train as train_mod
from padirec.adapters.config import AdapterConfig
from padirec.adapters.features import compute_features
from padirec.adapters.train import backbone_topk, seen_pairs
from padirec.core.layout import adapter_layout
from padirec.methods.cmr import CMR
from padirec.methods.retrain import Retrain
from tests.fixtures import WINDOW_MAX_LEN, window_backbone, window_data


@torch.no_grad()
def reference_topk(features, n: int, chunk: int = 4096) -> torch.Tensor:
    """``backbone_topk`` before issue 16: one (row, item) pair per example and seen item."""
    seen_per_user = torch.bincount(features.seen_keys // (features.num_items + 1))
    n = min(n, features.num_items - int(seen_per_user.max()))
    out = []
    for s in range(0, features.train_h.shape[0], chunk):
        users = features.train_user[s:s + chunk]
        scores = features.train_h[s:s + chunk] @ features.item_embedding.T
        rows, cols = seen_pairs(features, users)
        scores[rows, cols] = -torch.inf
        scores[:, 0] = -torch.inf
        out.append(scores.topk(n, dim=1).indices)
    return torch.cat(out)


def _features(stride: int = 1):
    data = window_data(num_users=40, num_items=60)
    return compute_features(window_backbone("sasrec", data), data, WINDOW_MAX_LEN, stride=stride)


def test_topk_equals_the_old_masking(monkeypatch):
    f = _features()
    monkeypatch.setattr(train_mod, "_TOPK_CHUNK", 37)  # chunks that split users
    for n in (1, 5, 20):
        f.topk_cache.clear()
        assert torch.equal(backbone_topk(f, n), reference_topk(f, n, chunk=37))


def test_topk_is_computed_once_per_features(monkeypatch):
    f = _features()
    first = backbone_topk(f, 5)
    calls = []
    monkeypatch.setattr(train_mod, "seen_pairs", lambda *a: calls.append(1) or seen_pairs(*a))
    assert backbone_topk(f, 5) is first and not calls
    assert backbone_topk(f, 6).shape[1] == 6 and calls  # another n is another list
    moved = f.to("cpu")
    assert torch.equal(moved.topk_cache[5], first)


def test_retrain_and_cmr_reuse_the_topk_of_the_features(monkeypatch):
    f = _features()
    cfg = AdapterConfig(epochs=1, checkpoints_per_task=1, batch_size=64, steps_per_epoch=2,
                        candidates="topk", topk_candidates=5)
    lay = adapter_layout(f.dim, cfg.bottleneck)
    retrain = Retrain(f, cfg.utilities, lay, cfg)
    retrain.fit()  # the one-off work: the top-k list
    assert 5 in f.topk_cache
    calls = []
    monkeypatch.setattr(train_mod, "seen_pairs", lambda *a: calls.append(1) or seen_pairs(*a))
    a = retrain.prepare(np.array([0.3, 0.7]))
    b = retrain.prepare(np.array([0.3, 0.7]))
    assert torch.equal(a, b)
    CMR(f, cfg.utilities, lay, cfg, epochs=1).fit()
    assert not calls  # no task and no CMR recomputed it


def test_a_retrained_adapter_is_unchanged_by_the_cache():
    """Same adapter with the list from the cache as with a freshly computed one."""
    cfg = AdapterConfig(epochs=2, checkpoints_per_task=1, batch_size=64, steps_per_epoch=3,
                        candidates="topk", topk_candidates=5)
    f = _features()
    warm = train_mod.train_adapter(f, np.array([0.5, 0.5]), cfg, seed=0)  # fills the cache
    cached = train_mod.train_adapter(f, np.array([0.5, 0.5]), cfg, seed=0)
    f.topk_cache[5] = reference_topk(f, 5)
    reference = train_mod.train_adapter(f, np.array([0.5, 0.5]), cfg, seed=0)
    assert torch.equal(warm, cached) and torch.equal(cached, reference)
