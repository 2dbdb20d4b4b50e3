"""A head-to-head on the same data: two registered versions ranked through the serving interface
(the pyfunc model: source ids in, ranked source ids out) for the test users of one prepared
snapshot, on the report's tasks and metrics, and the difference judged by a paired bootstrap.

Each model gets what a client would send: the user's most recent history items (at most the
model's maximum length) with their timestamps, the task's weights, ``k``. A user the model cannot
answer (no history item it knows: a 400 from the server) counts 0 on both metrics: it is what the
served model would deliver. Both models are judged against the same targets and the same ideal
lists (the snapshot's catalogue minus the history sent), so the figures pair user by user.

The score is the one the gate ranks by (``padirec.tracking.quality``): the mean over tasks of NDCG@k x
alpha-NDCG@k, the means taken over users. The bootstrap resamples users (the same draws for both
models) and recomputes the difference of the scores; its lower bound is what promotion judges.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger("padirec")


def score(ndcg: np.ndarray, alpha_ndcg: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray | float:
    """Mean over tasks of (mean NDCG) x (mean alpha-NDCG) over users; ``ndcg`` and ``alpha_ndcg`` are
    ``(users, tasks)``. ``weights (draws, users)``: each row a resample's user counts / users."""
    if weights is None:
        return float(np.mean(ndcg.mean(0) * alpha_ndcg.mean(0)))
    return ((weights @ ndcg) * (weights @ alpha_ndcg)).mean(1)


def paired_bootstrap(candidate: dict[str, np.ndarray], incumbent: dict[str, np.ndarray], samples: int,
                     confidence: float, seed: int = 0) -> dict[str, float]:
    """The score difference (candidate - incumbent) and its two-sided ``confidence`` interval over
    ``samples`` resamples of the users (the same resample for both models)."""
    users = candidate["ndcg"].shape[0]
    gain = score(candidate["ndcg"], candidate["alpha_ndcg"]) - score(incumbent["ndcg"], incumbent["alpha_ndcg"])
    rng, draws = np.random.default_rng(seed), []
    for start in range(0, samples, 100):  # 100 resamples at a time: memory (100, users), not (samples, users)
        weights = np.stack([np.bincount(rng.integers(0, users, users), minlength=users)
                            for _ in range(min(100, samples - start))]) / users
        draws.append(score(candidate["ndcg"], candidate["alpha_ndcg"], weights)
                     - score(incumbent["ndcg"], incumbent["alpha_ndcg"], weights))
    draws = np.concatenate(draws)
    tail = (1 - confidence) / 2
    lower, upper = np.quantile(draws, [tail, 1 - tail])
    return {"gain": float(gain), "gain_lower": float(lower), "gain_upper": float(upper)}


def load_version(uri: str, model_name: str, version: str, folder: str | Path):
    """The pyfunc model of a registered version, as a server loads it, downloaded into ``folder``
    from the server at ``uri`` (not the process's default store, which is left as it is)."""
    import mlflow.artifacts
    import mlflow.pyfunc

    local = mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{model_name}/{version}", tracking_uri=uri,
                                                registry_uri=uri, dst_path=str(Path(folder) / f"v{version}"))
    return mlflow.pyfunc.load_model(local)


def _max_len(model, default: int) -> int:
    """The history length the model reads (its serving error says so too; asked here up front)."""
    recommender = getattr(model.unwrap_python_model(), "recommender", None)
    return int(getattr(recommender, "max_len", default) or default)


CHUNK = 512  # users sent and scored at a time: memory bounded at (CHUNK, items), not (users, items)


def served_figures(model, data, source_ids: dict[int, str], tasks: list[list[float]], k: int, alpha: float,
                   max_len: int) -> dict[str, Any]:
    """Per user and task NDCG@k and alpha-NDCG@k ``(users, tasks)`` of ``model``'s answers for the
    test users of ``data`` (``padirec.data.dataset.PreparedData``; ``source_ids``: its internal item
    id -> source id), and how many users it could not answer."""
    import torch

    n = min(max_len, _max_len(model, max_len))
    cats = torch.as_tensor(data.item_categories, dtype=torch.float64)
    to_internal = {s: i for i, s in source_ids.items()}
    users = data.users
    ndcg, alpha_ndcg, failed = np.zeros((len(users), len(tasks))), np.zeros((len(users), len(tasks))), 0
    for start in range(0, len(users), CHUNK):
        part = _served_chunk(model, data, users[start:start + CHUNK], source_ids, to_internal, cats, tasks, k, alpha, n)
        ndcg[start:start + CHUNK], alpha_ndcg[start:start + CHUNK] = part["ndcg"], part["alpha_ndcg"]
        failed += part["failed_users"]
    return {"ndcg": ndcg, "alpha_ndcg": alpha_ndcg, "failed_users": failed}


