"""Stage ``build_adapters``: the adapter bank (phase 2) from prepared data and a frozen backbone.

Tasks are the evaluation grid plus random simplex draws (``tasks.sample_tasks``); a shard takes
every ``num_shards``-th task starting at ``shard_index``, and every shard trains with the same
seed, so its rows equal those of the unsharded bank (same initial adapter, same mini-batches).
``merge_adapter_banks`` collects the shards.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from typing import Any

import numpy as np
import pandas as pd

from padirec.adapters.bank import merge_banks, write_bank
from padirec.adapters.config import CANDIDATE_LISTS, AdapterConfig
from padirec.adapters.evaluate import evaluate_adapters
from padirec.adapters.features_stage import frozen_features
from padirec.adapters.objectives import get_utilities
from padirec.adapters.train import checkpoint_spread, train_bank
from padirec.backbones.checkpoint import backbone_sha256
from padirec.core.layout import adapter_layout
from padirec.core.tasks import sample_tasks, shard_tasks
from padirec.core.tracker import NullTracker, Tracker, flatten
from padirec.data.dataset import PreparedData, load_prepared
from padirec.errors import ConfigError, DataValidationError
from padirec.runtime.seeding import pick_device, seed_everything

log = logging.getLogger("padirec")


def check_data_for_utilities(data: PreparedData, utilities: list[str]) -> None:
    """The data must support every utility asked for (categories for diversity, groups for fairness)."""
    needs = {u.name: u.needs for u in get_utilities(utilities)}
    if "categories" in needs.values():
        missing = np.flatnonzero(~data.item_categories[1:].any(1)) + 1
        if len(missing):
            shown = ", ".join(f"{i} ({data.item_titles[i]!r})" if data.item_titles[i] else str(i) for i in missing[:5])
            raise DataValidationError(
                f"the diversity utility needs item categories, but {len(missing)} of {data.num_items} items "
                f"have none (e.g. item ids {shown}); give them a category (e.g. 'unknown') in the items "
                "table, or drop 'diversity' from adapters.utilities"
            )
    if "groups" in needs.values():
        groups = None if data.user_group is None else np.unique(data.user_group[1:][data.user_group[1:] >= 0])
        if groups is None or len(groups) < 2:
            raise DataValidationError(
                "the fairness utility needs at least two user groups (users.parquet with a 'group' column), "
                f"found {'none' if groups is None else len(groups)}; drop 'fairness' from adapters.utilities"
            )


def build_adapters_stage(
    data_dir: str | os.PathLike,
    backbone_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    cfg: AdapterConfig,
    max_len: int,
    seed: int,
    device: str,
    tracker: Tracker | None = None,
    shard_index: int = 0,
    num_shards: int = 1,
    features_dir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Train this shard's adapters and write the ``adapter_bank`` artifact to ``out_dir``.

    ``features_dir``: the pipeline's ``features`` artifact (``features_stage``), read instead of
    running the backbone again in every shard; None computes them here.

    Returns a summary: number of tasks and rows, seconds, and the mean final valid metrics.
    """
    try:
        utilities = get_utilities(cfg.utilities, cfg.utility_settings)
    except ValueError as e:
        raise ConfigError(f"adapters.utilities: {e}") from e
    if cfg.candidates not in CANDIDATE_LISTS:
        raise ConfigError(f"adapters.candidates must be 'train' or 'topk', got {cfg.candidates!r}")
    tracker = tracker or NullTracker()
    seed_everything(seed)
    dev = pick_device(device)
    data = load_prepared(data_dir)
    check_data_for_utilities(data, cfg.utilities)
    tracker.log_params(flatten({"adapters": dataclasses.asdict(cfg)}) | {
        "max_len": max_len, "seed": seed, "shard_index": shard_index, "num_shards": num_shards})

    start = time.perf_counter()
    features = frozen_features(data, backbone_dir, features_dir, cfg, max_len, dev)  # verifies the backbone's checksums
    weights, held_out = sample_tasks(len(utilities), cfg.grid_size, cfg.num_random_tasks,
                                     cfg.hold_out_grid, seed, cfg.grid_centroid)
    task_ids = shard_tasks(len(weights), shard_index, num_shards)
    log.info("adapters: shard %d/%d trains %d of %d tasks on %s", shard_index + 1, num_shards,
             len(task_ids), len(weights), dev)
    result = train_bank(features, weights[task_ids], cfg, seed)
    for epoch, losses in enumerate(result.loss_history):
        tracker.log_metrics({"adapters_train_loss_mean": float(losses.mean())}, step=epoch)

    n, k, p = result.checkpoints.shape
    lay = adapter_layout(features.dim, cfg.bottleneck)
    flat = result.checkpoints.reshape(n * k, p)
    valid = evaluate_adapters(features, flat, lay, "valid", alpha=cfg.alpha)
    tasks = pd.DataFrame({
        "row": np.arange(n * k),
        "task_id": np.repeat(task_ids, k),
        "checkpoint": np.tile(np.arange(k), n),
        "held_out": np.repeat(held_out[task_ids], k),
        "w": [list(map(float, weights[t])) for t in np.repeat(task_ids, k)],
        "shard": shard_index,
        **{f"valid_{name}": values for name, values in valid.items()},
    })
    _log_task_table(tracker, shard_index, task_ids, held_out, weights, cfg.utilities, valid, k)
    seconds = time.perf_counter() - start
    stats = {
        "num_tasks": int(n), "num_rows": int(n * k), "num_params": int(p), "train_seconds": result.seconds,
        "seconds": seconds, "final_loss_mean": float(result.loss_history[-1].mean()),
        **checkpoint_spread(result.checkpoints),
        **{f"valid_{m}_mean": float(v.reshape(n, k)[:, -1].mean()) for m, v in valid.items()},
    }
    config = {"adapters": dataclasses.asdict(cfg), "max_len": max_len, "seed": seed}
    write_bank(out_dir, flat, tasks, lay, cfg.utilities, backbone_sha256(backbone_dir), config, stats,
               held_out={"rule": "grid" if cfg.hold_out_grid else "none", "grid_size": cfg.grid_size},
               shard={"index": shard_index, "num_shards": num_shards})
    tracker.log_metrics({"adapters_seconds": seconds, "adapters_rows": float(n * k)})
    tracker.log_artifact(os.path.join(out_dir, "tasks.parquet"), artifact_path="adapter_bank")
    log.info("adapters: %d tasks x %d checkpoints written to %s (%.1fs)", n, k, out_dir, seconds)
    return stats


