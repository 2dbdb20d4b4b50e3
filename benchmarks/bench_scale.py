"""Scale benchmark: the whole pipeline, or its costly stages one by one, on MovieLens-1M-format data.

    .venv/bin/python benchmarks/bench_scale.py [--scale 1.0] [--threads N] [--work DIR] [--set KEY=VALUE ...]
    .venv/bin/python benchmarks/bench_scale.py --stages [--scale 1.0] [--quick] [--threads 1] [--work DIR]

Generates ML-1M-format files (``padirec/data/synthetic_ml1m.py``) at ``--scale`` (1 = ML-1M's
6,040 users, 3,706 items, 1,000,209 ratings; below 1, that share of the users, every item: see
``write_ml1m``).

By default it runs the whole pipeline on them with ``configs/ml1m.yaml`` (``scale_pipeline.py``:
every step's wall time, peak memory and cost per unit, read back from MLflow and logged there).

``--stages`` prepares them instead and
calls the library functions the pipeline steps call (``padirec/commands/steps.py``), one stage at a time:

- ``generate files``: the synthetic files; ``data``: validation + leave-one-out split (``run_data_stage``);
- ``negatives``: one epoch's negative sampling of backbone training (``NegativeSampler.sample``);
- ``backbone epoch``: one SASRec training epoch with its validation (``train_backbone``);
- ``features``: the frozen backbone's features for the adapters (``compute_features``, with the
  config's ``adapters.feature_stride``);
- ``topk`` / ``topk again``: the backbone's masked top-k candidates (``backbone_topk``), twice;
- ``adapter bank``: ``train_bank`` for a few tasks (per adapter);
- ``retrain fit`` / ``retrain task``: the Retrain baseline's one-off work and one new task;
- ``cmr fit``: CMR's training (per epoch).

Each row: wall seconds, the peak resident memory during the stage above the stage's start
(``+peak MB``, sampled every 5 ms from ``/proc/self/statm``), the process's peak, and a per-unit cost.
``--quick`` (with ``--stages``) runs a reduced budget (scale 0.25 unless given, fewer adapter epochs/steps/tasks).
Prints the table; no assertions on time.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scale_pipeline import PeakMemory, run_pipeline

from padirec.adapters.features import compute_features
from padirec.adapters.train import backbone_topk, train_bank
from padirec.backbones.registry import build_backbone
from padirec.backbones.train import NegativeSampler, train_backbone, training_windows
from padirec.commands.cli import _overrides
from padirec.config import load_config
from padirec.core.layout import adapter_layout
from padirec.core.tasks import random_tasks
from padirec.data import synthetic_ml1m
from padirec.data.dataset import load_prepared
from padirec.data.stage import run_data_stage
from padirec.errors import PadirecError
from padirec.methods.cmr import CMR
from padirec.methods.retrain import Retrain
from padirec.runtime.artifacts import atomic_write_text
from padirec.runtime.compute import THREADS_ENV

_PAGE = os.sysconf("SC_PAGE_SIZE")


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


class Stage:
    """Times a block and samples its resident memory every 5 ms: ``seconds``, ``peak_mb`` (above the start)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.peak_mb = 0.0

    def __enter__(self) -> Stage:
        self._start_rss = _rss()
        self._memory = PeakMemory(0.005, _rss).__enter__()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self._t0
        self._memory.__exit__()
        self.peak_mb = (self._memory.peak - self._start_rss) / 2**20


