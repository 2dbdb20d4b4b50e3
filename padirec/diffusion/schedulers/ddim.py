"""Deterministic DDIM sampling (Song et al. 2021, eta = 0) in any number of steps <= T.

``x0^ = (x_t - sqrt(1 - abar_t) eps~) / sqrt(abar_t)``,
``x_prev = sqrt(abar_prev) x0^ + sqrt(1 - abar_prev) eps~``. The same trained denoiser serves
DDPM and DDIM; only the number of network evaluations changes (the response time of a new task).
"""

from __future__ import annotations

import math

import torch

from padirec.diffusion.schedulers.base import Scheduler, register_sampler


@register_sampler
class DDIMScheduler(Scheduler):
    name = "ddim"
    def step(self, eps: torch.Tensor, t: int, x: torch.Tensor,
             generator: torch.Generator | None = None) -> torch.Tensor:
        abar_t, abar_prev = self.abar(t), self.abar(self.previous_timestep(t))
        x0 = (x - math.sqrt(1.0 - abar_t) * eps) / math.sqrt(abar_t)
        return math.sqrt(abar_prev) * x0 + math.sqrt(1.0 - abar_prev) * eps
