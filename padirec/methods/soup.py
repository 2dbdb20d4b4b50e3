"""Soup (Wortsman et al. 2022): the pure-task adapters merged linearly by the task weights.

``theta(w) = sum_j w_j theta_j`` with ``theta_j`` the adapter trained for the pure task
``w = e_j`` (all weight on utility ``j``). The pure adapters come from the adapter bank when it
holds them (each pure task's checkpoints served as Retrain serves them: their mean by default,
``checkpoints``),
else ``fit`` trains them with the Retrain trainer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from padirec.adapters.bank import SERVED
from padirec.adapters.features import Features
from padirec.core.layout import Layout
from padirec.core.typed_config import setting
from padirec.methods.base import AdapterMethod, MethodContext, register
from padirec.methods.retrain import Retrain


@dataclass
class SoupConfig:
    checkpoints: str = setting("mean", choices=SERVED)  # each pure adapter: its checkpoints' mean (as Retrain), or last


@register
class Soup(AdapterMethod):
    key = "soup"
    config_class = SoupConfig

    def __init__(
        self,
        features: Features,
        utilities: list[str],
        layout: Layout,
        pure_adapters: torch.Tensor | None = None,
        trainer: Callable[[np.ndarray], torch.Tensor] | None = None,
    ) -> None:
        """``pure_adapters (p, P)`` (row j for ``w = e_j``), or a ``trainer: w (p,) -> (P,)``."""
        super().__init__(features, utilities, layout)
        if pure_adapters is None and trainer is None:
            raise ValueError("Soup needs the pure-task adapters or a trainer to make them")
        self.pure = None if pure_adapters is None else self._check(pure_adapters)
        self.trainer = trainer

    @classmethod
    def build(cls, ctx: MethodContext, settings: SoupConfig) -> Soup:
        pure = None if ctx.bank is None else ctx.bank.vertices(settings.checkpoints)
        # a fresh Retrain (no bank): only used when the bank lacks a pure task
        trainer = Retrain(ctx.features, ctx.utilities, ctx.layout, ctx.adapters, ctx.seed,
                          checkpoints=settings.checkpoints).prepare
        return cls(ctx.features, ctx.utilities, ctx.layout, pure, trainer)

    def _check(self, pure: torch.Tensor) -> torch.Tensor:
        p = len(self.utilities)
        pure = torch.as_tensor(pure, dtype=torch.float32, device=self.device)
        if pure.shape != (p, self.num_params):
            raise ValueError(f"Soup: pure adapters must be (p, P) = ({p}, {self.num_params}), got {tuple(pure.shape)}")
        return pure

    def fit(self) -> None:
        if self.pure is None:
            assert self.trainer is not None
            eye = np.eye(len(self.utilities))
            self.pure = self._check(torch.stack([torch.as_tensor(self.trainer(eye[j])).reshape(-1) for j in range(len(eye))]))

    def prepare(self, weights) -> torch.Tensor:
        if self.pure is None:
            self.fit()
        return self.task_weights(weights) @ self.pure  # (p,) @ (p, P) -> (P,)
