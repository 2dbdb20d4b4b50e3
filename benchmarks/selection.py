"""The bank baselines and the sampling-time choices of PaDiRec, on the validation split of a finished run.

    .venv/bin/python benchmarks/selection.py --run runs/<name>-<time> [--split valid] \
        [--methods padirec retrain nn_lookup interpolation] [--guidance 0 0.5 1] [--samples 1 8] \
        [--out selection.json] [--threads 1] [--set methods.modt4r.epochs=2 ...]

1. Every method of ``--methods`` (registry keys, built from the run's data, backbone, adapter bank
   and generator exactly as the evaluate stage builds them) on the evaluation grid, on ``--split``:
   reward, regret against Retrain, Pearson r-a / r-d, each objective's range, and the paper's
   Avg.HV (``padirec.evaluation.summary``, objectives on Retrain's front ends, ``summary.report_scale``).
2. PaDiRec's sampling-time settings (no retraining): for every ``guidance_scale`` in ``--guidance``
   and ``samples_per_task`` in ``--samples``, the generated grid adapters on the same split, with
   Retrain and the bank baselines in the normalisation; the lowest regret is the choice. Settings
   chosen here are chosen on ``--split`` (default ``valid``: the test split is read once, by the
   evaluate stage); the JSON written to ``--out`` records it.

Reads the run; writes only ``--out``.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import time
from pathlib import Path

import torch
from run_folder import run_inputs  # benchmarks/run_folder.py


def fmt(v: float | None, width: int = 8, digits: int = 4) -> str:
    return f"{'n/a':>{width}}" if v is None or not math.isfinite(v) else f"{v:>{width}.{digits}f}"


def table(summary: dict, results: dict, names: list[str], k: int, label: str) -> None:
    print(f"{label:<22}{'reward':>8}{'regret':>8}{'r-a':>8}{'r-d':>8}{'Avg.HV':>8}{'front HV':>9}"
          f"{'NDCG@' + str(k):>17}{'aNDCG@' + str(k):>17}")
    for name in names:
        s = summary[name]
        a = [c[f"ndcg@{k}"] for c in results[name]]
        d = [c[f"alpha_ndcg@{k}"] for c in results[name]]
        print(f"{name:<22}{fmt(s['reward'])}{fmt(s['regret'])}{fmt(s['pearson_ra'], 8, 3)}{fmt(s['pearson_rd'], 8, 3)}"
              f"{fmt(s['avg_hv'])}{fmt(s['front_hv'], 9)}{min(a):>8.4f}..{max(a):.4f}{min(d):>8.4f}..{max(d):.4f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="a run folder of `padirec run` (read only)")
    ap.add_argument("--split", default="valid", choices=["valid", "test"])
    ap.add_argument("--methods", nargs="+", default=["padirec", "retrain", "nn_lookup", "interpolation"])
    ap.add_argument("--guidance", type=float, nargs="*", default=[0.0, 0.5, 1.0])
    ap.add_argument("--samples", type=int, nargs="*", default=[1, 8])
    ap.add_argument("--out", default="selection.json")
    ap.add_argument("--threads", type=int, default=1)  # the dev box is shared
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="change a setting of the run's config for this study (a method's, a sampler's)")
    args = ap.parse_args()

    from padirec.commands.cli import _overrides
    from padirec.config import _set_dotted, config_from_dict
    from padirec.core.tasks import grid
    from padirec.evaluation.report import jsonable
    from padirec.evaluation.summary import summarise
    from padirec.evaluation.sweep import run_sweep
    from padirec.methods.padirec import PaDiRec
    from padirec.methods.registry import build_methods, method_with_role
    from padirec.runtime.progress import setup_logging

    setup_logging()
    torch.set_num_threads(args.threads)
    run = Path(args.run)
    raw = json.loads((run / "config.json").read_text())
    for key, value in _overrides(args.set).items():
        _set_dotted(raw, key, value)
    cfg = config_from_dict(raw)
    ev = cfg.evaluation
    t0 = time.perf_counter()
    inputs = run_inputs(run, cfg)
    ctx = inputs.context
    tasks = grid(len(ctx.utilities), cfg.adapters.grid_size)
    print(f"inputs and features: {time.perf_counter() - t0:.1f} s")
    reference = method_with_role("reference")

    methods = build_methods(list(args.methods), ctx, cfg.methods)
    t0 = time.perf_counter()
    sweep = run_sweep(methods, tasks, ctx.features, args.split, ev.k, ev.alpha, seed=cfg.seed)
    print(f"sweep of {len(methods)} methods x {len(tasks)} tasks: {time.perf_counter() - t0:.1f} s")
    summary = summarise(sweep.metrics, tasks, ctx.utilities, ev.k, reference=reference)
    extra = {m: getattr(methods[m], "fallbacks", None) for m in methods}
    print(f"\n{cfg.data.source} / {inputs.backbone_name}: {len(tasks)} grid tasks, {args.split} split, full ranking; "
          f"on {reference}'s front ends; regret against {reference}")
    table(summary, sweep.metrics, list(methods), ev.k, "method")
    if extra.get("interpolation"):
        print(f"interpolation fell back to the nearest bank task on {extra['interpolation']} task(s)")

    variants: dict[str, list[dict[str, float]]] = {}
    chosen = None
    if args.guidance and args.samples and "padirec" in methods:
        base = ctx.load_generator("padirec")
        for gamma in args.guidance:
            for n in args.samples:
                gen = copy.copy(base)
                gen.cfg = dataclasses.replace(base.cfg, guidance_scale=gamma, samples_per_task=n)
                method = PaDiRec(ctx.features, ctx.utilities, ctx.layout, gen, ctx.seed)
                name = f"padirec g={gamma:g} n={n}"
                variants[name] = run_sweep({name: method}, tasks, ctx.features, args.split, ev.k, ev.alpha,
                                           seed=cfg.seed).metrics[name]
        pool = {m: rows for m, rows in sweep.metrics.items() if m != "padirec"} | variants
        vsum = summarise(pool, tasks, ctx.utilities, ev.k, reference=reference)
        print(f"\nPaDiRec's sampling settings on {args.split} (on Retrain's front ends; with "
              f"{', '.join(m for m in sweep.metrics if m != 'padirec')}); served: guidance "
              f"{base.cfg.guidance_scale:g}, samples {base.cfg.samples_per_task}")
        table(vsum, pool, list(pool), ev.k, "variant")
        chosen = min(variants, key=lambda m: vsum[m]["regret"] if math.isfinite(vsum[m]["regret"]) else math.inf)
        print(f"lowest regret on {args.split}: {chosen}")
    else:
        vsum = {}

    Path(args.out).write_text(json.dumps(jsonable({
        "run": str(run), "split": args.split, "set": args.set, "tasks": tasks.tolist(), "reference": reference,
        "summary": summary, "results": sweep.metrics, "fallbacks": extra,
        "variants": {"summary": {m: vsum[m] for m in variants}, "results": variants, "chosen": chosen},
    }), indent=2, allow_nan=False))
    print(f"\nwritten: {args.out}")


if __name__ == "__main__":
    main()
