"""In-memory synthetic data for backbone tests (no data stage, no validation: fast)."""

from __future__ import annotations

import numpy as np
import pytest

from padirec.data.dataset import PreparedData
from padirec.data.synthetic import generate


def synthetic_data(num_users: int = 120, num_items: int = 60, num_categories: int = 6, seed: int = 0) -> PreparedData:
    """Leave-one-out split of ``padirec.data.synthetic.generate`` as a ``PreparedData``."""
    inter, items, _ = generate(num_users=num_users, num_items=num_items, num_categories=num_categories, seed=seed)
    inter = inter.sort_values(["user_id", "timestamp"], kind="stable")
    item_id = {f"i{i}": i + 1 for i in range(num_items)}
    users = sorted(inter["user_id"].unique(), key=lambda u: int(u[1:]))
    train_items, train_times = [np.array([], np.int64)], [np.array([], np.int64)]
    valid = np.zeros((2, len(users) + 1), np.int64)
    test = np.zeros((2, len(users) + 1), np.int64)
    for row, u in enumerate(users, start=1):
        g = inter[inter["user_id"] == u]
        seq, ts = g["item_id"].map(item_id).to_numpy(np.int64), g["timestamp"].to_numpy(np.int64)
        train_items.append(seq[:-2])
        train_times.append(ts[:-2])
        valid[:, row] = seq[-2], ts[-2]
        test[:, row] = seq[-1], ts[-1]
    cats = np.zeros((num_items + 1, num_categories), bool)
    for i, names in enumerate(items["categories"]):
        cats[i + 1, [int(n[3:]) for n in names]] = True
    return PreparedData(
        num_users=len(users), num_items=num_items, num_categories=num_categories,
        train_items=train_items, train_times=train_times, valid_item=valid[0], valid_time=valid[1],
        test_item=test[0], test_time=test[1], item_categories=cats, item_titles=[""] * (num_items + 1),
        category_names=[f"cat{c}" for c in range(num_categories)], user_group=None, manifest={},
    )


@pytest.fixture(scope="session")
def small_data() -> PreparedData:
    return synthetic_data()