def write_ml1m(folder: Path, scale: float, seed: int) -> dict[str, int]:
    """ML-1M-format files for ``scale`` x ML-1M's users (and so about its ratings).

    From 1 up, ``synthetic_ml1m.write(scale=...)``: users, items and ratings all scaled. Below 1,
    the full-size data, then its first users (a random sample: lengths are drawn independently):
    per-user lengths and their heavy tail stay as at 1x (``synthetic_ml1m.write(scale=...)`` scales
    the catalogue too, so at 0.25x its heaviest users have seen nearly every item, which is not
    ML-1M's shape and makes rejection sampling degenerate)."""
    if scale >= 1.0:  # every dimension scales (users, items, ratings): ``synthetic_ml1m.write``
        return synthetic_ml1m.write(folder, scale=scale, seed=seed)
    (u, i, r, t), movies, (uid, gender, age, occ) = synthetic_ml1m.generate(1.0, seed=seed)
    n_users = max(int(round(len(uid) * scale)), 1)
    keep = u <= n_users
    folder.mkdir(parents=True, exist_ok=True)
    lines = {
        "ratings.dat": (f"{a}::{b}::{c}::{d}" for a, b, c, d in zip(u[keep], i[keep], r[keep], t[keep], strict=True)),
        "movies.dat": (f"{m}::{title}::{genres}" for m, title, genres in movies),
        "users.dat": (f"{a}::{g}::{b}::{o}::{10000 + a}" for a, g, b, o in
                      zip(uid[:n_users], gender[:n_users], age[:n_users], occ[:n_users], strict=True)),
    }
    for name, rows in lines.items():
        (folder / name).write_text("\n".join(rows) + "\n", encoding="latin-1")
    return {"users": n_users, "items": len(movies), "ratings": int(keep.sum())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=0.0, help="share of ML-1M's size (default 1, or 0.25 with --quick)")
    ap.add_argument("--quick", action="store_true", help="reduced run: scale 0.25, few adapter epochs and tasks")
    ap.add_argument("--config", default="configs/ml1m.yaml")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--work", default="", help="folder for the generated and prepared data (kept; reused)")
    ap.add_argument("--tasks", type=int, default=0, help="adapters in the bank row (default 8, 2 with --quick)")
    ap.add_argument("--skip", default="", help="comma-separated stages to skip: backbone,bank,retrain,cmr")
    ap.add_argument("--stages", action="store_true", help="the costly stages one by one, not the whole pipeline")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config key of the pipeline run, e.g. backbone.epochs=3")
    ap.add_argument("--markdown", default="", help="also write the pipeline's table to this file (e.g. docs/scale.md)")
    args = ap.parse_args()
    scale = args.scale or (0.25 if args.quick else 1.0)
    work = Path(args.work or tempfile.mkdtemp(prefix="bench_scale_"))
    raw, prepared = work / f"ml1m_x{scale:g}", work / f"prepared_x{scale:g}"
    if not (args.stages or args.quick):  # --quick is a reduced --stages run
        return pipeline_mode(args, scale, work, raw)
    skip = set(filter(None, args.skip.split(",")))
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    cfg = load_config(args.config, {"data.path": str(raw)})
    acfg = cfg.adapters
    if args.quick:
        acfg = dataclasses.replace(acfg, epochs=2, checkpoints_per_task=1, steps_per_epoch=10)
    n_tasks = args.tasks or (2 if args.quick else 8)
    rows: list[tuple[str, Stage, str]] = []

    def row(name: str, st: Stage, unit: str) -> None:
        rows.append((name, st, unit))
        print(f"  {name}: {st.seconds:.2f} s, +{st.peak_mb:.0f} MB ({unit})", flush=True)

    if not (prepared / "manifest.json").exists():
        with Stage() as st:
            counts = write_ml1m(raw, scale, cfg.seed)
        row("generate files", st, f"{counts['ratings']} ratings")
        with Stage() as st:
            shutil.rmtree(prepared, ignore_errors=True)
            run_data_stage(cfg.data, prepared, eval_k=cfg.evaluation.k)
        row("data", st, f"{st.seconds / counts['ratings'] * 1e6:.1f} s per 1M ratings")
    data = load_prepared(prepared)
    max_len = cfg.data.max_len
    n_ratings = sum(len(data.train_items[u]) for u in data.users)
    print(f"scale {scale:g}: {data.num_users} users, {data.num_items} items, {n_ratings} train interactions; "
          f"torch threads {torch.get_num_threads()}", flush=True)

    device = torch.device("cpu")
    bcfg = dataclasses.replace(cfg.backbone, epochs=1)
    model = build_backbone(bcfg.model, data.num_items, bcfg, max_len)
    windows = training_windows(data, max_len, bcfg.train_stride)
    sampler = NegativeSampler(data)
    with Stage() as st:
        negs = sampler.sample(windows.users, (windows.targets.shape[1], bcfg.num_negatives),
                              torch.Generator().manual_seed(0))
    row("negatives", st, f"{negs.numel() / 1e6:.1f}M draws per epoch")
    del negs
    if "backbone" not in skip:
        with Stage() as st:
            train_backbone(model, data, bcfg, max_len, cfg.seed, device)
        row("backbone epoch", st, f"{st.seconds:.1f} s per epoch, {len(windows)} windows")
    model.eval()

    stride = acfg.feature_stride
    with Stage() as st:
        features = compute_features(model, data, max_len, device, stride=stride)
    m = features.train_h.shape[0]
    row(f"features, stride {stride}", st, f"{st.seconds / m * 1e3:.3f} s per 1k examples, {m} examples "
                                          f"({'every prefix' if stride == 1 else 'one pass per window'})")

    with Stage() as st:
        backbone_topk(features, acfg.topk_candidates)
    row("topk", st, f"{st.seconds / m * 1e3:.3f} s per 1k examples")
    with Stage() as st:
        backbone_topk(features, acfg.topk_candidates)
    row("topk again", st, "a second caller (Retrain, CMR)")

    lay = adapter_layout(features.dim, acfg.bottleneck)
    if "bank" not in skip:
        weights = random_tasks(n_tasks, len(acfg.utilities), cfg.seed)
        with Stage() as st:
            train_bank(features, weights, acfg, cfg.seed)
        row("adapter bank", st, f"{st.seconds / n_tasks:.2f} s per adapter ({n_tasks} tasks, {acfg.epochs} epochs "
                                f"x {acfg.steps_per_epoch} steps)")
    if "retrain" not in skip:
        retrain = Retrain(features, acfg.utilities, lay, acfg, cfg.seed)
        with Stage() as st:
            retrain.fit()
        row("retrain fit", st, "one-off, before any task")
        with Stage() as st:
            retrain.prepare(np.array([0.3, 0.7]))
        row("retrain task", st, f"{st.seconds:.2f} s per new task")
    if "cmr" not in skip:
        cmr = CMR(features, acfg.utilities, lay, acfg, cfg.seed, epochs=1)
        with Stage() as st:
            cmr.fit()
        row("cmr fit", st, f"{st.seconds:.2f} s per epoch ({acfg.steps_per_epoch} steps)")

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
    print(f"\nscale {scale:g} ({data.num_users} users, {data.num_items} items, {m} training examples), "
          f"{'quick' if args.quick else 'full'} budget, torch threads {torch.get_num_threads()}")
    print("| stage | wall s | +peak MB | per unit |\n|---|---:|---:|---|")
    for name, st, unit in rows:
        print(f"| {name} | {st.seconds:.2f} | {st.peak_mb:.0f} | {unit} |")
    print(f"process peak RSS: {peak:.0f} MB")


