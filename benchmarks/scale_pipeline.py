"""The whole pipeline on ML-1M-format data, step by step: ``bench_scale.py``'s default mode.

Runs ``padirec run`` (``pipelines.run_local``: KFP's local runner, every step a process of its own)
on the generated files with ``configs/ml1m.yaml``, samples the resident memory of the whole
process tree, then reads back from MLflow what each step's run recorded: ``step_seconds`` and
``process_peak_rss_mb`` (``padirec.commands.steps.step_cost``) and the step's own figures, for a cost per
unit (per epoch, per adapter, per new task, per method x task). The table is printed and logged to
MLflow as a run of its own (experiment ``<tracking.experiment>-bench``), tagged with the
pipeline run's ``kfp.run_id``.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from padirec.config import Config
from padirec.tracking.core import MlflowTracker, resolve_tracking_uri, search_all_runs
from pipelines.run_local import find_output, run_local

_PAGE = os.sysconf("SC_PAGE_SIZE")
# the steps in pipeline order (shards of build_adapters_<i> sort among themselves)
ORDER = ("prepare_data", "train_backbone", "compute_features", "build_adapters", "train_generator", "band_generator",
         "retrain_ceiling", "evaluate", "register_and_promote")


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                # the command name (2nd field) may hold spaces: the parent id follows its ")"
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def tree_rss(root: int) -> int:
    """Bytes resident in ``root`` and every process below it."""
    tree, total, todo = _children(), 0, [root]
    while todo:
        pid = todo.pop()
        todo.extend(tree.get(pid, []))
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * _PAGE
        except (OSError, IndexError, ValueError):
            pass
    return total


class PeakMemory:
    """The peak of ``measure()`` (bytes; default ``tree_rss`` of this process) while the block runs,
    sampled every ``interval`` s and once more at the end (a scan of /proc every 0.25 s took 5% of a
    core from the steps it measures)."""

    def __init__(self, interval: float = 1.0, measure: Callable[[], int] | None = None) -> None:
        self.interval, self.peak = interval, 0
        self.measure = measure or (lambda: tree_rss(os.getpid()))

    def __enter__(self) -> PeakMemory:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, self.measure())
            if self._stop.wait(self.interval):
                return

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.measure())


@dataclass
class StepCost:
    step: str
    seconds: float
    peak_mb: float
    metrics: dict[str, float] = field(default_factory=dict)
    unit: str = ""


def _order(step: str) -> tuple[int, str]:
    base = step.rsplit("_", 1)[0] if step.startswith("build_adapters_") else step
    return (ORDER.index(base) if base in ORDER else len(ORDER), step)


def step_costs(uri: str, experiment: str, kfp_run_id: str) -> list[StepCost]:
    """Each step run of pipeline run ``kfp_run_id``: its ``step_seconds`` (else the run's own start
    to end) and ``process_peak_rss_mb``, with every metric it logged, in pipeline order."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise SystemExit(f"no MLflow experiment {experiment!r} at {uri}")
    runs = search_all_runs(client, exp.experiment_id, f"tags.`kfp.run_id` = '{kfp_run_id}'")
    costs = []
    for r in runs:
        step = r.data.tags.get("padirec.step")
        if not step:
            continue
        m = r.data.metrics
        wall = m.get("step_seconds")
        if wall is None and r.info.end_time:
            wall = (r.info.end_time - r.info.start_time) / 1e3
        costs.append(StepCost(step, float(wall or 0.0), float(m.get("process_peak_rss_mb", 0.0)), dict(m)))
    if not costs:
        raise SystemExit(f"no step runs of {kfp_run_id!r} in experiment {experiment!r}")
    return sorted(costs, key=lambda c: _order(c.step))


def _manifest(folder: Path, pattern: str) -> dict[str, Any]:
    found = find_output(folder, pattern)
    return json.loads(found.read_text()) if found else {}


