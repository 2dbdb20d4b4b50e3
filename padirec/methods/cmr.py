"""CMR (Chen et al. 2023, controllable re-ranking with policy hypernetworks), on the adapter.

A policy hypernetwork maps the task weights to the adapter: each adapter tensor (``W1``, ``b1``,
``W2``, ``b2``) is a linear map of ``w``, ``theta_t(w) = A_t w + c_t``. It trains once on the
same scalarised loss as Retrain (``sum_j w_j loss_j``, the utilities of
``padirec.adapters.objectives``) with fresh task weights drawn uniformly on the simplex for every
mini-batch (``tasks_per_batch`` draws share the batch's candidates, as the batched bank
training does). ``A = 0`` and ``c`` = the identity adapter at the start, as every adapter starts.
Budget: ``epochs`` passes over the training prefixes (0: the adapters' ``epochs``, one Retrain
run's budget), each capped at the adapters' ``steps_per_epoch``. Under the band protocol the draws
skip the band (``MethodContext.band``: of ``w_acc``, or the disc around the centroid), so its tasks
stay unseen.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import torch
from torch import nn

from padirec.adapters.adapter import apply_adapters, init_params
from padirec.adapters.config import AdapterConfig
from padirec.adapters.features import Features
from padirec.adapters.objectives import CandidateBatch, get_utilities, task_losses
from padirec.adapters.train import backbone_topk, candidate_lists, diversity_columns
from padirec.core.layout import Layout
from padirec.core.novelty import long_tail_items
from padirec.core.tasks import Band
from padirec.core.typed_config import setting
from padirec.methods.base import AdapterMethod, MethodContext, register

log = logging.getLogger("padirec")


def uniform_simplex(n: int, p: int, generator: torch.Generator) -> torch.Tensor:
    """``(n, p)`` draws uniform on the simplex (Dirichlet(1): normalised exponentials)."""
    e = -torch.log(torch.rand(n, p, generator=generator).clamp_min(1e-12))
    return e / e.sum(1, keepdim=True)


def draws_outside(n: int, p: int, generator: torch.Generator, band: Band | tuple[float, float] | None,
                  acc: int = 0) -> torch.Tensor:
    """``uniform_simplex`` draws outside the closed ``band`` (a ``(low, high)`` tuple: of ``w[:, acc]``,
    w_acc): rejected draws are redrawn (the band protocol's unseen tasks are never trained on)."""
    w = uniform_simplex(n, p, generator)
    if band is None:
        return w
    band = band if isinstance(band, Band) else Band(*band)
    for _ in range(1000):
        if band.coordinate == "w_acc":  # in float32, as the draws are
            inside = (w[:, acc] >= band.low) & (w[:, acc] <= band.high)
        else:
            inside = torch.as_tensor(band.contains(w.double().numpy(), [], 0.0))
        if not inside.any():
            return w
        w[inside] = uniform_simplex(int(inside.sum()), p, generator)
    raise ValueError(f"cmr: no task draw outside the band {list(band)} in 1000 rounds")


class PolicyHypernetwork(nn.Module):
    """``w (n, p) -> adapters (n, P)``, one linear map per adapter tensor, in layout order."""

    def __init__(self, p: int, layout: Layout, init: torch.Tensor) -> None:
        super().__init__()
        self.maps = nn.ModuleList()
        start = 0
        for t in layout:
            n = math.prod(t["shape"])
            lin = nn.Linear(p, n)
            nn.init.zeros_(lin.weight)
            with torch.no_grad():
                lin.bias.copy_(init[start:start + n])
            self.maps.append(lin)
            start += n

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return torch.cat([m(w) for m in self.maps], dim=-1)


@dataclass
class CMRConfig:
    epochs: int = setting(10, range="[1, inf)")  # passes over the training prefixes
    tasks_per_batch: int = setting(8, range="[1, inf)")  # task draws sharing each mini-batch


@register
class CMR(AdapterMethod):
    key = "cmr"
    learns_from_tasks = True
    config_class = CMRConfig

    def __init__(
        self, features: Features, utilities: list[str], layout: Layout, cfg: AdapterConfig,
        seed: int = 0, epochs: int = 0, tasks_per_batch: int = 8, band: tuple[float, float] | None = None,
    ) -> None:
        super().__init__(features, utilities, layout)
        if list(cfg.utilities) != list(utilities):
            raise ValueError(f"adapter config utilities {cfg.utilities} differ from {utilities}")
        self.cfg, self.seed = cfg, seed
        self.epochs = epochs or cfg.epochs
        self.tasks_per_batch = tasks_per_batch
        self.band = band
        self.model: PolicyHypernetwork | None = None

    @classmethod
    def build(cls, ctx: MethodContext, settings: CMRConfig) -> CMR:
        return cls(ctx.features, ctx.utilities, ctx.layout, ctx.adapters, ctx.seed, settings.epochs,
                   settings.tasks_per_batch, ctx.band)

    def fit(self) -> None:
        cfg, f = self.cfg, self.features
        utilities = get_utilities(self.utilities, cfg.utility_settings)
        gen = torch.Generator().manual_seed(self.seed)
        model = PolicyHypernetwork(len(utilities), self.layout, init_params(self.layout, gen)).to(self.device)
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        cols = diversity_columns(cfg)
        acc = self.utilities.index("accuracy") if "accuracy" in self.utilities else 0
        topk = backbone_topk(f, cfg.topk_candidates) if cfg.candidates == "topk" else None
        tail = long_tail_items(f).to(torch.float32) if "novelty" in self.utilities else None
        m = f.train_h.shape[0]
        steps = min(-(-m // cfg.batch_size), cfg.steps_per_epoch or m)
        start = time.perf_counter()
        for epoch in range(self.epochs):
            perm = torch.randperm(m, generator=gen).to(self.device)
            total = 0.0
            for step in range(steps):
                idx = perm[step * cfg.batch_size:(step + 1) * cfg.batch_size]
                users = f.train_user[idx]
                cands = candidate_lists(f, idx, cfg.num_negatives, gen, topk)  # (B, L)
                w = draws_outside(self.tasks_per_batch, len(utilities), gen, self.band,
                                  acc).to(self.device)  # (n, p)
                h = apply_adapters(f.train_h[idx], model(w), self.layout)  # (n, B, d)
                batch = CandidateBatch(
                    scores=torch.einsum("nbd,bld->nbl", h, f.item_embedding[cands]),
                    categories=f.item_categories[cands], num_train=1 + cfg.num_negatives,
                    groups=None if f.user_group is None else f.user_group[users],
                    diversity_columns=cols, alpha=cfg.alpha, temperature=cfg.temperature,
                    novel=None if tail is None else tail[cands],
                )
                loss = (w * task_losses(batch, utilities)).sum(1).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach())
            log.info("cmr: epoch %d/%d, mean scalarised loss %.4f (%.1fs)", epoch + 1, self.epochs,
                     total / steps, time.perf_counter() - start)
        self.model = model.eval().requires_grad_(False)

    @torch.no_grad()
    def prepare(self, weights) -> torch.Tensor:
        if self.model is None:
            self.fit()
        assert self.model is not None
        return self.model(self.task_weights(weights)[None])[0]
