"""Retrain: an adapter trained from scratch for the exact task (linear scalarisation).

Assumed optimal and the reference of the Pearson correlations. ``prepare(w)`` runs
``padirec.adapters.train.train_adapter`` to its convergence criterion; that is the response
time being compared. For the evaluation sweep, ``bank`` lets it reuse the bank's adapter for a
task the bank already trained (the grid tasks are in the bank, held out from the generator):
``train_adapter`` is deterministic given the seed and equals that adapter, so retraining would
only cost time. The response-time comparison passes no bank and always trains.
"""

from __future__ import annotations

import numpy as np
import torch

from padirec.adapters.adapter import Layout, dims
from padirec.adapters.config import AdapterConfig
from padirec.adapters.features import Features
from padirec.adapters.train import train_adapter
from padirec.baselines.bank import BankView
from padirec.baselines.base import AdapterMethod


class Retrain(AdapterMethod):
    key = "retrain"

    def __init__(
        self, features: Features, utilities: list[str], layout: Layout, cfg: AdapterConfig, seed: int = 0,
        bank: BankView | None = None,
    ) -> None:
        super().__init__(features, utilities, layout)
        if list(cfg.utilities) != list(utilities):
            raise ValueError(f"adapter config utilities {cfg.utilities} differ from {utilities}")
        if dims(layout) != (features.dim, cfg.bottleneck):
            raise ValueError(f"adapter config (dim {features.dim}, bottleneck {cfg.bottleneck}) does not match "
                             f"the layout's (dim, bottleneck) {dims(layout)}")
        self.cfg = cfg
        self.seed = seed
        self.bank = bank
        self.reused = 0  # tasks served from the bank (reported by the sweep)

    def prepare(self, w) -> torch.Tensor:
        w = self.task(w)
        if self.bank is not None:
            row = self.bank.find(w.cpu().numpy())
            if row is not None:
                self.reused += 1
                return self.bank.params[row].to(self.device)
        return train_adapter(self.features, w.cpu().numpy().astype(np.float64), self.cfg, self.seed).detach()
