"""Configuration of the parameter-diffusion generator (phase 3).

Defaults are sized so that a bank of ~100 tasks x 5 checkpoints trains in a few minutes on two CPU
cores and generated adapters land close to the bank's rows for unseen task weights.
"""

from __future__ import annotations

from dataclasses import dataclass

from padirec.core.typed_config import POSITIVE, setting
from padirec.diffusion.denoiser import LOSS_WEIGHTINGS, PREDICTIONS
from padirec.diffusion.dit import CONDITIONINGS, DIT_SIZES
from padirec.diffusion.schedulers import SAMPLERS
from padirec.diffusion.tokenizer import NORMALIZATION_MODES

TARGETS = ("checkpoints", "task_mean")  # generator.targets


@dataclass
class GeneratorConfig:
    # the denoiser
    size: str = setting("tiny", choices=DIT_SIZES)  # tiny | small | base
    # pre | pre_post | per_layer | cross_attn | adaln_zero; chosen in docs/evaluation.md, "Measured: a
    # generator that listens to w" (benchmarks/generator_fit.py, benchmarks/band.py)
    conditioning: str = setting("cross_attn", choices=CONDITIONINGS)
    # preprocessing: z-score per layout tensor ("tensor") or per coordinate ("element")
    normalization: str = setting("element", choices=NORMALIZATION_MODES)
    # what the generator learns from each bank task: every stored checkpoint ("checkpoints", the
    # paper) or their mean ("task_mean", one row per task); chosen in docs/evaluation.md,
    # "Measured: the band protocol" (benchmarks/band.py)
    targets: str = setting("task_mean", choices=TARGETS)
    token_size: int = setting(64, range=POSITIVE)
    # what the DiT outputs: the noise ("eps", the paper) or the clean tokens ("x0"); the loss is
    # MSE on the noise, weighted "uniform" (paper Eq. 8), "min_snr", "truncated_snr" or "x0" (the
    # x0-MSE itself; padirec.diffusion.denoiser); prediction chosen in docs/evaluation.md, "Selection
    # on validation", the weighting in "Measured: a generator that listens to w"
    prediction: str = setting("x0", choices=PREDICTIONS)
    loss_weighting: str = setting("x0", choices=LOSS_WEIGHTINGS)
    # the share of each training batch drawn at the timesteps the sampler visits (the rest uniform
    # over all T): a one-step sampler serves the DiT's estimate at t = T alone; chosen with the
    # weighting ("Measured: a generator that listens to w")
    served_fraction: float = setting(0.5, range="[0, 1]")
    # the forward process (linear beta schedule, paper Eq. 8): T, the number of noise levels
    num_train_timesteps: int = setting(500, range="[2, inf)")
    beta_start: float = setting(1e-4, range="(0, 1)")
    beta_end: float = setting(2e-2, range="(0, 1)")
    # classifier-free guidance (paper Alg. 1/2)
    p_uncond: float = setting(0.1, range="[0, 1)")
    guidance_scale: float = setting(0.0, range="[0, inf)")  # gamma in [0, 1]; 0 = the conditional branch alone ("Measured: a generator that listens to w")
    # sampling: ddpm | ddim | dpm_solver++ (DPM-Solver++(2M); the same as ddim below 3 steps);
    # chosen with the two below in docs/evaluation.md, "Selection on validation" (benchmarks/bench_generation.py)
    sampler: str = setting("ddim", choices=SAMPLERS)
    samples_per_task: int = setting(8, range=POSITIVE)  # adapters for a task = the mean of this many samples (one batched pass)
    num_inference_steps: int = setting(1, range=POSITIVE)  # sampler steps (DDPM runs all num_train_timesteps unless told otherwise)
    # a task's samples start from antithetic noise pairs (z, -z), which cancels the noise's linear
    # effect on their mean; measured in docs/evaluation.md, "Selection on validation"
    antithetic: bool = False
    # optimisation (AdamW, linear warm-up then cosine decay, EMA of weights for sampling)
    train_steps: int = setting(2000, range=POSITIVE)  # optimiser steps (diffusion models train by steps, not epochs)
    batch_size: int = setting(64, range=POSITIVE)
    lr: float = setting(3e-3, range="(0, inf)")
    warmup_steps: int = setting(100, range="[0, inf)")
    weight_decay: float = setting(0.0, range="[0, inf)")
    grad_clip: float = setting(1.0, range="(0, inf)")
    ema_decay: float = setting(0.995, range="[0, 1)")
    log_every: int = setting(100, range=POSITIVE)  # loss to the tracker (and one progress line) every this many steps


# Names of earlier versions, so generators saved before the renaming still load.
RENAMED = {"timesteps": "num_train_timesteps", "sampling_steps": "num_inference_steps", "steps": "train_steps"}
