"""A bank worth learning from: do settled checkpoints, or more tasks, help the generator? (issue 14)

    .venv/bin/python benchmarks/bank_settling.py [--run runs/<name>-<time>] [--checkpoint-lr 1 0.1] \
        [--random-tasks 89] [--seed 0] [--split valid] [--threads 1] [--out settling.json]

For each ``adapters.checkpoint_lr`` x ``adapters.num_random_tasks`` the run's bank is trained
again on the run's backbone (its features, its seed, every other adapter setting as the run had
them), and reported with:

- the within-task spread of its checkpoints (``checkpoint_spread``: mean relative L2 of a
  checkpoint to the task's checkpoint mean; ``checkpoint_last_move``: the last epoch's step);
- the validation NDCG@10 / alpha-NDCG@10 of the last checkpoints and of the checkpoint means;
- the band protocol on ``--split`` (``benchmarks/band.py``'s ``one_seed``: a generator trained on
  the bank without the band, PaDiRec, NN lookup and interpolation against the variant's own Retrain,
  which is the variant bank's adapter of each task).

Everything on the validation split: this chooses ``adapters.checkpoint_lr`` and the bank's size.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from band import newest_run, one_seed, run_config  # noqa: E402 (benchmarks/band.py)
from run_folder import run_inputs  # noqa: E402 (benchmarks/run_folder.py)

from padirec.runtime.progress import setup_logging  # noqa: E402


def train_variant(ctx, cfg):
    """The bank of ``cfg.adapters`` on ``ctx``'s features, as an ``AdapterBank`` (grid held out)."""
    from padirec.adapters.bank import AdapterBank
    from padirec.adapters.evaluate import evaluate_adapters
    from padirec.adapters.train import checkpoint_spread, train_bank
    from padirec.core.tasks import sample_tasks

    ac = cfg.adapters
    weights, held = sample_tasks(len(ac.utilities), ac.grid_size, ac.num_random_tasks, ac.hold_out_grid, cfg.seed)
    start = time.perf_counter()
    result = train_bank(ctx.features, weights, ac, cfg.seed)
    seconds = time.perf_counter() - start
    n, k, p = result.checkpoints.shape
    stats = {"train_seconds": seconds, **checkpoint_spread(result.checkpoints)}
    for name, params in (("last", result.checkpoints[:, -1]), ("mean", result.checkpoints.mean(1))):
        valid = evaluate_adapters(ctx.features, params, ctx.layout, "valid", alpha=ac.alpha)
        for metric in ("ndcg@10", "alpha_ndcg@10"):
            stats[f"valid_{metric}_{name}"] = float(valid[metric].mean())
    tasks = pd.DataFrame({"row": np.arange(n * k), "task_id": np.repeat(np.arange(n), k),
                          "checkpoint": np.tile(np.arange(k), n), "held_out": np.repeat(held, k)})
    bank = AdapterBank(params=result.checkpoints.reshape(n * k, p), weights=torch.as_tensor(np.repeat(weights, k, 0)),
                       task_id=tasks["task_id"].to_numpy(), checkpoint=tasks["checkpoint"].to_numpy(),
                       held_out=tasks["held_out"].to_numpy(bool), tasks=tasks, layout=ctx.layout,
                       utilities=list(ac.utilities))
    return bank, stats


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", type=Path, default=None)
    ap.add_argument("--checkpoint-lr", type=float, nargs="+", default=[1.0, 0.1])
    ap.add_argument("--random-tasks", type=int, nargs="+", default=[89])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--split", default="valid", choices=("valid", "test"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    setup_logging()
    torch.set_num_threads(args.threads)
    run = args.run or newest_run()
    base = dataclasses.replace(run_config(run), seed=args.seed)
    ctx = run_inputs(run, base).context
    rows = []
    for lr in args.checkpoint_lr:
        for extra in args.random_tasks:
            cfg = dataclasses.replace(base, adapters=dataclasses.replace(base.adapters, checkpoint_lr=lr,
                                                                         num_random_tasks=extra))
            t0 = time.perf_counter()
            bank, stats = train_variant(ctx, cfg)
            variant = dataclasses.replace(ctx, bank=bank, adapters=cfg.adapters)
            band = one_seed(variant, cfg, ["padirec", "retrain", "nn_lookup", "interpolation"], args.split,
                            (cfg.evaluation.band_low, cfg.evaluation.band_high), single=False)
            rows.append({"checkpoint_lr": lr, "num_random_tasks": extra, **stats,
                         "band": {m: {f: s.get(f) for f in ("reward", "regret", "regret_ci", "pearson_ra",
                                                              "pearson_rd")} for m, s in band["summary"].items()}})
            print(f"checkpoint_lr {lr}, {extra} random tasks: {time.perf_counter() - t0:.0f} s", flush=True)
    print(f"\n{run.name}: bank variants, seed {args.seed}, split {args.split}; band [{base.evaluation.band_low}, "
          f"{base.evaluation.band_high}], regret against the variant's own Retrain")
    print("| checkpoint_lr | random tasks | spread | last move | NDCG@10 last / mean | alpha-NDCG@10 last / mean "
          "| bank s | regret PaDiRec | regret NN lookup | regret interpolation |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        b = r["band"]
        print(f"| {r['checkpoint_lr']:g} | {r['num_random_tasks']} | {r['checkpoint_spread']:.4f} | "
              f"{r.get('checkpoint_last_move', float('nan')):.4f} | {r['valid_ndcg@10_last']:.4f} / "
              f"{r['valid_ndcg@10_mean']:.4f} | {r['valid_alpha_ndcg@10_last']:.4f} / {r['valid_alpha_ndcg@10_mean']:.4f} "
              f"| {r['train_seconds']:.0f} | {b['padirec']['regret']:+.4f} | {b['nn_lookup']['regret']:+.4f} | "
              f"{b['interpolation']['regret']:+.4f} |")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
