"""The prepared data folder as arrays: what every stage after ``prepare_data`` reads.

Ids are the contiguous internal ids: users ``1..num_users``, items ``1..num_items``; ``0`` is
padding. Arrays indexed by user have ``num_users + 1`` rows (row 0 unused).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from padirec.runtime.artifacts import read_manifest


@dataclass
class PreparedData:
    num_users: int
    num_items: int
    num_categories: int
    train_items: list[np.ndarray]  # [user] -> (n_u,) item ids in time order; [0] empty
    train_times: list[np.ndarray]  # [user] -> (n_u,) timestamps (seconds)
    valid_item: np.ndarray  # (num_users + 1,) held-out validation item
    valid_time: np.ndarray
    test_item: np.ndarray  # (num_users + 1,) held-out test item
    test_time: np.ndarray
    item_categories: np.ndarray  # (num_items + 1, num_categories) bool multi-hot; row 0 all False
    item_titles: list[str]  # (num_items + 1,) "" where the source has none
    category_names: list[str]  # (num_categories,)
    user_group: np.ndarray | None  # (num_users + 1,) int group (e.g. gender 0/1), -1 unknown; None if absent
    manifest: dict

    @property
    def users(self) -> np.ndarray:
        return np.arange(1, self.num_users + 1)

    def history(self, split: str, user: int) -> tuple[np.ndarray, np.ndarray]:
        """Items and times the model sees before predicting ``split``'s target for ``user``.

        ``valid``: the train sequence. ``test``: train + the validation item.
        """
        items, times = self.train_items[user], self.train_times[user]
        if split == "test":
            items = np.append(items, self.valid_item[user])
            times = np.append(times, self.valid_time[user])
        elif split != "valid":
            raise ValueError(f"split must be 'valid' or 'test', got {split!r}")
        return items, times

    def eval_batch(self, split: str, max_len: int, users: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Left-padded histories for evaluation.

        Returns ``users (B,)``, ``seqs (B, max_len)``, ``times (B, max_len)``, ``targets (B,)``.
        """
        users = self.users if users is None else np.asarray(users)
        seqs = np.zeros((len(users), max_len), dtype=np.int64)
        times = np.zeros((len(users), max_len), dtype=np.int64)
        for row, u in enumerate(users):
            items, ts = self.history(split, int(u))
            items, ts = items[-max_len:], ts[-max_len:]
            seqs[row, max_len - len(items):] = items
            times[row, max_len - len(ts):] = ts
        targets = (self.valid_item if split == "valid" else self.test_item)[users]
        return {"users": users, "seqs": seqs, "times": times, "targets": targets}

    def seen_items(self, split: str, users: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Every item in each user's history, as (row, item) index pairs for masking scores.

        The target is never in the returned pairs (it is excluded even if the user saw it
        earlier), so masking with these pairs removes the history and keeps the target.
        """
        users = self.users if users is None else np.asarray(users)
        targets = (self.valid_item if split == "valid" else self.test_item)[users]
        rows, cols = [], []
        for row, u in enumerate(users):
            items = np.unique(self.history(split, int(u))[0])
            items = items[items != targets[row]]
            rows.append(np.full(len(items), row))
            cols.append(items)
        return np.concatenate(rows).astype(np.int64), np.concatenate(cols).astype(np.int64)


def load_prepared(data_dir: str | Path, verify: bool = True) -> PreparedData:
    """Read the folder written by the data stage (checksums verified against the manifest)."""
    data_dir = Path(data_dir)
    manifest = read_manifest(data_dir, kind="prepared_data", verify=verify)
    stats = manifest["stats"]
    num_users, num_items, num_cats = stats["num_users"], stats["num_items"], stats["num_categories"]

    train = pd.read_parquet(data_dir / "train.parquet")
    train = train.sort_values(["user_id", "seq"], kind="stable") if "seq" in train else train
    starts = np.searchsorted(train["user_id"].to_numpy(), np.arange(num_users + 2))
    t_items, t_times = train["item_id"].to_numpy(np.int64), train["timestamp"].to_numpy(np.int64)
    train_items = [t_items[starts[u]:starts[u + 1]] for u in range(num_users + 1)]
    train_times = [t_times[starts[u]:starts[u + 1]] for u in range(num_users + 1)]

    def one_per_user(name: str) -> tuple[np.ndarray, np.ndarray]:
        df = pd.read_parquet(data_dir / f"{name}.parquet")
        item = np.zeros(num_users + 1, dtype=np.int64)
        time = np.zeros(num_users + 1, dtype=np.int64)
        item[df["user_id"].to_numpy()] = df["item_id"].to_numpy()
        time[df["user_id"].to_numpy()] = df["timestamp"].to_numpy()
        return item, time

    valid_item, valid_time = one_per_user("valid")
    test_item, test_time = one_per_user("test")

    items = pd.read_parquet(data_dir / "items.parquet")
    cats = np.zeros((num_items + 1, num_cats), dtype=bool)
    titles = [""] * (num_items + 1)
    has_title = "title" in items
    for row in items.itertuples(index=False):
        cats[row.item_id, list(row.categories)] = True
        if has_title and isinstance(row.title, str):
            titles[row.item_id] = row.title
    category_names = manifest.get("category_names") or [str(c) for c in range(num_cats)]

    user_group = None
    users_path = data_dir / "users.parquet"
    if users_path.exists():
        users = pd.read_parquet(users_path)
        if "group" in users:
            user_group = np.full(num_users + 1, -1, dtype=np.int64)
            user_group[users["user_id"].to_numpy()] = users["group"].to_numpy()

    return PreparedData(
        num_users=num_users, num_items=num_items, num_categories=num_cats,
        train_items=train_items, train_times=train_times,
        valid_item=valid_item, valid_time=valid_time, test_item=test_item, test_time=test_time,
        item_categories=cats, item_titles=titles, category_names=list(category_names),
        user_group=user_group, manifest=manifest,
    )
