"""Adapter bank throughput: batched training of N adapters vs a sequential loop, and the default bank.

    .venv/bin/python benchmarks/bench_adapters.py --data /work/ml100k_prepared [--backbone DIR]

Without ``--backbone`` a freshly initialised SASRec (dim 64) stands in: training speed does not
depend on the backbone's quality. Prints a table of measured figures (no assertions on time).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

import numpy as np
import torch

from padirec.adapters.config import AdapterConfig
from padirec.adapters.evaluate import evaluate_adapters
from padirec.adapters.features import compute_features
from padirec.adapters.train import train_adapter, train_bank
from padirec.backbones.checkpoint import load_backbone
from padirec.backbones.config import BackboneConfig
from padirec.backbones.registry import build_backbone
from padirec.core.layout import adapter_layout
from padirec.core.tasks import sample_tasks
from padirec.data.dataset import load_prepared
from padirec.runtime.progress import setup_logging


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--backbone", default="")
    ap.add_argument("--max-len", type=int, default=20)
    ap.add_argument("--compare-tasks", type=int, default=100, help="N for batched vs sequential (the default bank's tasks)")
    ap.add_argument("--compare-epochs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--skip-bank", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    setup_logging()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows: list[tuple[str, str]] = [("torch threads", str(torch.get_num_threads()))]

    data = load_prepared(args.data)
    if args.backbone:
        backbone = load_backbone(args.backbone)
    else:
        torch.manual_seed(args.seed)
        backbone = build_backbone("sasrec", data.num_items, BackboneConfig(), args.max_len).eval()
    t = time.perf_counter()
    feats = compute_features(backbone, data, args.max_len)
    rows.append(("features: prefixes x dim", f"{tuple(feats.train_h.shape)}"))
    rows.append(("features: seconds", f"{time.perf_counter() - t:.1f}"))

    cfg = AdapterConfig()
    p = len(cfg.utilities)
    weights, _ = sample_tasks(p, cfg.grid_size, cfg.num_random_tasks, cfg.hold_out_grid, args.seed)

    # batched vs sequential on the same tasks and the same (short) schedule
    n = min(args.compare_tasks, len(weights))
    short = dataclasses.replace(cfg, epochs=args.compare_epochs, checkpoints_per_task=1)
    t = time.perf_counter()
    batched = train_bank(feats, weights[:n], short, args.seed).checkpoints[:, -1]
    t_batched = time.perf_counter() - t
    t = time.perf_counter()
    sequential = torch.stack([train_adapter(feats, w, short, args.seed) for w in weights[:n]])
    t_seq = time.perf_counter() - t
    rows += [
        (f"batched: {n} adapters x {short.epochs} epochs, s", f"{t_batched:.1f}"),
        (f"sequential: {n} adapters x {short.epochs} epochs, s", f"{t_seq:.1f}"),
        ("speedup batched / sequential", f"{t_seq / t_batched:.1f}x"),
        ("max |batched - sequential| param", f"{float((batched - sequential).abs().max()):.2e}"),
    ]

    if not args.skip_bank:
        t = time.perf_counter()
        bank = train_bank(feats, weights, cfg, args.seed)
        t_train = time.perf_counter() - t
        lay = adapter_layout(feats.dim, cfg.bottleneck)
        flat = bank.checkpoints.reshape(-1, bank.checkpoints.shape[-1])
        t = time.perf_counter()
        metrics = evaluate_adapters(feats, flat, lay, "valid")
        t_eval = time.perf_counter() - t
        hist = bank.loss_history
        k = cfg.checkpoints_per_task
        drift = np.abs(hist[-1] - hist[-k]) / np.maximum(np.abs(hist[-k]), 1e-8)
        rows += [
            ("default bank: tasks x checkpoints", f"{len(weights)} x {k}"),
            ("default bank: epochs x steps/epoch x batch",
             f"{cfg.epochs} x {cfg.steps_per_epoch or 'all'} x {cfg.batch_size}"),
            ("default bank: train seconds", f"{t_train:.1f}"),
            ("default bank: evaluate seconds (valid, all checkpoints)", f"{t_eval:.1f}"),
            ("default bank: total seconds", f"{t_train + t_eval:.1f}"),
            ("adapters per minute (trained, batched)", f"{len(weights) * 60 / t_train:.0f}"),
            ("rel. loss change over last K epochs, median/max",
             f"{np.median(drift):.3f} / {drift.max():.3f}"),
            ("valid NDCG@10 over checkpoints, min/max",
             f"{metrics['ndcg@10'].min():.4f} / {metrics['ndcg@10'].max():.4f}"),
        ]
    rows.append(("load average (1 min) at the end, 2 cores", f"{os.getloadavg()[0]:.1f}"))
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    main()
