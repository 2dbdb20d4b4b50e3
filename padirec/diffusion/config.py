"""Configuration of the parameter-diffusion generator (phase 3).

Defaults are sized so that a bank of ~100 tasks x 5 checkpoints trains in a few minutes on two CPU
cores and generated adapters land close to the bank's rows for unseen task weights.
"""

from __future__ import annotations

from dataclasses import dataclass

TARGETS = ("checkpoints", "task_mean")  # generator.targets


@dataclass
class GeneratorConfig:
    # the denoiser
    size: str = "tiny"  # a key of padirec.diffusion.dit.DIT_SIZES: tiny | small | base
    # pre | pre_post | per_layer | cross_attn | adaln_zero; chosen in docs/evaluation.md, "Measured: a
    # generator that listens to w" (benchmarks/generator_fit.py, benchmarks/band.py)
    conditioning: str = "cross_attn"
    # preprocessing: z-score per layout tensor ("tensor") or per coordinate ("element")
    normalization: str = "element"
    # what the generator learns from each bank task: every stored checkpoint ("checkpoints", the
    # paper) or their mean ("task_mean", one row per task); chosen in docs/evaluation.md,
    # "Measured: the band protocol" (benchmarks/band.py)
    targets: str = "task_mean"
    token_size: int = 64
    # what the DiT outputs: the noise ("eps", the paper) or the clean tokens ("x0"); the loss is
    # MSE on the noise, weighted "uniform" (paper Eq. 8), "min_snr", "truncated_snr" or "x0" (the
    # x0-MSE itself; padirec.diffusion.denoiser); prediction chosen in docs/evaluation.md, "Selection
    # on validation", the weighting in "Measured: a generator that listens to w"
    prediction: str = "x0"
    loss_weighting: str = "x0"
    # the share of each training batch drawn at the timesteps the sampler visits (the rest uniform
    # over all T): a one-step sampler serves the DiT's estimate at t = T alone; chosen with the
    # weighting ("Measured: a generator that listens to w")
    served_fraction: float = 0.5
    # the forward process (linear beta schedule, paper Eq. 8): T, the number of noise levels
    num_train_timesteps: int = 500
    beta_start: float = 1e-4
    beta_end: float = 2e-2
    # classifier-free guidance (paper Alg. 1/2)
    p_uncond: float = 0.1
    guidance_scale: float = 0.0  # gamma in [0, 1]; 0 = the conditional branch alone ("Measured: a generator that listens to w")
    # sampling: ddpm | ddim | dpm_solver++ (DPM-Solver++(2M); the same as ddim below 3 steps);
    # chosen with the two below in docs/evaluation.md, "Selection on validation" (benchmarks/bench_generation.py)
    sampler: str = "ddim"
    samples_per_task: int = 8  # adapters for a task = the mean of this many samples (one batched pass)
    num_inference_steps: int = 1  # sampler steps (DDPM runs all num_train_timesteps unless told otherwise)
    # a task's samples start from antithetic noise pairs (z, -z), which cancels the noise's linear
    # effect on their mean; measured in docs/evaluation.md, "Selection on validation"
    antithetic: bool = False
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
