"""DeepPRL (Li & Tuzhilin 2024), the small faithful version of ``/work/shared/DEEPPRL_NOTES.md``.

A Mixture of HyperNetworks predicts each objective per (user, item), and items are ranked by
``sum_k w_k y_k`` (DeepPRL-static: the weights are the task's, not a learned policy's).

- Inputs: the user state ``s_u`` (the frozen backbone's representation), the context ``c_u``
  (which categories the user's last ``context_len`` items cover, multi-hot), and the item's
  features ``[e_i; y_i]`` (its backbone embedding and categories).
- One shared hypernetwork ``H(z_k)`` (3 fully connected layers, sigmoid) turns a learned
  embedding ``z_k`` of objective ``k`` into the weights of tower ``f_k``: one hidden layer of
  ``hidden`` units over ``[s_u; c_u; e_i; y_i]`` (first layer split into user and item parts, so
  full ranking costs ``O(U + I)`` matrix products, not ``O(U I)``).
- Mixture attention: ``e_ml = softmax_l(-||h_m - h_l||)`` (``paper_sign`` keeps the paper's
  ``+``), ``y_m = head_m(sum_l e_ml h_l)``.
- Objectives, both in [0, 1]: accuracy = is the item the next one (positive vs the sampled
  negatives; trained with BCE, it is relevance), diversity = category novelty, the fraction of
  the item's categories absent from the context (Yelp's Relevance/Novelty pair, the notes'
  closest match); trained with L1 as in the paper.
- With a fairness utility the task's fairness weight is dropped (fairness is a property of user
  groups, not of a (user, item) pair) and the other two are renormalised.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from padirec.adapters.config import AdapterConfig
from padirec.adapters.features import Features, training_prefixes
from padirec.adapters.train import candidate_lists
from padirec.data.dataset import PreparedData
from padirec.methods.base import Method, MethodContext, register

log = logging.getLogger("padirec")

_USER_CHUNK = 64


def history_context(data: PreparedData, max_len: int, context_len: int = 10) -> dict[str, torch.Tensor]:
    """Categories covered by the last ``context_len`` items: ``train (M, C)`` per training prefix
    (the order of ``Features.train_h``), ``valid``/``test (U, C)`` per held-out user; float 0/1."""
    cats = torch.as_tensor(data.item_categories, dtype=torch.float32)

    def cover(seqs: np.ndarray) -> torch.Tensor:
        last = torch.as_tensor(seqs[:, -context_len:])
        return cats[last].amax(1)  # padding row 0 has no category

    out = {"train": cover(training_prefixes(data, max_len)["seqs"])}
    for split in ("valid", "test"):
        out[split] = cover(data.eval_batch(split, max_len)["seqs"])
    return out


def novelty(context: torch.Tensor, item_cats: torch.Tensor) -> torch.Tensor:
    """Fraction of each item's categories outside the context: ``context (B, C)``,
    ``item_cats (B, L, C)`` or ``(N, C)`` (all items) -> ``(B, L)`` or ``(B, N)``; 0 without categories."""
    if item_cats.dim() == 2:
        new = (1 - context) @ item_cats.T
        total = item_cats.sum(-1)[None, :]
    else:
        new = ((1 - context[:, None, :]) * item_cats).sum(-1)
        total = item_cats.sum(-1)
    return torch.where(total > 0, new / total.clamp_min(1), torch.zeros_like(new))


class MixtureOfHypernetworks(nn.Module):
    """Per-objective logits ``(K, B, L)`` from user features ``(B, du)`` and item features."""

    def __init__(self, user_dim: int, item_dim: int, num_objectives: int = 2, hidden: int = 64,
                 z_dim: int = 16, paper_sign: bool = False) -> None:
        super().__init__()
        self.user_dim, self.item_dim, self.hidden = user_dim, item_dim, hidden
        self.paper_sign = paper_sign
        self.z = nn.Parameter(torch.randn(num_objectives, z_dim))
        tower = (user_dim + item_dim) * hidden + hidden
        self.hyper = nn.Sequential(
            nn.Linear(z_dim, 64), nn.Sigmoid(), nn.Linear(64, 64), nn.Sigmoid(), nn.Linear(64, tower),
        )
        nn.init.normal_(self.hyper[-1].weight, std=0.01)
        self.head_w = nn.Parameter(torch.randn(num_objectives, hidden) / hidden**0.5)
        self.head_b = nn.Parameter(torch.zeros(num_objectives))

    def towers(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Generated tower weights: user part ``(K, H, du)``, item part ``(K, H, di)``, bias ``(K, H)``."""
        flat = self.hyper(self.z)
        k, h = flat.shape[0], self.hidden
        w = flat[:, : -h].reshape(k, h, self.user_dim + self.item_dim)
        scale = (self.user_dim + self.item_dim) ** -0.5  # keep pre-activations O(1) at the start
        return w[..., : self.user_dim] * scale, w[..., self.user_dim:] * scale, flat[:, -h:]

    def mix(self, hk: torch.Tensor) -> torch.Tensor:
        """``hk (K, ..., H)`` tower outputs -> logits ``(K, ...)`` through the mixture attention."""
        dist = (hk[:, None] - hk[None, :]).norm(dim=-1)  # (K, K, ...)
        att = torch.softmax(dist if self.paper_sign else -dist, dim=1)
        mixed = torch.einsum("ml...,l...h->m...h", att, hk)
        shape = (-1,) + (1,) * (mixed.dim() - 2)
        return (mixed * self.head_w.reshape(*shape, self.hidden)).sum(-1) + self.head_b.reshape(shape)

    def forward(self, user: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """``user (B, du)``, ``items (B, L, di)`` -> logits ``(K, B, L)``."""
        wu, wi, b = self.towers()
        hu = torch.einsum("bd,khd->kbh", user, wu)
        hi = torch.einsum("bld,khd->kblh", items, wi)
        return self.mix(F.relu(hu[:, :, None] + hi + b[:, None, None]))

    def all_items(self, user: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Every item for every user: ``user (B, du)``, ``items (N, di)`` -> logits ``(K, B, N)``."""
        wu, wi, b = self.towers()
        hu = torch.einsum("bd,khd->kbh", user, wu)
        hi = torch.einsum("nd,khd->knh", items, wi)
        return self.mix(F.relu(hu[:, :, None] + hi[:, None] + b[:, None, None]))


@dataclass
class DeepPRLConfig:
    epochs: int = 3
    hidden: int = 64
    context: int = 10  # last items whose categories form the context
    lr: float = 1e-3
    diversity_loss: Literal["l1", "bce"] = "l1"  # l1 (the paper's) | bce (soft labels)
    ranges: ClassVar[dict[str, str]] = {"epochs": "[1, inf)", "hidden": "[1, inf)", "context": "[1, inf)",
                                        "lr": "(0, inf)"}


@register
class DeepPRL(Method):
    key = "deepprl"
    config_class = DeepPRLConfig

    def __init__(
        self, features: Features, utilities: list[str], context: dict[str, torch.Tensor], cfg: AdapterConfig,
        seed: int = 0, epochs: int = 3, hidden: int = 64, lr: float = 1e-3, paper_sign: bool = False,
        diversity_loss: str = "l1",
    ) -> None:
        super().__init__(features, utilities)
        for name in ("accuracy", "diversity"):
            if name not in utilities:
                raise ValueError(f"DeepPRL needs the {name!r} utility, got {utilities}")
        if context["train"].shape[0] != features.train_h.shape[0]:
            raise ValueError(f"context has {context['train'].shape[0]} training rows, features {features.train_h.shape[0]}")
        self.context = {k: v.to(self.device) for k, v in context.items()}
        self.cfg, self.seed, self.epochs, self.hidden, self.lr = cfg, seed, epochs, hidden, lr
        self.paper_sign = paper_sign
        if diversity_loss not in ("l1", "bce"):
            raise ValueError(f"DeepPRL diversity_loss must be 'l1' or 'bce', got {diversity_loss!r}")
        self.diversity_loss = diversity_loss
        cats = features.item_categories
        self.item_features = torch.cat([features.item_embedding, cats], dim=1)  # (N, d + C)
        self.model: MixtureOfHypernetworks | None = None

    @classmethod
    def build(cls, ctx: MethodContext, settings: DeepPRLConfig) -> DeepPRL:
        context = history_context(ctx.data, ctx.max_len, settings.context)
        return cls(ctx.features, ctx.utilities, context, ctx.adapters, ctx.seed, settings.epochs, settings.hidden,
                   settings.lr, diversity_loss=settings.diversity_loss)

    def _user(self, h: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        return torch.cat([h, ctx], dim=1)

    def fit(self) -> None:
        f, cfg = self.features, self.cfg
        gen = torch.Generator().manual_seed(self.seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            model = MixtureOfHypernetworks(
                f.dim + f.item_categories.shape[1], self.item_features.shape[1], 2, self.hidden,
                paper_sign=self.paper_sign,
            ).to(self.device)
        opt = torch.optim.Adam(model.parameters(), lr=self.lr)
        m = f.train_h.shape[0]
        steps = min(-(-m // cfg.batch_size), cfg.steps_per_epoch or m)
        start = time.perf_counter()
        for epoch in range(self.epochs):
            perm = torch.randperm(m, generator=gen).to(self.device)
            total = 0.0
            for step in range(steps):
                idx = perm[step * cfg.batch_size:(step + 1) * cfg.batch_size]
                ctx = self.context["train"][idx]
                cands = candidate_lists(f, idx, cfg.num_negatives, gen)  # (B, 1 + negatives)
                logits = model(self._user(f.train_h[idx], ctx), self.item_features[cands])  # (2, B, L)
                relevant = torch.zeros_like(logits[0])
                relevant[:, 0] = 1.0
                target = novelty(ctx, f.item_categories[cands])
                div = (torch.sigmoid(logits[1]) - target).abs().mean() if self.diversity_loss == "l1" \
                    else F.binary_cross_entropy_with_logits(logits[1], target)
                loss = F.binary_cross_entropy_with_logits(logits[0], relevant) + div
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach())
            log.info("deepprl: epoch %d/%d, loss %.4f (%.1fs)", epoch + 1, self.epochs, total / steps,
                     time.perf_counter() - start)
        self.model = model.eval().requires_grad_(False)

    def prepare(self, weights) -> torch.Tensor:
        """The combination weights ``(2,)`` (accuracy, diversity), renormalised."""
        w = self.task_weights(weights)
        pair = torch.stack([w[self.utilities.index("accuracy")], w[self.utilities.index("diversity")]])
        return pair / pair.sum() if float(pair.sum()) > 0 else torch.tensor([1.0, 0.0], device=self.device)

    @torch.no_grad()
    def predict(self, split: str) -> torch.Tensor:
        """Predicted objectives ``(2, U, num_items + 1)`` in [0, 1] (float64: no saturated ties)."""
        if self.model is None:
            self.fit()
        assert self.model is not None
        s = self.features.split(split)
        user = self._user(s.h, self.context[split])
        out = [self.model.all_items(user[i:i + _USER_CHUNK], self.item_features).double().sigmoid()
               for i in range(0, user.shape[0], _USER_CHUNK)]
        return torch.cat(out, dim=1)

    @torch.no_grad()
    def scores(self, prepared: torch.Tensor, split: str) -> torch.Tensor:
        if getattr(self, "_cache_split", None) != split:  # predictions do not depend on the task
            self._cache = self.predict(split)
            self._cache_split = split
        return torch.einsum("k,kun->un", prepared.double(), self._cache)
