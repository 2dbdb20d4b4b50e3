"""The band protocol on a finished run, on the validation split, over several seeds (issue 14).

    .venv/bin/python benchmarks/band.py [--run runs/<name>-<time>] [--split valid] [--seeds 0 1 2] \
        [--band 0.3 0.7] [--methods padirec retrain nn_lookup interpolation hypernetwork cmr soup] \
        [--generator train_steps=8000 samples_per_task=8 ...] [--threads 1] [--out band.json]

Every bank task with ``w_acc`` in the band is removed from what the methods that learn from tasks
see (``padirec.evaluation.protocols``); a generator is trained on the rest with the run's generator
settings (``--generator key=value`` overrides them: the knob for generator work) and each seed; the
methods run on the band's grid tasks plus the two ends, on ``--split`` (default ``valid``: choices
are made there; the test split is read once, by the pipeline's evaluate stage). A seed is the run
seed of everything trained or drawn here (the band's generator, the Hypernetwork, CMR, PaDiRec's
sampling noise); the bank and the backbone are the run's. ``padirec_1`` is PaDiRec serving a single
sample instead of the mean of ``samples_per_task``; ``padirec_z0`` one deterministic sample started
from zero noise (the prior's mean).

``--protocol grid`` runs the whole grid instead, with a generator trained on the run's bank (the
grid protocol), to check a generator setting chosen on the band does not cost the grid.

Prints, per method, the mean ± sd over seeds of the reward, the regret against Retrain and the
Pearson correlations, and the first seed's paired-bootstrap interval of the regret; then the goal:
PaDiRec's reward at least Retrain's minus 0.01, and above NN lookup's and interpolation's by more
than their intervals.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import statistics
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from run_folder import run_inputs  # noqa: E402 (benchmarks/run_folder.py)

from padirec.runtime.progress import setup_logging  # noqa: E402

GOAL_SLACK = 0.01  # the target: PaDiRec's reward >= Retrain's - 0.01
DRAWS = 1000  # bootstrap draws of the users for the differences between methods
FIGURES = ("reward", "regret", "pearson_ra", "pearson_rd")


def newest_run() -> Path:
    runs = sorted((p for p in Path("runs").glob("*-*") if (p / "config.json").exists()),
                  key=lambda p: p.stat().st_mtime)
    if not runs:
        raise SystemExit("no finished run under runs/ (make run first) and no --run given")
    return runs[-1]


def run_config(run: Path, generator: dict[str, object] | None = None):
    """The run's config on the CPU, with today's method settings (the run's may predate a method)
    and ``generator`` overrides."""
    from padirec.config import config_from_dict

    raw = json.loads((run / "config.json").read_text())
    raw.pop("methods", None)
    raw["device"] = "cpu"
    for key, value in (generator or {}).items():
        raw.setdefault("generator", {})[key] = value
    return config_from_dict(raw)


def parse_overrides(items: list[str]) -> dict[str, object]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--generator {item!r}: expected key=value")
        out[key] = yaml.safe_load(value)
    return out


def one_seed(ctx, cfg, names: list[str], split: str, band: tuple[float, float] | None, single: bool) -> dict:
    """The band protocol's summary for one seed (the grid protocol's when ``band`` is None):
    ``{method: figures}`` plus the generator's."""
    from padirec.core.tasks import grid
    from padirec.evaluation.protocols import band_context, band_task_index
    from padirec.evaluation.summary import summarise
    from padirec.evaluation.sweep import run_sweep
    from padirec.evaluation.uncertainty import add_uncertainty
    from padirec.methods.registry import METHODS, build_methods

    ev = cfg.evaluation
    tasks = grid(len(ctx.utilities), cfg.adapters.grid_size)
    learners = [m for m in names if METHODS[m].learns_from_tasks]
    fixed = [m for m in names if m not in learners]
    ctx = dataclasses.replace(ctx, seed=cfg.seed)
    if band is None:  # the grid protocol: the whole grid, a generator trained on the run's bank rows
        band_ctx, info = grid_context(ctx, cfg, "padirec" in learners)
    else:
        tasks = tasks[band_task_index(tasks, ctx.utilities, band)]
        band_ctx, info = band_context(ctx, cfg.generator, band, "padirec" in learners, cfg.seed)
    methods = {**build_methods(fixed, ctx, cfg.methods), **build_methods(learners, band_ctx, cfg.methods)}
    if single and "padirec" in methods:
        one = copy.copy(methods["padirec"])
        one.generator = copy.copy(one.generator)
        one.generator.cfg = dataclasses.replace(one.generator.cfg, samples_per_task=1)
        methods["padirec_1"] = one
        zero = copy.copy(methods["padirec"])
        zero.prepare = types.MethodType(zero_start_prepare, zero)
        methods["padirec_z0"] = zero
    sweep = run_sweep(methods, tasks, ctx.features, split, ev.k, ev.alpha, ev.sampled, cfg.seed, per_user=True)
    summary = summarise(sweep.metrics, tasks, ctx.utilities, ev.k, reference="retrain")
    add_uncertainty(summary, sweep, ctx, cfg, "retrain", ceiling=False)
    return {"tasks": tasks.tolist(), "info": info, "summary": summary, "fit_seconds": sweep.fit_seconds,
            "regret_draws": regret_draws(sweep, tasks, ctx.utilities, ev.k)}


