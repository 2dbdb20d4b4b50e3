"""GRU4Rec (Hidasi et al., 2016, in the sequential form of Tan et al.): embedding dropout, a
stacked GRU, a linear map back to the item space.

Sequences are left-padded, so the GRU reads the padding (zero embeddings) first and the last
position always holds the state after the most recent item.
"""

from __future__ import annotations

import torch
from torch import nn

from padirec.backbones.base import Backbone, init_embeddings, register_backbone
from padirec.backbones.config import BackboneConfig
from padirec.core.dropout import FastDropout


@register_backbone
class GRU4Rec(Backbone):
    name = "gru4rec"
    label = "GRU4Rec"
    paper_order = 2

    def __init__(self, num_items: int, cfg: BackboneConfig, max_len: int) -> None:
        super().__init__(num_items, cfg.dim)
        self.cfg, self.max_len = cfg, max_len
        self.dropout = FastDropout(cfg.dropout)
        self.gru = nn.GRU(cfg.dim, cfg.dim, num_layers=cfg.num_layers, batch_first=True,
                          dropout=cfg.dropout if cfg.num_layers > 1 else 0.0)
        self.dense = nn.Linear(cfg.dim, cfg.dim)
        init_embeddings(self.item_embedding)

    def encode(self, seqs: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
        """``seqs (batch, L)`` left-padded -> hidden states ``(batch, L, dim)``."""
        x = self.dropout(self.item_embedding(seqs))
        out, _ = self.gru(x)
        return self.dense(out)
