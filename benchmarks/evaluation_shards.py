"""The evaluate step split by users against the single step, on a finished run (issue 27).

    .venv/bin/python benchmarks/evaluation_shards.py [--run runs/<name>-<time>] [--shards 2] [--threads 1] \
        [--methods padirec retrain ...] [--repeats R] [--out DIR]

On the run's own inputs (read only; outputs under ``--out``, a temporary folder by default), each in
a process of its own so its peak resident memory is its own, as the pipeline's pods: the single
``evaluate`` step (timing new tasks first, as the pipeline's), then each shard of
``evaluation.shards = --shards``, the timing of new tasks (``time_responses``, beside the shards in
the pipeline) and the merge. Prints every process's wall time and peak RSS (imports included), the
largest shard against 1/N of the single step (the issue's goal: within 1.3x), the sharded branch's
critical path (the slower of the largest shard and the timing, then the merge), and how many
report figures differ between the merge and the single step (``shards.figure_differences``: floats
to 1e-9 relative).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from run_folder import find  # noqa: E402 (benchmarks/run_folder.py)

# evaluate's input folders in a run folder, in ``EvaluationInputs``' order
FOLDERS = {"data": "prepare-data/data", "backbone": "train-backbone/backbone", "bank": "train-generator/bank",
           "generator": "train-generator/generator", "features": "compute-features/features",
           "band_generator": "band-generator/band_generator", "ceiling": "retrain-ceiling/ceiling"}
GOAL = 1.3  # the largest shard within 1.3x of 1/N of the single step


def child(args: argparse.Namespace) -> None:
    """One step in this process; prints ``{"seconds", "peak_rss_mb"}`` as its last line."""
    import torch

    from padirec.config import config_from_json
    from padirec.evaluation.shards import evaluate_shard, merge_shards, time_responses
    from padirec.evaluation.stage import EvaluationInputs, evaluate_stage
    from padirec.runtime.progress import setup_logging

    setup_logging()
    torch.set_num_threads(args.threads)
    cfg = config_from_json(Path(args.config).read_text())
    folders = json.loads(Path(args.folders).read_text())
    started = time.perf_counter()
    out = Path(args.out)
    if args.child == "merge":
        merge_shards([out / f"shard{i}" for i in range(cfg.evaluation.shards)], out / "merged", cfg,
                     timings_dir=out / "time")
    elif args.child == "evaluate":
        evaluate_stage(EvaluationInputs(**folders, time_responses=True), out / "whole", cfg)
    elif args.child == "time":
        time_responses(EvaluationInputs(**folders), out / "time", cfg)
    else:
        evaluate_shard(EvaluationInputs(**folders), out / args.child, cfg, int(args.child.removeprefix("shard")))
    print(json.dumps({"seconds": time.perf_counter() - started,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def run(step: str, args: argparse.Namespace, config: Path, folders: Path) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--child", step, "--config", str(config), "--folders", str(folders),
           "--out", str(args.out), "--threads", str(args.threads)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{step} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, default=None, help="a finished run folder (default: the newest under runs/)")
    p.add_argument("--shards", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--methods", nargs="*", default=None, help="default: the run's")
    p.add_argument("--repeats", type=int, default=None,
                   help="evaluation.response_time_repeats (default: the run's; Retrain trains per repeat)")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--config", default=None, help=argparse.SUPPRESS)
    p.add_argument("--folders", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)

    from padirec.config import config_from_json, config_to_json
    from padirec.evaluation.shards import figure_differences

    run_dir = args.run or max((q for q in Path("runs").glob("*-*") if (q / "config.json").exists()),
                              key=lambda q: q.stat().st_mtime)
    args.out = args.out or Path(tempfile.mkdtemp(prefix="evaluation-shards-"))
    args.out.mkdir(parents=True, exist_ok=True)
    cfg = config_from_json((run_dir / "config.json").read_text())
    cfg.device, cfg.evaluation.shards = "cpu", args.shards
    if args.methods:
        cfg.evaluation.methods = list(args.methods)
    if args.repeats is not None:
        cfg.evaluation.response_time_repeats = args.repeats
    config, folders = args.out / "config.json", args.out / "folders.json"
    config.write_text(config_to_json(cfg))
    folders.write_text(json.dumps({k: str(find(run_dir, f"**/{v}/manifest.json")) for k, v in FOLDERS.items()}))

    steps = ["evaluate"] + [f"shard{i}" for i in range(args.shards)] + ["time", "merge"]
    cost = {}
    for step in steps:
        cost[step] = run(step, args, config, folders)
        print(f"{step}: {cost[step]['seconds']:.1f} s, peak RSS {cost[step]['peak_rss_mb']:.0f} MB", flush=True)
    whole = json.loads((args.out / "whole" / "report.json").read_text())
    merged = json.loads((args.out / "merged" / "report.json").read_text())
    diffs = figure_differences(merged, whole)
    shards = [cost[f"shard{i}"] for i in range(args.shards)]
    single = cost["evaluate"]
    for name in ("seconds", "peak_rss_mb"):
        largest = max(s[name] for s in shards)
        print(f"largest shard's {name}: {largest:.1f} = {largest / single[name]:.2f} x the single step's "
              f"{single[name]:.1f} ({largest / (single[name] / args.shards):.2f} x 1/{args.shards} of it; goal <= {GOAL})")
    path = max(max(s["seconds"] for s in shards), cost["time"]["seconds"]) + cost["merge"]["seconds"]
    print(f"sharded branch's critical path (max(largest shard, timing) + merge): {path:.1f} s; in sequence: "
          f"{sum(s['seconds'] for s in shards) + cost['time']['seconds'] + cost['merge']['seconds']:.1f} s; against "
          f"{single['seconds']:.1f} s; {len(diffs)} report figures differ between the merge and the single step"
          + (f", first: {diffs[:3]}" if diffs else ""))
    print(f"run {run_dir}, {cfg.data.source}, {len(cfg.evaluation.methods)} methods, "
          f"{cfg.evaluation.response_time_repeats} timing repeats, {args.threads} thread(s); "
          f"outputs in {args.out}")


if __name__ == "__main__":
    main()
