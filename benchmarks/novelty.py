"""Is novelty measurable on ML-100K? Retrain's novelty@10 over the p = 3 lattice against its
standard error over users (issue 28's goal: range >= 5 x SE), on the VALIDATION split.

Reads a finished run's features (its data and frozen backbone, read-only), trains one adapter per
task of ``configs/ml100k-3.yaml``'s lattice (the step-0.25 lattice and the centroid) with the run's
adapter settings and utilities ``[accuracy, diversity, novelty]``, batched as the bank trains
(``train_bank``: equal to one Retrain per task up to float summation order), serves each task's
checkpoint mean as Retrain does, and prints per task NDCG@10, alpha-NDCG@10, novelty@10 with its
standard error over users, CV_div@10 and CV_nov@10; then novelty's range over the lattice against
its largest standard error, and each objective's Spearman with its own weight along every edge.

    nice .venv/bin/python benchmarks/novelty.py --run runs/<run> [--tasks 16] [--out novelty.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

K = 10
UTILITIES = ["accuracy", "diversity", "novelty"]


def find(run: Path, pattern: str) -> Path:
    hits = sorted(run.glob(pattern))
    if not hits:
        raise SystemExit(f"{run}: no {pattern}")
    return hits[0].parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="a finished run folder (read only)")
    ap.add_argument("--config", default=str(Path(__file__).resolve().parents[1] / "configs" / "ml100k-3.yaml"))
    ap.add_argument("--epochs", type=int, default=0, help="0: the run's adapters.epochs")
    ap.add_argument("--split", default="valid", choices=["valid", "test"])
    ap.add_argument("--out", default="novelty.json")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the dev box is shared)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from padirec.adapters.bank import served_adapter
    from padirec.adapters.config import AdapterConfig
    from padirec.adapters.features_stage import load_features
    from padirec.adapters.train import train_bank
    from padirec.config import config_from_json, load_config
    from padirec.core.layout import adapter_layout
    from padirec.core.novelty import long_tail_items
    from padirec.core.tasks import grid
    from padirec.evaluation.summary import edge_spearman, value_range
    from padirec.evaluation.sweep import SplitEvaluator
    from padirec.methods.base import adapted_scores

    start = time.perf_counter()
    run = Path(args.run)
    cfg = config_from_json((run / "config.json").read_text())
    three = load_config(args.config).adapters
    features = load_features(find(run, "**/compute-features/features/manifest.json"))
    tasks = grid(3, three.grid_size, three.grid_centroid)
    adapters = AdapterConfig(**{**cfg.adapters.__dict__, "utilities": UTILITIES,
                                "epochs": args.epochs or cfg.adapters.epochs})
    tail = long_tail_items(features)
    print(f"{run.name}: {args.split} split, {features.split(args.split).h.shape[0]} users, {features.num_items} items, "
          f"long tail {int(tail.sum())} items (all but the {features.num_items - int(tail.sum())} most popular of "
          f"the training split); {len(tasks)} tasks; adapters {adapters.epochs} epochs x {adapters.steps_per_epoch} "
          f"steps of {adapters.batch_size}, candidates {adapters.candidates}, seed {cfg.seed}")
    trained = train_bank(features, tasks, adapters, cfg.seed)
    lay = adapter_layout(features.dim, adapters.bottleneck)
    evaluator = SplitEvaluator(features, args.split, K, adapters.alpha)
    rows, se = [], []
    bare = evaluator(features.split(args.split).h @ features.item_embedding.T)
    print(f"backbone: NDCG@10 {bare['ndcg@10']:.4f}, alpha-NDCG@10 {bare['alpha_ndcg@10']:.4f}, novelty@10 "
          f"{bare['novelty@10']:.4f}, CV_div@10 {bare['cv_div@10']:.4f}, CV_nov@10 {bare['cv_nov@10']:.4f}")
    print(f"\n{'task':<20} {'NDCG@10':>8} {'aNDCG@10':>9} {'novelty@10 ± SE':>18} {'CV_div@10':>10} {'CV_nov@10':>10}")
    for t, w in enumerate(tasks):
        params = served_adapter(trained.checkpoints[t], "mean")
        out, top = evaluator.per_user_lists(adapted_scores(features, params[None], lay, args.split)[0])
        row = evaluator.aggregate(out, top)
        nov = out[f"novelty@{K}"]
        se.append(float(nov.std(unbiased=True) / nov.numel() ** 0.5))
        rows.append(row)
        print(f"{'(' + ', '.join(f'{x:.2f}' for x in w) + ')':<20} {row['ndcg@10']:8.4f} {row['alpha_ndcg@10']:9.4f} "
              f"{row['novelty@10']:9.4f} ± {se[-1]:.4f} {row['cv_div@10']:10.4f} {row['cv_nov@10']:10.4f}")
    span = value_range([r["novelty@10"] for r in rows])
    print(f"\nnovelty@10 over the lattice: range {span:.4f}; largest standard error over users {max(se):.4f}; "
          f"range / SE = {span / max(se):.1f} (goal >= 5)")
    edges = edge_spearman(rows, tasks, UTILITIES, K)
    print("Spearman with its own weight along each edge (+1 = control):")
    for edge, figures in edges.items():
        print(f"  {edge:<20} " + ", ".join(f"{key} {rho:+.3f}" for key, rho in figures.items()))
    seconds = time.perf_counter() - start
    print(f"\n{seconds:.0f} s; written {args.out}")
    Path(args.out).write_text(json.dumps({"run": str(run), "split": args.split, "tasks": tasks.tolist(),
                                          "metrics": rows, "novelty_se": se, "novelty_range": span,
                                          "edge_spearman": edges, "train_seconds": trained.seconds,
                                          "seconds": seconds}, indent=1))


if __name__ == "__main__":
    main()