def pipeline_mode(args: argparse.Namespace, scale: float, work: Path, raw: Path) -> None:
    """Generate the files (or reuse them) and run the whole pipeline on them (``scale_pipeline``)."""
    try:
        overrides = _overrides(args.set)  # values parsed as YAML, as ``padirec run --set``
    except PadirecError as e:
        raise SystemExit(str(e)) from None
    cfg = load_config(args.config, {"data.path": str(raw), "run_dir": str(work / "runs"), **overrides})
    if args.threads:
        os.environ[THREADS_ENV] = str(args.threads)  # every step sets torch's threads from it
    counts_file = raw / "counts.json"
    if counts_file.exists():
        counts = json.loads(counts_file.read_text())
    else:
        t0 = time.perf_counter()
        counts = write_ml1m(raw, scale, cfg.seed)
        counts_file.write_text(json.dumps(counts))
        print(f"generated {counts} in {time.perf_counter() - t0:.1f} s -> {raw}", flush=True)
    table = run_pipeline(cfg, scale, counts, str(args.threads) if args.threads else "the cores each step is given")
    if args.markdown:
        atomic_write_text(Path(args.markdown), f"<!-- written by: benchmarks/bench_scale.py --scale {scale:g}"
                          f"{''.join(' --set ' + s for s in args.set)} -->\n\n{table}\n")
        print(f"table written to {args.markdown}")


if __name__ == "__main__":
    main()
