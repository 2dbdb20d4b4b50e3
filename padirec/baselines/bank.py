"""The adapter bank as the baselines use it: tensors plus lookups by task.

Read through ``padirec.adapters.bank.load_bank`` (the one reader of the ``adapter_bank``
artifact, contract in ``docs/internals.md``); this view adds what the methods need: the last
checkpoint of a task, the pure-task adapters (Soup), the rows the generator trained on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from padirec.adapters.adapter import Layout
from padirec.adapters.bank import load_bank as read_adapter_bank
from padirec.errors import ArtifactError


@dataclass
class BankView:
    params: torch.Tensor  # (N, P) one flat adapter per row
    weights: torch.Tensor  # (N, p) the task of each row
    task_id: np.ndarray  # (N,)
    checkpoint: np.ndarray  # (N,) larger = later in training
    held_out: np.ndarray  # (N,) bool: kept out of the generator's (and hypernetwork's) training set
    layout: Layout
    utilities: list[str]
    manifest: dict[str, Any] = field(default_factory=dict)

    def last_checkpoints(self) -> np.ndarray:
        """Row index of the last checkpoint of every task, ``(T,)`` in order of first appearance."""
        rows: dict[int, int] = {}
        for i, (t, c) in enumerate(zip(self.task_id.tolist(), self.checkpoint.tolist(), strict=True)):
            if t not in rows or c >= self.checkpoint[rows[t]]:
                rows[t] = i
        return np.array(list(rows.values()), dtype=np.int64)

    def find(self, w: Any, tol: float = 1e-6) -> int | None:
        """Row of the last checkpoint of the task equal to ``w (p,)`` (within ``tol``), or None."""
        w = torch.as_tensor(np.asarray(w, dtype=np.float32)).reshape(1, -1)
        rows = self.last_checkpoints()
        if not len(rows):
            return None
        dist = (self.weights[rows].cpu() - w).abs().max(1).values
        best = int(dist.argmin())
        return int(rows[best]) if float(dist[best]) <= tol else None

    def vertices(self) -> torch.Tensor | None:
        """Adapters of the pure tasks ``(p, P)`` (row j: ``w = e_j``), or None if any is missing."""
        p = self.weights.shape[1]
        found = [self.find(np.eye(p)[j]) for j in range(p)]
        if any(r is None for r in found):
            return None
        return self.params[found]

    def training_rows(self) -> np.ndarray:
        """Rows not held out (what the generator trained on)."""
        return np.flatnonzero(~self.held_out)


def load_bank(bank_dir: str | Path, device: torch.device | str = "cpu") -> BankView:
    """Read an ``adapter_bank`` folder (through ``padirec.adapters.bank.load_bank``: checksums and
    consistency verified) as the baselines' view."""
    bank = read_adapter_bank(bank_dir)
    tasks = bank.tasks
    for col in ("task_id", "checkpoint", "held_out"):
        if col not in tasks:
            raise ArtifactError(f"{bank_dir}: tasks.parquet lacks the column {col!r}")
    return BankView(
        params=bank.params.float().to(device),
        weights=torch.as_tensor(bank.weights, dtype=torch.float32).to(device),
        task_id=tasks["task_id"].to_numpy(np.int64), checkpoint=tasks["checkpoint"].to_numpy(np.int64),
        held_out=tasks["held_out"].to_numpy(bool), layout=bank.layout, utilities=list(bank.utilities),
        manifest=bank.manifest,
    )