def _log_task_table(tracker: Tracker, shard_index: int, task_ids: np.ndarray, held_out: np.ndarray,
                    weights: np.ndarray, utilities: list[str], valid: dict[str, np.ndarray],
                    k: int) -> None:
    """One row per task of this shard (its weights, the last checkpoint's valid metrics) as the
    table ``adapter_bank/tasks_shard_<i>.json`` (``mlflow.log_table``): per-task results are keyed
    by task, never put on a metric's step axis (the task index is not a step). No test metrics:
    the test split is read once, by the evaluate stage."""
    rows = []
    for i, t in enumerate(task_ids):
        row: dict[str, Any] = {"task_id": int(t), "shard": shard_index, "held_out": bool(held_out[t])}
        row.update({f"w_{u}": float(x) for u, x in zip(utilities, weights[t], strict=True)})
        row.update({_metric(f"valid_{m}"): float(v[i * k + k - 1]) for m, v in valid.items()})
        rows.append(row)
    tracker.log_table(rows, f"adapter_bank/tasks_shard_{shard_index}.json")


def _metric(name: str) -> str:
    """MLflow metric names allow no ``@``: ``task_valid_ndcg@10`` -> ``task_valid_ndcg_at_10``."""
    return name.replace("@", "_at_")


def merge_adapter_banks(shard_dirs: list[str | os.PathLike], out_dir: str | os.PathLike) -> dict[str, Any]:
    """Collect shard folders of one bank into ``out_dir``; returns the merged manifest."""
    return merge_banks(shard_dirs, out_dir)
