"""``padirec recommend``: one user's top-k under task weights, as a readable table.

The data folder must be the one the model was trained on (its manifest's data checksum equals the
model's): another dataset's folder would map the user's history to other items. A registry model
(``models:/``, ``runs:/``) is looked up in ``MLFLOW_TRACKING_URI`` (or ``MLFLOW_REGISTRY_URI``),
else in the local store that ``padirec run`` writes by default (``runs/mlflow.db``); never in
MLflow's own default, which would create an empty ``./mlflow.db`` and report the model missing.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from padirec.data.dataset import load_prepared
from padirec.errors import PadirecError
from padirec.runtime.artifacts import read_manifest

REGISTRY_SCHEMES = ("models:/", "runs:/")


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


def check_same_data(data_dir: str | Path, model_checksum: str, model: str) -> None:
    """Refuse a prepared folder whose data checksum is not the model's."""
    ours = str(read_manifest(data_dir, kind="prepared_data").get("data_checksum", ""))
    if not model_checksum:
        raise PadirecError(f"--data {data_dir}: {model} records no data checksum, so the folder cannot be "
                           "checked against the data it was trained on")
    if ours != model_checksum:
        raise PadirecError(f"--data {data_dir}: data checksum {ours[:12]} differs from {model}'s {model_checksum[:12]}; "
                           "the model was trained on other data (pass the prepared folder of its pipeline run)")


def registry_uri(model_uri: str) -> str | None:
    """Where a registry model is looked up (None: the URI needs no registry, e.g. a folder)."""
    if not model_uri.startswith(REGISTRY_SCHEMES):
        return None
    configured = os.environ.get("MLFLOW_TRACKING_URI") or os.environ.get("MLFLOW_REGISTRY_URI")
    if configured:
        return configured
    from padirec.config import Config
    from padirec.tracking import local_tracking_uri

    local = local_tracking_uri(Config().run_dir)
    path = local.removeprefix("sqlite:///")
    if not Path(path).is_file():
        raise PadirecError(f"--model-uri {model_uri}: no MLflow registry: MLFLOW_TRACKING_URI is not set and the "
                           f"local store {path} (where `padirec run` registers by default) does not exist; "
                           "set MLFLOW_TRACKING_URI to your tracking server")
    return local


def load_model(model_uri: str):
    """The pyfunc model, with MLflow's errors (missing model, unreachable server) as one line."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from padirec.tracking import redact

    uri = registry_uri(model_uri)
    if uri and not os.environ.get("MLFLOW_TRACKING_URI"):
        mlflow.set_tracking_uri(uri)  # the models:/ source of a version resolves through the tracking store
    try:
        return mlflow.pyfunc.load_model(model_uri)
    except (MlflowException, OSError) as e:
        where = f" (registry {redact(uri)})" if uri else ""
        raise PadirecError(f"--model-uri {model_uri}{where}: {_first_line(e)}") from e


def recommend_for_user(data_dir: str | Path, user: str, weights: list[float], system: str | None = None,
                       model_uri: str | None = None, k: int = 10) -> str:
    if system:
        from padirec.serving import Recommender

        rec = Recommender(system)
        check_same_data(data_dir, rec.data_checksum, f"system {system}")
        history = user_history(data_dir, user, rec.max_len)
        result = rec.recommend(history, weights, k=k)
    else:
        from mlflow.exceptions import MlflowException

        model = load_model(model_uri)
        rec = getattr(model.unwrap_python_model(), "recommender", None)
        if rec is None:
            raise PadirecError(f"--model-uri {model_uri}: not a padirec recommender model")
        check_same_data(data_dir, rec.data_checksum, f"model {model_uri}")
        history = user_history(data_dir, user, rec.max_len)
        # k per record: honoured even by a model logged without the params schema
        try:
            result = model.predict(pd.DataFrame([{"history": history, "weights": weights, "k": k}])).iloc[0].to_dict()
        except MlflowException as e:
            raise PadirecError(_first_line(e)) from e
    lines = [f"user {user}, weights {weights}: top-{k}"]
    for rank, (item, score, title, cats) in enumerate(zip(result["item_ids"], result["scores"], result["titles"],
                                                          result["categories"], strict=True), 1):
        lines.append(f"{rank:>3}. {title or item:<50.50} [{', '.join(cats)}]  score {score:.3f}")
    return "\n".join(lines)


def _first_line(e: Exception) -> str:
    text = str(getattr(e, "message", None) or e).strip()
    return text.splitlines()[0] if text else type(e).__name__