def regret_draws(sweep, tasks: np.ndarray, utilities: list[str], k: int) -> dict[str, list[float]]:
    """Each method's regret on ``DRAWS`` bootstrap draws of the users, the same draws for every seed
    (bootstrap seed 0): paired over methods and seeds, so a difference between two methods can be
    averaged over the seeds draw by draw."""
    from padirec.evaluation.summary import objective_keys, report_scale
    from padirec.evaluation.uncertainty import (
        bootstrap_counts,
        metric_replicates,
        reward_replicates,
    )

    keys = objective_keys(utilities, k)
    users = len(next(iter(sweep.per_user.values()))[0][keys[0]])
    reps = metric_replicates(sweep.per_user, keys, k, bootstrap_counts(users, DRAWS, 0), sweep.user_groups)
    objectives = {m: np.stack([reps[m][key] for key in keys], axis=1) for m in reps}
    _, regret = reward_replicates(objectives, tasks, report_scale(sweep.metrics, tasks, utilities, k), "retrain")
    return {m: r.tolist() for m, r in regret.items()}


def difference(per_seed: list[dict], a: str, b: str) -> tuple[float, list[float] | None]:
    """``a``'s regret minus ``b``'s, mean over the seeds, with a 95% interval holding the seeds' and
    the users' noise (``pipelines.experiment.interval_over_seeds_and_users``)."""
    from padirec.evaluation.uncertainty import percentile_ci
    from pipelines.experiment import interval_over_seeds_and_users
    from pipelines.experiment import mean_sd as stat_of

    points = [s["summary"][a]["regret"] - s["summary"][b]["regret"] for s in per_seed]
    draws = np.mean([np.subtract(s["regret_draws"][a], s["regret_draws"][b]) for s in per_seed], axis=0)
    stat = stat_of(points)
    users = percentile_ci(draws).tolist()
    if len(per_seed) < 2:
        return stat["mean"], users
    return stat["mean"], interval_over_seeds_and_users(stat, [users])


@torch.no_grad()
def zero_start_prepare(self, weights):
    """PaDiRec served by one sample from the prior's mean (zero starting noise): a single,
    deterministic adapter per task (the ``padirec_z0`` row)."""
    from padirec.diffusion.sampling import sample_tokens

    gen = self.generator
    w = self.task_weights(weights).cpu()[None]
    noise = torch.zeros(1, gen.tokenizer.num_tokens, gen.tokenizer.token_size)
    tokens = sample_tokens(gen.model, gen.scheduler(gen.cfg.sampler), w, gen.tokenizer.num_tokens,
                           gen.tokenizer.token_size, gen.cfg.guidance_scale, gen.cfg.num_inference_steps, None, noise)
    return gen.normalizer.denormalize(gen.tokenizer.decode(tokens))[0].to(self.device)


def grid_context(ctx, cfg, train_gen: bool):
    """The grid protocol's context: the run's bank, a generator trained on it with ``cfg.generator``."""
    from padirec.diffusion.stage import training_rows
    from padirec.diffusion.train import train_generator

    info = {"bank_tasks_removed": 0}
    if not train_gen:
        return ctx, info
    params, weights, held = training_rows(ctx.bank, cfg.generator.targets)
    gen = train_generator(params, weights, ctx.layout, cfg.generator, seed=cfg.seed, held_out_mask=held,
                          utilities=ctx.utilities)
    info["generator"] = {k: float(v) for k, v in gen.stats.items()}
    return dataclasses.replace(ctx, generator=gen), info


