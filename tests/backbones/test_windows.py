"""Training examples and negatives: every prefix exactly once, negatives outside the history."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from padirec.backbones.train import NegativeSampler, training_windows


def _data(seqs: list[list[int]], num_items: int = 20):
    items = [np.array([], np.int64)] + [np.array(s, np.int64) for s in seqs]
    times = [np.arange(len(s), dtype=np.int64) * 10 for s in items]
    return SimpleNamespace(num_users=len(seqs), num_items=num_items, train_items=items, train_times=times)


def test_stride_one_is_every_prefix_truncated_to_max_len():
    w = training_windows(_data([[1, 2, 3, 4, 5, 6, 7], [11, 12, 13]]), max_len=3, stride=1)
    got = sorted((u, tuple(s), t) for u, s, t in zip(w.users.tolist(), w.seqs.tolist(), w.targets[:, 0].tolist(), strict=True))
    want = sorted([
        (1, (0, 0, 1), 2), (1, (0, 1, 2), 3), (1, (1, 2, 3), 4), (1, (2, 3, 4), 5), (1, (3, 4, 5), 6),
        (1, (4, 5, 6), 7), (2, (0, 0, 11), 12), (2, (0, 11, 12), 13),
    ])
    assert got == want
    assert w.times[w.seqs == 0].eq(0).all()


@pytest.mark.parametrize("stride", [1, 2, 3, 5])
def test_each_target_once_with_its_own_history(stride):
    rng = np.random.default_rng(stride)
    seqs = [list(rng.permutation(np.arange(1, 30))[: rng.integers(3, 25)]) for _ in range(6)]
    w = training_windows(_data(seqs, 30), max_len=5, stride=stride)
    seen = []
    for u, s, targets in zip(w.users.tolist(), w.seqs.tolist(), w.targets.tolist(), strict=True):
        inputs = s + [None]
        for j, t in enumerate(targets):
            if t == 0:
                continue
            pos = 5 - stride + j  # input position that predicts t
            seq = seqs[u - 1]
            i = seq.index(t)
            history = [x for x in inputs[: pos + 1] if x != 0]
            assert history == seq[max(0, i - pos - 1): i][-len(history):] and history[-1] == seq[i - 1]
            assert len(history) >= min(i, 5 - stride + 1)
            seen.append((u, t))
    want = [(u + 1, t) for u, s in enumerate(seqs) for t in s[1:]]
    assert sorted(seen) == sorted(want)


def test_bad_stride_is_rejected():
    with pytest.raises(ValueError, match="train_stride"):
        training_windows(_data([[1, 2, 3]]), max_len=3, stride=4)


def test_negatives_never_hit_the_history():
    rng = np.random.default_rng(0)
    seqs = [list(rng.permutation(np.arange(1, 21))[:15]) for _ in range(40)]  # 15 of 20 items seen
    data = _data(seqs, 20)
    sampler = NegativeSampler(data)
    users = torch.arange(1, 41).repeat_interleave(5)
    negs = sampler.sample(users, (3, 9), torch.Generator().manual_seed(0))
    assert negs.shape == (200, 3, 9)
    for u, row in zip(users.tolist(), negs.reshape(200, -1).tolist(), strict=True):
        assert not set(row) & set(seqs[u - 1]) and min(row) >= 1 and max(row) <= 20
    # the only allowed items get drawn (uniformity over the 5 unseen items)
    assert len({(u, i) for u, row in zip(users.tolist(), negs.reshape(200, -1).tolist(), strict=True) for i in row}) == 40 * 5


def test_negative_sampling_fails_clearly_when_impossible():
    data = _data([list(range(1, 21))], 20)
    with pytest.raises(ValueError, match="every item"):
        NegativeSampler(data, max_rounds=3).sample(torch.tensor([1]), (1, 2), torch.Generator())
