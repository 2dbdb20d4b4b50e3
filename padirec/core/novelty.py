"""The novelty utility, as the thesis' MODT4R (Chapter 4) defines it: the long tail of the catalogue.

The long tail ``I_nov``: the items ranked by popularity in the TRAINING split, every item outside
the most popular ``epsilon`` share (the thesis: "the items in the bottom 90% are considered as
the less popular item set", so ``epsilon = 0.1``). Popularity is the number of training users who
interacted with the item (each user counted once: ``Features.seen_keys``); ties at the boundary
go to the lower item id, so the head has exactly ``ceil(epsilon * I)`` items. Padding (item 0) is
in neither set. The validation and test splits never enter it.

- ``novelty@k`` (per user, higher is better): the share of the user's top-k list in ``I_nov``,
  ``|top-k ∩ I_nov| / k``: the thesis' novelty reward ``r_nov`` (1 for a long-tail item) averaged
  over the list.
- ``cv_div@k`` (system level, the thesis' ``CV_div@k``): the share of the catalogue (every item
  but padding) that appears in at least one user's top-k list.
- ``cv_nov@k`` (system level, ``CV_nov@k``): the share of ``I_nov`` that appears in at least one
  user's top-k list (coverage of the long tail, as ``CV_div`` is coverage of the catalogue).

Per-user rankers (MMR, MODT4R) use ``long_tail`` as a per-item term; the adapters' training loss
is ``padirec.adapters.novelty_loss``.
"""

from __future__ import annotations

import math
from typing import Any

import torch

EPSILON = 0.1  # the popular head's share of the catalogue (thesis Ch. 4: the bottom 90% are novel)


def item_popularity(seen_keys: torch.Tensor, num_items: int) -> torch.Tensor:
    """``(num_items + 1,)`` int64: how many training users interacted with each item id, from the
    sorted ``user * (num_items + 1) + item`` keys of every train interaction."""
    return torch.bincount(seen_keys % (num_items + 1), minlength=num_items + 1)


def long_tail(popularity: torch.Tensor, epsilon: float = EPSILON) -> torch.Tensor:
    """``(num_items + 1,)`` bool, True for the items of ``I_nov``: all but the ``ceil(epsilon * I)``
    most popular items (ties: the lower id is the more popular) and padding."""
    if not 0.0 <= epsilon < 1.0:
        raise ValueError(f"novelty epsilon must be in [0, 1), got {epsilon}")
    num_items = popularity.shape[0] - 1
    head = math.ceil(epsilon * num_items)
    order = torch.sort(popularity[1:], descending=True, stable=True).indices + 1
    tail = torch.ones(num_items + 1, dtype=torch.bool, device=popularity.device)
    tail[0] = False
    tail[order[:head]] = False
    return tail


def long_tail_items(features: Any, epsilon: float = EPSILON) -> torch.Tensor:
    """``long_tail`` of ``features`` (``padirec.adapters.features.Features``: not imported, the
    ground floor sits below the adapters), on its device."""
    return long_tail(item_popularity(features.seen_keys, features.num_items), epsilon)


def novelty_at_k(topk: torch.Tensor, tail: torch.Tensor) -> torch.Tensor:
    """Per-user ``novelty@k`` ``(U,)`` float64 of the ranked lists ``topk (U, k)``."""
    if topk.dim() != 2:
        raise ValueError(f"topk must be (users, k) item ids, got shape {tuple(topk.shape)}")
    return tail.to(topk.device)[topk].to(torch.float64).mean(1) if topk.shape[1] else topk.new_zeros(
        topk.shape[0], dtype=torch.float64)


def listed_items(topk: torch.Tensor, num_items: int) -> torch.Tensor:
    """``(num_items + 1,)`` bool, True for every item (padding excluded) that some list of ``topk
    (U, k)`` contains: what ``coverage`` counts. The sets of disjoint groups of users OR together
    into the set of all of them (the merge of user shards)."""
    listed = torch.zeros(num_items + 1, dtype=torch.bool, device=topk.device)
    listed[topk.reshape(-1)] = True
    listed[0] = False
    return listed


def coverage_of(listed: torch.Tensor, tail: torch.Tensor, k: int) -> dict[str, float]:
    """``{"cv_div@k", "cv_nov@k"}`` of the items some list contains (``listed_items``): the shares
    of the catalogue and of the long tail ``tail`` listed (0 for an empty catalogue or tail)."""
    listed = torch.as_tensor(listed, dtype=torch.bool).clone()
    tail = torch.as_tensor(tail, dtype=torch.bool).to(listed.device)
    if listed.shape != tail.shape:
        raise ValueError(f"listed items {tuple(listed.shape)} and long tail {tuple(tail.shape)} differ in size")
    listed[0] = False
    num_items, num_tail = tail.shape[0] - 1, int(tail.sum())
    return {f"cv_div@{k}": int(listed.sum()) / num_items if num_items else 0.0,
            f"cv_nov@{k}": int((listed & tail).sum()) / num_tail if num_tail else 0.0}


def coverage(topk: torch.Tensor, tail: torch.Tensor, k: int) -> dict[str, float]:
    """``{"cv_div@k", "cv_nov@k"}`` of every user's list ``topk (U, k)``: the shares of the
    catalogue and of the long tail that some list contains (0 for an empty catalogue or tail)."""
    return coverage_of(listed_items(topk, tail.shape[0] - 1), tail, k)
