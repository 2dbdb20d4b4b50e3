"""The ``adapter_bank`` artifact: the one ``AdapterBank`` type, its one reader, writer and merge.

``adapters.safetensors``: tensor ``params (N, P)`` float32, one flattened adapter per row.
``tasks.parquet``: ``row``, ``task_id``, ``checkpoint``, ``held_out``, ``w`` (the task weights,
list of p floats), ``shard`` and per-row validation metrics (``valid_ndcg@10``, ...).
The manifest (kind ``adapter_bank``) carries ``layout``, ``utilities``, ``backbone_sha256``,
``held_out`` (how held-out tasks were chosen) and ``shard``. Every consumer (the generator's
training, the methods, the evaluation) reads it with ``load_bank`` (contract in
``docs/internals.md``).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from padirec.core.layout import Layout, num_params
from padirec.errors import ArtifactError
from padirec.runtime.artifacts import atomic_write, read_manifest, write_manifest

KIND = "adapter_bank"
PARAMS = "adapters.safetensors"
TASKS = "tasks.parquet"


SERVED = ("mean", "last")  # what a task serves from its checkpoints (``served_adapter``)


def served_adapter(checkpoints: torch.Tensor, how: str) -> torch.Tensor:
    """The adapter a task serves from its checkpoints ``(..., K, P)`` -> ``(..., P)``: their mean
    (``mean``, as the generator's ``task_mean`` targets and the bank baselines) or the last one
    (``last``)."""
    if how not in SERVED:
        raise ValueError(f"served adapter: {how!r} is not one of mean, last")
    return checkpoints.mean(-2) if how == "mean" else checkpoints[..., -1, :]


@dataclass
class AdapterBank:
    """The bank as tensors, one row per trained adapter checkpoint, plus lookups by task."""

    params: torch.Tensor  # (N, P) float32, one flat adapter per row
    weights: torch.Tensor  # (N, p) float64, the task weights of each row
    task_id: np.ndarray  # (N,) int64
    checkpoint: np.ndarray  # (N,) int64, larger = later in training
    held_out: np.ndarray  # (N,) bool: kept out of the generator's (and hypernetwork's) training set
    tasks: pd.DataFrame  # tasks.parquet, ordered by ``row`` (metrics, shard)
    layout: Layout
    utilities: list[str]
    manifest: dict[str, Any] = field(default_factory=dict)

    def to(self, device: torch.device | str) -> AdapterBank:
        """The same bank with ``params`` and ``weights`` on ``device``."""
        return dataclasses.replace(self, params=self.params.to(device), weights=self.weights.to(device))

    def last_checkpoints(self) -> np.ndarray:
        """Row index of the last checkpoint of every task, ``(T,)`` in order of first appearance."""
        rows: dict[int, int] = {}
        for i, (t, c) in enumerate(zip(self.task_id.tolist(), self.checkpoint.tolist(), strict=True)):
            if t not in rows or c >= self.checkpoint[rows[t]]:
                rows[t] = i
        return np.array(list(rows.values()), dtype=np.int64)

    def find(self, weights: Any, tol: float = 1e-6) -> int | None:
        """Row of the last checkpoint of the task equal to ``weights (p,)`` (within ``tol``), or None."""
        w = torch.as_tensor(np.asarray(weights, dtype=np.float64)).reshape(1, -1)
        rows = self.last_checkpoints()
        if not len(rows):
            return None
        dist = (self.weights[rows].cpu() - w).abs().max(1).values
        best = int(dist.argmin())
        return int(rows[best]) if float(dist[best]) <= tol else None

    def checkpoints_of(self, row: int) -> np.ndarray:
        """Rows of every checkpoint of the task of ``row``, oldest first ``(K,)``."""
        rows = np.flatnonzero(self.task_id == self.task_id[row])
        return rows[np.argsort(self.checkpoint[rows], kind="stable")]

    def vertices(self, checkpoints: str = "mean") -> torch.Tensor | None:
        """Adapters of the pure tasks ``(p, P)`` (row j: ``w = e_j``), each served from its
        checkpoints (``served_adapter``: their mean, or the last), or None if any is missing."""
        p = self.weights.shape[1]
        found = [self.find(np.eye(p)[j]) for j in range(p)]
        if any(r is None for r in found):
            return None
        return torch.stack([served_adapter(self.params[self.checkpoints_of(r)], checkpoints) for r in found])

    def training_rows(self) -> np.ndarray:
        """Rows not held out (what the generator trains on)."""
        return np.flatnonzero(~self.held_out)


def write_bank(out_dir: str | os.PathLike, params: torch.Tensor, tasks: pd.DataFrame, lay: Layout,
               utilities: list[str], backbone_sha256: str, config: dict[str, Any],
               stats: dict[str, Any], held_out: dict[str, Any], shard: dict[str, int]) -> dict[str, Any]:
    """Write the three files atomically; returns the manifest."""
    out_dir = Path(out_dir)
    if params.shape != (len(tasks), num_params(lay)):
        raise ValueError(f"params {tuple(params.shape)} do not match {len(tasks)} task rows x "
                         f"{num_params(lay)} parameters")
    tensor = params.detach().to("cpu", torch.float32).contiguous()
    atomic_write(out_dir / PARAMS, lambda tmp: save_file({"params": tensor}, tmp))
    atomic_write(out_dir / TASKS, lambda tmp: tasks.to_parquet(tmp, index=False))
    return write_manifest(out_dir, KIND, [PARAMS, TASKS], config, stats, layout=lay,
                          utilities=list(utilities), backbone_sha256=backbone_sha256,
                          held_out=held_out, shard=shard)


def load_bank(in_dir: str | os.PathLike, device: torch.device | str = "cpu") -> AdapterBank:
    """Read an adapter bank (checksums verified), check its files agree with each other, and put
    ``params`` and ``weights`` on ``device``."""
    in_dir = Path(in_dir)
    manifest = read_manifest(in_dir, kind=KIND)
    for key in ("layout", "utilities", "backbone_sha256"):
        if key not in manifest:
            raise ArtifactError(f"{in_dir}: adapter_bank manifest lacks {key!r}")
    tensors = load_file(str(in_dir / PARAMS))
    if "params" not in tensors:
        raise ArtifactError(f"{in_dir / PARAMS}: no tensor 'params' (found {sorted(tensors)})")
    params = tensors["params"]
    tasks = pd.read_parquet(in_dir / TASKS)
    missing = {"row", "task_id", "checkpoint", "held_out", "w"} - set(tasks.columns)
    if missing:
        raise ArtifactError(f"{in_dir / TASKS}: missing column(s) {sorted(missing)}")
    tasks = tasks.sort_values("row", kind="stable").reset_index(drop=True)
    lay = manifest["layout"]
    if params.dim() != 2 or params.shape != (len(tasks), num_params(lay)):
        raise ArtifactError(f"{in_dir}: params {tuple(params.shape)} do not match {len(tasks)} task rows "
                            f"x {num_params(lay)} parameters of the layout")
    if not np.array_equal(tasks["row"].to_numpy(), np.arange(len(tasks))):
        raise ArtifactError(f"{in_dir / TASKS}: column 'row' must be 0..{len(tasks) - 1}")
    weights = torch.as_tensor(np.stack(tasks["w"].to_numpy()).astype(np.float64)) if len(tasks) \
        else torch.zeros(0, len(manifest["utilities"]), dtype=torch.float64)
    return AdapterBank(
        params=params.float().to(device), weights=weights.to(device),
        task_id=tasks["task_id"].to_numpy(np.int64), checkpoint=tasks["checkpoint"].to_numpy(np.int64),
        held_out=tasks["held_out"].to_numpy(bool), tasks=tasks, layout=lay,
        utilities=list(manifest["utilities"]), manifest=manifest,
    )


def merge_banks(shard_dirs: list[str | os.PathLike], out_dir: str | os.PathLike) -> dict[str, Any]:
    """Collect the shards of one bank into ``out_dir``, rows ordered by (task_id, checkpoint).

    Every shard must share layout, utilities, backbone and config, and the shard indices must be
    exactly ``0..num_shards-1``.
    """
    if not shard_dirs:
        raise ValueError("merge_adapter_banks needs at least one shard folder")
    banks = [load_bank(d) for d in shard_dirs]
    first = banks[0].manifest
    for d, b in zip(shard_dirs, banks, strict=True):
        for key in ("layout", "utilities", "backbone_sha256", "config", "held_out"):
            if b.manifest.get(key) != first.get(key):
                raise ArtifactError(f"{d}: {key} differs from {shard_dirs[0]}; shards of different banks")
    num_shards = first["shard"]["num_shards"]
    indices = sorted(b.manifest["shard"]["index"] for b in banks)
    if indices != list(range(num_shards)) or any(b.manifest["shard"]["num_shards"] != num_shards for b in banks):
        raise ArtifactError(f"expected shards 0..{num_shards - 1} exactly once, got indices {indices}")
    tasks = pd.concat([b.tasks.assign(_src=i) for i, b in enumerate(banks)], ignore_index=True)
    order = np.lexsort((tasks["checkpoint"].to_numpy(), tasks["task_id"].to_numpy()))
    params = torch.cat([b.params for b in banks])[torch.as_tensor(order)]
    tasks = tasks.iloc[order].drop(columns="_src").reset_index(drop=True)
    tasks["row"] = np.arange(len(tasks))
    stats = {"num_rows": len(tasks), "num_tasks": int(tasks["task_id"].nunique()),
             "train_seconds": float(sum(b.manifest["stats"].get("train_seconds", 0.0) for b in banks))}
    for key in ("checkpoint_spread", "checkpoint_last_move"):  # task-weighted means over the shards
        if all(key in b.manifest["stats"] for b in banks):
            stats[key] = float(sum(b.manifest["stats"][key] * b.manifest["stats"]["num_tasks"] for b in banks)
                               / max(1, sum(b.manifest["stats"]["num_tasks"] for b in banks)))
    return write_bank(out_dir, params, tasks, first["layout"], first["utilities"], first["backbone_sha256"],
                      first["config"], stats, first["held_out"], {"index": 0, "num_shards": 1,
                                                                  "merged_from": num_shards})
