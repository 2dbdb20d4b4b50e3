"""Does DeepPRL's personal lambda_u beat the best fixed lambda? On a finished run's validation split.

    .venv/bin/python benchmarks/deepprl_policy.py [--run runs/<name>-<time>] [--seeds 0 1 2] \
        [--lambdas 21] [--policy policy_steps=400 gamma=0.9 ...] [--threads 1] [--out policy.json]
    .venv/bin/python benchmarks/deepprl_policy.py --combine seed0.json seed1.json ...

Per seed: DeepPRL-static's heads and DeepPRL's policy (trained on the user simulator, the heads
shared) are built from the run's inputs with the run's settings. Every user of the split is ranked
by the heads under each fixed lambda of a grid (``--lambdas`` values in [0, 1], task-independent),
and by DeepPRL's ``lambda_u`` on each grid task. A user's reward at task ``w`` is
``sum_j w_j z_j`` with each objective on Retrain's front ends on the same split (the report's
normalisation, fixed before any method here runs).

Compared per task, then averaged over the interior tasks (``0 < w_acc < 1``: at the pure tasks the
policy has nothing to trade and serves ``lambda = w_acc``):
- ``best fixed``: the lambda with the highest mean reward on these very users (chosen in-sample,
  so it flatters the fixed lambda); ``cross-fitted``: chosen on the other half of the users;
- ``w_acc``: DeepPRL-static itself (``lambda = w_acc``);
- ``oracle``: each user's own best lambda of the grid, the most any personal lambda could gain
  (chosen on the user's one held-out item: an upper bound, not a method).

Intervals: 95% paired bootstrap over users (1000 draws, seed 0) of DeepPRL minus each, per seed;
over seeds, ``pipelines.experiment.interval_over_seeds_and_users``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from band import newest_run, parse_overrides, run_config  # noqa: E402 (benchmarks/band.py)
from run_folder import run_inputs  # noqa: E402 (benchmarks/run_folder.py)

from padirec.runtime.progress import setup_logging  # noqa: E402

DRAWS = 1000
BASELINES = ("best_fixed", "cross_fitted", "w_acc", "oracle")


def retrain_scale(ctx, cfg, split: str):
    """Retrain's front ends on ``split`` (its points at the pure tasks): the report's normalisation."""
    from padirec.evaluation.summary import report_scale
    from padirec.evaluation.sweep import run_sweep
    from padirec.methods.registry import build_methods

    ev = cfg.evaluation
    pure = np.eye(len(ctx.utilities))
    sweep = run_sweep(build_methods(["retrain"], ctx, cfg.methods), pure, ctx.features, split, ev.k, ev.alpha)
    return report_scale(sweep.metrics, pure, ctx.utilities, ev.k)


def z_scores(evaluator, scores: torch.Tensor, scale, keys: list[str]) -> np.ndarray:
    """``(U, p)`` each user's objectives of ``scores`` on ``scale`` (1 = best)."""
    out = evaluator.per_user(scores)
    v = np.stack([out[key].double().cpu().numpy() for key in keys], 1)
    worst, best = np.asarray(scale.worst), np.asarray(scale.best)
    return (v - worst) / (best - worst)


