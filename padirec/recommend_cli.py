"""``padirec recommend``: one user's top-k under task weights, as a readable table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from padirec.data.dataset import load_prepared
from padirec.errors import PadirecError


def user_history(data_dir: str | Path, user: str, max_len: int) -> list[str]:
    """The user's most recent ``max_len`` items (source ids), oldest first."""
    data = load_prepared(data_dir)
    users = pd.read_parquet(Path(data_dir) / "id_map_users.parquet")
    match = users[users["source_id"].astype(str) == str(user)]
    if match.empty:
        raise PadirecError(f"user {user!r} is not in {data_dir} (after filtering)")
    u = int(match["user_id"].iloc[0])
    items = np.concatenate([data.train_items[u], [data.valid_item[u], data.test_item[u]]])[-max_len:]
    source = pd.read_parquet(Path(data_dir) / "id_map_items.parquet").set_index("item_id")["source_id"]
    return [str(source[i]) for i in items]


def recommend_for_user(data_dir: str | Path, user: str, weights: list[float], system: str | None = None,
                       model_uri: str | None = None, k: int = 10) -> str:
    if system:
        from padirec.serving import Recommender

        rec = Recommender(system)
        history = user_history(data_dir, user, rec.max_len)
        result = rec.recommend(history, weights, k=k)
    else:
        from padirec.tracking import load_served_model

        model = load_served_model(model_uri)
        history = user_history(data_dir, user, model.unwrap_python_model().recommender.max_len)
        result = model.predict(pd.DataFrame([{"history": history, "weights": weights}]), params={"k": k}).iloc[0].to_dict()
    lines = [f"user {user}, weights {weights}: top-{k}"]
    for rank, (item, score, title, cats) in enumerate(zip(result["item_ids"], result["scores"], result["titles"],
                                                          result["categories"], strict=True), 1):
        lines.append(f"{rank:>3}. {title or item:<50.50} [{', '.join(cats)}]  score {score:.3f}")
    return "\n".join(lines)
