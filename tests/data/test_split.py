"""The leave-one-out split's invariants, the tie rule, filtering and contiguous ids."""

import numpy as np
import pandas as pd
import pytest

from padirec.data.config import DataConfig
from padirec.data.dataset import load_prepared
from padirec.data.prepare import prepare
from padirec.data.synthetic import generate


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    inter, items, users = generate(num_users=60, num_items=40, num_categories=4, min_len=3, max_len=15, seed=3)
    out = tmp_path_factory.mktemp("prep")
    manifest = prepare(inter, items, users, out, DataConfig(source="synthetic"))
    return inter, out, manifest


def test_splits_partition_each_users_time_ordered_interactions(prepared):
    inter, out, manifest = prepared
    id_users = pd.read_parquet(out / "id_map_users.parquet").set_index("source_id")["user_id"]
    id_items = pd.read_parquet(out / "id_map_items.parquet").set_index("source_id")["item_id"]
    train, valid, test = (pd.read_parquet(out / f"{s}.parquet") for s in ("train", "valid", "test"))
    kept = inter[inter.groupby("user_id")["item_id"].transform("size") >= 5]
    assert set(id_users.index) == set(kept["user_id"])
    for source_user, rows in kept.groupby("user_id", sort=False):
        u = id_users[source_user]
        ordered = rows.sort_values("timestamp", kind="stable")  # source order breaks ties
        expected = [id_items[i] for i in ordered["item_id"]]
        got = (train[train.user_id == u]["item_id"].tolist() + valid[valid.user_id == u]["item_id"].tolist()
               + test[test.user_id == u]["item_id"].tolist())
        assert got == expected
        assert (valid.user_id == u).sum() == 1 and (test.user_id == u).sum() == 1
        assert valid[valid.user_id == u]["timestamp"].item() >= train[train.user_id == u]["timestamp"].max()
        assert test[test.user_id == u]["timestamp"].item() >= valid[valid.user_id == u]["timestamp"].item()


def test_users_below_five_dropped_and_ids_contiguous(prepared):
    inter, out, manifest = prepared
    stats = manifest["stats"]
    counts = inter.groupby("user_id").size()
    assert stats["num_users"] == int((counts >= 5).sum())
    assert stats["users_dropped"] == int((counts < 5).sum())
    data = load_prepared(out)
    all_items = np.concatenate([np.concatenate(data.train_items[1:]), data.valid_item[1:], data.test_item[1:]])
    assert set(np.unique(all_items)) == set(range(1, data.num_items + 1))
    assert data.valid_item[0] == 0 and (data.valid_item[1:] > 0).all()
    for key in ("num_users", "num_items", "num_interactions", "num_categories"):
        assert key in stats


def test_ties_broken_by_source_row_order(tmp_path):
    # u1's last three rows share one timestamp: the source order decides test and valid.
    rows = [("u1", f"i{k}", 100 + k) for k in range(3)] + [("u1", "i7", 200), ("u1", "i5", 200), ("u1", "i6", 200)]
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    items = pd.DataFrame({"item_id": [f"i{k}" for k in (0, 1, 2, 5, 6, 7)], "categories": [["a"]] * 6})
    prepare(inter, items, None, tmp_path, DataConfig(source="tables"), min_users=1, min_items=1)  # split rule only
    id_items = pd.read_parquet(tmp_path / "id_map_items.parquet").set_index("item_id")["source_id"]
    assert id_items[pd.read_parquet(tmp_path / "test.parquet")["item_id"].item()] == "i6"
    assert id_items[pd.read_parquet(tmp_path / "valid.parquet")["item_id"].item()] == "i5"


def test_exact_duplicates_dropped_and_counted(tmp_path):
    rows = [("u1", f"i{k}", 100 + k) for k in range(6)]
    inter = pd.DataFrame(rows + rows[:2], columns=["user_id", "item_id", "timestamp"])
    items = pd.DataFrame({"item_id": [f"i{k}" for k in range(6)], "categories": [["a", "b"]] * 6})
    manifest = prepare(inter, items, None, tmp_path, DataConfig(source="tables"), min_users=1, min_items=1)
    assert manifest["stats"]["duplicates_dropped"] == 2
    assert manifest["stats"]["num_interactions"] == 6


def test_categories_multi_hot_and_user_groups(synthetic_prepared):
    data = load_prepared(synthetic_prepared)
    assert data.item_categories.shape == (data.num_items + 1, data.num_categories)
    assert not data.item_categories[0].any() and data.item_categories[1:].any(1).all()
    assert data.user_group is not None and set(np.unique(data.user_group[1:])) <= {0, 1}


def test_seen_items_exclude_target_and_cover_history(synthetic_prepared):
    data = load_prepared(synthetic_prepared)
    rows, cols = data.seen_items("test")
    for u in (1, 2, 3):
        seen = set(cols[rows == u - 1])
        assert data.test_item[u] not in seen
        assert seen == set(data.history("test", u)[0]) - {data.test_item[u]}
