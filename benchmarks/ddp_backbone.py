"""Phase 1 on N data-parallel ranks (torchrun, DDP) against one process, on a run's data (issue 27).

    .venv/bin/python benchmarks/ddp_backbone.py [--run runs/<name>-<time>] [--processes 2] \
        [--epochs 10] [--device cpu] [--threads 2] [--tol 0.005] [--work DIR]

Both train the run's backbone settings for ``--epochs`` epochs (no early stop: the same epochs)
from the same seed; the single process gets ``--threads`` torch threads, the ranks share them.
Prints each one's validation NDCG@10, epochs and wall time, and exits 1 when the NDCG differs by
more than ``--tol``. ``make gpu-check`` runs it with ``--device cuda``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from band import newest_run, run_config  # noqa: E402 (benchmarks/band.py)
from run_folder import find  # noqa: E402 (benchmarks/run_folder.py)

from padirec.runtime.progress import setup_logging  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    from padirec.backbones.stage import train_backbone_stage

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", type=Path, default=None, help="a finished run folder (default: the newest)")
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tol", type=float, default=0.005)
    ap.add_argument("--work", type=Path, default=None, help="where the two backbones go (default: a temporary folder)")
    args = ap.parse_args(argv)
    setup_logging()
    torch.set_num_threads(args.threads)
    run = args.run or newest_run()
    cfg = run_config(run)
    data = find(run, "**/prepare-data/data/manifest.json")
    one = dataclasses.replace(cfg.backbone, epochs=args.epochs, patience=args.epochs + 1, processes=1)
    work = args.work or Path(tempfile.mkdtemp(prefix="ddp-backbone-"))
    rows = {}
    for name, bb in (("1 process", one), (f"{args.processes} ranks", dataclasses.replace(one, processes=args.processes))):
        t0 = time.perf_counter()
        metrics = train_backbone_stage(data, work / name.replace(" ", "-"), bb, cfg.data.max_len,
                                       cfg.backbone.seed_for(cfg.seed), args.device)
        rows[name] = (metrics, time.perf_counter() - t0)
    per_rank = max(1, args.threads // args.processes)  # as ``launch`` shares the step's threads out
    threads = {"1 process": args.threads, f"{args.processes} ranks": per_rank * args.processes}
    print(f"\n{run}: {cfg.backbone.model}, {args.epochs} epochs, device {args.device}")
    print("| training | torch threads in all | valid NDCG@10 | valid alpha-NDCG@10 | epochs | wall s |")
    print("|---|---|---|---|---|---|")
    for name, (m, seconds) in rows.items():
        print(f"| {name} | {threads[name]} | {m['valid']['ndcg@10']:.4f} | {m['valid']['alpha_ndcg@10']:.4f} | {m['epochs']} | {seconds:.1f} |")
    (a, _), (b, _) = rows.values()
    gap = abs(a["valid"]["ndcg@10"] - b["valid"]["ndcg@10"])
    print(f"valid NDCG@10 difference {gap:.4f} (tolerance {args.tol}): {'ok' if gap <= args.tol else 'TOO LARGE'}")
    return 0 if gap <= args.tol else 1


if __name__ == "__main__":
    raise SystemExit(main())
