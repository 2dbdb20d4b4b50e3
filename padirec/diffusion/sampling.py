"""Classifier-free guidance and the reverse-diffusion loop (paper Alg. 2), sampler-agnostic.

Guidance lives here and only here: ``eps~ = (1 + gamma) eps(x, w, t) - gamma eps(x, null, t)``,
computed with one batched forward over ``[cond; uncond]`` (one network call per step).
"""

from __future__ import annotations

import torch
from torch import nn

from padirec.diffusion.schedulers import Scheduler
from padirec.diffusion.schedulers.base import randn_like


def guided_noise(model: nn.Module, x: torch.Tensor, t: torch.Tensor, w: torch.Tensor,
                 guidance_scale: float) -> torch.Tensor:
    """Guided noise prediction ``(batch, T, token_size)``.

    ``x (batch, T, token_size)``, ``t (batch,)`` indices, ``w (batch, p)``. With
    ``guidance_scale == 0`` the unconditional branch has no weight and is skipped.
    """
    if guidance_scale == 0:
        return model(x, t, w)
    n = x.shape[0]
    drop = torch.cat([torch.zeros(n, dtype=torch.bool, device=x.device),
                      torch.ones(n, dtype=torch.bool, device=x.device)])
    eps = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([w, w]), drop)
    eps_cond, eps_uncond = eps[:n], eps[n:]
    return (1 + guidance_scale) * eps_cond - guidance_scale * eps_uncond


@torch.inference_mode()
def sample_tokens(model: nn.Module, scheduler: Scheduler, w: torch.Tensor, num_tokens: int,
                  token_size: int, guidance_scale: float, num_inference_steps: int | None = None,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Denoise Gaussian noise into normalised tokens ``(batch, T, token_size)`` for ``w (batch, p)``.

    ``num_inference_steps``: number of sampler steps (``None`` = all training timesteps).
    """
    scheduler.set_timesteps(num_inference_steps)
    x = randn_like(w.new_empty(w.shape[0], num_tokens, token_size), generator)
    for t in scheduler.timesteps.tolist():
        t_batch = torch.full((w.shape[0],), t, dtype=torch.long, device=w.device)
        eps = guided_noise(model, x, t_batch, w, guidance_scale)
        x = scheduler.step(eps, t, x, generator)
    return x
