"""The ``train_backbone`` stage: prepared data folder in, trained backbone folder out.

Writes ``backbone.safetensors``, ``metrics.json`` (valid/test NDCG@10, HR@10, alpha-NDCG@10 of
the best-validation weights, full ranking, history masked), ``history.json`` (per-epoch
curves) and the manifest (kind ``backbone``). See ``docs/internals.md``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Any

from padirec.backbones.checkpoint import save_backbone
from padirec.backbones.config import BackboneConfig
from padirec.backbones.registry import build_backbone
from padirec.backbones.train import Evaluator, data_parallel, tracker_metric_name, train_backbone
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
    (the content of ``metrics.json``). With ``cfg.processes`` > 1 it runs on that many
    data-parallel ranks under torchrun (``padirec.backbones.distributed``) and logs their output."""
    tracker = tracker or NullTracker()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    world, rank = data_parallel()
    if rank == 0:
        tracker.log_params(flatten({"backbone": dataclasses.asdict(cfg.chosen()), "max_len": max_len, "seed": seed}))
    if world == 1 and (cfg.launcher == "trainjob" or cfg.processes > 1):
        metrics = _launch(data_dir, out_dir, cfg, max_len, seed, device)
        for row in json.loads((out_dir / "history.json").read_text()):
            tracker.log_metrics({tracker_metric_name(k): v for k, v in row.items() if k != "epoch"}, step=row["epoch"])
        _log_final(tracker, metrics, out_dir)
        return metrics
    data = load_prepared(data_dir)
    torch_device = pick_device(device)
    seed_everything(seed)
    if rank == 0:
        log.info("training backbone %s on %d users, %d items (%s%s)", cfg.model, data.num_users, data.num_items,
                 torch_device, f", {world} ranks" if world > 1 else "")

    model = build_backbone(cfg.model, data.num_items, cfg, max_len)
    result = train_backbone(model, data, cfg, max_len, seed, torch_device, tracker)
    if rank != 0:  # rank 0 holds the same weights and writes the output
        return {}
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
        "processes": world,
    }
    atomic_write_json(out_dir / "metrics.json", metrics)
    atomic_write_json(out_dir / "history.json", result.history)
    save_backbone(model.cpu(), out_dir, extra_files=["metrics.json", "history.json"],
                  stats={"valid": valid, "test": test, "best_epoch": result.best_epoch})
    if world == 1:
        _log_final(tracker, metrics, out_dir)
    return metrics


def _launch(data_dir: str | os.PathLike, out_dir: Path, cfg: BackboneConfig, max_len: int, seed: int,
            device: str) -> dict[str, Any]:
    """Training in other processes: ranks in this pod under torchrun, or the nodes of a TrainJob."""
    if cfg.launcher == "trainjob":
        from padirec.backbones.trainjob import train_on_trainjob

        return train_on_trainjob(data_dir, out_dir, cfg, max_len, seed)
    import torch

    from padirec.backbones.distributed import launch

    return launch(data_dir, out_dir, cfg, max_len, seed, str(pick_device(device)), torch.get_num_threads())


def _log_final(tracker: Tracker, metrics: dict[str, Any], out_dir: Path) -> None:
    """The best weights' figures, the output folder and the closing log line."""
    # The epoch curves (loss, valid_*) are on the epoch axis (train_backbone); the best epoch's
    # figures go under their own names, so no curve jumps back to step 0 and the UI's latest value of
    # valid_ndcg_at_10 stays the last epoch's. Test figures are measured once, on the best weights.
    valid, test = metrics["valid"], metrics["test"]
    final = {tracker_metric_name(f"best/valid_{k}"): v for k, v in valid.items()}
    final.update({tracker_metric_name(f"test_{k}"): v for k, v in test.items()})
    final.update({"train_seconds": metrics["train_seconds"], "best_epoch": metrics["best_epoch"],
                  "epochs": metrics["epochs"]})
    tracker.log_metrics(final)
    tracker.log_artifacts(out_dir, "backbone")
    log.info("backbone %s: test ndcg@10 %.4f hr@10 %.4f alpha_ndcg@10 %.4f (%d epochs, %.0fs)",
             metrics["model"], test["ndcg@10"], test["hr@10"], test["alpha_ndcg@10"], metrics["epochs"],
             metrics["train_seconds"])
