"""Sequential backbones (phase 1): SASRec, GRU4Rec, TiSASRec, LRURec, by name (one file each,
registered with ``register_backbone``).

``build_backbone(name, num_items, cfg, max_len)`` makes one; ``save_backbone`` / ``load_backbone``
move a trained one through ``backbone.safetensors`` + manifest; ``padirec.backbones.train`` and
``padirec.backbones.stage`` train it.
"""

from padirec.backbones.base import Backbone
from padirec.backbones.checkpoint import backbone_sha256, load_backbone, save_backbone
from padirec.backbones.config import BackboneConfig
from padirec.backbones.registry import BACKBONES, build_backbone, register_backbone

__all__ = [
    "BACKBONES", "Backbone", "BackboneConfig", "backbone_sha256", "build_backbone",
    "load_backbone", "register_backbone", "save_backbone",
]
