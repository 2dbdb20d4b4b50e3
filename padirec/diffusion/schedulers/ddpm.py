"""Ancestral DDPM sampling, the paper's Alg. 2 / Eq. 9.

``x_{t-1} = (x_t - beta_t / sqrt(1 - abar_t) eps~) / sqrt(alpha_t) + sigma_t z``, ``z = 0`` at the
last step, ``sigma_t^2 = beta_t`` (the paper's choice). Guidance is applied to ``eps~`` before this
step (``padirec.diffusion.sampling``), never here.
"""

from __future__ import annotations

import math

import torch

from padirec.diffusion.schedulers.base import Scheduler, randn_like, register_sampler


@register_sampler
class DDPMScheduler(Scheduler):
    name = "ddpm"
    def coefficients(self, t: int) -> tuple[float, float, float]:
        """``(1/sqrt(alpha_t), beta_t/sqrt(1-abar_t), sigma_t)`` of the step from index ``t``."""
        prev = self.previous_timestep(t)
        abar_t, abar_prev = self.abar(t), self.abar(prev)
        alpha_t = abar_t / abar_prev
        beta_t = 1.0 - alpha_t
        sigma = 0.0 if prev < 0 else math.sqrt(beta_t)
        return 1.0 / math.sqrt(alpha_t), beta_t / math.sqrt(1.0 - abar_t), sigma

    def step(self, eps: torch.Tensor, t: int, x: torch.Tensor,
             generator: torch.Generator | None = None) -> torch.Tensor:
        inv_sqrt_alpha, eps_coef, sigma = self.coefficients(t)
        mean = inv_sqrt_alpha * (x - eps_coef * eps)
        if sigma == 0.0:
            return mean
        return mean + sigma * randn_like(x, generator)
