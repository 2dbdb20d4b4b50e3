"""Response time of a new task against quality, per sampler x steps x samples_per_task (issue 16).

    .venv/bin/python benchmarks/bench_generation.py --run runs/<name>-<time> [--split valid] \
        [--samplers ddim dpm_solver++] [--steps 1 2 3 5 10 25] [--samples 1 2 4 8 16] [--antithetic 0 1] \
        [--seeds 0 1 2] [--repeats 30] [--ddpm] [--retrain-repeats 3] [--out bench_generation.json] [--threads 1]

With ``--run`` (a finished ``padirec run``; read only): its trained generator is sampled as it is
(nothing retrains) with every sampler x ``num_inference_steps`` x ``samples_per_task`` x
``antithetic`` (independent noise, or antithetic pairs ``z, -z`` per task) and, for each, prints

- the response time of a new task: ``PaDiRec.prepare(w)``, everything the served model does before
  it can rank (validate ``w``, sample, denormalise, average the samples), on ``--threads`` torch
  threads, for ``--repeats`` tasks never seen by the bank (one untimed warm-up): median wall ms,
  p25-p75, and the median CPU ms of the thread (``time.thread_time``; on a shared machine the
  wall time counts the other processes' turns, the CPU time hardly does);
- its quality on ``--split`` (default ``valid``: choices are made there, the test split is read
  once by the evaluate stage): Pearson r-a / r-d against Retrain over the evaluation grid, and the
  reward ``sum_j w_j z_j`` with the objectives on the report's fixed scale (Retrain's own
  front ends, ``summary.report_scale``), so every row is on the same scale. Means over ``--seeds`` (the run seed of ``PaDiRec``'s per-task noise).

The candidates are the rows whose r-a, r-d and reward are all within ``--tolerance`` of the
reference row (or better) and whose median CPU time is under ``--target-ms``; the recommendation is
the fastest candidate whose reward is within ``REWARD_SLACK`` of the best candidate's (the fastest
candidate overall is printed too: with the fewest samples it is the noisiest; Pearson over 11 tasks
moves by ~0.01 between seeds).

Without ``--run``: a generator is trained on ``--bank`` (an ``adapter_bank`` folder) or on a
synthetic bank whose adapters are a known function of ``w``, and quality is the relative L2 error
of the served adapters to the mean of each held-out task's checkpoints (no data to rank with).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from run_folder import find, run_inputs  # noqa: E402 (benchmarks/run_folder.py)

from padirec.diffusion.config import GeneratorConfig  # noqa: E402
from padirec.diffusion.generator import Generator  # noqa: E402
from padirec.runtime.progress import setup_logging  # noqa: E402

# the recommendation: the fastest candidate whose reward is within this of the best candidate's (the
# reward moves by a few thousandths between seeds, so a smaller edge is not a reason to be slower)
REWARD_SLACK = 0.005


@dataclasses.dataclass(frozen=True)
class Setting:
    sampler: str
    steps: int
    samples: int
    antithetic: bool

    @property
    def name(self) -> str:
        return f"{self.sampler}/{self.steps}/{self.samples}{'/anti' if self.antithetic else ''}"


def variant(base: Generator, s: Setting) -> Generator:
    gen = copy.copy(base)
    gen.cfg = dataclasses.replace(base.cfg, sampler=s.sampler, num_inference_steps=s.steps, samples_per_task=s.samples,
                                  antithetic=s.antithetic)
    return gen


def settings(base: GeneratorConfig, args) -> list[Setting]:
    out = [Setting(base.sampler, base.num_inference_steps if base.sampler != "ddpm" else base.num_train_timesteps,
                   base.samples_per_task, base.antithetic and base.samples_per_task > 1)]
    if args.ddpm:
        out.append(Setting("ddpm", base.num_train_timesteps, base.samples_per_task, False))
    for sampler in args.samplers:
        for steps in args.steps:
            if sampler == "dpm_solver++" and steps < 3:
                continue  # below 3 steps DPM-Solver++(2M) is DDIM (its first and last steps are first order)
            for n in args.samples:
                for anti in sorted({bool(a) and n > 1 for a in args.antithetic}):
                    s = Setting(sampler, steps, n, anti)
                    if s not in out:
                        out.append(s)
    return out


def time_prepare(prepares: dict, tasks: np.ndarray) -> dict:
    """Time each of ``prepares`` (``{key: prepare(w)}``) on ``tasks[1:]`` after a warm-up on
    ``tasks[0]``, interleaved (task by task, every key in turn) so that the load of a shared machine
    falls on every key alike. ``{key: {wall_ms, p25_ms, p75_ms, cpu_ms}}`` (medians)."""
    for prepare in prepares.values():
        prepare(tasks[0])
    wall: dict = {k: [] for k in prepares}
    cpu: dict = {k: [] for k in prepares}
    for w in tasks[1:]:
        for k, prepare in prepares.items():
            t, c = time.perf_counter(), time.thread_time()
            prepare(w)
            cpu[k].append(time.thread_time() - c)
            wall[k].append(time.perf_counter() - t)
    out = {}
    for k in prepares:
        q = np.percentile(np.asarray(wall[k]) * 1000, [25, 50, 75])
        out[k] = {"wall_ms": float(q[1]), "p25_ms": float(q[0]), "p75_ms": float(q[2]),
                  "cpu_ms": 1000 * statistics.median(cpu[k])}
    return out


def fmt(v: float | None, width: int, digits: int = 4) -> str:
    return f"{'n/a':>{width}}" if v is None or not math.isfinite(v) else f"{v:>{width}.{digits}f}"


# ----------------------------------------------------------------------------- a finished run



def run_mode(args) -> dict:
    from padirec.config import config_from_json
    from padirec.core.tasks import grid
    from padirec.evaluation.response_time import new_tasks
    from padirec.evaluation.summary import normalise, objective_points, pearson, report_scale
    from padirec.evaluation.sweep import SplitEvaluator
    from padirec.methods.padirec import PaDiRec
    from padirec.methods.registry import build_methods

    run = Path(args.run)
    raw = json.loads((run / "config.json").read_text())
    # only Retrain and PaDiRec are built here: other methods' settings may have changed since the run
    raw["methods"] = {k: v for k, v in (raw.get("methods") or {}).items() if k in ("retrain", "padirec")}
    cfg = dataclasses.replace(config_from_json(json.dumps(raw)), device="cpu")
    ev = cfg.evaluation
    t0 = time.perf_counter()
    inputs = run_inputs(run, cfg)
    ctx = inputs.context
    base = ctx.load_generator("padirec")
    tasks = grid(len(ctx.utilities), cfg.adapters.grid_size)
    evaluator = SplitEvaluator(ctx.features, args.split, ev.k, ev.alpha)
    retrain = build_methods(["retrain"], ctx, cfg.methods)["retrain"]
    ref_rows = [evaluator(retrain.scores(retrain.prepare(w), args.split)) for w in tasks]
    print(f"inputs, features and Retrain on {args.split}: {time.perf_counter() - t0:.1f} s")
    seen = ctx.bank.weights.cpu().numpy().astype(np.float64)
    fresh = new_tasks(args.repeats + 1, len(ctx.utilities), cfg.seed, seen)

    rows: dict[Setting, dict] = {}
    for s in settings(base.cfg, args):
        gen = variant(base, s)
        seeds = args.seeds if s.sampler != "ddpm" else args.seeds[:1]
        per_seed = []
        for seed in seeds:
            method = PaDiRec(ctx.features, ctx.utilities, ctx.layout, gen, seed)
            per_seed.append([evaluator(method.scores(method.prepare(w), args.split)) for w in tasks])
        rows[s] = {"metrics": per_seed, "seeds": list(seeds)}
        print(f"  quality of {s.name} on {args.split}: done", flush=True)
    timed = [s for s in rows if s.sampler != "ddpm"]
    timings = time_prepare({s: PaDiRec(ctx.features, ctx.utilities, ctx.layout, variant(base, s), cfg.seed).prepare
                            for s in timed}, fresh)
    for s in rows:
        rows[s].update(timings[s] if s in timings else
                       time_prepare({s: PaDiRec(ctx.features, ctx.utilities, ctx.layout, variant(base, s),
                                                cfg.seed).prepare}, fresh[:4])[s])

    # quality: Pearson against Retrain; reward on the report's scale (Retrain's own front ends)
    acc, div = f"ndcg@{ev.k}", f"alpha_ndcg@{ev.k}"
    ref_setting = next(iter(rows))
    scale = report_scale({"retrain": ref_rows}, tasks, ctx.utilities, ev.k)

    def reward(metric_rows) -> float:
        z = normalise(objective_points({"r": metric_rows}, ctx.utilities, ev.k), scale)["r"]
        return float((z * tasks).sum(1).mean())

    for row in rows.values():
        ra = [pearson([r[acc] for r in m], [r[acc] for r in ref_rows]) for m in row["metrics"]]
        rd = [pearson([r[div] for r in m], [r[div] for r in ref_rows]) for m in row["metrics"]]
        rw = [reward(m) for m in row["metrics"]]
        row.update(pearson_ra=float(np.mean(ra)), pearson_rd=float(np.mean(rd)), reward=float(np.mean(rw)),
                   pearson_ra_seeds=ra, pearson_rd_seeds=rd, reward_seeds=rw)
    retrain_reward = reward(ref_rows)

    ref = rows[ref_setting]
    print(f"\n{cfg.data.source} / {inputs.backbone_name}, generator {find(run, '**/train-generator/generator/manifest.json')}")
    print(f"{len(tasks)} grid tasks on the {args.split} split; Pearson and reward: means over run seeds "
          f"{args.seeds}; reward on Retrain's front ends (Retrain's own reward "
          f"{retrain_reward:.4f}); latency: PaDiRec.prepare on {args.threads} thread(s), {args.repeats} new tasks")
    print("reference row (what the run serves today): " + ref_setting.name)
    head = (f"| {'sampler':<12} | {'steps':>5} | {'samples':>7} | {'anti':>4} | {'cpu ms':>7} | {'wall ms':>7} | {'wall p25-p75':>13} "
            f"| {'r-a':>6} | {'r-d':>6} | {'reward':>6} | {'d r-a':>7} | {'d r-d':>7} | {'d reward':>8} |")
    print(head)
    print("|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|")
    ok = []
    for s, row in rows.items():
        d = {k: row[k] - ref[k] for k in ("pearson_ra", "pearson_rd", "reward")}
        fine = all(v >= -args.tolerance for v in d.values())
        if fine and row["cpu_ms"] < args.target_ms:
            ok.append(s)
        print(f"| {s.sampler:<12} | {s.steps:>5} | {s.samples:>7} | {'yes' if s.antithetic else 'no':>4} | "
              f"{row['cpu_ms']:>7.2f} | {row['wall_ms']:>7.2f} | "
              f"{row['p25_ms']:>6.1f}-{row['p75_ms']:<6.1f} | {row['pearson_ra']:>6.3f} | {row['pearson_rd']:>6.3f} | "
              f"{row['reward']:>6.3f} | {d['pearson_ra']:>+7.3f} | {d['pearson_rd']:>+7.3f} | {d['reward']:>+8.3f} |")
    fastest = min(ok, key=lambda s: rows[s]["cpu_ms"]) if ok else None
    best = max((rows[s]["reward"] for s in ok), default=math.nan)
    near = [s for s in ok if rows[s]["reward"] >= best - REWARD_SLACK]
    chosen = min(near, key=lambda s: rows[s]["cpu_ms"]) if near else None
    print(f"\nrows under {args.target_ms} ms CPU with r-a, r-d and reward within {args.tolerance} of the reference: "
          f"{', '.join(s.name for s in ok) or 'none'}")
    print(f"fastest of them: {fastest.name if fastest else 'none'}; recommended (the fastest of those within "
          f"{REWARD_SLACK} of their best reward): {chosen.name if chosen else 'none'}")
    if args.retrain_repeats > 0:
        retrain_ratio(run, cfg, ctx, fresh, rows, ref_setting, chosen, args)
    return {"run": str(run), "split": args.split, "reference": ref_setting.name, "retrain_reward": retrain_reward,
            "chosen": chosen.name if chosen else None, "fastest": fastest.name if fastest else None,
            "candidates": [s.name for s in ok], "threads": args.threads,
            "rows": {s.name: {k: v for k, v in row.items() if k != "metrics"} | {"per_task": row["metrics"]}
                     for s, row in rows.items()}}


def retrain_ratio(run: Path, cfg, ctx, fresh: np.ndarray, rows: dict, ref: Setting, chosen: Setting | None,
                  args) -> None:
    """Retrain (an adapter trained to its epoch budget for a new task) over the served generation."""
    from padirec.adapters.train import train_adapter

    times = []
    for r in range(args.retrain_repeats):
        t = time.perf_counter()
        train_adapter(ctx.features, fresh[1 + r], cfg.adapters, seed=r)
        times.append(time.perf_counter() - t)
    med = statistics.median(times)
    print(f"\nRetrain of a new task: median {med:.2f} s over {len(times)} repeats")
    for s in (ref, chosen):
        if s is not None:
            print(f"  {s.name:<22} wall {rows[s]['wall_ms']:8.2f} ms -> Retrain / PaDiRec = "
                  f"{med / (rows[s]['wall_ms'] / 1000):10.0f}x")


# ----------------------------------------------------------------------------- no run: a bank alone


def bank_mode(args) -> dict:
    from padirec.adapters.bank import load_bank
    from padirec.diffusion.synthetic_bank import make_synthetic_bank
    from padirec.diffusion.train import train_generator

    bank = load_bank(args.bank) if args.bank else make_synthetic_bank(num_tasks=100, checkpoints=5, seed=0)
    cfg = GeneratorConfig(train_steps=args.train_steps, size=args.size, conditioning=args.conditioning,
                          log_every=max(1, args.train_steps // 10))
    utilities = getattr(bank, "utilities", ["accuracy", "diversity"])
    base = train_generator(bank.params, bank.weights, bank.layout, cfg, seed=0,
                           held_out_mask=torch.as_tensor(bank.held_out), utilities=utilities)
    mask = torch.as_tensor(bank.held_out, dtype=torch.bool)
    task_id = torch.as_tensor(bank.task_id)
    held = torch.unique(task_id[mask]).tolist()
    ref = torch.stack([bank.params[task_id == t].mean(0) for t in held])
    ws = torch.stack([bank.weights[task_id == t][0] for t in held])
    rng = np.random.default_rng(1)
    fresh = rng.dirichlet(np.ones(ws.shape[1]), args.repeats + 1)
    print(f"\nbank: {args.bank or 'synthetic (100 tasks x 5 checkpoints)'}, {len(bank.params)} rows, "
          f"{len(held)} held-out tasks; relative L2 of the served adapter to the task's checkpoint mean")
    print(f"| {'sampler':<12} | {'steps':>5} | {'samples':>7} | {'anti':>4} | {'cpu ms':>7} | {'wall ms':>7} | {'rel L2':>7} |")
    out = {}
    rows = settings(cfg, args)
    timings = time_prepare({s: (lambda w, g=variant(base, s): g.adapters(w, seed=0)) for s in rows}, fresh)
    for s in rows:
        gen = variant(base, s)
        errs = [float(((gen.adapters(ws, seed=seed) - ref).norm(dim=1) / ref.norm(dim=1)).mean())
                for seed in args.seeds]
        timing = timings[s]
        out[s.name] = {"rel_l2": float(np.mean(errs)), **timing}
        print(f"| {s.sampler:<12} | {s.steps:>5} | {s.samples:>7} | {'yes' if s.antithetic else 'no':>4} | "
              f"{timing['cpu_ms']:>7.2f} | {timing['wall_ms']:>7.2f} "
              f"| {np.mean(errs):>7.4f} |", flush=True)
    return {"bank": args.bank or "synthetic", "rows": out}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", help="a `padirec run` folder (read only): its generator, data, backbone and bank")
    ap.add_argument("--split", default="valid", choices=["valid", "test"])
    ap.add_argument("--samplers", nargs="+", default=["ddim", "dpm_solver++"])
    ap.add_argument("--steps", type=int, nargs="+", default=[1, 2, 3, 5, 10, 25])
    ap.add_argument("--samples", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    ap.add_argument("--antithetic", type=int, nargs="+", default=[0, 1], choices=[0, 1],
                    help="samples of a task from antithetic noise pairs (generator.antithetic): 0, 1 or both")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--ddpm", action="store_true", help="add DDPM over all T steps (slow; first seed only)")
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--target-ms", type=float, default=5.0)
    ap.add_argument("--tolerance", type=float, default=0.01)
    ap.add_argument("--retrain-repeats", type=int, default=3, help="time Retrain of a new task too (--run; 0 = skip)")
    ap.add_argument("--threads", type=int, default=1)  # the dev box is shared, and the target is one thread
    ap.add_argument("--out", help="write the table as JSON here")
    ap.add_argument("--bank", help="without --run: an adapter_bank folder (default: a synthetic bank)")
    ap.add_argument("--train-steps", type=int, default=GeneratorConfig.train_steps)
    ap.add_argument("--size", default=GeneratorConfig.size)
    ap.add_argument("--conditioning", default=GeneratorConfig.conditioning)
    args = ap.parse_args()
    setup_logging()
    torch.set_num_threads(args.threads)
    result = run_mode(args) if args.run else bank_mode(args)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
        print(f"written: {args.out}")


if __name__ == "__main__":
    main()
