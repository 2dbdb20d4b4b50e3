"""The shared noise schedule and the interface every sampler implements (after diffusers).

Indices: the paper's step ``t in {1..T}`` is index ``t - 1`` here, so ``timesteps`` run from
``T - 1`` down to ``0``; the step before index 0 is ``-1`` with ``abar = 1`` (clean data).
A sampler that takes fewer steps than ``T`` visits a subset of indices ("trailing" spacing: the
first step is always ``T - 1``, pure noise) and treats each jump as one step of a respaced
process, ``alpha = abar_t / abar_prev``; with all ``T`` steps this is the paper's process exactly.

A sampler is one file: a ``Scheduler`` subclass with its ``name`` (the config's
``generator.sampler``) and the ``register_sampler`` decorator; ``padirec.diffusion.schedulers``
imports every file of this package, and a plugin file registers itself the same way.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from padirec.core.plugins import NoSettings, Registry
from padirec.errors import ConfigError


def linear_betas(num_train_timesteps: int, beta_start: float, beta_end: float) -> torch.Tensor:
    """Linear beta schedule (Ho et al. 2020), ``(T,)`` float64."""
    if num_train_timesteps < 1:
        raise ConfigError(f"generator.num_train_timesteps must be >= 1, got {num_train_timesteps}")
    if not 0 < beta_start <= beta_end < 1:
        raise ConfigError(f"generator.beta_start/beta_end must satisfy 0 < start <= end < 1, "
                          f"got {beta_start}, {beta_end}")
    return torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=torch.float64)


class Scheduler:
    """``set_timesteps``, ``add_noise``, ``step``; subclasses implement ``step``."""

    name: ClassVar[str] = "scheduler"
    config_class: ClassVar[type] = NoSettings  # its own settings (none of the built-in samplers has any)

    def __init__(self, num_train_timesteps: int = 1000, beta_start: float = 1e-4,
                 beta_end: float = 2e-2) -> None:
        self.num_train_timesteps = num_train_timesteps
        self.betas = linear_betas(num_train_timesteps, beta_start, beta_end)
        self.alphas = 1.0 - self.betas
        self.alphas_cumprod = torch.cumprod(self.alphas, dim=0)  # abar, (T,) float64
        self.set_timesteps(num_train_timesteps)

    def set_timesteps(self, num_inference_steps: int | None = None) -> None:
        """Choose the indices the sampler visits, descending; ``None`` = all ``T``."""
        n = self.num_train_timesteps if num_inference_steps is None else int(num_inference_steps)
        if not 1 <= n <= self.num_train_timesteps:
            raise ConfigError(f"num_inference_steps must be in 1..{self.num_train_timesteps} "
                              f"(num_train_timesteps), got {n}")
        grid = torch.arange(self.num_train_timesteps, 0, -self.num_train_timesteps / n,
                            dtype=torch.float64)
        self.timesteps = (grid.round().long() - 1)[:n]
        self._prev = {int(t): int(p) for t, p in
                      zip(self.timesteps, torch.cat([self.timesteps[1:], torch.tensor([-1])]),
                          strict=True)}

    def previous_timestep(self, t: int) -> int:
        return self._prev[int(t)]

    def abar(self, t: int) -> float:
        return 1.0 if t < 0 else float(self.alphas_cumprod[t])

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Forward process (paper Eq. 8): ``sqrt(abar_t) x0 + sqrt(1 - abar_t) noise``.

        ``x0``, ``noise``: ``(batch, ...)``; ``t``: ``(batch,)`` indices in ``0..T-1``.
        """
        abar = self.alphas_cumprod.to(x0.device)[t].to(x0.dtype)
        abar = abar.view(-1, *([1] * (x0.ndim - 1)))
        return abar.sqrt() * x0 + (1 - abar).sqrt() * noise

    def step(self, eps: torch.Tensor, t: int, x: torch.Tensor,
             generator: torch.Generator | None = None) -> torch.Tensor:
        """One reverse step from index ``t`` to ``previous_timestep(t)`` given the noise ``eps``."""
        raise NotImplementedError


SAMPLERS: Registry = Registry("sampler")  # name -> class, filled by ``register_sampler``
register_sampler = SAMPLERS.register


def randn_like(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Noise drawn on the generator's device (CPU by default), so a seed gives the same noise on
    CPU and CUDA."""
    device = generator.device if generator is not None else x.device
    return torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)
