"""Synthetic interactions with a planted sequential rule, for tests and smoke runs.

Each user walks the item ring: the next item is ``prev + 1`` (mod ``num_items``) with probability
``1 - noise`` and a uniform random item otherwise, so a sequential model can learn it to
near-perfect HR@10. Item ``i`` belongs to category ``i mod num_categories`` and, for every third
item, also to the next one, so neighbouring items differ in category and diversity is learnable.
Users have a gender for the fairness utility.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def generate(
    num_users: int = 200,
    num_items: int = 100,
    num_categories: int = 6,
    min_len: int = 8,
    max_len: int = 30,
    noise: float = 0.1,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Raw tables as a user would supply them (source ids, category names).

    Returns ``interactions`` (user_id, item_id, timestamp), ``items`` (item_id, categories as a
    list of names, title) and ``users`` (user_id, gender).
    """
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(num_users):
        length = min(int(rng.integers(min_len, max_len + 1)), num_items)  # items are not repeated
        item = int(rng.integers(num_items))
        t = int(rng.integers(8.8e8, 9.0e8))
        seen = set()
        for _ in range(length):
            while item in seen:  # a user interacts with an item once; keep walking the ring
                item = (item + 1) % num_items
            seen.add(item)
            rows.append((f"u{u}", f"i{item}", t))
            t += int(rng.integers(1, 1000))
            item = (item + 1) % num_items if rng.random() > noise else int(rng.integers(num_items))
    interactions = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    names = [f"cat{c}" for c in range(num_categories)]
    items = pd.DataFrame({
        "item_id": [f"i{i}" for i in range(num_items)],
        "categories": [
            [names[i % num_categories]] + ([names[(i + 1) % num_categories]] if i % 3 == 0 else [])
            for i in range(num_items)
        ],
        "title": [f"Item {i}" for i in range(num_items)],
    })
    users = pd.DataFrame({
        "user_id": [f"u{u}" for u in range(num_users)],
        "gender": rng.choice(["M", "F"], size=num_users),
    })
    return interactions, items, users