def add_units(costs: list[StepCost], cfg: Config, folder: Path) -> None:
    """Each step's cost per unit of its work, from its metrics and its outputs' manifests."""
    data = _manifest(folder, "**/prepare-data/data/manifest.json").get("stats", {})
    features = _manifest(folder, "**/compute-features/features/manifest.json").get("stats", {})
    report = _manifest(folder, "**/evaluate/report/report.json")
    for c in costs:
        m = c.metrics
        if c.step == "prepare_data" and data.get("num_interactions"):
            c.unit = f"{c.seconds / data['num_interactions'] * 1e6:.1f} s per 1M interactions"
        elif c.step == "train_backbone" and m.get("epochs"):
            c.unit = (f"{m['train_seconds'] / m['epochs']:.1f} s per epoch, {m['epochs']:.0f} epochs "
                      f"(best {m.get('best_epoch', 0):.0f})")
        elif c.step == "compute_features" and features.get("num_examples"):
            c.unit = (f"{features['num_examples']} examples: features {m.get('features_seconds', 0):.1f} s, "
                      f"top-k {m.get('topk_seconds', 0):.1f} s")
        elif c.step.startswith("build_adapters_") and m.get("adapters_rows"):
            tasks = m["adapters_rows"] / cfg.adapters.checkpoints_per_task
            c.unit = f"{m.get('adapters_seconds', c.seconds) / tasks:.2f} s per adapter ({tasks:.0f} tasks)"
        elif c.step == "train_generator":
            c.unit = f"{c.seconds / cfg.generator.train_steps * 1e3:.1f} s per 1k training steps"
        elif c.step == "evaluate":
            cells = len(cfg.evaluation.methods) * cfg.adapters.grid_size
            per = {k.split("/")[0]: v for k, v in m.items() if k.endswith("/response_median_s")}
            fits = sum(report.get("analyses", {}).get("fit_seconds", {}).values())
            c.unit = "; ".join(filter(None, (
                f"new task: PaDiRec {per['padirec'] * 1e3:.2f} ms, Retrain {per['retrain']:.2f} s (median)"
                if "padirec" in per and "retrain" in per else "",
                f"fitting the methods {fits:.0f} s" if fits else "",
                f"{c.seconds / cells:.2f} s per method x grid task ({cells}), all included")))


def markdown(costs: list[StepCost], header: str, total_s: float, tree_peak_mb: float) -> str:
    lines = [header, "", "| step | wall s | process peak MB | per unit |", "|---|---:|---:|---|"]
    lines += [f"| {c.step} | {c.seconds:.1f} | {c.peak_mb:.0f} | {c.unit} |" for c in costs]
    lines += ["", f"whole pipeline: {total_s:.0f} s ({total_s / 60:.1f} min) wall, "
                  f"peak resident memory of the process tree {tree_peak_mb:.0f} MB, "
                  f"largest step {max(c.peak_mb for c in costs):.0f} MB"]
    return "\n".join(lines)


def log_to_mlflow(uri: str, experiment: str, kfp_run_id: str, params: dict[str, Any], costs: list[StepCost],
                  total_s: float, tree_peak_mb: float, table: str) -> str:
    """The table as a run of ``experiment`` (made as the pipeline's are: with a SQLite store, its
    artifacts beside the database); returns the run id."""
    tracker = MlflowTracker.start(uri, experiment, f"bench-scale-x{params['scale']:g}",
                                  tags={"kfp.run_id": kfp_run_id, "padirec.role": "benchmark"})
    tracker.log_params(params)
    metrics = {"total_seconds": total_s, "tree_peak_rss_mb": tree_peak_mb}
    for c in costs:
        metrics[f"{c.step}_seconds"] = c.seconds
        metrics[f"{c.step}_peak_rss_mb"] = c.peak_mb
    tracker.log_metrics(metrics)
    tracker.client.log_text(tracker.run_id, table + "\n", "bench_scale.md")
    tracker.end()
    return tracker.run_id


def run_pipeline(cfg: Config, scale: float, counts: dict[str, int], threads: str) -> str:
    """Run the pipeline on ``cfg`` (its data.path holds the generated files); print and log the
    table; return it."""
    t0 = time.perf_counter()
    with PeakMemory() as mem:
        folder = run_local(cfg)
    total = time.perf_counter() - t0
    uri = resolve_tracking_uri(cfg.tracking.uri, Path(cfg.run_dir).resolve())
    kfp_run_id = f"local-{folder.name}"
    costs = step_costs(uri, cfg.tracking.experiment, kfp_run_id)
    add_units(costs, cfg, folder)
    header = (f"scale {scale:g}: {counts['users']} users, {counts['items']} items, {counts['ratings']} ratings; "
              f"config {cfg.name}; {os.cpu_count()} CPUs, torch threads {threads}; run folder {folder}")
    table = markdown(costs, header, total, mem.peak / 2**20)
    print(table, flush=True)
    rid = log_to_mlflow(uri, f"{cfg.tracking.experiment}-bench", kfp_run_id,
                        {"scale": scale, **counts, "config": cfg.name, "torch_threads": threads,
                         "cpus": os.cpu_count()}, costs, total, mem.peak / 2**20, table)
    print(f"MLflow: run {rid} in experiment {cfg.tracking.experiment}-bench", flush=True)
    return table
