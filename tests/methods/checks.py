"""A check every method's test runs on its own method."""

from __future__ import annotations

import torch


def assert_prepare_split_matches(method, tasks) -> None:
    """``prepare_split(w, s)`` (what the sweep calls) ranks only ``s``'s users, and as ``prepare(w)`` does."""
    for w in tasks:
        both = method.prepare(w)
        for split in ("valid", "test"):
            one = method.prepare_split(w, split)
            assert not {"valid", "test"} - {split} & set(one)  # the other split's users are not ranked
            assert torch.equal(method.scores(one, split), method.scores(both, split)), (w, split)
