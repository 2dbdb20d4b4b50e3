"""The interface every backbone implements.

A backbone maps a left-padded history to a user representation ``h`` at the last position,
``(batch, dim)``; the score of item ``i`` is ``h . e_i`` with the shared item embedding
``item_embedding.weight`` of shape ``(num_items + 1, dim)`` (row 0 = padding). The adapter
(phase 2) transforms ``h`` before scoring, through the ``adapter`` hook.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

# h (batch, dim) -> h' (batch, dim)
AdapterHook = Callable[[torch.Tensor], torch.Tensor]


class Backbone(nn.Module):
    """Base class. Subclasses implement ``encode``."""

    name: str = "backbone"

    def __init__(self, num_items: int, dim: int) -> None:
        super().__init__()
        self.num_items = num_items
        self.dim = dim
        self.item_embedding = nn.Embedding(num_items + 1, dim, padding_idx=0)
        self.adapter: AdapterHook | None = None

    def encode(self, seqs: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
        """Hidden states ``(batch, seq_len, dim)`` for item ids ``seqs`` and timestamps ``times``,
        both ``(batch, seq_len)`` and left-padded with 0."""
        raise NotImplementedError

    def represent(self, seqs: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
        """User representation at the last position, ``(batch, dim)``, before the adapter."""
        return self.encode(seqs, times)[:, -1, :]

    def user_representation(self, seqs: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
        """``represent`` followed by the adapter hook when one is attached, ``(batch, dim)``."""
        h = self.represent(seqs, times)
        return self.adapter(h) if self.adapter is not None else h

    def score_all(self, h: torch.Tensor) -> torch.Tensor:
        """Scores of every item ``(batch, num_items + 1)`` (column 0 is padding)."""
        return h @ self.item_embedding.weight.T

    def score_items(self, h: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Scores of given items: ``h (batch, dim)``, ``items (batch, n)`` -> ``(batch, n)``."""
        return (self.item_embedding(items) * h.unsqueeze(1)).sum(-1)


def init_embeddings(*embeddings: nn.Embedding) -> None:
    """Xavier-normal embeddings (as the original SASRec code), padding row zeroed: the default
    N(0, 1) makes initial dot-product scores of 64-dim vectors far too large for BCE."""
    for emb in embeddings:
        nn.init.xavier_normal_(emb.weight)
        if emb.padding_idx is not None:
            with torch.no_grad():
                emb.weight[emb.padding_idx].zero_()
