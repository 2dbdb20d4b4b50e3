"""A tiny SASRec for fixtures, trained by the library's own backbone stage (not a loop of the
tests' own): 16 dimensions, one layer, a few epochs on the synthetic data."""

from __future__ import annotations

from pathlib import Path

from padirec.backbones.checkpoint import load_backbone
from padirec.backbones.config import BackboneConfig
from padirec.backbones.stage import train_backbone_stage

MAX_LEN = 10


def train_tiny_backbone(data_dir: Path, out_dir: Path, epochs: int = 8, seed: int = 0):
    """Trains into ``out_dir`` (a backbone artifact) and returns the model, in eval mode."""
    cfg = BackboneConfig(model="sasrec", dim=16, num_layers=1, dropout=0.0, lr=5e-3, batch_size=32,
                         epochs=epochs, patience=epochs, eval_batch_size=512)
    train_backbone_stage(data_dir, out_dir, cfg, MAX_LEN, seed, "cpu")
    return load_backbone(out_dir).eval()
