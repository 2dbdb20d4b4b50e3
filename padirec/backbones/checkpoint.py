"""Save and load a trained backbone: ``backbone.safetensors`` + manifest kind ``backbone``.

The manifest ``config`` holds the model name, the ``BackboneConfig``, ``num_items`` and
``max_len``, which is all that is needed to rebuild the module before loading the weights.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from padirec.backbones.base import Backbone
from padirec.backbones.config import BackboneConfig
from padirec.backbones.registry import build_backbone
from padirec.core.typed_config import from_dict
from padirec.errors import ArtifactError
from padirec.runtime.artifacts import atomic_write, read_manifest, sha256_file, write_manifest

WEIGHTS = "backbone.safetensors"


def save_backbone(
    model: Backbone,
    out_dir: str | os.PathLike,
    extra_files: list[str] | None = None,
    stats: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write the weights and the manifest (listing ``extra_files`` already in ``out_dir`` too).

    ``model`` must come from ``build_backbone`` (it carries ``cfg`` and ``max_len``).
    """
    out_dir = Path(out_dir)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(out_dir / WEIGHTS, lambda tmp: save_file(state, tmp, metadata={"model": model.name}))
    config = {
        "model": model.name,
        "backbone": dataclasses.asdict(model.cfg.chosen()),  # no other backbone's (or plugin's) settings
        "num_items": model.num_items,
        "max_len": model.max_len,
    }
    return write_manifest(out_dir, "backbone", [WEIGHTS, *(extra_files or [])], config, stats)


def load_backbone(in_dir: str | os.PathLike, device: str | torch.device = "cpu") -> Backbone:
    """Rebuild the backbone saved in ``in_dir`` (checksums verified), in eval mode on ``device``."""
    in_dir = Path(in_dir)
    manifest = read_manifest(in_dir, kind="backbone")
    config = manifest["config"]
    missing = {"model", "backbone", "num_items", "max_len"} - set(config)
    if missing:
        raise ArtifactError(f"{in_dir}: backbone manifest lacks {', '.join(sorted(missing))}")
    cfg = from_dict(BackboneConfig, config["backbone"], where=f"{in_dir}/manifest.json: backbone")
    model = build_backbone(config["model"], int(config["num_items"]), cfg, int(config["max_len"]))
    state = load_file(str(in_dir / WEIGHTS))
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ArtifactError(f"{in_dir / WEIGHTS}: weights do not fit a {config['model']!r} model: {e}") from e
    return model.to(device).eval()


def backbone_sha256(in_dir: str | os.PathLike) -> str:
    """Checksum of the weights file, for downstream manifests (``backbone_sha256``)."""
    return sha256_file(Path(in_dir) / WEIGHTS)
