"""Classifier-free guidance and the reverse-diffusion loop (paper Alg. 2), sampler-agnostic.

Guidance lives here and only here: ``eps~ = (1 + gamma) eps(x, w, t) - gamma eps(x, null, t)``,
computed with one batched forward over ``[cond; uncond]`` (one network call per step).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from padirec.diffusion.schedulers import Scheduler
from padirec.diffusion.schedulers.base import randn_like


def guided_noise(model: nn.Module, x: torch.Tensor, t: torch.Tensor, w: torch.Tensor,
                 guidance_scale: float, pair: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Guided noise prediction ``(batch, T, token_size)``.

    ``x (batch, T, token_size)``, ``t (batch,)`` indices, ``w (batch, p)``. With
    ``guidance_scale == 0`` the unconditional branch has no weight and is skipped. ``pair``: the
    doubled ``(w, drop)`` of ``guidance_pair(w)``, when the caller built it once for many steps.
    """
    if guidance_scale == 0:
        return model(x, t, w)
    n = x.shape[0]
    w2, drop = pair if pair is not None else guidance_pair(w)
    eps = model(torch.cat([x, x]), torch.cat([t, t]), w2, drop)
    eps_cond, eps_uncond = eps[:n], eps[n:]
    return (1 + guidance_scale) * eps_cond - guidance_scale * eps_uncond


def guidance_pair(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``([w; w], drop)`` for one batched forward over the conditional and unconditional branches:
    ``drop`` is False for the first half, True (the null condition) for the second."""
    n = w.shape[0]
    drop = torch.zeros(2 * n, dtype=torch.bool, device=w.device)
    drop[n:] = True
    return torch.cat([w, w]), drop


@torch.inference_mode()
def sample_tokens(model: nn.Module, scheduler: Scheduler, w: torch.Tensor, num_tokens: int,
                  token_size: int, guidance_scale: float, num_inference_steps: int | None = None,
                  generator: torch.Generator | None = None, noise: torch.Tensor | None = None) -> torch.Tensor:
    """Denoise Gaussian noise into normalised tokens ``(batch, T, token_size)`` for ``w (batch, p)``.

    ``num_inference_steps``: number of sampler steps (``None`` = all training timesteps).
    ``noise``: the starting noise ``(batch, T, token_size)`` (default: drawn from ``generator``). The
    loop runs on a shallow copy of ``scheduler``, so concurrent calls sharing one scheduler never
    see each other's timesteps or multistep state.
    """
    scheduler = copy.copy(scheduler)
    scheduler.set_timesteps(num_inference_steps)
    shape = (w.shape[0], num_tokens, token_size)
    if noise is not None and tuple(noise.shape) != shape:
        raise ValueError(f"noise must be {shape}, got {tuple(noise.shape)}")
    x = randn_like(w.new_empty(shape), generator) if noise is None else noise.to(w.device, w.dtype)
    pair = guidance_pair(w) if guidance_scale != 0 else None
    t_all = scheduler.timesteps.to(w.device)
    for i, t in enumerate(scheduler.timesteps.tolist()):
        t_batch = t_all[i].expand(w.shape[0])
        eps = guided_noise(model, x, t_batch, w, guidance_scale, pair)
        x = scheduler.step(eps, t, x, generator)
    return x
