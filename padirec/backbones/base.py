"""The interface every backbone implements.

A backbone maps a left-padded history to a user representation ``h`` at the last position,
``(batch, dim)``; the score of item ``i`` is ``h . e_i`` with the shared item embedding
``item_embedding.weight`` of shape ``(num_items + 1, dim)`` (row 0 = padding). The adapter
(phase 2) transforms ``h`` before scoring, through the ``adapter`` hook.

A backbone is one file: a subclass with its ``name``, its own settings (``config_class``, a
dataclass: the config's ``backbone.models.<name>``) and the ``register_backbone`` decorator.
``padirec.backbones.registry`` imports every file of this package; a plugin file registers itself
the same way (``plugins`` in the config).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import nn

from padirec.core.plugins import NoSettings, Registry

# h (batch, dim) -> h' (batch, dim)
AdapterHook = Callable[[torch.Tensor], torch.Tensor]


class Backbone(nn.Module):
    """Base class. Subclasses implement ``encode``."""

    name: ClassVar[str] = "backbone"
    label: ClassVar[str] = ""  # the name in tables and plots (default: ``name``)
    paper_order: ClassVar[int] = 0  # its place among the paper's Table 1 backbones (1..4), 0 = not one
    config_class: ClassVar[type] = NoSettings  # its own settings: the config's ``backbone.models.<name>``
    cfg: Any  # the ``BackboneConfig`` it was built from (saved with its weights)
    max_len: int

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


BACKBONES: Registry = Registry("backbone")  # name -> class, filled by ``register_backbone``
register_backbone = BACKBONES.register


def init_embeddings(*embeddings: nn.Embedding) -> None:
    """Xavier-normal embeddings (as the original SASRec code), padding row zeroed: the default
    N(0, 1) makes initial dot-product scores of 64-dim vectors far too large for BCE."""
    for emb in embeddings:
        nn.init.xavier_normal_(emb.weight)
        if emb.padding_idx is not None:
            with torch.no_grad():
                emb.weight[emb.padding_idx].zero_()
