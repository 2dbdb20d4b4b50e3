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
    conditioning: str = "adaln_zero"  # pre | pre_post | per_layer | cross_attn | adaln_zero
    # preprocessing: z-score per layout tensor ("tensor", SPEC 5) or per coordinate ("element")
    normalization: str = "element"
    # what the generator learns from each bank task: every stored checkpoint ("checkpoints", the
    # paper: p(theta | w) over a converged adapter's last epochs) or their mean ("task_mean": one
    # row per task; the served adapter is already a mean of samples, and the checkpoints' mean is a
    # better adapter than any one checkpoint). Chosen on the validation split (benchmarks/band.py,
    # ML-100K/SASRec, seeds 0-2): PaDiRec's regret against Retrain on the band protocol +0.0155 ->
    # -0.0018, on the grid protocol +0.0376 -> +0.0335 (docs/evaluation.md).
    targets: str = "task_mean"
    token_size: int = 64
    # what the DiT outputs: the noise ("eps", the paper) or the clean tokens ("x0"); the loss is
    # MSE on the noise either way, weighted "uniform" (paper Eq. 8), "min_snr" or "truncated_snr"
    # (padirec.diffusion.denoiser). On synthetic banks eps/uniform did not learn the map from w
    # within a CPU budget (samples worse than the bank mean); x0/min_snr did.
    prediction: str = "x0"
    loss_weighting: str = "min_snr"
    # the share of each training batch drawn at the timesteps the sampler visits (the rest uniform
    # over all T): a one-step sampler serves the DiT's estimate at t = T alone, where a uniform draw
    # with min-SNR weighting hardly trains it
    served_fraction: float = 0.0
    # the forward process (linear beta schedule, paper Eq. 8): T, the number of noise levels
    num_train_timesteps: int = 500
    beta_start: float = 1e-4
    beta_end: float = 2e-2
    # classifier-free guidance (paper Alg. 1/2)
    p_uncond: float = 0.1
    guidance_scale: float = 0.5  # gamma in [0, 1]
    # sampling: ddpm | ddim | dpm_solver++ (DPM-Solver++(2M); the same as ddim below 3 steps).
    # Chosen on the validation split by benchmarks/bench_generation.py (ML-100K/SASRec, 3 seeds): the
    # served adapter is a mean of samples, and one DDIM step (the DiT's own estimate of the clean
    # adapter from pure noise) averaged over 8 noise draws kept r-a within 0.01 of 25 steps x 8
    # samples (-0.009), raised r-d (+0.021) and reward (+0.014), in 1/19 of the time (3.1 vs 59.5 ms
    # on one CPU thread); more steps with few samples were worse (each sample lands on one
    # checkpoint's mode), and DPM-Solver++ at 3 steps x 8 matched r-a (-0.001) in 7.8 ms.
    sampler: str = "ddim"
    samples_per_task: int = 8  # adapters for a task = the mean of this many samples (one batched pass)
    num_inference_steps: int = 1  # sampler steps (DDPM runs all num_train_timesteps unless told otherwise)
    # a task's samples start from antithetic noise pairs (z, -z), which cancels the noise's linear
    # effect on their mean: it helped with 2 samples, made no difference with 8 (bench_generation.py)
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
