"""The ML-1M-format generator: the shape asked for, readable by the ML-1M source, learnable order."""

import numpy as np

from padirec.data.sources import load_ml1m
from padirec.data.synthetic_ml1m import ML1M, generate, write


def test_scaled_files_read_back_with_the_asked_shape(tmp_path):
    counts = write(tmp_path, scale=0.05, seed=1)
    assert counts == {"users": round(ML1M["users"] * 0.05), "items": round(ML1M["items"] * 0.05),
                      "ratings": round(ML1M["ratings"] * 0.05)}
    inter, items, users = load_ml1m(str(tmp_path))
    assert len(inter) == counts["ratings"] and len(items) == counts["items"] and len(users) == counts["users"]
    assert not inter.duplicated(["user_id", "item_id"]).any()  # one rating per user and movie, as in ML-1M
    lengths = inter.groupby("user_id").size()
    assert lengths.min() >= 20
    ts = inter.assign(timestamp=inter.timestamp.astype(int)).groupby("user_id").timestamp
    assert ts.apply(lambda s: (s.diff().fillna(1) >= 0).all()).all()  # time order within a user
    assert 0.2 < (ts.diff() == 0).mean() < 0.6  # sessions: many ties


def test_next_item_is_mostly_near_the_previous_one():
    (u, i, _, _), _, _ = generate(scale=0.05, seed=0, noise=0.2)
    n = round(ML1M["items"] * 0.05)
    same_user = u[1:] == u[:-1]
    step = (i[1:] - i[:-1]) % n
    near = (step[same_user] > 0) & (step[same_user] < n // 10)
    assert near.mean() > 0.5  # a signal a sequential model can learn; chance is about 0.1
    (_, i, _, _), _, _ = generate(scale=0.2, seed=0)  # enough items for popularity to show
    counts = np.bincount(i)[1:]
    assert counts.max() > 5 * np.median(counts)  # Zipf-like: the top item is seen by most users