def one_seed(ctx, cfg, split: str, lambdas: np.ndarray, tasks: np.ndarray, scale, policy: dict) -> dict:
    """Per-user rewards ``(U, T)`` of DeepPRL and of every fixed lambda ``(L, U, T)``, and the lambdas."""
    from padirec.evaluation.summary import objective_keys
    from padirec.evaluation.sweep import SplitEvaluator
    from padirec.methods.registry import build_methods

    ev = cfg.evaluation
    settings = dict(cfg.methods)
    settings["deepprl"] = dataclasses.replace(settings["deepprl"], **policy)
    ctx = dataclasses.replace(ctx, seed=cfg.seed, shared={})  # the heads trained once, shared by the two
    methods = build_methods(["deepprl_static", "deepprl"], ctx, settings)
    static, full = methods["deepprl_static"], methods["deepprl"]
    t0 = time.perf_counter()
    full.fit()
    fit_s = time.perf_counter() - t0
    keys = objective_keys(ctx.utilities, ev.k)
    evaluator = SplitEvaluator(ctx.features, split, ev.k, ev.alpha)
    fixed = np.stack([z_scores(evaluator, static.rank((float(lam), 1 - float(lam)), split), scale, keys)
                      for lam in lambdas])  # (L, U, p)
    personal, spread = [], []
    for w in tasks:
        personal.append(z_scores(evaluator, full.scores(full.prepare_split(w, split), split), scale, keys))
        lam = full.user_weights(float(w[0]), split)
        spread.append([float(lam.mean()), float(lam.std()), float(lam.min()), float(lam.max())])
    return {"fixed": fixed @ tasks.T, "deepprl": np.stack(personal) @ tasks.T,  # (L, U, T) and (T, U, T) -> diag
            "lambda": spread, "fit_s": fit_s, "history": full.history[-10:]}


def compare(fixed: np.ndarray, personal: np.ndarray, lambdas: np.ndarray, w_acc: np.ndarray) -> dict:
    """Each baseline's per-user reward ``(U, T)`` from the fixed lambdas' ``(L, U, T)``, and the
    chosen lambdas."""
    n_users = fixed.shape[1]
    best = fixed.mean(1).argmax(0)  # (T,) in-sample
    halves = np.arange(n_users) % 2
    cross = np.empty_like(personal)
    for half in (0, 1):  # each half served the lambda chosen on the other half
        pick = fixed[:, halves != half].mean(1).argmax(0)
        cross[halves == half] = fixed[pick, :, np.arange(fixed.shape[2])].T[halves == half]
    at_w = np.abs(lambdas[:, None] - w_acc[None]).argmin(0)
    cols = np.arange(fixed.shape[2])
    return {"best_fixed": fixed[best, :, cols].T, "cross_fitted": cross, "w_acc": fixed[at_w, :, cols].T,
            "oracle": fixed.max(0), "chosen": lambdas[best].tolist()}


def interval(per_user: np.ndarray) -> list[float]:
    """95% paired bootstrap interval of the mean of ``per_user (U,)``."""
    from padirec.evaluation.uncertainty import bootstrap_counts, percentile_ci

    draws = np.concatenate([c @ per_user / len(per_user) for c in bootstrap_counts(len(per_user), DRAWS, 0)])
    return percentile_ci(draws).tolist()


def over_seeds(seeds: list[int], rows: dict[str, list]) -> None:
    """The summary over seeds of each baseline's ``(mean, interval)`` per seed."""
    from pipelines.experiment import interval_over_seeds_and_users, mean_sd

    print(f"\nover seeds {seeds}, interior tasks: DeepPRL minus each, mean [95% interval over seeds and users]:")
    for b in BASELINES:
        stat = mean_sd([p for p, _ in rows[b]])
        ci = interval_over_seeds_and_users(stat, [c for _, c in rows[b]]) if len(seeds) > 1 else rows[b][0][1]
        print(f"  - {b}: {stat['mean']:+.4f} [{ci[0]:+.4f}, {ci[1]:+.4f}] (per seed: "
              f"{', '.join(f'{p:+.4f}' for p, _ in rows[b])})")


def combine(paths: list[Path]) -> int:
    """The over-seeds summary of several ``--out`` files (one seed per process keeps each run short)."""
    per_seed = [r for p in paths for r in json.loads(p.read_text())["per_seed"]]
    over_seeds([r["seed"] for r in per_seed], {b: [tuple(r["diff"][b]) for r in per_seed] for b in BASELINES})
    return 0


