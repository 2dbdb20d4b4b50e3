"""Hypernetwork (paper RQ1): an MLP regressing the adapter bank's parameters from the task weights.

Trained with MSE on the bank rows the generator trains on (``held_out`` rows excluded), targets
z-scored per parameter (the MLP predicts standardised values; ``prepare`` undoes it). The
deterministic counterpart of the diffusion generator: same data, same input, no noise.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn

from padirec.adapters.features import Features
from padirec.core.layout import Layout
from padirec.core.typed_config import setting
from padirec.methods.base import AdapterMethod, MethodContext, register

log = logging.getLogger("padirec")


class ParamRegressor(nn.Module):
    """``w (n, p) -> standardised params (n, P)``: ``p -> hidden -> hidden -> P`` MLP."""

    def __init__(self, p: int, num_params: int, hidden: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(p, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, num_params),
        )

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return self.net(w)


@dataclass
class HypernetworkConfig:
    steps: int = setting(2000, range="[1, inf)")  # optimiser steps
    hidden: int = setting(256, range="[1, inf)")
    lr: float = setting(1e-3, range="(0, inf)")


@register
class Hypernetwork(AdapterMethod):
    key = "hypernetwork"
    learns_from_tasks = True
    config_class = HypernetworkConfig
    robustness = True

    def __init__(
        self, features: Features, utilities: list[str], layout: Layout,
        params: torch.Tensor, weights: torch.Tensor,
        steps: int = 2000, lr: float = 1e-3, hidden: int = 256, seed: int = 0,
    ) -> None:
        """``params (N, P)`` and ``weights (N, p)``: the bank's training rows."""
        super().__init__(features, utilities, layout)
        if params.shape[0] != weights.shape[0] or params.shape[0] < 1:
            raise ValueError(f"Hypernetwork needs matching rows, got params {tuple(params.shape)} and "
                             f"weights {tuple(weights.shape)}")
        if params.shape[1] != self.num_params or weights.shape[1] != len(utilities):
            raise ValueError(f"Hypernetwork: params must be (N, {self.num_params}) and weights (N, {len(utilities)})")
        self.params = params.float().to(self.device)
        self.weights = weights.float().to(self.device)
        self.steps, self.lr, self.hidden, self.seed = steps, lr, hidden, seed
        self.model: ParamRegressor | None = None

    @classmethod
    def build(cls, ctx: MethodContext, settings: HypernetworkConfig) -> Hypernetwork:
        bank = ctx.require_bank(cls.key)
        rows = bank.training_rows()
        return cls(ctx.features, ctx.utilities, ctx.layout, bank.params[rows], bank.weights[rows],
                   settings.steps, settings.lr, settings.hidden, ctx.seed)

    def fit(self) -> None:
        g = torch.Generator().manual_seed(self.seed)
        self.mean = self.params.mean(0)
        self.std = self.params.std(0, unbiased=False).clamp_min(1e-6)
        target = (self.params - self.mean) / self.std
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            model = ParamRegressor(len(self.utilities), self.num_params, self.hidden).to(self.device)
        opt = torch.optim.Adam(model.parameters(), lr=self.lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, self.steps)
        n = self.params.shape[0]
        batch = min(n, 256)
        for step in range(self.steps):
            idx = torch.randint(0, n, (batch,), generator=g).to(self.device)
            loss = ((model(self.weights[idx]) - target[idx]) ** 2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if (step + 1) % max(1, self.steps // 4) == 0:
                log.info("hypernetwork: step %d/%d, mse %.4f", step + 1, self.steps, float(loss.detach()))
        self.model = model.eval().requires_grad_(False)

    @torch.no_grad()
    def prepare(self, weights) -> torch.Tensor:
        if self.model is None:
            self.fit()
        assert self.model is not None
        return self.model(self.task_weights(weights)[None])[0] * self.std + self.mean
