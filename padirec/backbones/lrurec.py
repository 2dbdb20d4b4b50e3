"""LRURec (Yue et al., 2024): linear recurrent units for sequential recommendation.

Each layer is an LRU (Orvieto et al., 2023), a diagonal complex linear recurrence
``x_t = lambda * x_{t-1} + gamma * (B u_t)``, ``y_t = Re(C x_t) + D * u_t`` with
``lambda = exp(-exp(nu) + i exp(theta))`` (stable by construction) and the normalisation
``gamma = sqrt(1 - |lambda|^2)``, followed by dropout, a residual layer norm and a position-wise
feed-forward block. At ``max_len`` 20 the recurrence is unrolled in closed form as a causal
``(L, L)`` kernel of powers ``lambda^{t-s}``, in real arithmetic (no complex autograd).
Left padding has zero embeddings and ``B`` has no bias, so padding adds nothing to the state.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from padirec.backbones.base import Backbone, init_embeddings, register_backbone
from padirec.backbones.config import BackboneConfig
from padirec.backbones.sasrec import FeedForward
from padirec.core.dropout import FastDropout


class LRU(nn.Module):
    """``(batch, L, dim) -> (batch, L, dim)``; state size = dim (complex)."""

    def __init__(self, dim: int, r_min: float = 0.0, r_max: float = 0.8, max_phase: float = 2 * math.pi) -> None:
        super().__init__()
        u1, u2 = torch.rand(dim), torch.rand(dim)
        nu = -0.5 * torch.log(u1 * (r_max**2 - r_min**2) + r_min**2)
        self.nu_log = nn.Parameter(torch.log(nu))
        self.theta_log = nn.Parameter(torch.log(max_phase * u2))
        modulus = torch.exp(-nu)
        self.gamma_log = nn.Parameter(torch.log(torch.sqrt(1 - modulus**2)))
        self.b_re = nn.Linear(dim, dim, bias=False)
        self.b_im = nn.Linear(dim, dim, bias=False)
        self.c_re = nn.Linear(dim, dim, bias=False)
        self.c_im = nn.Linear(dim, dim, bias=False)
        self.d = nn.Parameter(torch.randn(dim) / math.sqrt(dim))
        for lin in (self.b_re, self.b_im):
            nn.init.normal_(lin.weight, std=1 / math.sqrt(2 * dim))
        for lin in (self.c_re, self.c_im):
            nn.init.normal_(lin.weight, std=1 / math.sqrt(dim))

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        length = u.shape[1]
        steps = torch.arange(length, device=u.device, dtype=u.dtype)
        lag = steps[:, None] - steps[None, :]  # (L, L): t - s
        causal = (lag >= 0).to(u.dtype)
        lag = lag.clamp(min=0)[..., None]  # (L, L, 1)
        nu, theta = torch.exp(self.nu_log), torch.exp(self.theta_log)  # (dim,)
        magnitude = torch.exp(-nu * lag) * causal[..., None]  # |lambda|^{t-s}, (L, L, dim)
        k_cos, k_sin = magnitude * torch.cos(theta * lag), magnitude * torch.sin(theta * lag)
        gamma = torch.exp(self.gamma_log)
        v_re, v_im = self.b_re(u) * gamma, self.b_im(u) * gamma  # (batch, L, dim)
        # x_t = sum_s lambda^{t-s} v_s, complex product written out
        x_re = torch.einsum("tsd,bsd->btd", k_cos, v_re) - torch.einsum("tsd,bsd->btd", k_sin, v_im)
        x_im = torch.einsum("tsd,bsd->btd", k_sin, v_re) + torch.einsum("tsd,bsd->btd", k_cos, v_im)
        return self.c_re(x_re) - self.c_im(x_im) + self.d * u


class LRUBlock(nn.Module):
    def __init__(self, dim: int, dropout: float) -> None:
        super().__init__()
        self.lru = LRU(dim)
        self.dropout = FastDropout(dropout)
        self.norm = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, dropout, activation="gelu")
        self.norm_ff = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x + self.dropout(self.lru(x)))
        return self.norm_ff(x + self.ff(x))


@register_backbone
class LRURec(Backbone):
    name = "lrurec"
    label = "LRURec"
    paper_order = 4

    def __init__(self, num_items: int, cfg: BackboneConfig, max_len: int) -> None:
        super().__init__(num_items, cfg.dim)
        self.cfg, self.max_len = cfg, max_len
        self.norm_in = nn.LayerNorm(cfg.dim)
        self.dropout = FastDropout(cfg.dropout)
        self.blocks = nn.ModuleList(LRUBlock(cfg.dim, cfg.dropout) for _ in range(cfg.num_layers))
        init_embeddings(self.item_embedding)

    def encode(self, seqs: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
        """``seqs (batch, L)`` left-padded -> hidden states ``(batch, L, dim)``."""
        keep = (seqs != 0).unsqueeze(-1)
        x = self.dropout(self.norm_in(self.item_embedding(seqs))) * keep
        for block in self.blocks:
            x = block(x) * keep
        return x
