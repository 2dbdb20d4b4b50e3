"""Generation latency of a new task (the response time PaDiRec exists for), and fidelity.

Trains a generator on an adapter bank (default: a synthetic bank of 100 tasks x 5 checkpoints
whose adapters are a known smooth function of w; or ``--bank DIR``, an ``adapter_bank``
artifact), then times ``Generator.sample`` for one new task: DDPM over all T steps and DDIM at
each ``--ddim-steps``, median and interquartile range over ``--repeats``. Also prints how close
generated adapters are to the bank's for the held-out (unseen) tasks.

    .venv/bin/python benchmarks/bench_generation.py [--bank DIR] [--train-steps N] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from padirec.adapters.bank import load_bank  # noqa: E402
from padirec.diffusion.config import GeneratorConfig  # noqa: E402
from padirec.diffusion.stage import heldout_fidelity  # noqa: E402
from padirec.diffusion.synthetic_bank import SyntheticBank, make_synthetic_bank  # noqa: E402
from padirec.diffusion.train import train_generator  # noqa: E402
from padirec.progress import setup_logging  # noqa: E402


def synthetic_bank() -> SyntheticBank:
    return make_synthetic_bank(num_tasks=100, checkpoints=5, seed=0)


def time_one_task(generator, sampler: str, steps: int | None, repeats: int,
                  guidance: float | None) -> list[float]:
    p = generator.num_conditions
    w = torch.tensor([0.37, 0.63]) if p == 2 else torch.full((p,), 1 / p)  # a w no bank row has
    generator.sample(w, seed=0, sampler=sampler, num_inference_steps=steps, guidance_scale=guidance)  # warm-up
    times = []
    for r in range(repeats):
        t0 = time.perf_counter()
        generator.sample(w, seed=r, sampler=sampler, num_inference_steps=steps, guidance_scale=guidance)
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bank", help="an adapter_bank artifact folder (default: synthetic)")
    ap.add_argument("--train-steps", type=int, default=GeneratorConfig.train_steps)
    ap.add_argument("--size", default=GeneratorConfig.size)
    ap.add_argument("--conditioning", default=GeneratorConfig.conditioning)
    ap.add_argument("--ddim-steps", type=int, nargs="+", default=[10, 25, 50])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--ddpm-repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)  # the dev box is shared: 2 oversubscribe
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--run", help="a `padirec run` folder: use its bank and time Retrain on its data and backbone")
    ap.add_argument("--retrain-repeats", type=int, default=3)
    args = ap.parse_args()
    setup_logging()
    torch.set_num_threads(args.threads)

    if args.run and not args.bank:
        args.bank = str(sorted(Path(args.run).glob("**/train-generator/bank/manifest.json"))[-1].parent)
    bank = load_bank(args.bank) if args.bank else synthetic_bank()
    cfg = GeneratorConfig(train_steps=args.train_steps, size=args.size, conditioning=args.conditioning,
                          log_every=max(1, args.train_steps // 10))
    utilities = getattr(bank, "utilities", ["accuracy", "diversity"])  # the synthetic bank's are these
    gen = train_generator(bank.params, bank.weights, bank.layout, cfg, seed=args.seed,
                          held_out_mask=torch.as_tensor(bank.held_out), utilities=utilities)

    print(f"\nbank: {args.bank or 'synthetic (100 tasks x 5 checkpoints)'}, "
          f"{len(bank.params)} rows x {bank.params.shape[1]} params, "
          f"{int(bank.held_out.sum())} held out; torch threads {args.threads}")
    print(f"generator: DiT-{cfg.size} {cfg.conditioning}, {gen.stats['num_tokens']} tokens, "
          f"{cfg.train_steps} steps in {gen.stats['train_seconds']:.1f} s, final loss "
          f"{gen.stats['final_loss']:.4f}")

    print(f"\nlatency of one new task (guidance {cfg.guidance_scale}: cond + uncond in one batch)")
    print(f"{'sampler':<8} {'steps':>6} {'repeats':>8} {'median ms':>10} {'IQR ms':>14}")
    rows = [("ddpm", None, args.ddpm_repeats)] + [("ddim", s, args.repeats) for s in args.ddim_steps]
    for sampler, steps, repeats in rows:
        times = [1000 * t for t in time_one_task(gen, sampler, steps, repeats, None)]
        q1, _, q3 = statistics.quantiles(times, n=4) if len(times) > 1 else (times[0],) * 3
        shown = steps if steps is not None else cfg.num_train_timesteps
        print(f"{sampler:<8} {shown:>6} {repeats:>8} {statistics.median(times):>10.1f} "
              f"{q1:>6.1f}-{q3:<7.1f}")

    if args.run:
        retrain_ratio(Path(args.run), gen, args)

    print("\nheld-out fidelity: relative L2 to the bank (mean over unseen tasks)")
    print(f"{'sampler':<8} {'steps':>6} {'guidance':>8} {'vs task mean':>13} {'vs nearest':>11} "
          f"{'bank mean (floor)':>18}")
    for sampler, steps in [("ddpm", None)] + [("ddim", s) for s in args.ddim_steps]:
        for guidance in (0.0, cfg.guidance_scale):
            fid = heldout_fidelity(gen, bank, seed=args.seed, sampler=sampler, num_inference_steps=steps,
                                   guidance_scale=guidance)
            if not fid:
                print("(no held-out tasks in this bank)")
                return
            shown = steps if steps is not None else cfg.num_train_timesteps
            print(f"{sampler:<8} {shown:>6} {guidance:>8.2f} {fid['rel_l2']:>13.4f} "
                  f"{fid['rel_l2_nearest']:>11.4f} {fid['rel_l2_train_mean']:>18.4f}")


def retrain_ratio(run: Path, gen, args) -> None:
    """Retrain (an adapter trained from scratch to its convergence budget) versus the served
    generation path, for one new task, in this process."""
    from padirec.adapters.features import compute_features
    from padirec.adapters.train import train_adapter
    from padirec.backbones import load_backbone
    from padirec.config import config_from_json
    from padirec.data.dataset import load_prepared

    cfg = config_from_json((run / "config.json").read_text())
    data = load_prepared(sorted(run.glob("**/prepare-data/data/manifest.json"))[-1].parent)
    backbone = load_backbone(sorted(run.glob("**/train-backbone/backbone/manifest.json"))[-1].parent)
    features = compute_features(backbone, data, cfg.data.max_len, "cpu")
    w = torch.tensor([0.37, 0.63])  # not in the bank: a new task
    retrain = []
    for r in range(args.retrain_repeats):
        t = time.perf_counter()
        train_adapter(features, w, cfg.adapters, seed=r)
        retrain.append(time.perf_counter() - t)
    served = {}
    for sampler, steps in (("ddim", None), ("ddpm", None)):
        times = []
        for r in range(args.ddpm_repeats if sampler == "ddpm" else args.repeats):
            t = time.perf_counter()
            gen.adapters(w, seed=r, sampler=sampler, num_inference_steps=steps)
            times.append(time.perf_counter() - t)
        served[sampler] = statistics.median(times)
    med = statistics.median(retrain)
    n = gen.cfg.samples_per_task
    print(f"\nnew task w = {w.tolist()}: Retrain median {med:.2f} s over {len(retrain)} repeats "
          f"({min(retrain):.2f}-{max(retrain):.2f}); served adapter = mean of {n} samples in one pass")
    for sampler, sec in served.items():
        steps = gen.cfg.num_inference_steps if sampler == "ddim" else gen.cfg.num_train_timesteps
        print(f"  {sampler} {steps:>4} steps: {1000 * sec:8.1f} ms  -> Retrain / PaDiRec = {med / sec:8.1f}x")


if __name__ == "__main__":
    main()
