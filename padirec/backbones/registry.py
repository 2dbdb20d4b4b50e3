"""Every backbone by name, and building one.

``BACKBONES`` (``padirec.backbones.base``) is filled by importing every module of this package:
each backbone registers itself with ``@register_backbone``, so a new one is one new file (or a
plugin file, named in the config's ``plugins``).
"""

from __future__ import annotations

from padirec.backbones.base import BACKBONES, Backbone, register_backbone
from padirec.backbones.config import BackboneConfig
from padirec.core.plugins import import_package
from padirec.errors import ConfigError

# the modules of this package that define no backbone (they import this one, or need none)
_NOT_BACKBONES = {"base", "checkpoint", "config", "ddp_worker", "distributed", "registry", "stage", "train", "trainjob"}
import_package("padirec.backbones", skip=_NOT_BACKBONES)
# the paper's order (SASRec, GRU4Rec, TiSASRec, LRURec): lists, tables and plots follow it
BACKBONES.update({n: BACKBONES.pop(n) for n in sorted(BACKBONES, key=lambda n: BACKBONES[n].paper_order or 99)})

__all__ = ["BACKBONES", "Backbone", "build_backbone", "register_backbone"]


def build_backbone(name: str, num_items: int, cfg: BackboneConfig, max_len: int) -> Backbone:
    """A freshly initialised backbone ``name`` for items ``1..num_items`` (0 = padding)."""
    if name not in BACKBONES:
        raise ConfigError(f"unknown backbone {name!r}; valid names: {', '.join(sorted(BACKBONES))} "
                          "(a plugin's backbone: name its file in the config's plugins or in PADIREC_PLUGINS)")
    if num_items < 1:
        raise ConfigError(f"num_items must be positive, got {num_items}")
    if max_len < 1:
        raise ConfigError(f"max_len must be positive, got {max_len}")
    return BACKBONES[name](num_items, cfg, max_len)
