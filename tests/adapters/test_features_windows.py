"""Adapter features from the training windows: the same examples and values as the old per-prefix
pass (kept here as the reference), one encoder pass per window, nothing kept alive but the result."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from padirec.adapters.features import (
    _represent,
    compute_features,
    training_examples,
    training_prefixes,
)
from padirec.backbones.train import training_windows
from padirec.data.dataset import PreparedData
from tests.fixtures import WINDOW_MAX_LEN, window_backbone, window_data


def reference_prefixes(data: PreparedData, max_len: int) -> dict[str, np.ndarray]:
    """``training_prefixes`` before issue 16: a Python double loop."""
    users, targets, seqs, times = [], [], [], []
    for u in data.users:
        items, ts = data.train_items[u], data.train_times[u]
        for i in range(1, len(items)):
            lo = max(0, i - max_len)
            s = np.zeros(max_len, dtype=np.int64)
            t = np.zeros(max_len, dtype=np.int64)
            s[max_len - (i - lo):] = items[lo:i]
            t[max_len - (i - lo):] = ts[lo:i]
            users.append(u)
            targets.append(items[i])
            seqs.append(s)
            times.append(t)
    return {"users": np.asarray(users, dtype=np.int64), "targets": np.asarray(targets, dtype=np.int64),
            "seqs": np.stack(seqs), "times": np.stack(times)}


@torch.no_grad()
def reference_represent(backbone, seqs: np.ndarray, times: np.ndarray) -> torch.Tensor:
    """The old per-prefix pass (last position of each prefix, 2048 per chunk)."""
    out = [backbone.represent(torch.as_tensor(seqs[s:s + 2048]), torch.as_tensor(times[s:s + 2048])).float()
           for s in range(0, len(seqs), 2048)]
    return torch.cat(out)


def test_vectorised_prefixes_equal_the_double_loop():
    data = window_data()
    for max_len in (1, 3, WINDOW_MAX_LEN, 30):
        new, old = training_prefixes(data, max_len), reference_prefixes(data, max_len)
        assert new.keys() == old.keys()
        for key in old:
            assert new[key].dtype == old[key].dtype and np.array_equal(new[key], old[key]), (max_len, key)


@pytest.mark.parametrize("stride", [1, 2, 4, WINDOW_MAX_LEN])
def test_examples_are_the_prefixes_for_every_stride(stride):
    data = window_data()
    ex, old = training_examples(data, WINDOW_MAX_LEN, stride), reference_prefixes(data, WINDOW_MAX_LEN)
    assert np.array_equal(ex["users"], old["users"]) and np.array_equal(ex["targets"], old["targets"])
    assert np.all(np.diff(ex["window"]) >= 0)  # the examples of a window are contiguous
    w, p = ex["window"], ex["position"]
    assert np.array_equal(ex["seqs"][w, p], old["seqs"][:, -1])  # the input before each target
    if stride == 1:  # one window per example, the prefix itself
        assert np.array_equal(ex["seqs"], old["seqs"]) and np.array_equal(ex["times"], old["times"])
    # a window is the prefix that ends at its last target: the full prefix at the last position
    last = np.r_[w[1:] != w[:-1], True]
    assert np.array_equal(ex["seqs"][w[last]], old["seqs"][last]) and np.all(p[last] == WINDOW_MAX_LEN - 1)
    # the window set is the one backbone training uses (order aside)
    tw = training_windows(data, WINDOW_MAX_LEN, stride)
    assert sorted(map(tuple, tw.seqs.tolist())) == sorted(map(tuple, ex["seqs"].tolist()))


@pytest.mark.parametrize("name", ["sasrec", "tisasrec", "gru4rec"])
def test_stride_one_features_are_bit_identical_to_the_old_pass(name):
    data = window_data()
    backbone = window_backbone(name, data)
    f = compute_features(backbone, data, WINDOW_MAX_LEN)
    old = reference_prefixes(data, WINDOW_MAX_LEN)
    assert torch.equal(f.train_h, reference_represent(backbone, old["seqs"], old["times"]))
    assert torch.equal(f.train_user, torch.as_tensor(old["users"]))
    assert torch.equal(f.train_target, torch.as_tensor(old["targets"]))
    assert f.train_h.is_contiguous() and f.train_h.untyped_storage().nbytes() == f.train_h.numel() * 4


@pytest.mark.parametrize("name", ["sasrec", "tisasrec"])
def test_window_features_read_every_position_of_the_training_windows(name):
    data = window_data()
    backbone = window_backbone(name, data)
    stride = 4
    f = compute_features(backbone, data, WINDOW_MAX_LEN, stride=stride)
    # reference: backbone training's windows, encoded whole, each target's position read
    tw = training_windows(data, WINDOW_MAX_LEN, stride)
    with torch.no_grad():
        hidden = backbone.encode(tw.seqs, tw.times)[:, -stride:, :]
    want = {(int(tw.users[r]), tuple(tw.seqs[r].tolist()), WINDOW_MAX_LEN - stride + c): hidden[r, c]
            for r in range(len(tw)) for c in range(stride) if tw.targets[r, c] != 0}
    ex = training_examples(data, WINDOW_MAX_LEN, stride)
    got = {(int(u), tuple(ex["seqs"][w].tolist()), int(p)): f.train_h[m]
           for m, (u, w, p) in enumerate(zip(ex["users"], ex["window"], ex["position"], strict=True))}
    assert got.keys() == want.keys()
    for key, h in want.items():
        torch.testing.assert_close(got[key], h, atol=1e-5, rtol=1e-5)
    # the last position of each window is the exact prefix feature
    exact = compute_features(backbone, data, WINDOW_MAX_LEN, stride=1).train_h
    last = np.r_[ex["window"][1:] != ex["window"][:-1], True]
    torch.testing.assert_close(f.train_h[last], exact[last], atol=1e-5, rtol=1e-5)


def test_window_pass_keeps_no_encoder_output_alive():
    data = window_data()
    backbone = window_backbone("sasrec", data)
    ex = training_examples(data, WINDOW_MAX_LEN, 3)
    h = _represent(backbone, ex["seqs"], ex["times"], torch.device("cpu"), ex["window"], ex["position"])
    assert h.shape == (len(ex["users"]), backbone.dim) and h._base is None
    assert h.untyped_storage().nbytes() == h.numel() * h.element_size()


def test_bad_stride():
    with pytest.raises(ValueError, match="stride"):
        training_examples(window_data(), WINDOW_MAX_LEN, WINDOW_MAX_LEN + 1)
