"""Does the generator listen to w? Its adapters for the band's unseen tasks against Retrain's (issue 24).

    .venv/bin/python benchmarks/generator_fit.py [--run runs/<name>-<time>] [--seeds 0 1 2] \
        [--band 0.3 0.7] [--variant NAME key=value ...]... [--threads 1] [--out fit.json]

The band protocol's setting, on adapters alone (no split is read: nothing here ranks items): every
bank task with ``w_acc`` in the band is removed from what the generator and the bank baselines learn
from; for each grid task inside the band, Retrain's adapter (the bank's checkpoint mean of that task,
as Retrain serves it) is the target. Per ``--variant`` (generator settings over the run's, e.g.
``--variant snr1 loss_weighting=truncated_snr``; ``base`` = the run's settings) and seed:

- ``rel_l2``: ``||adapter - Retrain's|| / ||Retrain's||``, mean over the unseen tasks, for PaDiRec
  (as served: ``Generator.adapters``) beside what ignores w (``train_mean``: the mean of every
  training task's adapter), reads the bank (``nn_lookup``, ``interpolation``) or regresses it
  (``hypernetwork``), each built as the evaluate stage builds it;
- ``follow``: how far the adapter moves from the band's low end to its high end, as a share of how
  far Retrain's moves (``||a(w_high) - a(w_low)|| / ||r(w_high) - r(w_low)||``): 0 = ignores w;
- ``x0_error``: the DiT's own estimate of the clean adapter (normalised units, no guidance) from
  ``x_t`` at five noise levels, relative to the training mean's error: where the network learned w.

Mean ± sd over the seeds (a seed is the generator's and the Hypernetwork's training seed and the
sampling noise). The bank and the backbone are the run's.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from band import newest_run, parse_overrides, run_config  # noqa: E402 (benchmarks/band.py)
from run_folder import run_inputs  # noqa: E402 (benchmarks/run_folder.py)

from padirec.runtime.progress import setup_logging  # noqa: E402

BASELINES = ("nn_lookup", "interpolation", "hypernetwork")
LEVELS = (0.0, 0.25, 0.5, 0.75, 1.0)  # fractions of the way from t = 0 to t = T - 1


def retrain_targets(bank, tasks: np.ndarray) -> torch.Tensor:
    """Retrain's adapters ``(n, P)`` for ``tasks (n, p)``: each task's checkpoint mean in the bank."""
    from padirec.adapters.bank import served_adapter

    rows = [bank.find(w) for w in tasks]
    if any(r is None for r in rows):
        raise SystemExit("the bank lacks a grid task (hold_out_grid must be on): no Retrain target")
    return torch.stack([served_adapter(bank.params[bank.checkpoints_of(r)], "mean") for r in rows])


def rel_l2(a: torch.Tensor, target: torch.Tensor) -> float:
    return float(((a - target).norm(dim=1) / target.norm(dim=1)).mean())


def follow(a: torch.Tensor, target: torch.Tensor) -> float:
    return float((a[-1] - a[0]).norm() / (target[-1] - target[0]).norm())


@torch.no_grad()
def x0_errors(gen, params: torch.Tensor, weights: torch.Tensor, mean: torch.Tensor, seed: int) -> dict[str, float]:
    """The DiT's x0 estimate's MSE over the clean tokens of ``params (n, P)``, relative to the training
    mean's, at each level of ``LEVELS`` (one noise draw per row)."""
    tok, norm, model = gen.tokenizer, gen.normalizer, gen.model
    x0 = tok.encode(norm.normalize(params))
    base = tok.encode(norm.normalize(mean.expand_as(params)))
    g = torch.Generator().manual_seed(seed)
    out = {}
    steps = len(model.alphas_cumprod)
    for level in LEVELS:
        t = torch.full((len(params),), round(level * (steps - 1)), dtype=torch.long)
        noise = torch.randn(x0.shape, generator=g)
        sa, s1 = model.sqrt_abar[t].view(-1, 1, 1), model.sqrt_one_minus_abar[t].view(-1, 1, 1)
        x_t = sa * x0 + s1 * noise
        eps = model(x_t, t, weights.float())
        x0_hat = (x_t - s1 * eps) / sa
        out[f"t={int(t[0])}"] = float((x0_hat - x0).pow(2).mean() / (base - x0).pow(2).mean())
    return out