def mean_sd(values: list[float]) -> str:
    values = [v for v in values if v is not None and np.isfinite(v)]
    if not values:
        return "n/a"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.4f} ± {sd:.4f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", type=Path, default=None, help="a finished run folder (default: the newest)")
    ap.add_argument("--split", default="valid", choices=("valid", "test"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--band", type=float, nargs=2, default=[0.3, 0.7])
    ap.add_argument("--protocol", choices=("band", "grid"), default="band",
                    help="grid: the whole grid with a generator trained on the run's bank (no band removed)")
    ap.add_argument("--methods", nargs="+",
                    default=["padirec", "retrain", "nn_lookup", "interpolation", "hypernetwork", "cmr", "soup"])
    ap.add_argument("--generator", nargs="*", default=[], help="generator settings for the band's generator")
    ap.add_argument("--no-single", action="store_true", help="skip the single-sample PaDiRec row")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    setup_logging()
    torch.set_num_threads(args.threads)
    run = args.run or newest_run()
    if "retrain" not in args.methods:
        raise SystemExit("--methods must include retrain (the reference of regret and Pearson)")
    base = run_config(run, parse_overrides(args.generator))
    t0 = time.perf_counter()
    ctx = run_inputs(run, base).context
    print(f"{run}: inputs and features in {time.perf_counter() - t0:.1f} s; split {args.split}, band {args.band}, "
          f"seeds {args.seeds}, generator overrides {parse_overrides(args.generator) or 'none'}", flush=True)
    per_seed = []
    for seed in args.seeds:
        cfg = dataclasses.replace(base, seed=seed)
        t0 = time.perf_counter()
        band = tuple(args.band) if args.protocol == "band" else None
        per_seed.append(one_seed(ctx, cfg, list(args.methods), args.split, band, not args.no_single))
        print(f"seed {seed}: {time.perf_counter() - t0:.0f} s", flush=True)

    first = per_seed[0]["summary"]
    print(f"\n{args.protocol} {args.band if args.protocol == 'band' else ''} on {args.split}: tasks w_acc "
          f"{', '.join(f'{w[0]:.1f}' for w in per_seed[0]['tasks'])}; {per_seed[0]['info']['bank_tasks_removed']} "
          f"bank tasks removed; mean ± sd over seeds {args.seeds}; regret CI: seed {args.seeds[0]}, 95% paired "
          "bootstrap over users")
    print("| method | reward | regret | regret CI | Pearson r-a | Pearson r-d |")
    print("|---|---|---|---|---|---|")
    table = {}
    for m in first:
        cells = {f: [s["summary"][m].get(f) for s in per_seed] for f in FIGURES}
        ci = first[m].get("regret_ci") or [None, None]
        table[m] = cells
        ci_text = f"[{ci[0]:+.4f}, {ci[1]:+.4f}]" if None not in ci else "n/a"
        print(f"| {m} | {mean_sd(cells['reward'])} | {mean_sd(cells['regret'])} | {ci_text} | "
              f"{mean_sd(cells['pearson_ra'])} | {mean_sd(cells['pearson_rd'])} |")
    interior = [i for i, w in enumerate(per_seed[0]["tasks"]) if not np.isclose(max(w), 1.0)]
    print(f"\nPareto dominance against Retrain on the {len(interior)} unseen tasks (summed over seeds; in "
          "brackets: tasks where it holds in at least 95% of the bootstrap draws):")
    for m in first:
        if m == "retrain" or "dominance" not in first[m]:
            continue
        counts = {v: 0 for v in ("dominates", "dominated")}
        sure = dict(counts)
        for s in per_seed:
            share = s["summary"][m].get("dominance_share") or {}
            for i in interior:
                verdict = s["summary"][m]["dominance"]["per_task"][i]
                counts[verdict] = counts.get(verdict, 0) + 1
                for v in sure:
                    sure[v] += bool(share.get(v)) and share[v][i] >= 0.95
        print(f"  {m}: dominates {counts['dominates']} ({sure['dominates']}), dominated {counts['dominated']} "
              f"({sure['dominated']})")
    if "padirec" in first:
        print("\nregret differences, mean over seeds [95% interval over seeds and users]:")
        for base_m in ("nn_lookup", "interpolation", "hypernetwork"):
            if base_m in first:
                point, ci = difference(per_seed, "padirec", base_m)
                ci_text = f"[{ci[0]:+.4f}, {ci[1]:+.4f}]" if ci else "n/a"
                print(f"  padirec - {base_m}: {point:+.4f} {ci_text}")
        goal(table, first)
    if args.out:
        args.out.write_text(json.dumps({"run": str(run), "args": {k: str(v) for k, v in vars(args).items()},
                                        "per_seed": per_seed}, default=float, indent=1))
    return 0


def goal(table: dict, first: dict) -> None:
    """The issue's target for the generator, on these figures."""
    def mean(m: str, f: str) -> float:
        return statistics.fmean(v for v in table[m][f] if v is not None)

    for m in ("padirec", "padirec_1"):
        if m not in table:
            continue
        gap = mean(m, "reward") - mean("retrain", "reward")
        print(f"{m}: reward - Retrain's = {gap:+.4f} (goal >= -{GOAL_SLACK}): {'met' if gap >= -GOAL_SLACK else 'NOT met'}")
        for base in ("nn_lookup", "interpolation"):
            if base in table:
                edge = mean(m, "reward") - mean(base, "reward")
                ci = first[base].get("reward_ci") or [None, None]
                half = (ci[1] - ci[0]) / 2 if None not in ci else float("nan")
                print(f"  vs {base}: {edge:+.4f} (its reward interval half-width {half:.4f}): "
                      f"{'above by more than its interval' if edge > half else 'NOT above by more than its interval'}")


if __name__ == "__main__":
    raise SystemExit(main())
