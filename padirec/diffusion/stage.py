"""Stage ``train_generator``: adapter bank in, trained parameter generator out.

Reads the ``adapter_bank`` artifact (docs/internals.md), trains on the rows with
``held_out == False``, measures how close generated adapters come to the bank's rows for the
held-out tasks (unseen ``w``), and writes the ``generator`` artifact.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch

from padirec.adapters.bank import AdapterBank, load_bank
from padirec.core.tracker import NullTracker, Tracker, flatten
from padirec.diffusion.config import TARGETS, GeneratorConfig
from padirec.diffusion.generator import Generator
from padirec.diffusion.train import train_generator
from padirec.errors import ConfigError
from padirec.runtime.progress import log
from padirec.runtime.seeding import pick_device


def heldout_fidelity(generator: Generator, bank: AdapterBank, seed: int = 0,
                     **sample_kwargs: Any) -> dict[str, float]:
    """Relative L2 ``||theta_gen - theta_ref|| / ||theta_ref||`` on the held-out tasks.

    One sample per held-out task, compared with the mean of that task's checkpoints (``rel_l2``)
    and with its nearest checkpoint (``rel_l2_nearest``). ``rel_l2_train_mean`` is the same error
    for the mean adapter of the training rows: the floor a generator that ignores ``w`` reaches.
    Means over tasks. Empty dict when nothing is held out. ``bank``: an ``AdapterBank`` (or the
    synthetic bank of the tests and benchmarks: ``params``, ``weights``, ``held_out``, ``task_id``).
    """
    mask = torch.tensor(bank.held_out, dtype=torch.bool)  # a copy: the bank's array may be read-only
    if not bool(mask.any()):
        return {}
    task_id = torch.as_tensor(bank.task_id)
    params = bank.params.cpu()
    tasks = torch.unique(task_id[mask])
    refs, nearest_rows, ws = [], [], []
    for task in tasks.tolist():
        rows = params[task_id == task]
        refs.append(rows.mean(0))
        nearest_rows.append(rows)
        ws.append(bank.weights[task_id == task][0].cpu())
    ref = torch.stack(refs)
    gen = generator.sample(torch.stack(ws), seed=seed, **sample_kwargs).cpu()
    train_mean = params[~mask].mean(0)

    def rel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a - b).norm(dim=-1) / b.norm(dim=-1).clamp_min(1e-12)

    nearest = torch.stack([rel(g, rows).min() for g, rows in zip(gen, nearest_rows, strict=True)])
    return {
        "heldout_tasks": float(len(tasks)),
        "rel_l2": float(rel(gen, ref).mean()),
        "rel_l2_nearest": float(nearest.mean()),
        "rel_l2_train_mean": float(rel(train_mean.expand_as(ref), ref).mean()),
    }


def training_rows(bank: AdapterBank, targets: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """What the generator trains on: ``params (N, P)``, ``weights (N, p)`` and the held-out mask
    ``(N,)``, either every checkpoint row of the bank or, for ``task_mean``, one row per task (the
    mean of its checkpoints; a task is held out when any of its rows is)."""
    if targets == "checkpoints":
        return bank.params, bank.weights, torch.tensor(bank.held_out, dtype=torch.bool)
    if targets != "task_mean":
        raise ConfigError(f"generator.targets: {targets!r} is not one of {', '.join(TARGETS)}")
    ids, inverse = np.unique(bank.task_id, return_inverse=True)
    index = torch.as_tensor(inverse, device=bank.params.device)
    params = torch.zeros(len(ids), bank.params.shape[1], dtype=bank.params.dtype, device=bank.params.device)
    params.index_add_(0, index, bank.params)
    params /= torch.bincount(index, minlength=len(ids)).unsqueeze(1).to(params.dtype)
    first = np.array([np.flatnonzero(inverse == i)[0] for i in range(len(ids))])
    held = np.zeros(len(ids), dtype=bool)
    np.logical_or.at(held, inverse, bank.held_out)
    return params, bank.weights[torch.as_tensor(first)], torch.as_tensor(held)


def train_generator_stage(bank_dir: str | Path, out_dir: str | Path, cfg: GeneratorConfig,
                          seed: int = 0, device: str = "auto",
                          tracker: Tracker | None = None) -> dict[str, Any]:
    """Train the generator on a bank's training rows, save it to ``out_dir``, return figures:
    ``final_loss``, ``train_seconds``, ``num_train_rows`` and the held-out ``rel_l2`` figures."""
    tracker = tracker or NullTracker()
    bank = load_bank(bank_dir)
    dev = pick_device(device)
    tracker.log_params(flatten({"generator": dataclasses.asdict(cfg)}))
    log.info("train_generator: bank %s, %d rows (%d held out), p = %d", bank_dir, len(bank.params),
             int(bank.held_out.sum()), bank.weights.shape[1])
    params, weights, held_out = training_rows(bank, cfg.targets)
    generator = train_generator(params, weights, bank.layout, cfg, seed=seed, device=dev,
                                tracker=tracker, held_out_mask=held_out, utilities=bank.utilities)
    summary = dict(generator.stats)
    summary.update({f"heldout_{k}" if not k.startswith("heldout") else k: v
                    for k, v in heldout_fidelity(generator, bank, seed=seed).items()})
    generator.stats = summary
    generator.save(out_dir)
    tracker.log_metrics({k: float(v) for k, v in summary.items()})
    tracker.log_artifacts(out_dir, "generator")
    log.info("train_generator: %s", ", ".join(f"{k}={v:.4g}" for k, v in summary.items()))
    return summary


def generate_adapters(generator: Generator | str | Path, weights: Any, seed: int = 0,
                      device: str = "auto", **sample_kwargs: Any) -> torch.Tensor:
    """The served adapters ``(n, P)`` for task weights ``(n, p)`` or ``(p,)`` from a generator
    (or a saved generator's folder): ``Generator.adapters``; ``sample_kwargs`` as ``Generator.sample``."""
    if not isinstance(generator, Generator):
        generator = Generator.load(generator, pick_device(device))
    return generator.adapters(weights, seed=seed, **sample_kwargs)