def main(argv: list[str] | None = None) -> int:
    from padirec.core.tasks import grid

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", type=Path, default=None, help="a finished run folder (default: the newest)")
    ap.add_argument("--split", default="valid", choices=("valid",), help="lambdas are chosen on it: never test")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--lambdas", type=int, default=21, help="fixed lambdas, evenly spaced in [0, 1]")
    ap.add_argument("--policy", nargs="*", default=[], help="DeepPRL settings, key=value")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--combine", type=Path, nargs="+", default=None, help="summarise earlier --out files; runs nothing")
    args = ap.parse_args(argv)
    if args.combine:
        return combine(args.combine)
    setup_logging()
    torch.set_num_threads(args.threads)
    run = args.run or newest_run()
    base = run_config(run)
    policy = parse_overrides(args.policy)
    ctx = run_inputs(run, base).context
    if list(ctx.utilities) != ["accuracy", "diversity"]:
        raise SystemExit(f"two utilities (accuracy, diversity) only; the run has {ctx.utilities}")
    tasks = grid(2, base.adapters.grid_size)
    inner = (tasks[:, 0] > 0) & (tasks[:, 0] < 1)
    lambdas = np.linspace(0, 1, args.lambdas)
    scale = retrain_scale(ctx, base, args.split)
    print(f"{run}: split {args.split}, seeds {args.seeds}, {args.lambdas} fixed lambdas, policy overrides "
          f"{policy or 'none'}; scale: {scale.source}, worst {scale.worst}, best {scale.best}", flush=True)
    rows, results = {b: [] for b in BASELINES}, []
    for seed in args.seeds:
        t0 = time.perf_counter()
        res = one_seed(ctx, dataclasses.replace(base, seed=seed), args.split, lambdas, tasks, scale, policy)
        cols = np.arange(len(tasks))
        personal = res["deepprl"][cols, :, cols].T  # (U, T): task t's lists scored at task t
        cmp = compare(res["fixed"], personal, lambdas, tasks[:, 0])
        print(f"\nseed {seed} ({time.perf_counter() - t0:.0f} s, DeepPRL fit {res['fit_s']:.0f} s); "
              f"best fixed lambda per task (w_acc 0..1): {', '.join(f'{x:.2f}' for x in cmp['chosen'])}")
        print("| w_acc | DeepPRL reward | lambda_u mean (sd, min-max) | best fixed | w_acc as lambda | oracle |")
        print("|---|---|---|---|---|---|")
        for t, w in enumerate(tasks):
            m, sd, lo, hi = res["lambda"][t]
            print(f"| {w[0]:.1f} | {personal[:, t].mean():.4f} | {m:.3f} ({sd:.3f}, {lo:.3f}-{hi:.3f}) | "
                  f"{cmp['best_fixed'][:, t].mean():.4f} | {cmp['w_acc'][:, t].mean():.4f} | "
                  f"{cmp['oracle'][:, t].mean():.4f} |")
        mine = personal[:, inner].mean(1)
        print(f"interior tasks: DeepPRL {mine.mean():.4f}; DeepPRL minus each [95% paired bootstrap over users]:")
        for b in BASELINES:
            diff = mine - cmp[b][:, inner].mean(1)
            ci = interval(diff)
            rows[b].append((float(diff.mean()), ci))
            print(f"  - {b}: {diff.mean():+.4f} [{ci[0]:+.4f}, {ci[1]:+.4f}]")
        results.append({"seed": seed, "fit_s": res["fit_s"], "lambda": res["lambda"], "chosen": cmp["chosen"],
                        "deepprl": personal.mean(0).tolist(), "history": res["history"],
                        "diff": {b: rows[b][-1] for b in BASELINES},
                        **{b: cmp[b].mean(0).tolist() for b in BASELINES}})
    over_seeds(args.seeds, rows)
    if args.out:
        args.out.write_text(json.dumps({"run": str(run), "args": {k: str(v) for k, v in vars(args).items()},
                                        "per_seed": results}, default=float, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
