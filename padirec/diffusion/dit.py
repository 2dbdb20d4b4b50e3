"""The DiT denoiser ``eps(theta_t, w, t)`` over adapter-parameter tokens.

After facebookresearch/DiT ``models.py``: tokens ``(batch, T, token_size)`` -> linear token
embedding + learned positional embedding -> transformer blocks (self-attention over *tokens*,
batch first) -> final layer predicting the noise per token. The diffusion step ``t`` goes through a
sinusoidal embedding and an MLP; the task weights ``w (batch, p)`` through an MLP; a learned null
embedding replaces ``w``'s for the unconditional branch of classifier-free guidance.

Conditioning strategies (paper A.5, RQ3), ``c = emb(t) + emb(w)``:
- ``pre``:        ``c`` added to every token once, before the stack;
- ``pre_post``:   added before and again after the stack;
- ``per_layer``:  added before every block;
- ``cross_attn``: every block cross-attends from the tokens to the context ``[emb(t), emb(w)]``;
- ``adaln_zero``: adaptive layer norm, shift/scale/gate regressed from ``c``, gates zero-initialised
  so each block starts as the identity.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from padirec.errors import ConfigError

CONDITIONINGS = ("pre", "pre_post", "per_layer", "cross_attn", "adaln_zero")


@dataclass
class DiTConfig:
    num_tokens: int
    token_size: int
    num_conditions: int  # p, the number of utilities
    dim: int = 128
    depth: int = 4
    heads: int = 4
    mlp_ratio: float = 4.0
    conditioning: str = "adaln_zero"

    def to_dict(self) -> dict:
        return asdict(self)


#################################################################################
#                 Embedding Layers for Timesteps and Task Weights               #
#################################################################################


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of (possibly fractional) steps ``t (batch,)`` -> ``(batch, dim)``."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(emb, (0, dim % 2))


class TimestepEmbedder(nn.Module):
    def __init__(self, dim: int, freq_dim: int = 256) -> None:
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(timestep_embedding(t, self.freq_dim))


class TaskWeightEmbedder(nn.Module):
    """``w (batch, p)`` -> ``(batch, dim)``; rows with ``drop`` get the learned null embedding."""

    def __init__(self, num_conditions: int, dim: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(num_conditions, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.null = nn.Parameter(torch.randn(dim) * 0.02)

    def forward(self, w: torch.Tensor, drop: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.mlp(w)
        if drop is None:
            return emb
        return torch.where(drop[:, None], self.null.to(emb.dtype).expand_as(emb), emb)


#################################################################################
#                                 Core DiT Model                                #
#################################################################################


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale[:, None]) + shift[:, None]


class Attention(nn.Module):
    """Multi-head attention from ``x (batch, T, dim)`` to ``ctx (batch, S, dim)`` (self if None)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, ctx: torch.Tensor | None = None) -> torch.Tensor:
        b, n, d = x.shape
        ctx = x if ctx is None else ctx
        q = self.q(x).view(b, n, self.heads, -1).transpose(1, 2)
        k, v = self.kv(ctx).view(b, ctx.shape[1], 2, self.heads, -1).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)  # (batch, heads, T, dim/heads)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class DiTBlock(nn.Module):
    """Pre-norm transformer block; adaLN-Zero modulation when ``adaln``, cross-attention when
    ``cross``."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, adaln: bool, cross: bool) -> None:
        super().__init__()
        self.adaln = adaln
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=not adaln, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.cross = Attention(dim, heads) if cross else None
        self.norm_cross = nn.LayerNorm(dim, eps=1e-6) if cross else None
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=not adaln, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))
        if adaln:
            self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def forward(self, x: torch.Tensor, c: torch.Tensor, ctx: torch.Tensor | None) -> torch.Tensor:
        """``x (batch, T, dim)``, ``c (batch, dim)``, ``ctx (batch, S, dim)`` or None."""
        if self.adaln:
            sh1, sc1, g1, sh2, sc2, g2 = self.ada(c).chunk(6, dim=-1)
            x = x + g1[:, None] * self.attn(modulate(self.norm1(x), sh1, sc1))
            if self.cross is not None:
                x = x + self.cross(self.norm_cross(x), ctx)
            return x + g2[:, None] * self.mlp(modulate(self.norm2(x), sh2, sc2))
        x = x + self.attn(self.norm1(x))
        if self.cross is not None:
            x = x + self.cross(self.norm_cross(x), ctx)
        return x + self.mlp(self.norm2(x))


class FinalLayer(nn.Module):
    """LayerNorm (adaLN-modulated for ``adaln_zero``) then a zero-initialised linear to tokens."""

    def __init__(self, dim: int, token_size: int, adaln: bool) -> None:
        super().__init__()
        self.adaln = adaln
        self.norm = nn.LayerNorm(dim, elementwise_affine=not adaln, eps=1e-6)
        self.linear = nn.Linear(dim, token_size)
        if adaln:
            self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        if self.adaln:
            shift, scale = self.ada(c).chunk(2, dim=-1)
            x = modulate(x, shift, scale)
        return self.linear(x)


class DiT(nn.Module):
    """``forward(x (batch, T, token_size), t (batch,), w (batch, p), drop (batch,) bool)``
    -> predicted noise ``(batch, T, token_size)``."""

    def __init__(self, cfg: DiTConfig) -> None:
        super().__init__()
        if cfg.conditioning not in CONDITIONINGS:
            raise ConfigError(f"generator.conditioning: {cfg.conditioning!r} is not one of "
                              f"{', '.join(CONDITIONINGS)}")
        if cfg.dim % cfg.heads:
            raise ConfigError(f"DiT dim {cfg.dim} is not divisible by heads {cfg.heads}")
        self.cfg = cfg
        adaln = cfg.conditioning == "adaln_zero"
        cross = cfg.conditioning == "cross_attn"
        self.x_embed = nn.Linear(cfg.token_size, cfg.dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.num_tokens, cfg.dim))
        self.t_embed = TimestepEmbedder(cfg.dim)
        self.w_embed = TaskWeightEmbedder(cfg.num_conditions, cfg.dim)
        self.blocks = nn.ModuleList(
            DiTBlock(cfg.dim, cfg.heads, cfg.mlp_ratio, adaln, cross) for _ in range(cfg.depth))
        self.final = FinalLayer(cfg.dim, cfg.token_size, adaln)
        self._init_weights()

    def _init_weights(self) -> None:
        def basic(m: nn.Module) -> None:
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

        self.apply(basic)
        nn.init.normal_(self.pos_embed, std=0.02)
        # as DiT for the time MLP; w's MLP keeps the Xavier init: with inputs in [0, 1] a 0.02-std
        # init makes the condition ~1e-3 of the time signal and it is learned very slowly
        nn.init.normal_(self.t_embed.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embed.mlp[2].weight, std=0.02)
        # adaLN-Zero: every block starts as the identity, the output as zero noise
        for block in self.blocks:
            if block.adaln:
                nn.init.zeros_(block.ada[-1].weight)
                nn.init.zeros_(block.ada[-1].bias)
        if self.final.adaln:
            nn.init.zeros_(self.final.ada[-1].weight)
            nn.init.zeros_(self.final.ada[-1].bias)
        nn.init.zeros_(self.final.linear.weight)
        nn.init.zeros_(self.final.linear.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, w: torch.Tensor,
                drop: torch.Tensor | None = None) -> torch.Tensor:
        mode = self.cfg.conditioning
        h = self.x_embed(x) + self.pos_embed  # (batch, T, dim)
        t_emb = self.t_embed(t)  # (batch, dim)
        w_emb = self.w_embed(w, drop)  # (batch, dim)
        c = t_emb + w_emb
        ctx = torch.stack([t_emb, w_emb], dim=1) if mode == "cross_attn" else None  # (batch, 2, dim)
        if mode in ("pre", "pre_post"):
            h = h + c[:, None]
        for block in self.blocks:
            if mode == "per_layer":
                h = h + c[:, None]
            h = block(h, c, ctx)
        if mode == "pre_post":
            h = h + c[:, None]
        return self.final(h, c)


#################################################################################
#                                  DiT Configs                                  #
#################################################################################

# one line per size; all train on a CPU, "small" in minutes on a bank of ~500 rows
DIT_SIZES = {
    "tiny": dict(dim=64, depth=2, heads=4),
    "small": dict(dim=128, depth=4, heads=4),
    "base": dict(dim=256, depth=6, heads=8),
}


def build_dit(size: str, num_tokens: int, token_size: int, num_conditions: int,
              conditioning: str) -> DiT:
    """A DiT of a named size (``DIT_SIZES``) for ``num_tokens`` tokens of ``token_size``."""
    if size not in DIT_SIZES:
        raise ConfigError(f"generator.size: {size!r} is not one of {', '.join(DIT_SIZES)}")
    return DiT(DiTConfig(num_tokens=num_tokens, token_size=token_size, num_conditions=num_conditions,
                         conditioning=conditioning, **DIT_SIZES[size]))
