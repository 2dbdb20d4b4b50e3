"""Train the backbones on a prepared folder and print quality, time and memory per backbone.

    python benchmarks/bench_backbones.py --data /work/ml100k_prepared [--models sasrec gru4rec]
        [--epochs N] [--set lr=2e-3 --set train_stride=10] [--device auto] [--out DIR] [--valid-only]

Metrics are full ranking with the history masked (leave-one-out test item), of the
best-validation weights. ``--valid-only`` (for choosing a setting: the test split is not read)
trains without the stage's test evaluation and prints the validation figures alone. Peak memory is the process's max RSS (``resource``), which only
grows, so later rows include earlier ones; on CUDA, the max allocated memory per backbone.
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

from padirec.backbones import BACKBONES, BackboneConfig
from padirec.backbones.stage import train_backbone_stage
from padirec.runtime.progress import setup_logging


def _parse_set(items: list[str]) -> dict:
    fields = {f.name: f.type for f in dataclasses.fields(BackboneConfig)}
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        if key not in fields:
            sys.exit(f"--set {item}: unknown BackboneConfig field {key!r}")
        out[key] = {"int": int, "float": float, "str": str}[str(fields[key])](value)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="a prepared data folder")
    ap.add_argument("--models", nargs="+", default=list(BACKBONES), choices=sorted(BACKBONES))
    ap.add_argument("--epochs", type=int, default=None, help="override BackboneConfig.epochs")
    ap.add_argument("--max-len", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--set", nargs="*", default=[], help="BackboneConfig overrides key=value")
    ap.add_argument("--out", default=None, help="keep the trained backbones here")
    ap.add_argument("--valid-only", action="store_true", help="validation figures only; the test split is not read")
    args = ap.parse_args()
    setup_logging()
    overrides = _parse_set(args.set)
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    out_root = Path(args.out or tempfile.mkdtemp(prefix="bench_backbones_"))

    if args.valid_only:
        return valid_only(args, overrides)
    rows = []
    for name in args.models:
        cfg = dataclasses.replace(BackboneConfig(), model=name, **overrides)
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        m = train_backbone_stage(args.data, out_root / name, cfg, args.max_len, args.seed, args.device)
        wall = time.perf_counter() - start
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        cuda_mb = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else float("nan")
        rows.append((name, m["test"]["ndcg@10"], m["test"]["hr@10"], m["test"]["alpha_ndcg@10"],
                     m["valid"]["ndcg@10"], m["epochs"], m["best_epoch"], wall, m["seconds_per_epoch"],
                     rss_mb, cuda_mb))

    print(f"\ndata {args.data}  device {m['device']}  torch threads {torch.get_num_threads()}  "
          f"overrides {overrides or '{}'}")
    header = ("backbone", "test_ndcg@10", "test_hr@10", "test_alpha_ndcg@10", "valid_ndcg@10", "epochs",
              "best_epoch", "wall_s", "s_per_epoch", "peak_rss_mb", "cuda_max_mb")
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    for r in rows:
        print(f"{r[0]} | {r[1]:.4f} | {r[2]:.4f} | {r[3]:.4f} | {r[4]:.4f} | {r[5]} | {r[6]} | "
              f"{r[7]:.1f} | {r[8]:.2f} | {r[9]:.0f} | {r[10]:.0f}")


def valid_only(args: argparse.Namespace, overrides: dict) -> None:
    """Each backbone trained to early stopping; its best validation epoch's figures and its time."""
    from padirec.backbones.registry import build_backbone
    from padirec.backbones.train import train_backbone
    from padirec.data.dataset import load_prepared
    from padirec.runtime.seeding import pick_device, seed_everything

    data, device = load_prepared(args.data), pick_device(args.device)
    print("backbone | overrides | valid_ndcg@10 | valid_hr@10 | valid_alpha_ndcg@10 | epochs | best_epoch | "
          "train_s | s_per_epoch\n--- | --- | --- | --- | --- | --- | --- | --- | ---")
    for name in args.models:
        cfg = dataclasses.replace(BackboneConfig(), model=name, **overrides)
        seed_everything(args.seed)
        model = build_backbone(name, data.num_items, cfg, args.max_len)
        r = train_backbone(model, data, cfg, args.max_len, args.seed, device)
        v = r.best_valid
        print(f"{name} | {overrides or '{}'} | {v['ndcg@10']:.4f} | {v['hr@10']:.4f} | {v['alpha_ndcg@10']:.4f} | "
              f"{r.epochs} | {r.best_epoch} | {r.train_seconds:.1f} | {r.train_seconds / max(r.epochs, 1):.2f}",
              flush=True)


if __name__ == "__main__":
    main()
