"""Training of the parameter generator (paper Alg. 1): a DiT learns ``p(theta | w)`` from adapter rows.

``train_generator`` returns a ``Generator`` (``padirec.diffusion.generator``) holding the EMA
weights; the ``train_generator`` pipeline step around it is ``padirec.diffusion.stage``.
"""

from __future__ import annotations

import copy
import math
import time

import torch

from padirec.core.layout import Layout, num_params
from padirec.core.tasks import validate_weights
from padirec.core.tracker import NullTracker, Tracker
from padirec.diffusion.config import GeneratorConfig
from padirec.diffusion.denoiser import Denoiser, loss_weights
from padirec.diffusion.dit import build_dit
from padirec.diffusion.generator import Generator
from padirec.diffusion.schedulers import make_scheduler
from padirec.diffusion.tokenizer import ParamNormalizer, ParamTokenizer
from padirec.errors import ArtifactError, ConfigError
from padirec.runtime.progress import Timer, log
from padirec.runtime.seeding import seed_everything

# The EMA's decay is min(ema_decay, (1 + step) / (EMA_WARMUP + step)): small at first (0.1 at step
# 0, 0.5 at step 8, 0.9 at step 80), so the average forgets the random initialisation quickly.
EMA_WARMUP = 10


def train_generator(params: torch.Tensor, weights: torch.Tensor, layout: Layout, cfg: GeneratorConfig,
                    seed: int = 0, device: torch.device | str = "cpu", tracker: Tracker | None = None,
                    held_out_mask: torch.Tensor | None = None,
                    utilities: list[str] | None = None) -> Generator:
    """Train the DiT on adapter rows ``params (N, P)`` with task weights ``weights (N, p)`` (Alg. 1).

    Rows where ``held_out_mask (N,)`` is True are not used. Each step: a batch of rows (with
    replacement), ``t ~ U{1..T}`` (a ``cfg.served_fraction`` of the batch at the sampler's own
    timesteps instead), ``theta_t = sqrt(abar) theta_0 + sqrt(1 - abar) eps``, MSE on
    ``eps``, condition replaced by the null embedding with probability ``p_uncond``; AdamW with
    warm-up and cosine decay; an EMA of the weights is what samples.
    """
    tracker = tracker or NullTracker()
    device = torch.device(device)
    params, w = _check_training_data(params, weights, layout, held_out_mask)
    if not 0 <= cfg.p_uncond < 1:
        raise ConfigError(f"generator.p_uncond must be in [0, 1), got {cfg.p_uncond}")
    if cfg.train_steps < 1 or cfg.batch_size < 1:
        raise ConfigError(f"generator.train_steps and batch_size must be >= 1, got {cfg.train_steps}, "
                          f"{cfg.batch_size}")
    seed_everything(seed)
    rng = torch.Generator().manual_seed(seed)  # all training randomness, drawn on CPU

    normalizer = ParamNormalizer.fit(params, layout, cfg.normalization)
    tokenizer = ParamTokenizer(layout, cfg.token_size)
    x0_all = tokenizer.encode(normalizer.normalize(params)).to(device)  # (N, T, token_size)
    w_all = w.to(device)
    scheduler = make_scheduler("ddpm", cfg.num_train_timesteps, cfg.beta_start, cfg.beta_end)
    served = served_timesteps(cfg) if cfg.served_fraction > 0 else None
    dit = build_dit(cfg.size, tokenizer.num_tokens, cfg.token_size, w.shape[1], cfg.conditioning)
    model = Denoiser(dit, scheduler.alphas_cumprod, cfg.prediction).to(device)
    loss_weights(scheduler.alphas_cumprod, torch.zeros(1, dtype=torch.long), cfg.loss_weighting)
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    lr_at = _warmup_cosine(cfg.train_steps, cfg.warmup_steps)
    lr_sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    log.info("generator: %d rows, %d tokens x %d, DiT-%s (%s, %.2fM params), %d steps",
             len(params), tokenizer.num_tokens, cfg.token_size, cfg.size, cfg.conditioning,
             sum(p.numel() for p in model.parameters()) / 1e6, cfg.train_steps)

    history: list[dict[str, float]] = []
    window: list[torch.Tensor] = []
    model.train()
    with Timer() as timer:
        for step in range(cfg.train_steps):
            b = cfg.batch_size
            idx = torch.randint(len(params), (b,), generator=rng)
            t = torch.randint(cfg.num_train_timesteps, (b,), generator=rng)
            if served is not None:  # part of the batch at the noise levels the sampler visits
                at_served = torch.rand(b, generator=rng) < cfg.served_fraction
                t = torch.where(at_served, served[torch.randint(len(served), (b,), generator=rng)], t)
            noise = torch.randn((b, *x0_all.shape[1:]), generator=rng)
            drop = torch.rand(b, generator=rng) < cfg.p_uncond
            idx, t, noise, drop = idx.to(device), t.to(device), noise.to(device), drop.to(device)
            x_t = scheduler.add_noise(x0_all[idx], noise, t)
            per_example = (model(x_t, t, w_all[idx], drop) - noise).pow(2).flatten(1).mean(1)
            loss = (loss_weights(model.alphas_cumprod, t, cfg.loss_weighting) * per_example).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            lr_sched.step()
            _ema_update(ema, model, min(cfg.ema_decay, (1 + step) / (EMA_WARMUP + step)))
            window.append(loss.detach())
            if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.train_steps:
                mean = float(torch.stack(window).mean())
                window.clear()
                history.append({"step": step + 1, "loss": mean})
                tracker.log_metrics({"generator_loss": mean, "generator_lr": lr_sched.get_last_lr()[0]},
                                    step=step + 1)
                log.info("generator step %d/%d loss %.4f (%.0fs)", step + 1, cfg.train_steps, mean,
                         time.perf_counter() - timer.start)
    stats = {"final_loss": history[-1]["loss"], "train_seconds": timer.seconds,
             "num_train_rows": len(params), "num_tokens": tokenizer.num_tokens}
    return Generator(ema, normalizer, cfg, utilities, device, stats, history)


