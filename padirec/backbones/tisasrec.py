"""TiSASRec (Li, Wang & McAuley, 2020): self-attention aware of time intervals.

Attention logits and values add learned embeddings of the absolute position and of the
clipped relative time interval between the two items:
``e_ij = q_i . (k_j + P^K_j + R^K_ij) / sqrt(d)``, ``z_i = sum_j a_ij (v_j + P^V_j + R^V_ij)``.
Intervals are personalised as in the paper: ``|t_i - t_j|`` divided by the smallest non-zero
gap of the sequence, floored, clipped at ``max_time_interval``. The scale is computed from the
input window itself (not the user's whole history), so the model is a function of its input
and serving needs nothing else.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from padirec.backbones.base import Backbone, init_embeddings, register_backbone
from padirec.backbones.config import BackboneConfig
from padirec.backbones.sasrec import FeedForward, attention_mask
from padirec.core.dropout import FastDropout
from padirec.core.typed_config import POSITIVE, setting


def interval_matrix(seqs: torch.Tensor, times: torch.Tensor, max_interval: int) -> torch.Tensor:
    """Relative interval buckets ``(batch, L, L)`` in ``0..max_interval`` (0 for padding)."""
    valid = seqs != 0
    t = times.to(torch.float64)
    gaps = (t[:, 1:] - t[:, :-1]).abs()
    gaps = gaps.masked_fill(~(valid[:, 1:] & valid[:, :-1]) | (gaps == 0), math.inf)
    scale = gaps.min(dim=1).values
    scale = torch.where(torch.isfinite(scale), scale, torch.ones_like(scale))  # no gap: unit scale
    rel = torch.floor((t[:, :, None] - t[:, None, :]).abs() / scale[:, None, None])
    rel = rel.clamp(max=max_interval).long()
    pair = valid[:, :, None] & valid[:, None, :]
    return rel * pair


class TimeAwareBlock(nn.Module):
    """One TiSASRec block on ``(batch, L, dim)`` with position and interval embeddings."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {heads}")
        self.heads = heads
        self.norm_q = nn.LayerNorm(dim, eps=1e-8)
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.attn_dropout = FastDropout(dropout)
        self.norm_ff = nn.LayerNorm(dim, eps=1e-8)
        self.ff = FeedForward(dim, dropout)

    def forward(self, x, pos_k, pos_v, rel_k, rel_v, mask):
        """``x, pos_* (batch, L, dim)``, ``rel_* (batch, L, L, dim)``, ``mask (batch, 1, L, L)``."""
        b, length, d = x.shape
        h, dh = self.heads, d // self.heads
        q_in = self.norm_q(x)

        def split(t: torch.Tensor) -> torch.Tensor:  # (b, L, d) -> (b, h, L, dh)
            return t.view(b, length, h, dh).transpose(1, 2)

        q = split(self.q(q_in))
        k = split(self.k(x) + pos_k)
        v = split(self.v(x) + pos_v)
        rk = rel_k.view(b, length, length, h, dh)
        rv = rel_v.view(b, length, length, h, dh)
        logits = q @ k.transpose(-1, -2) + torch.einsum("bhid,bijhd->bhij", q, rk)
        logits = (logits / math.sqrt(dh)).masked_fill(~mask, -math.inf)
        a = self.attn_dropout(torch.softmax(logits, dim=-1))
        z = a @ v + torch.einsum("bhij,bijhd->bhid", a, rv)
        x = q_in + z.transpose(1, 2).reshape(b, length, d)
        x = self.norm_ff(x)
        return x + self.ff(x)


@dataclass
class TiSASRecConfig:
    max_time_interval: int = setting(256, range=POSITIVE)  # relative intervals are clipped at this many units


@register_backbone
class TiSASRec(Backbone):
    name = "tisasrec"
    label = "TiSASRec"
    paper_order = 3
    config_class = TiSASRecConfig

    def __init__(self, num_items: int, cfg: BackboneConfig, max_len: int) -> None:
        super().__init__(num_items, cfg.dim)
        self.cfg, self.max_len = cfg, max_len
        self.max_time_interval = cfg.settings_for(self.name).max_time_interval
        dim = cfg.dim
        self.pos_k, self.pos_v = nn.Embedding(max_len, dim), nn.Embedding(max_len, dim)
        self.rel_k = nn.Embedding(self.max_time_interval + 1, dim)
        self.rel_v = nn.Embedding(self.max_time_interval + 1, dim)
        self.dropout = FastDropout(cfg.dropout)
        self.blocks = nn.ModuleList(
            TimeAwareBlock(dim, cfg.num_heads, cfg.dropout) for _ in range(cfg.num_layers)
        )
        self.norm = nn.LayerNorm(dim, eps=1e-8)
        init_embeddings(self.item_embedding, self.pos_k, self.pos_v, self.rel_k, self.rel_v)

    def encode(self, seqs: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
        """``seqs, times (batch, L)`` left-padded -> hidden states ``(batch, L, dim)``."""
        length = seqs.shape[1]
        keep = (seqs != 0).unsqueeze(-1)
        x = self.dropout(self.item_embedding(seqs) * self.dim**0.5) * keep
        positions = slice(self.max_len - length, self.max_len)
        pos_k = self.dropout(self.pos_k.weight[positions]).expand_as(x)
        pos_v = self.dropout(self.pos_v.weight[positions]).expand_as(x)
        rel = interval_matrix(seqs, times, self.max_time_interval)
        rel_k, rel_v = self.dropout(self.rel_k(rel)), self.dropout(self.rel_v(rel))
        mask = attention_mask(seqs)
        for block in self.blocks:
            x = block(x, pos_k, pos_v, rel_k, rel_v, mask) * keep
        return self.norm(x)
