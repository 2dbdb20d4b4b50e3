"""Stages ``band_generator`` and ``retrain_ceiling``: what the evaluate step would otherwise train.

The band protocol's generator (``protocols.train_band_generator``, on the bank without the band's
tasks) and the ceiling's second Retrain (``uncertainty.train_ceiling``, every grid task with
another seed) are pipeline steps of their own, so the graph shows every model a run trains, and
each is cached and tracked like the other training steps. The evaluate stage reads their folders
(``read_band_generator``, ``read_ceiling``) and refuses to run without them when its config needs
them.

When the config asks for neither (no ``band`` protocol, no method built from the generator,
``retrain_ceiling`` off, no Retrain among the methods) or the band leaves the bank empty, the
folder holds only a manifest of kind ``skipped`` with the reason.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import torch

from padirec.adapters.bank import load_bank
from padirec.adapters.features_stage import frozen_features
from padirec.config import Config
from padirec.core.tasks import grid
from padirec.core.tracker import NullTracker, Tracker
from padirec.data.dataset import load_prepared
from padirec.diffusion.generator import Generator
from padirec.evaluation.protocols import (
    EmptyBand,
    band_bank,
    band_of,
    needs_band_generator,
    train_band_generator,
)
from padirec.evaluation.uncertainty import Ceiling, train_ceiling
from padirec.methods.registry import method_with_role
from padirec.runtime.artifacts import atomic_write, read_manifest, write_manifest
from padirec.runtime.progress import log
from padirec.runtime.seeding import pick_device

SKIPPED = "skipped"  # the manifest kind of a step that had nothing to train
CEILING = "retrain_ceiling"
CEILING_FILE = "ceiling.safetensors"


def _skip(out_dir: str | Path, stage: str, reason: str, tracker: Tracker) -> dict[str, Any]:
    log.info("%s: nothing to train (%s)", stage, reason)
    write_manifest(out_dir, SKIPPED, [], {}, reason=reason)
    tracker.set_tags({"skipped": reason})
    return {"skipped": reason}


def band_generator_stage(bank_dir: str | Path, out_dir: str | Path, cfg: Config,
                         tracker: Tracker | None = None) -> dict[str, Any]:
    """The band protocol's generator, trained as ``protocols.band_context`` trains it, saved to
    ``out_dir`` (a ``generator`` folder). Returns its training figures, or ``skipped``."""
    tracker = tracker or NullTracker()
    if not needs_band_generator(cfg):
        return _skip(out_dir, "band_generator", "no band protocol, or no method built from the generator",
                     tracker)
    band = band_of(cfg.evaluation)
    try:
        reduced, removed = band_bank(load_bank(bank_dir), band)
    except EmptyBand as e:  # the evaluate step reports the band as skipped
        return _skip(out_dir, "band_generator", str(e), tracker)
    log.info("band_generator: training without the %d bank tasks in w_acc %s", removed, list(band))
    generator = train_band_generator(reduced, cfg.generator, cfg.seed, pick_device(cfg.device))
    generator.save(out_dir)
    summary = {k: float(v) for k, v in generator.stats.items()}
    tracker.log_metrics({**summary, "bank_tasks_removed": float(removed)})
    tracker.log_artifacts(str(out_dir), "band_generator")
    return summary


def read_band_generator(folder: str | Path | None, device: torch.device | str = "cpu") -> Generator | None:
    """The ``band_generator`` stage's generator; None for no folder or a skipped one."""
    if folder is None or read_manifest(folder, verify=False).get("kind") == SKIPPED:
        return None
    return Generator.load(folder, device)


def retrain_ceiling_stage(data_dir: str | Path, backbone_dir: str | Path, features_dir: str | Path | None,
                          out_dir: str | Path, cfg: Config, tracker: Tracker | None = None) -> dict[str, Any]:
    """The ceiling's second Retrain of every grid task, trained as ``uncertainty.add_uncertainty``
    trains it, its served adapters saved to ``out_dir``. Returns its figures, or ``skipped``."""
    tracker = tracker or NullTracker()
    reference = method_with_role("reference")
    if not (cfg.evaluation.retrain_ceiling and reference in cfg.evaluation.methods):
        return _skip(out_dir, CEILING, f"evaluation.retrain_ceiling off, or no {reference} among the methods",
                     tracker)
    a = cfg.adapters
    features = frozen_features(load_prepared(data_dir), backbone_dir, features_dir, a, cfg.data.max_len,
                               pick_device(cfg.device))
    second = train_ceiling(features, grid(len(a.utilities), a.grid_size, a.grid_centroid), a, cfg, reference)
    tensors = {"params": second.params.detach().cpu().contiguous(), "tasks": torch.from_numpy(second.tasks)}
    atomic_write(Path(out_dir) / CEILING_FILE, lambda tmp: safetensors.torch.save_file(tensors, tmp))
    summary = {"seed": second.seed, "tasks": len(second.tasks)}
    write_manifest(out_dir, CEILING, [CEILING_FILE], {"adapters": dataclasses.asdict(a)}, stats=summary)
    tracker.log_metrics({k: float(v) for k, v in summary.items()})
    tracker.log_artifacts(str(out_dir), CEILING)
    return summary


def read_ceiling(folder: str | Path | None, device: torch.device | str = "cpu") -> Ceiling | None:
    """The ``retrain_ceiling`` stage's second Retrain; None for no folder or a skipped one."""
    if folder is None or read_manifest(folder, verify=False).get("kind") == SKIPPED:
        return None
    manifest = read_manifest(folder, kind=CEILING)
    tensors = safetensors.torch.load_file(Path(folder) / CEILING_FILE)
    return Ceiling(int(manifest["stats"]["seed"]), tensors["tasks"].numpy().astype(np.float64),
                   tensors["params"].to(device))
