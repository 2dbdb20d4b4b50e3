"""Samplers behind one interface (``set_timesteps``, ``add_noise``, ``step``), by name.

``SAMPLERS`` is filled by importing every module of this package (each sampler registers itself
with ``@register_sampler``): a new sampler is one new file, or a plugin file.
"""

from __future__ import annotations

from padirec.core.plugins import import_package
from padirec.diffusion.schedulers.base import SAMPLERS, Scheduler, linear_betas, register_sampler
from padirec.errors import ConfigError

_NOT_SAMPLERS = {"base"}  # the modules of this package that define no sampler
import_package("padirec.diffusion.schedulers", skip=_NOT_SAMPLERS)

from padirec.diffusion.schedulers.ddim import DDIMScheduler  # noqa: E402 - registered above, named for imports
from padirec.diffusion.schedulers.ddpm import DDPMScheduler  # noqa: E402
from padirec.diffusion.schedulers.dpm_solver import DPMSolverMultistepScheduler  # noqa: E402


def make_scheduler(name: str, num_train_timesteps: int, beta_start: float,
                   beta_end: float) -> Scheduler:
    if name not in SAMPLERS:
        raise ConfigError(f"generator.sampler: {name!r} is not one of {', '.join(SAMPLERS)}")
    return SAMPLERS[name](num_train_timesteps, beta_start, beta_end)


__all__ = ["SAMPLERS", "DDIMScheduler", "DDPMScheduler", "DPMSolverMultistepScheduler", "Scheduler",
           "linear_betas", "make_scheduler", "register_sampler"]
