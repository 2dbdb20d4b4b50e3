"""Conditioning strategies of the DiT (paper RQ3) on a finished pipeline run.

For each strategy (pre, pre_post, per_layer, cross_attn, adaln_zero) trains a generator on the
run's adapter bank with the run's generator settings, generates the adapters of the evaluation
grid (held out of training), and reports NDCG@10 / alpha-NDCG@10 on ``--split`` (default
``valid``: a strategy is a choice, and choices are made on validation; the test split is read once,
by the evaluation stage), reward and regret against Retrain (the bank's adapter of each grid task),
Pearson r-a / r-d, and the paper's Avg.HV / front HV, all on the fixed scale of
Retrain, plus the training time. Prints a table; writes it (with the split) as JSON to ``--out``.

    python benchmarks/conditioning.py --run runs/<name>-<time> [--split valid]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch
from run_folder import find  # benchmarks/run_folder.py

STRATEGIES = ["pre", "pre_post", "per_layer", "cross_attn", "adaln_zero"]



def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="a run folder of `padirec run`")
    ap.add_argument("--strategies", nargs="+", default=STRATEGIES)
    ap.add_argument("--out", default="conditioning.json")
    ap.add_argument("--split", default="valid", choices=["valid", "test"],
                    help="the split the strategies are compared on (choose on valid)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the dev box is shared)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from padirec.adapters.bank import load_bank
    from padirec.adapters.evaluate import evaluate_adapters
    from padirec.adapters.features import compute_features
    from padirec.backbones import load_backbone
    from padirec.config import config_from_json
    from padirec.data.dataset import load_prepared
    from padirec.diffusion.train import train_generator
    from padirec.evaluation.summary import summarise
    from padirec.runtime.progress import setup_logging

    setup_logging()
    run = Path(args.run)
    cfg = config_from_json((run / "config.json").read_text())
    report = json.loads((find(run, "**/report/report.json") / "report.json").read_text())
    tasks = np.asarray(report["tasks"], dtype=np.float64)
    data = load_prepared(find(run, "**/prepare-data/data/manifest.json"))
    backbone = load_backbone(find(run, "**/train-backbone/backbone/manifest.json"))
    bank = load_bank(find(run, "**/train-generator/bank/manifest.json"))
    features = compute_features(backbone, data, cfg.data.max_len, "cpu")

    rows = [bank.find(w) for w in tasks]  # Retrain = the bank's adapter of each grid task
    if any(r is None for r in rows):
        raise SystemExit(f"the bank lacks grid task(s) {tasks[[r is None for r in rows]].tolist()}")
    ref = evaluate_adapters(features, bank.params[rows], bank.layout, args.split, cfg.evaluation.k,
                            cfg.evaluation.alpha)
    results = {"retrain": [{key: float(np.asarray(v)[i]) for key, v in ref.items()} for i in range(len(tasks))]}
    seconds = {}
    for strategy in args.strategies:
        gcfg = dataclasses.replace(cfg.generator, conditioning=strategy)
        t = time.perf_counter()
        gen = train_generator(bank.params, bank.weights, bank.layout, gcfg, seed=cfg.seed,
                              held_out_mask=torch.as_tensor(bank.held_out), utilities=bank.utilities)
        seconds[strategy] = time.perf_counter() - t
        params = gen.adapters(torch.as_tensor(tasks, dtype=torch.float32), seed=cfg.seed)
        m = evaluate_adapters(features, params, bank.layout, args.split, cfg.evaluation.k, cfg.evaluation.alpha)
        results[strategy] = [{key: float(np.asarray(v)[i]) for key, v in m.items()} for i in range(len(tasks))]
    summary = summarise(results, tasks, bank.utilities, cfg.evaluation.k)

    print(f"\nconditioning strategies on {cfg.data.source} / {cfg.backbone.model}, {len(tasks)} held-out grid tasks, "
          f"{gcfg.train_steps} steps each, {args.split} split (on Retrain's front ends)")
    print(f"{'strategy':<12}{'reward':>8}{'regret':>8}{'r-a':>8}{'r-d':>8}{'Avg.HV':>8}{'front HV':>10}"
          f"{'NDCG@10':>17}{'aNDCG@10':>17}{'train s':>9}")
    for name in ["retrain", *args.strategies]:
        s = summary[name]
        a = [c["ndcg@10"] for c in results[name]]
        d = [c["alpha_ndcg@10"] for c in results[name]]
        print(f"{name:<12}{s['reward']:>8.4f}{s['regret']:>8.4f}{s['pearson_ra']:>8.3f}{s['pearson_rd']:>8.3f}"
              f"{s['avg_hv']:>8.4f}{s['front_hv']:>10.4f}"
              f"{min(a):>8.4f}..{max(a):.4f}{min(d):>8.4f}..{max(d):.4f}{seconds.get(name, float('nan')):>9.1f}")
    best = min(args.strategies, key=lambda m: summary[m]["regret"])
    print(f"lowest regret on {args.split}: {best}")
    Path(args.out).write_text(json.dumps({"split": args.split, "chosen": best, "summary": summary,
                                          "results": results, "train_seconds": seconds}, indent=2, default=float))


if __name__ == "__main__":
    main()
