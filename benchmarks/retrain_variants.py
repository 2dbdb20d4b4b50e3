"""The two Retrain references side by side (issue 24): serving the mean of a task's last
checkpoints (``methods.retrain.checkpoints: mean``, the default) or its last epoch alone
(``last``, the reference before issue 24).

    .venv/bin/python benchmarks/retrain_variants.py [--run runs/<name>-<time>] [--split valid] \
        [--methods padirec nn_lookup interpolation soup] [--threads 1] [--out variants.json]

Both variants read the run's bank (every grid task is a bank task, so no adapter is trained here)
and run on the grid protocol's tasks with the run's generator. For each reference in turn, every
method's reward, regret (with its 95% paired bootstrap interval over users), tracking error and
Pareto dominance are summarised against it, each on that reference's own fixed scale (its pure-task
ends), so the change the reference makes to the report is visible in one table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from band import newest_run, run_config  # noqa: E402 (benchmarks/band.py)
from run_folder import run_inputs  # noqa: E402 (benchmarks/run_folder.py)

from padirec.runtime.progress import setup_logging  # noqa: E402

REFERENCES = {"retrain": "mean", "retrain_last": "last"}


def sweep_both(ctx, cfg, names: list[str], split: str):
    """The sweep of ``names`` plus Retrain served both ways (``retrain``: mean, ``retrain_last``)."""
    from padirec.core.tasks import grid
    from padirec.evaluation.sweep import run_sweep
    from padirec.methods.registry import build_methods
    from padirec.methods.retrain import Retrain, RetrainConfig

    tasks = grid(len(ctx.utilities), cfg.adapters.grid_size)
    methods = build_methods(names, ctx, cfg.methods)
    for key, served in REFERENCES.items():
        methods[key] = Retrain.build(ctx, RetrainConfig(from_bank=True, checkpoints=served))
    ev = cfg.evaluation
    return tasks, run_sweep(methods, tasks, ctx.features, split, ev.k, ev.alpha, ev.sampled, cfg.seed, per_user=True)


def against(sweep, tasks, utilities, cfg, reference: str) -> dict:
    """Every method's summary against ``reference``, on ``reference``'s fixed scale, with the
    bootstrap intervals."""
    from padirec.evaluation.summary import report_scale, summarise
    from padirec.evaluation.uncertainty import evaluation_settings, uncertainty_summary

    ev = cfg.evaluation
    scale = report_scale(sweep.metrics, tasks, utilities, ev.k, reference)
    summary = summarise(sweep.metrics, tasks, utilities, ev.k, reference=reference, scale=scale)
    st = evaluation_settings(ev)
    extra = uncertainty_summary(sweep.per_user, tasks, utilities, ev.k, reference, max(st.resamples, 1000),
                                st.confidence, cfg.seed, sweep.user_groups, scale)
    for m, figures in extra.items():
        summary[m].update(figures)
    return {"scale": {"worst": list(map(float, scale.worst)), "best": list(map(float, scale.best))}, "summary": summary}


def print_table(reference: str, result: dict, utilities, k: int) -> None:
    from padirec.evaluation.summary import objective_keys

    keys = objective_keys(utilities, k)
    ends = ", ".join(f"{key} worst {lo:.4f}, best {hi:.4f}" for key, lo, hi in
                     zip(keys, result["scale"]["worst"], result["scale"]["best"], strict=True))
    print(f"\nreference {reference} (serves {REFERENCES[reference]}); scale: {ends}")
    print("| method | reward | regret | regret 95% CI | tracking NDCG | tracking alpha-NDCG | dominates | dominated |")
    print("|---|---|---|---|---|---|---|---|")
    for m, s in result["summary"].items():
        ci = s.get("regret_ci") or [float("nan")] * 2
        track = s.get("tracking_error") or {}
        dom = (s.get("dominance") or {}).get("counts", {})
        cells = [f"{track.get(key, {}).get('mean', float('nan')):.4f}" for key in keys[:2]]
        print(f"| {m} | {s['reward']:.4f} | {s['regret']:+.4f} | [{ci[0]:+.4f}, {ci[1]:+.4f}] | {cells[0]} | "
              f"{cells[1]} | {dom.get('dominates', '-')} | {dom.get('dominated', '-')} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", type=Path, default=None, help="a finished run folder (default: the newest)")
    ap.add_argument("--split", default="valid", choices=("valid", "test"))
    ap.add_argument("--methods", nargs="+", default=["padirec", "nn_lookup", "interpolation", "soup"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    setup_logging()
    torch.set_num_threads(args.threads)
    run = args.run or newest_run()
    if set(args.methods) & set(REFERENCES):
        raise SystemExit(f"--methods: the references {sorted(REFERENCES)} are added by this benchmark itself")
    cfg = run_config(run)
    t0 = time.perf_counter()
    ctx = run_inputs(run, cfg).context
    tasks, sweep = sweep_both(ctx, cfg, list(args.methods), args.split)
    print(f"{run}: grid protocol, {len(tasks)} tasks, split {args.split}, seed {cfg.seed}, "
          f"{time.perf_counter() - t0:.0f} s")
    out = {ref: against(sweep, tasks, ctx.utilities, cfg, ref) for ref in REFERENCES}
    for ref, result in out.items():
        print_table(ref, result, ctx.utilities, cfg.evaluation.k)
    if args.out:
        args.out.write_text(json.dumps({"run": str(run), "split": args.split, "references": out}, default=float,
                                       indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
