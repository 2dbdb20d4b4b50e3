"""Ancestral DDPM sampling, the paper's Alg. 2 / Eq. 9.

``x_{t-1} = (x_t - beta_t / sqrt(1 - abar_t) eps~) / sqrt(alpha_t) + sigma_t z``, ``z = 0`` at the
last step. ``sigma_t^2 = beta_t`` (paper) or the posterior variance
``beta_t (1 - abar_{t-1}) / (1 - abar_t)`` (``variance="posterior"``). Guidance is applied to
``eps~`` before this step (``padirec.diffusion.sampling``), never here.
"""

from __future__ import annotations

import math

import torch

from padirec.diffusion.schedulers.base import Scheduler, randn_like
from padirec.errors import ConfigError


class DDPMScheduler(Scheduler):
    def __init__(self, num_train_timesteps: int = 1000, beta_start: float = 1e-4,
                 beta_end: float = 2e-2, variance: str = "beta") -> None:
        if variance not in ("beta", "posterior"):
            raise ConfigError(f"DDPM variance must be 'beta' or 'posterior', got {variance!r}")
        self.variance = variance
        super().__init__(num_train_timesteps, beta_start, beta_end)

    def coefficients(self, t: int) -> tuple[float, float, float]:
        """``(1/sqrt(alpha_t), beta_t/sqrt(1-abar_t), sigma_t)`` of the step from index ``t``."""
        prev = self.previous_timestep(t)
        abar_t, abar_prev = self.abar(t), self.abar(prev)
        alpha_t = abar_t / abar_prev
        beta_t = 1.0 - alpha_t
        if prev < 0:
            sigma = 0.0
        elif self.variance == "beta":
            sigma = math.sqrt(beta_t)
        else:
            sigma = math.sqrt(beta_t * (1.0 - abar_prev) / (1.0 - abar_t))
        return 1.0 / math.sqrt(alpha_t), beta_t / math.sqrt(1.0 - abar_t), sigma

    def step(self, eps: torch.Tensor, t: int, x: torch.Tensor,
             generator: torch.Generator | None = None) -> torch.Tensor:
        inv_sqrt_alpha, eps_coef, sigma = self.coefficients(t)
        mean = inv_sqrt_alpha * (x - eps_coef * eps)
        if sigma == 0.0:
            return mean
        return mean + sigma * randn_like(x, generator)
