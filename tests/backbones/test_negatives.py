"""Negative sampling redraws only the rejected draws: the same negatives as the old loop that
re-tested every draw each round (kept here as the reference), at the cost of the rejections."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from padirec.backbones.train import NegativeSampler
from padirec.data.dataset import PreparedData


def _data(num_users: int, num_items: int, seed: int = 0) -> PreparedData:
    """Users who have seen 1..90% of the catalogue, so sampling takes many rounds."""
    rng = np.random.default_rng(seed)
    train = [np.array([], np.int64)]
    for _ in range(num_users):
        n = int(rng.integers(2, int(0.9 * num_items)))
        train.append(rng.choice(np.arange(1, num_items + 1), size=n, replace=False).astype(np.int64))
    zeros = np.zeros(num_users + 1, np.int64)
    return PreparedData(
        num_users=num_users, num_items=num_items, num_categories=1, train_items=train,
        train_times=[np.arange(len(t), dtype=np.int64) for t in train], valid_item=zeros, valid_time=zeros,
        test_item=zeros, test_time=zeros, item_categories=np.ones((num_items + 1, 1), bool),
        item_titles=[""] * (num_items + 1), category_names=["c"], user_group=None, manifest={},
    )


def reference_sample(sampler: NegativeSampler, users, shape, generator):
    """The implementation before issue 16: redraw ``negs[bad]``, re-test every draw each round."""
    negs = torch.randint(1, sampler.num_items + 1, (len(users), *shape), generator=generator)
    bad = sampler.in_history(users, negs)
    for _ in range(sampler.max_rounds):
        if not bad.any():
            return negs
        negs[bad] = torch.randint(1, sampler.num_items + 1, (int(bad.sum()),), generator=generator)
        bad = sampler.in_history(users, negs)
    raise ValueError("could not sample")


@pytest.mark.parametrize("shape", [(3,), (4, 5)])
def test_negatives_are_bit_identical_to_the_old_loop(shape):
    data = _data(num_users=40, num_items=30)
    sampler = NegativeSampler(data)
    users = torch.from_numpy(np.random.default_rng(1).integers(1, 41, size=500))
    new = sampler.sample(users, shape, torch.Generator().manual_seed(7))
    old = reference_sample(sampler, users, shape, torch.Generator().manual_seed(7))
    assert torch.equal(new, old)
    assert not sampler.in_history(users, new).any()
    assert new.min() >= 1 and new.max() <= data.num_items


def test_the_generator_ends_in_the_same_state():
    """Every draw is consumed as before, so the epoch's shuffle that follows is unchanged too."""
    sampler = NegativeSampler(_data(num_users=10, num_items=12))
    users = torch.arange(1, 11).repeat(20)
    g_new, g_old = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    sampler.sample(users, (2, 9), g_new)
    reference_sample(sampler, users, (2, 9), g_old)
    assert torch.equal(torch.randperm(100, generator=g_new), torch.randperm(100, generator=g_old))


def test_no_users_and_a_full_history():
    data = _data(num_users=3, num_items=8)
    sampler = NegativeSampler(data)
    empty = sampler.sample(torch.zeros(0, dtype=torch.int64), (2, 3), torch.Generator().manual_seed(0))
    assert empty.shape == (0, 2, 3)
    data.train_items[1] = np.arange(1, 9, dtype=np.int64)  # user 1 has seen every item
    with pytest.raises(ValueError, match="outside the history"):
        NegativeSampler(data, max_rounds=5).sample(torch.tensor([1]), (2,), torch.Generator().manual_seed(0))
