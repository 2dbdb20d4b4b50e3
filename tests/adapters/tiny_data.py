"""A small in-memory ``PreparedData`` (short and long users, random items) and an untrained
backbone on it: enough to compare feature and candidate computations, in well under a second."""

from __future__ import annotations

import numpy as np
import torch

from padirec.backbones.config import BackboneConfig
from padirec.backbones.registry import build_backbone
from padirec.data.dataset import PreparedData

MAX_LEN = 6


def tiny_data(num_users: int = 25, num_items: int = 30, seed: int = 0) -> PreparedData:
    rng = np.random.default_rng(seed)
    train, times = [np.array([], np.int64)], [np.array([], np.int64)]
    for u in range(num_users):
        n = [0, 1, 2, 5, 6, 7][u] if u < 6 else int(rng.integers(2, 25))  # short users, then any
        train.append(rng.integers(1, num_items + 1, size=n).astype(np.int64))
        times.append(np.cumsum(rng.integers(0, 50, size=n)).astype(np.int64) + 1000)
    held = np.concatenate([[0], rng.integers(1, num_items + 1, size=num_users)]).astype(np.int64)
    last = np.array([t[-1] if len(t) else 1000 for t in times], np.int64)
    return PreparedData(
        num_users=num_users, num_items=num_items, num_categories=2, train_items=train, train_times=times,
        valid_item=held, valid_time=last + 1, test_item=held[::-1].copy(), test_time=last + 2,
        item_categories=rng.random((num_items + 1, 2)) < 0.5, item_titles=[""] * (num_items + 1),
        category_names=["a", "b"], user_group=None, manifest={},
    )


def tiny_backbone(name: str, data: PreparedData):
    torch.manual_seed(0)
    cfg = BackboneConfig(model=name, num_layers=1, dropout=0.0)
    return build_backbone(name, data.num_items, cfg, MAX_LEN).eval()
