"""Configuration of the parameter-diffusion generator (phase 3).

Defaults are sized so that a bank of ~100 tasks x 5 checkpoints trains in a few minutes on two CPU
cores and generated adapters land close to the bank's rows for unseen task weights.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class GeneratorConfig:
    # the denoiser
    size: str = "tiny"  # a key of padirec.diffusion.dit.DIT_SIZES: tiny | small | base
    conditioning: str = "adaln_zero"  # pre | pre_post | per_layer | cross_attn | adaln_zero
    # preprocessing: z-score per layout tensor ("tensor", SPEC 5) or per coordinate ("element")
    normalization: str = "element"
    token_size: int = 64
    # what the DiT outputs: the noise ("eps", the paper) or the clean tokens ("x0"); the loss is
    # MSE on the noise either way, weighted "uniform" (paper Eq. 8), "min_snr" or "truncated_snr"
    # (padirec.diffusion.denoiser). On synthetic banks eps/uniform did not learn the map from w
    # within a CPU budget (samples worse than the bank mean); x0/min_snr did.
    prediction: str = "x0"
    loss_weighting: str = "min_snr"
    # the forward process (linear beta schedule, paper Eq. 8): T, the number of noise levels
    num_train_timesteps: int = 500
    beta_start: float = 1e-4
    beta_end: float = 2e-2
    # classifier-free guidance (paper Alg. 1/2)
    p_uncond: float = 0.1
    guidance_scale: float = 0.5  # gamma in [0, 1]
    # sampling
    sampler: str = "ddim"  # ddpm | ddim
    samples_per_task: int = 8  # adapters for a task = the mean of this many samples (one batched pass)
    num_inference_steps: int = 25  # DDIM steps (DDPM runs all num_train_timesteps unless told otherwise)
    # optimisation (AdamW, linear warm-up then cosine decay, EMA of weights for sampling)
    train_steps: int = 2000  # optimiser steps (diffusion models train by steps, not epochs)
    batch_size: int = 64
    lr: float = 3e-3
    warmup_steps: int = 100
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.995
    log_every: int = 100  # loss to the tracker (and one progress line) every this many steps


# Names of earlier versions, so generators saved before the renaming still load.
RENAMED = {"timesteps": "num_train_timesteps", "sampling_steps": "num_inference_steps", "steps": "train_steps"}
