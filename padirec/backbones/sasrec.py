"""SASRec (Kang & McAuley, 2018): causal self-attention over the item sequence.

Pre-norm blocks as in the original code (the query is layer-normed, keys/values are not),
learned absolute positions, final layer norm. Padding keys are masked (the original only
zeroes padded positions); a padded query attends to itself so no row is empty.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from padirec.backbones.base import Backbone, init_embeddings, register_backbone
from padirec.backbones.config import BackboneConfig
from padirec.core.dropout import FastDropout


def attention_mask(seqs: torch.Tensor) -> torch.Tensor:
    """Bool ``(batch, 1, L, L)``, True where query i may attend key j: causal, non-padding keys,
    and always the diagonal."""
    length = seqs.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=seqs.device).tril()
    keys = (seqs != 0)[:, None, None, :]
    eye = torch.eye(length, dtype=torch.bool, device=seqs.device)
    return (causal & keys) | eye


class FeedForward(nn.Module):
    """Position-wise two-layer MLP with dropout, ``(batch, L, dim) -> (batch, L, dim)``."""

    def __init__(self, dim: int, dropout: float, activation: str = "relu") -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, dim)
        self.fc2 = nn.Linear(dim, dim)
        self.dropout = FastDropout(dropout)
        self.act = nn.GELU() if activation == "gelu" else nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.fc2(self.dropout(self.act(self.fc1(x)))))


class SelfAttentionBlock(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {heads}")
        self.heads = heads
        self.norm_q = nn.LayerNorm(dim, eps=1e-8)
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)
        self.dropout = dropout
        self.norm_ff = nn.LayerNorm(dim, eps=1e-8)
        self.ff = FeedForward(dim, dropout)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, length, d = x.shape
        return x.view(b, length, self.heads, d // self.heads).transpose(1, 2)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        q_in = self.norm_q(x)
        q, k, v = self._split(self.q(q_in)), self._split(self.k(x)), self._split(self.v(x))
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                           dropout_p=self.dropout if self.training else 0.0)
        x = q_in + self.out(a.transpose(1, 2).reshape(x.shape))
        x = self.norm_ff(x)
        return x + self.ff(x)


@register_backbone
class SASRec(Backbone):
    name = "sasrec"
    label = "SASRec"
    paper_order = 1

    def __init__(self, num_items: int, cfg: BackboneConfig, max_len: int) -> None:
        super().__init__(num_items, cfg.dim)
        self.cfg, self.max_len = cfg, max_len
        self.position = nn.Embedding(max_len, cfg.dim)
        self.dropout = FastDropout(cfg.dropout)
        self.blocks = nn.ModuleList(
            SelfAttentionBlock(cfg.dim, cfg.num_heads, cfg.dropout) for _ in range(cfg.num_layers)
        )
        self.norm = nn.LayerNorm(cfg.dim, eps=1e-8)
        init_embeddings(self.item_embedding, self.position)

    def encode(self, seqs: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
        """``seqs (batch, L)`` left-padded -> hidden states ``(batch, L, dim)``."""
        length = seqs.shape[1]
        x = self.item_embedding(seqs) * self.dim**0.5
        x = x + self.position.weight[self.max_len - length:]  # left-aligned: last = last position
        keep = (seqs != 0).unsqueeze(-1)
        x = self.dropout(x) * keep
        mask = attention_mask(seqs)
        for block in self.blocks:
            x = block(x, mask) * keep
        return self.norm(x)
