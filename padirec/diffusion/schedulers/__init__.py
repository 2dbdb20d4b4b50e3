"""Samplers behind one interface (``set_timesteps``, ``add_noise``, ``step``); pick one by name."""

from __future__ import annotations

from padirec.diffusion.schedulers.base import Scheduler, linear_betas
from padirec.diffusion.schedulers.ddim import DDIMScheduler
from padirec.diffusion.schedulers.ddpm import DDPMScheduler
from padirec.diffusion.schedulers.dpm_solver import DPMSolverMultistepScheduler
from padirec.errors import ConfigError

SCHEDULERS: dict[str, type[Scheduler]] = {
    "ddpm": DDPMScheduler, "ddim": DDIMScheduler, "dpm_solver++": DPMSolverMultistepScheduler,
}


def make_scheduler(name: str, num_train_timesteps: int, beta_start: float,
                   beta_end: float) -> Scheduler:
    if name not in SCHEDULERS:
        raise ConfigError(f"generator.sampler: {name!r} is not one of {', '.join(SCHEDULERS)}")
    return SCHEDULERS[name](num_train_timesteps, beta_start, beta_end)


__all__ = ["SCHEDULERS", "DDIMScheduler", "DDPMScheduler", "DPMSolverMultistepScheduler", "Scheduler",
           "linear_betas", "make_scheduler"]
