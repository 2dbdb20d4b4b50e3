"""Controllability of the adapter bank over the 11-point grid (Retrain adapters, full ranking).

    .venv/bin/python benchmarks/controllability.py --data /work/ml100k_prepared \
        --backbone /work/ml100k_backbone [--candidates train,topk] [--plot controllability.png]

For each candidate mode of the diversity loss, trains one adapter per grid task (batched, the
default ``AdapterConfig`` otherwise), evaluates NDCG@10 and alpha-NDCG@10 on ``--split`` (default
``valid``: the mode is a choice, made on validation) with full ranking
and the history masked, and prints the table, the Spearman correlations with ``w_acc`` (target:
NDCG >= 0.8, alpha-NDCG <= -0.8) and the 2-D hypervolume of the traced front (reference 0, raw
metrics) to compare candidate modes. Writes a PNG of both curves.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
from scipy.stats import spearmanr

from padirec.adapters.config import AdapterConfig
from padirec.adapters.evaluate import evaluate_adapters
from padirec.adapters.features import compute_features
from padirec.adapters.train import train_bank
from padirec.backbones.checkpoint import load_backbone
from padirec.core.layout import adapter_layout
from padirec.core.tasks import grid
from padirec.data.dataset import load_prepared
from padirec.runtime.progress import setup_logging


def hypervolume_2d(points: np.ndarray) -> float:
    """Area dominated by ``points (n, 2)`` (both maximised) above the reference point (0, 0)."""
    pts = points[np.argsort(-points[:, 0])]
    area, best_y = 0.0, 0.0
    for x, y in pts:
        if y > best_y:
            area += x * (y - best_y)
            best_y = y
    return area


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--backbone", required=True)
    ap.add_argument("--max-len", type=int, default=20)
    ap.add_argument("--candidates", default="train", help="comma-separated: train,topk")
    ap.add_argument("--split", default="valid", choices=["valid", "test"],
                    help="the split the candidate modes are compared on (choose on valid; test is read once)")
    ap.add_argument("--plot", default="controllability.png")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=0, help="override AdapterConfig.epochs")
    ap.add_argument("--topk-candidates", type=int, default=0, help="override AdapterConfig.topk_candidates")
    args = ap.parse_args()
    setup_logging()

    data = load_prepared(args.data)
    feats = compute_features(load_backbone(args.backbone), data, args.max_len)
    base = AdapterConfig()
    if args.epochs:
        base = dataclasses.replace(base, epochs=args.epochs, checkpoints_per_task=1)
    if args.topk_candidates:
        base = dataclasses.replace(base, topk_candidates=args.topk_candidates)
    weights = grid(2, base.grid_size)
    lay = adapter_layout(feats.dim, base.bottleneck)
    bare = evaluate_adapters(feats, None, lay, args.split)
    print(f"backbone alone ({args.split}): NDCG@10 {bare['ndcg@10'][0]:.4f}  "
          f"alpha-NDCG@10 {bare['alpha_ndcg@10'][0]:.4f}")
    curves = {}
    for mode in args.candidates.split(","):
        cfg = dataclasses.replace(base, candidates=mode)
        t = time.perf_counter()
        params = train_bank(feats, weights, cfg, args.seed).checkpoints[:, -1]
        seconds = time.perf_counter() - t
        m = evaluate_adapters(feats, params, lay, args.split, alpha=cfg.alpha)
        ndcg, alpha = m["ndcg@10"], m["alpha_ndcg@10"]
        curves[mode] = (ndcg, alpha)
        print(f"\ncandidates={mode}  ({len(weights)} adapters trained in {seconds:.0f}s)")
        print(f"{'w_acc':>6} {'NDCG@10':>9} {'HR@10':>8} {'a-NDCG@10':>10}")
        for i, w in enumerate(weights[:, 0]):
            print(f"{w:>6.1f} {ndcg[i]:>9.4f} {m['hr@10'][i]:>8.4f} {alpha[i]:>10.4f}")
        rho_n = spearmanr(weights[:, 0], ndcg).statistic
        rho_a = spearmanr(weights[:, 0], alpha).statistic
        print(f"Spearman(w_acc, NDCG@10) = {rho_n:+.3f}   Spearman(w_acc, alpha-NDCG@10) = {rho_a:+.3f}")
        print(f"hypervolume of the front (NDCG@10 x alpha-NDCG@10, ref 0) = "
              f"{hypervolume_2d(np.stack([ndcg, alpha], 1)):.5f}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for mode, (ndcg, alpha) in curves.items():
        axes[0].plot(weights[:, 0], ndcg, marker="o", label=mode)
        axes[1].plot(weights[:, 0], alpha, marker="o", label=mode)
    for ax, name in zip(axes, ["NDCG@10", "alpha-NDCG@10"], strict=True):
        ax.set_xlabel("w_acc")
        ax.set_ylabel(f"{name} ({args.split})")
        ax.grid(alpha=0.3)
        ax.legend(title="candidates")
    fig.tight_layout()
    fig.savefig(args.plot, dpi=120)
    print(f"\nplot: {args.plot}")


if __name__ == "__main__":
    main()