def served_timesteps(cfg: GeneratorConfig) -> torch.Tensor:
    """The timestep indices ``(n,)`` the configured sampler visits (DDPM: every one)."""
    sampler = make_scheduler(cfg.sampler, cfg.num_train_timesteps, cfg.beta_start, cfg.beta_end)
    sampler.set_timesteps(cfg.num_inference_steps if cfg.sampler != "ddpm" else None)
    return sampler.timesteps.clone()


def _check_training_data(params: torch.Tensor, weights: torch.Tensor, layout: Layout,
                         held_out_mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    params = torch.as_tensor(params, dtype=torch.float32)
    w = torch.as_tensor(weights)
    if params.ndim != 2 or params.shape[1] != num_params(layout):
        raise ArtifactError(f"adapter params must be (N, {num_params(layout)}) for this layout, "
                            f"got {tuple(params.shape)}")
    if w.ndim != 2 or w.shape[0] != params.shape[0]:
        raise ArtifactError(f"task weights must be (N, p) with N = {params.shape[0]} rows, "
                            f"got {tuple(w.shape)}")
    w = torch.as_tensor(validate_weights(w, w.shape[1]), dtype=torch.float32)
    if not torch.isfinite(params).all():
        bad = (~torch.isfinite(params)).any(1).nonzero().flatten()[:5].tolist()
        raise ArtifactError(f"adapter params contain NaN/inf (rows {bad}...)")
    if held_out_mask is not None:
        keep = ~torch.as_tensor(held_out_mask, dtype=torch.bool)
        if keep.shape != (params.shape[0],):
            raise ArtifactError(f"held_out_mask must be (N,) = ({params.shape[0]},), "
                                f"got {tuple(keep.shape)}")
        params, w = params[keep], w[keep]
    if len(params) == 0:
        raise ArtifactError("no adapter rows left to train the generator on (all held out?)")
    return params, w


def _warmup_cosine(total: int, warmup: int):
    def lr_at(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return lr_at


@torch.no_grad()
def _ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    for e, p in zip(ema.parameters(), model.parameters(), strict=True):
        e.lerp_(p.detach(), 1 - decay)