def one_seed(ctx, cfg, band: tuple[float, float], seed: int, guidance: list[float]) -> dict:
    from padirec.core.tasks import grid
    from padirec.diffusion.stage import training_rows
    from padirec.evaluation.protocols import band_context, in_band
    from padirec.methods.padirec import PaDiRec
    from padirec.methods.registry import build_methods

    tasks = grid(len(ctx.utilities), cfg.adapters.grid_size)
    inside = in_band(tasks, ctx.utilities, band) & ~np.isclose(tasks.max(1), 1.0)
    unseen = tasks[inside]
    target = retrain_targets(ctx.bank, unseen)
    band_ctx, info = band_context(dataclasses.replace(ctx, seed=seed), cfg.generator, band, True, seed)
    params, weights, held = training_rows(band_ctx.bank, "task_mean")
    train_mean = params[~held].mean(0)
    adapters = {"train_mean": train_mean.expand_as(target)}
    for name, method in build_methods(list(BASELINES), band_ctx, cfg.methods).items():
        method.fit()
        adapters[name] = torch.stack([method.prepare(w).cpu() for w in unseen])
    gen = band_ctx.generator
    t0 = time.perf_counter()
    adapters["padirec"] = torch.stack([PaDiRec(ctx.features, ctx.utilities, ctx.layout, gen, seed).prepare(w).cpu()
                                       for w in unseen])
    serve_ms = (time.perf_counter() - t0) / len(unseen) * 1000
    for gamma in guidance:  # the same generator sampled with another guidance scale
        scaled = copy.copy(gen)
        scaled.cfg = dataclasses.replace(gen.cfg, guidance_scale=gamma)
        adapters[f"padirec g={gamma:g}"] = torch.stack(
            [PaDiRec(ctx.features, ctx.utilities, ctx.layout, scaled, seed).prepare(w).cpu() for w in unseen])
    figures = {m: {"rel_l2": rel_l2(a, target), "follow": follow(a, target)} for m, a in adapters.items()}
    figures["padirec"]["x0_error"] = x0_errors(gen, target, torch.as_tensor(unseen), train_mean, seed)
    figures["padirec"]["serve_ms"] = serve_ms
    figures["padirec"]["final_loss"] = info["generator"]["final_loss"]
    return figures



def mean_sd(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.3f} ± {sd:.3f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", type=Path, default=None, help="a finished run folder (default: the newest)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--band", type=float, nargs=2, default=[0.3, 0.7])
    ap.add_argument("--variant", nargs="+", action="append", default=[], metavar="NAME [KEY=VALUE ...]",
                    help="a named set of generator settings over the run's; repeatable (default: base)")
    ap.add_argument("--guidance", type=float, nargs="*", default=[],
                    help="also sample each generator with these guidance scales (no retraining)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    setup_logging()
    torch.set_num_threads(args.threads)
    run = args.run or newest_run()
    variants = {v[0]: parse_overrides(v[1:]) for v in args.variant} or {"base": {}}
    ctx = run_inputs(run, run_config(run)).context
    results: dict[str, list[dict]] = {}
    for name, overrides in variants.items():
        cfg = run_config(run, overrides)
        for seed in args.seeds:
            t0 = time.perf_counter()
            results.setdefault(name, []).append(one_seed(ctx, dataclasses.replace(cfg, seed=seed), tuple(args.band),
                                                         seed, args.guidance))
            print(f"{name} seed {seed}: {time.perf_counter() - t0:.0f} s", flush=True)
    print(f"\n{run}: band {args.band}, unseen tasks inside it; mean ± sd over seeds {args.seeds}")
    print("| variant | method | rel. L2 to Retrain's | follow | x0 error / train mean's (t: " +
          ", ".join(results[next(iter(results))][0]["padirec"]["x0_error"]) + ") | ms per task |")
    print("|---|---|---|---|---|---|")
    for name, per_seed in results.items():
        for m in per_seed[0]:
            cells = [mean_sd([s[m][f] for s in per_seed]) for f in ("rel_l2", "follow")]
            x0 = (" / ".join(f"{statistics.fmean(s[m]['x0_error'][t] for s in per_seed):.2f}"
                             for t in per_seed[0][m]["x0_error"]) if "x0_error" in per_seed[0][m] else "")
            ms = f"{statistics.fmean(s[m]['serve_ms'] for s in per_seed):.1f}" if m == "padirec" else ""
            if m.startswith("padirec") or name == next(iter(results)):
                print(f"| {name} | {m} | {cells[0]} | {cells[1]} | {x0} | {ms} |")
    if args.out:
        args.out.write_text(json.dumps({"run": str(run), "variants": variants, "seeds": args.seeds,
                                        "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