def _served_chunk(model, data, users: np.ndarray, source_ids: dict[int, str], to_internal: dict[str, int], cats,
                  tasks: list[list[float]], k: int, alpha: float, n: int) -> dict[str, Any]:
    """``served_figures`` for some users: each sent its last ``n`` history items and their times."""
    import torch
    from mlflow.exceptions import MlflowException

    from padirec.core.metrics import alpha_ndcg_at_k, ideal_per_user

    requests, masks = [], torch.ones(len(users), data.num_items + 1, dtype=torch.bool)
    masks[:, 0] = False
    for row, u in enumerate(users):
        items, times = data.history("test", int(u))
        items, times = items[-n:], times[-n:]
        masks[row, torch.as_tensor(items)] = False
        requests.append({"history": [source_ids[int(i)] for i in items], "timestamps": [int(t) for t in times]})
    ideal = ideal_per_user(cats, k, alpha, masks)  # the same ideal lists for both models: the figures pair
    targets = data.test_item[users]
    ndcg, alpha_ndcg = np.zeros((len(users), len(tasks))), np.zeros((len(users), len(tasks)))
    failed: set[int] = set()

    def predict(rows: list[int], weights: list[float]) -> dict[int, list[str]]:
        frame = pd.DataFrame([{**requests[r], "weights": list(weights)} for r in rows])
        try:
            out = model.predict(frame, params={"k": k})
            return {r: list(ids) for r, ids in zip(rows, out["item_ids"], strict=True)}
        except MlflowException:  # a refused request (400): find the users it refuses, one by one
            if len(rows) == 1:
                failed.add(rows[0])
                return {}
            answers: dict[int, list[str]] = {}
            for r in rows:
                answers.update(predict([r], weights))
            return answers

    gains = 1.0 / torch.log2(torch.arange(2, k + 2, dtype=torch.float64))
    for t, weights in enumerate(tasks):
        answers = predict([r for r in range(len(users)) if r not in failed], weights)
        if not answers:
            continue
        rows = sorted(answers)
        # an item the snapshot does not have is listed as padding: no category, never the target
        top = torch.tensor([([to_internal.get(str(s), 0) for s in answers[r]] + [0] * k)[:k] for r in rows])
        hits = top == torch.as_tensor(targets[rows])[:, None]
        ndcg[rows, t] = (hits * gains).sum(1).numpy()
        alpha_ndcg[rows, t] = alpha_ndcg_at_k(top, cats, alpha, ideal=ideal[rows]).numpy()
    return {"ndcg": ndcg, "alpha_ndcg": alpha_ndcg, "failed_users": len(failed)}


def head_to_head(uri: str, model_name: str, candidate: str, incumbent: str, data_dir: str | Path,
                 report: dict[str, Any], max_len: int, samples: int, confidence: float, seed: int = 0) -> dict[str, Any]:
    """Versions ``candidate`` and ``incumbent`` on the test users of ``data_dir``, on ``report``'s
    tasks, ``k`` and alpha. Returns per model its score, per-task means and failed users, and the
    paired bootstrap of the score difference (``paired_bootstrap``)."""
    import tempfile

    from padirec.data.dataset import load_prepared

    data = load_prepared(data_dir)
    id_map = pd.read_parquet(Path(data_dir) / "id_map_items.parquet")
    source_ids = dict(zip(id_map["item_id"].astype(int), id_map["source_id"].astype(str), strict=True))
    tasks, k, alpha = report["tasks"], int(report.get("k", 10)), float(report.get("alpha", 0.5))
    figures = {}
    with tempfile.TemporaryDirectory(prefix="padirec-head-to-head-") as tmp:
        for role, version in (("candidate", candidate), ("incumbent", incumbent)):
            model = load_version(uri, model_name, version, tmp)
            figures[role] = served_figures(model, data, source_ids, tasks, k, alpha, max_len)
    result: dict[str, Any] = {"candidate_version": str(candidate), "incumbent_version": str(incumbent),
                              "users": int(data.num_users), "tasks": tasks, "k": k, "alpha": alpha,
                              "data_checksum": data.manifest.get("data_checksum", ""),
                              **paired_bootstrap(figures["candidate"], figures["incumbent"], samples, confidence, seed),
                              "confidence": confidence, "samples": samples}
    for role, f in figures.items():
        result[role] = {"score": score(f["ndcg"], f["alpha_ndcg"]), "failed_users": f["failed_users"],
                        f"ndcg@{k}": f["ndcg"].mean(0).tolist(), f"alpha_ndcg@{k}": f["alpha_ndcg"].mean(0).tolist()}
    log.info("head to head on %d users: v%s %.5f, v%s %.5f (gain %.5f, %d%% interval [%.5f, %.5f])", data.num_users,
             candidate, result["candidate"]["score"], incumbent, result["incumbent"]["score"], result["gain"],
             round(confidence * 100), result["gain_lower"], result["gain_upper"])
    return result


def falls_short(candidate: dict[str, float], incumbent: dict[str, float], margin: float) -> str:
    """Why ``candidate`` does not beat ``incumbent`` by ``margin``: MLflow's reasons in one line ("" when it does).

    MLflow's model validation: the score must be at least the incumbent's plus the margin
    (``min_absolute_change``, which MLflow requires above 0: a tie never passes), and where the
    candidate has ``gain_lower`` (the bootstrap's lower bound of the score difference) it must be
    at least the margin (``threshold``)."""
    import mlflow
    from mlflow.models import MetricThreshold
    from mlflow.models.evaluation import EvaluationResult
    from mlflow.models.evaluation.validation import ModelValidationFailedException

    thresholds = {"score": MetricThreshold(min_absolute_change=margin, greater_is_better=True)}
    if "gain_lower" in candidate:
        thresholds["gain_lower"] = MetricThreshold(threshold=margin, greater_is_better=True)
    logger = logging.getLogger("mlflow.models.evaluation.validation")
    level = logger.level
    logger.setLevel(logging.WARNING)  # its INFO lines say nothing the promotion reason does not
    try:
        mlflow.validate_evaluation_results(thresholds, EvaluationResult(candidate, {}), EvaluationResult(incumbent, {}))
    except ModelValidationFailedException as e:
        return "; ".join(line.strip() for line in str(e.message).splitlines() if line.strip())
    finally:
        logger.setLevel(level)
    return ""
