"""NN lookup: the stored adapter of the bank task nearest to ``w``: "the simplest explanation".

A generator earns its place only where it beats reading the bank. ``prepare(w)`` returns the
adapter of the bank task whose weights are closest to ``w`` (Euclidean distance on the simplex;
for ``p = 2`` that is the nearest ``w_acc``), with ties (equal distances up to 1e-12) broken by the smallest ``task_id``.

- Which rows: the bank rows the generator trains on (``AdapterBank.training_rows``: held-out rows,
  e.g. the evaluation grid or the held-out band, are never looked up). The baseline sees exactly
  what the generator saw.
- Which checkpoint: a bank task has several checkpoints (the last epochs after convergence).
  ``checkpoints: mean`` (default) uses their element-wise mean, the counterpart of PaDiRec's served
  adapter (the mean of ``samples_per_task`` samples of a generator trained on every checkpoint);
  ``last`` uses the task's last checkpoint (what Retrain and Soup use).

``bank_tasks`` (one adapter and one weight vector per bank task) is shared with ``interpolation``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from padirec.adapters.bank import SERVED, AdapterBank, served_adapter
from padirec.adapters.features import Features
from padirec.core.layout import Layout
from padirec.core.tasks import validate_weights
from padirec.core.typed_config import setting
from padirec.errors import ConfigError
from padirec.methods.base import AdapterMethod, MethodContext, register


@dataclass
class BankLookupConfig:
    checkpoints: str = setting("mean", choices=SERVED)  # a task's adapter: the mean of its checkpoints, or its last


def bank_tasks(bank: AdapterBank, checkpoints: str = "mean",
               rows: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """One adapter per bank task among ``rows`` (default: ``bank.training_rows()``).

    Returns ``params (T, P)`` float32 (the mean of the task's checkpoints, or its last one),
    ``weights (T, p)`` float64 and ``task_id (T,)``, tasks in ascending ``task_id``.
    """
    if checkpoints not in SERVED:
        raise ConfigError(f"checkpoints: {checkpoints!r} is not one of {', '.join(SERVED)}")
    rows = bank.training_rows() if rows is None else np.asarray(rows, dtype=np.int64)
    ids = bank.task_id[rows]
    task_ids = np.unique(ids)
    params, weights = [], []
    for t in task_ids.tolist():
        mine = rows[ids == t]
        index = torch.as_tensor(mine[np.argsort(bank.checkpoint[mine], kind="stable")], device=bank.params.device)
        params.append(served_adapter(bank.params[index].float(), checkpoints))
        weights.append(bank.weights[index[0]].cpu().double())
    if not params:
        return (torch.zeros(0, bank.params.shape[1]), torch.zeros(0, bank.weights.shape[1], dtype=torch.float64),
                task_ids)
    return torch.stack(params), torch.stack(weights), task_ids


def check_tasks(key: str, params: torch.Tensor, weights: torch.Tensor, num_params: int, p: int) -> None:
    if params.ndim != 2 or weights.ndim != 2 or params.shape[0] != weights.shape[0] or params.shape[0] < 1:
        raise ValueError(f"{key} needs at least one bank task with matching rows, got params {tuple(params.shape)} "
                         f"and weights {tuple(weights.shape)}")
    if params.shape[1] != num_params or weights.shape[1] != p:
        raise ValueError(f"{key}: params must be (T, {num_params}) and weights (T, {p}), got "
                         f"{tuple(params.shape)} and {tuple(weights.shape)}")


@register
class NNLookup(AdapterMethod):
    key = "nn_lookup"
    learns_from_tasks = True
    config_class = BankLookupConfig

    def __init__(self, features: Features, utilities: list[str], layout: Layout,
                 params: torch.Tensor, weights: torch.Tensor) -> None:
        """``params (T, P)`` and ``weights (T, p)``: one adapter per bank task (see ``bank_tasks``)."""
        super().__init__(features, utilities, layout)
        check_tasks(self.key, params, weights, self.num_params, len(utilities))
        self.params = params.float().to(self.device)
        self.weights = torch.as_tensor(weights, dtype=torch.float64).cpu()

    @classmethod
    def build(cls, ctx: MethodContext, settings: BankLookupConfig) -> NNLookup:
        params, weights, _ = bank_tasks(ctx.require_bank(cls.key), settings.checkpoints)
        return cls(ctx.features, ctx.utilities, ctx.layout, params, weights)

    def nearest(self, weights) -> int:
        """Index of the bank task nearest to ``weights (p,)`` (first on ties)."""
        w = torch.as_tensor(validate_weights(weights, len(self.utilities)))
        dist = torch.round((self.weights - w).norm(dim=1), decimals=12)  # equal up to round-off: a tie
        return int(dist.argmin())  # argmin returns the first minimum

    def prepare(self, weights) -> torch.Tensor:
        return self.params[self.nearest(weights)]
