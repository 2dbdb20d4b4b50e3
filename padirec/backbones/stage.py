"""The ``train_backbone`` stage: prepared data folder in, trained backbone folder out.

Writes ``backbone.safetensors``, ``metrics.json`` (valid/test NDCG@10, HR@10, alpha-NDCG@10 of
the best-validation weights, full ranking, history masked), ``history.json`` (per-epoch
curves) and the manifest (kind ``backbone``). See ``docs/internals.md``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

from padirec.backbones.checkpoint import save_backbone
from padirec.backbones.config import BackboneConfig
from padirec.backbones.registry import build_backbone
from padirec.backbones.train import Evaluator, tracker_metric_name, train_backbone
from padirec.core.tracker import NullTracker, Tracker, flatten
from padirec.data.dataset import load_prepared
from padirec.runtime.artifacts import atomic_write_json
from padirec.runtime.seeding import pick_device, seed_everything

log = logging.getLogger("padirec")


def train_backbone_stage(
    data_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    cfg: BackboneConfig,
    max_len: int,
    seed: int,
    device: str = "auto",
    tracker: Tracker | None = None,
) -> dict[str, Any]:
    """Train ``cfg.model`` on the prepared data in ``data_dir``; returns the metrics dict
    (the content of ``metrics.json``)."""
    tracker = tracker or NullTracker()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = load_prepared(data_dir)
    torch_device = pick_device(device)
    seed_everything(seed)
    tracker.log_params(flatten({"backbone": dataclasses.asdict(cfg.chosen()), "max_len": max_len, "seed": seed}))
    log.info("training backbone %s on %d users, %d items (%s)", cfg.model, data.num_users,
             data.num_items, torch_device)

    model = build_backbone(cfg.model, data.num_items, cfg, max_len)
    result = train_backbone(model, data, cfg, max_len, seed, torch_device, tracker)
    valid = Evaluator(data, "valid", max_len, torch_device, batch_size=cfg.eval_batch_size)(model)
    test = Evaluator(data, "test", max_len, torch_device, batch_size=cfg.eval_batch_size)(model)
    metrics = {
        "model": cfg.model,
        "valid": valid,
        "test": test,
        "epochs": result.epochs,
        "best_epoch": result.best_epoch,
        "train_seconds": result.train_seconds,
        "seconds_per_epoch": result.train_seconds / max(result.epochs, 1),
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "device": str(torch_device),
    }
    atomic_write_json(out_dir / "metrics.json", metrics)
    atomic_write_json(out_dir / "history.json", result.history)
    save_backbone(model.cpu(), out_dir, extra_files=["metrics.json", "history.json"],
                  stats={"valid": valid, "test": test, "best_epoch": result.best_epoch})
    # The epoch curves (loss, valid_*) are on the epoch axis (train_backbone); the best epoch's
    # figures go under their own names, so no curve jumps back to step 0 and the UI's latest value of
    # valid_ndcg_at_10 stays the last epoch's. Test figures are measured once, on the best weights.
    final = {tracker_metric_name(f"best/valid_{k}"): v for k, v in valid.items()}
    final.update({tracker_metric_name(f"test_{k}"): v for k, v in test.items()})
    final.update({"train_seconds": result.train_seconds, "best_epoch": result.best_epoch, "epochs": result.epochs})
    tracker.log_metrics(final)
    tracker.log_artifacts(out_dir, "backbone")
    log.info("backbone %s: test ndcg@10 %.4f hr@10 %.4f alpha_ndcg@10 %.4f (%d epochs, %.0fs)",
             cfg.model, test["ndcg@10"], test["hr@10"], test["alpha_ndcg@10"], result.epochs,
             result.train_seconds)
    return metrics
