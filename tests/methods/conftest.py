"""Fixtures for the baseline tests: random frozen features (no backbone), built in milliseconds."""

from __future__ import annotations

import pytest
import torch

from padirec.adapters.features import EvalSplit, Features
from padirec.core.layout import adapter_layout


def make_features(num_users: int = 30, num_items: int = 40, dim: int = 8, num_categories: int = 5,
                  prefixes: int = 200, seed: int = 0, groups: bool = False) -> Features:
    """Features with random representations; every user has a few train items (masked in eval)."""
    g = torch.Generator().manual_seed(seed)
    cats = (torch.rand(num_items + 1, num_categories, generator=g) < 0.3).float()
    cats[torch.arange(1, num_items + 1), torch.randint(0, num_categories, (num_items,), generator=g)] = 1.0
    cats[0] = 0.0
    users = torch.arange(1, num_users + 1)
    history = torch.randint(1, num_items + 1, (num_users, 4), generator=g)
    seen = torch.unique((users[:, None] * (num_items + 1) + history).flatten())
    user_group = torch.randint(0, 2, (num_users + 1,), generator=g) if groups else None

    def split() -> EvalSplit:
        targets = torch.randint(1, num_items + 1, (num_users,), generator=g)
        rows = torch.arange(num_users).repeat_interleave(4)
        cols = history.flatten()
        keep = cols != targets[rows]
        return EvalSplit(users=users, h=torch.randn(num_users, dim, generator=g), targets=targets,
                         mask_rows=rows[keep], mask_cols=cols[keep],
                         groups=None if user_group is None else user_group[users])

    train_user = torch.randint(1, num_users + 1, (prefixes,), generator=g)
    return Features(
        train_h=torch.randn(prefixes, dim, generator=g), train_user=train_user,
        train_target=history[train_user - 1, torch.randint(0, 4, (prefixes,), generator=g)],
        item_embedding=torch.randn(num_items + 1, dim, generator=g), item_categories=cats,
        user_group=user_group, seen_keys=seen, valid=split(), test=split(),
    )


def assert_prepare_split_matches(method, tasks) -> None:
    """``prepare_split(w, s)`` (what the sweep calls) ranks only ``s``'s users, and as ``prepare(w)`` does."""
    for w in tasks:
        both = method.prepare(w)
        for split in ("valid", "test"):
            one = method.prepare_split(w, split)
            assert not {"valid", "test"} - {split} & set(one)  # the other split's users are not ranked
            assert torch.equal(method.scores(one, split), method.scores(both, split)), (w, split)


@pytest.fixture
def features_factory():
    """``make_features`` itself, for tests that need other sizes or user groups."""
    return make_features


@pytest.fixture
def features() -> Features:
    return make_features()


@pytest.fixture
def lay(features):
    return adapter_layout(features.dim, 4)


@pytest.fixture(autouse=True)
def one_thread():
    """Small tensors: one intra-op thread avoids thread contention on a busy shared CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
