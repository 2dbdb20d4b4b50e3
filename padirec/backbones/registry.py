"""Backbones by name."""

from __future__ import annotations

from padirec.backbones.base import Backbone
from padirec.backbones.config import BackboneConfig
from padirec.backbones.gru4rec import GRU4Rec
from padirec.backbones.lrurec import LRURec
from padirec.backbones.sasrec import SASRec
from padirec.backbones.tisasrec import TiSASRec
from padirec.errors import ConfigError

BACKBONES: dict[str, type[Backbone]] = {
    cls.name: cls for cls in (SASRec, GRU4Rec, TiSASRec, LRURec)
}


def build_backbone(name: str, num_items: int, cfg: BackboneConfig, max_len: int) -> Backbone:
    """A freshly initialised backbone ``name`` for items ``1..num_items`` (0 = padding)."""
    if name not in BACKBONES:
        raise ConfigError(f"unknown backbone {name!r}; valid names: {', '.join(sorted(BACKBONES))}")
    if num_items < 1:
        raise ConfigError(f"num_items must be positive, got {num_items}")
    if max_len < 1:
        raise ConfigError(f"max_len must be positive, got {max_len}")
    return BACKBONES[name](num_items, cfg, max_len)
