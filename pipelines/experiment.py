"""``padirec experiment``: the pipeline under N seeds and several backbones, summarised as mean ± sd.

One *cell* is one local pipeline run (``run_local``) of the config with ``backbone.model`` and
``seed`` overridden. The backbone's own seed (``backbone.seed``) is pinned to the config's, so the
seeds vary what the issue asks for (the adapter bank, the generator, Retrain and the sampling)
and every seed of a backbone reuses one trained backbone from the local stage cache.

Each finished cell is recorded in ``<out>/experiment.json`` at once; re-running the same command
into the same folder reuses the cells whose config and code are unchanged (a crash at cell 10 of
12 costs two cells, not twelve). Then, from every cell's ``report.json``:

- ``table1.md``: per method, Avg.HV, Pearson r-a and r-d, reward and regret, the grid tasks where its
  point dominates Retrain's or is dominated by it (and those Retrain dominates in at least 95% of the
  users' bootstrap draws), and the tracking error; one table per backbone;
- ``table2.md``: the median response time per method and backbone;
- ``fig3.png``: NDCG@k and alpha-NDCG@k against w_acc per method and backbone (mean, ± sd band);
- ``experiment.json``: every per-seed figure, the aggregates and the run folders.

Every cell is mean ± sd over the seeds (sample sd; a seed whose figure is undefined is left out
and the cell says how many seeds it holds). The experiment is one MLflow run (``padirec.role =
experiment``) with the pipeline runs of its cells nested under it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from padirec.backbones.registry import BACKBONES
from padirec.config import Config, config_to_json, load_config
from padirec.data.registry import SOURCES
from padirec.errors import PadirecError
from padirec.evaluation.markdown import reference_serves
from padirec.runtime.artifacts import atomic_write, atomic_write_json, atomic_write_text

log = logging.getLogger("padirec")

# Table 1 of the paper: the backbones that name their place in it (``paper_order``), in that order
PAPER_BACKBONES = tuple(sorted((n for n in BACKBONES if BACKBONES[n].paper_order), key=lambda n: BACKBONES[n].paper_order))
PRESETS = {"table1": {"backbones": PAPER_BACKBONES, "config": "configs/paper.yaml"}}
FIGURES = ("avg_hv", "pearson_ra", "pearson_rd", "reward", "regret", "dominates", "dominated", "dominated_95",
           "tracking_ndcg", "tracking_alpha_ndcg")
LABELS = {"avg_hv": "Avg.HV", "pearson_ra": "Pearson r-a", "pearson_rd": "Pearson r-d",
          "reward": "reward", "regret": "regret", "dominates": "tasks dominating Retrain",
          "dominated": "tasks dominated by Retrain", "dominated_95": "dominated in >= 95% of draws",
          "tracking_ndcg": "tracking error NDCG", "tracking_alpha_ndcg": "tracking error alpha-NDCG"}
SURE = 0.95  # ``dominated_95``: the share of the users' bootstrap draws in which Retrain dominates
REPORT = "**/report/report.json"  # the evaluate step's report, or merge_evaluation's (evaluation.shards > 1)
RESULT = "experiment.json"
ROLE = "experiment"  # the padirec.role tag of the experiment's MLflow run
SCHEMA_VERSION = 1


@dataclasses.dataclass(frozen=True)
class Cell:
    backbone: str
    seed: int
    config: Config
    experiment: str  # the config's own name: the cell's is ``<experiment>-<data>-<backbone>-s<seed>``

    @property
    def identity(self) -> str:
        """What a finished cell is reused by: its whole config and the code that ran it."""
        from padirec.runtime.cache import code_version

        return hashlib.sha256((config_to_json(self.config) + code_version()).encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------- planning


def parse_backbones(text: str | None, default: Sequence[str]) -> list[str]:
    """``"sasrec,gru4rec"`` -> the names, checked against the registry (load the config first: its
    plugins register theirs); ``default`` when None."""
    names = [n.strip() for n in text.split(",")] if text else list(default)
    unknown = [n for n in names if n not in BACKBONES]
    if unknown or not names:
        raise PadirecError(f"--backbones: unknown {', '.join(map(repr, unknown)) or 'empty list'}; "
                           f"valid: {', '.join(BACKBONES)}")
    if len(set(names)) != len(names):
        raise PadirecError(f"--backbones {text!r}: a backbone is listed twice")
    return names


def display(backbone: str) -> str:
    """A backbone's name in tables and plots: its ``label`` (``SASRec``), else its name (a result
    read where its plugin is not loaded)."""
    cls = BACKBONES.get(backbone)
    return (cls.label if cls else "") or backbone


def data_overrides(data: str | None) -> dict[str, Any]:
    """``--data``: ``ml-100k`` or a folder, recognised by its files by the registered sources
    (``Source.recognises``: ML-1M's ``ratings.dat``, Amazon's ``meta_*.json[.gz]``). Other sources:
    ``--set data.source=... data.path=...``."""
    if not data:
        return {}
    if data == "ml-100k":
        return {"data.source": "ml-100k", "data.path": ""}
    folder = Path(data)
    if not folder.is_dir():
        raise PadirecError(f"--data {data!r}: neither ml-100k nor a folder")
    for name, source in SOURCES.items():
        if source.recognises(folder):
            return {"data.source": name, "data.path": str(folder.resolve())}
    files = " or ".join(s.folder_files for s in SOURCES.values() if s.folder_files)
    raise PadirecError(f"--data {data}: no {files} in the folder")


def plan(config_path: str | Path, overrides: dict[str, Any], backbones: Sequence[str], seeds: int) -> list[Cell]:
    """Every (backbone, seed) cell's config, loaded (and so validated) before anything runs.
    Seeds are the config's ``seed`` + 0..N-1; the backbone's seed stays the config's."""
    if seeds < 1:
        raise PadirecError(f"--seeds {seeds}: the number of seeds, 1 or more")
    base = load_config(config_path, overrides)
    pinned = base.backbone.seed_for(base.seed)
    cells = []
    for backbone in backbones:
        for seed in range(base.seed, base.seed + seeds):
            cfg = load_config(config_path, {**overrides, "backbone.model": backbone, "seed": seed,
                                            "backbone.seed": pinned,
                                            "name": f"{base.name}-{dataset_tag(base)}-{backbone}-s{seed}"})
            cells.append(Cell(backbone, seed, cfg, base.name))
    return cells


def dataset_tag(cfg: Config) -> str:
    """The data in a folder name: the source, and the folder's name for a file source."""
    tag = cfg.data.source
    if cfg.data.path:
        tag += "-" + "".join(c if c.isalnum() or c in "._-" else "_" for c in Path(cfg.data.path).name)
    return tag


# ----------------------------------------------------------------------------- running


def run_experiment(cells: list[Cell], out: Path, *, label: str,
                   runner: Callable[[Config], Path] | None = None) -> dict[str, Any]:
    """Run (or reuse) every cell, then write the tables, the figure and ``experiment.json`` into
    ``out`` and log them to MLflow. ``label`` names the config in the outputs. Returns the content
    of ``experiment.json``."""
    from pipelines.run_local import run_local, source_commit

    runner = runner or run_local
    commit = source_commit()  # the code that renders the tables (a commit made meanwhile is not it)
    out.mkdir(parents=True, exist_ok=True)
    base = cells[0].config
    tracker = _open_tracking(base, cells, label)
    done = _finished_cells(out / RESULT)
    records: list[dict[str, Any]] = []
    started = time.monotonic()
    ran = 0
    try:
        for i, cell in enumerate(cells, 1):
            where = f"experiment: cell {i}/{len(cells)} ({cell.backbone}, seed {cell.seed})"
            record = done.get((cell.backbone, cell.seed))
            if record and record.get("identity") == cell.identity and Path(record["report"]).is_file():
                log.info("%s: reusing %s (same config and code)", where, record["run_folder"])
            else:
                log.info("%s: running the pipeline", where)
                t0 = time.monotonic()
                try:
                    folder = runner(cell.config)  # run_local restores print and logging after it
                except PadirecError as e:
                    raise PadirecError(f"{where}: {e}; the finished cells are kept: the same command "
                                       "resumes") from None
                report = _find_report(folder)
                record = {"backbone": cell.backbone, "seed": cell.seed, "identity": cell.identity,
                          "run_folder": str(folder), "report": str(report),
                          "seconds": round(time.monotonic() - t0, 1)}
                ran += 1
                left = (time.monotonic() - started) / ran * sum(
                    1 for c in cells[i:] if done.get((c.backbone, c.seed), {}).get("identity") != c.identity)
                log.info("%s: done in %.0f s; about %.0f min left", where, record["seconds"], left / 60)
            records.append(record)
            _nest(tracker, record)
            # the later cells an earlier attempt finished stay recorded until they are reached
            later = [done[(c.backbone, c.seed)] for c in cells[i:] if done.get((c.backbone, c.seed), {}).get(
                "identity") == c.identity]
            _write_partial(out, base, cells, records + later, label)
        result = summarise_cells(records, _meta(base, cells, label))
        result["outputs"] = write_outputs(out, result)
        if tracker is not None:
            result["mlflow_run_id"] = tracker.run_id
        result["commit"] = commit
        atomic_write_json(out / RESULT, result)
        _log_result(tracker, out, result)
    except BaseException as e:
        if tracker is not None:
            _end_failed(tracker, e)
        raise
    if tracker is not None:
        tracker.end("FINISHED")
    return result


def _find_report(folder: Path) -> Path:
    from pipelines.run_local import find_output

    report = find_output(folder, REPORT)
    if report is None:
        raise PadirecError(f"{folder}: the run finished without {REPORT}")
    return report


def _finished_cells(path: Path) -> dict[tuple[str, int], dict[str, Any]]:
    """The cells an earlier run of the experiment recorded in ``path`` (none when unreadable)."""
    try:
        cells = json.loads(path.read_text()).get("cells", [])
        return {(c["backbone"], int(c["seed"])): c for c in cells}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def _meta(base: Config, cells: list[Cell], label: str) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "config": label,
        "name": cells[0].experiment,
        "dataset": dataset_tag(base),
        "backbones": list(dict.fromkeys(c.backbone for c in cells)),
        "seeds": list(dict.fromkeys(c.seed for c in cells)),
        "backbone_seed": base.backbone.seed_for(base.seed),
    }


def _write_partial(out: Path, base: Config, cells: list[Cell], records: list[dict[str, Any]], label: str) -> None:
    """``experiment.json`` after each cell: what a re-run reuses if this one stops."""
    atomic_write_json(out / RESULT, {**_meta(base, cells, label), "complete": False, "cells": records})


# ----------------------------------------------------------------------------- aggregation


def mean_sd(values: Sequence[float | None]) -> dict[str, Any]:
    """Mean and sample sd of the defined values (``None``: an undefined figure, left out); ``sd`` is
    ``None`` below two values, ``mean`` below one. ``values`` keeps every seed's figure."""
    xs = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    n = len(xs)
    mean = math.fsum(xs) / n if n else None
    sd = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1)) if n > 1 else None
    return {"mean": mean, "sd": sd, "n": n, "values": list(values)}


def interval_over_seeds_and_users(stat: dict[str, Any], user_cis: Sequence[Any], confidence: float = 0.95,
                                  ) -> list[float] | None:
    """``[lo, hi]`` around the mean over seeds that holds both noises: the seeds' (the standard error
    ``sd / sqrt(n)`` with Student's t, n - 1 degrees of freedom) and the users' (each run's paired
    bootstrap interval ``user_cis`` read as a normal one, its standard error averaged over the runs;
    every run scores the same users, so that part does not shrink with more seeds). The two are
    independent, so their variances add. ``None`` below two seeds; the seeds' part alone when no run
    has a user interval."""
    from scipy import stats

    if stat["mean"] is None or stat["n"] < 2:
        return None
    z = stats.norm.ppf(0.5 + confidence / 2)
    t = stats.t.ppf(0.5 + confidence / 2, stat["n"] - 1)
    widths = [(ci[1] - ci[0]) / (2 * z) for ci in user_cis
              if isinstance(ci, list | tuple) and len(ci) == 2 and None not in ci]
    user_se = math.fsum(widths) / len(widths) if widths else 0.0
    half = math.sqrt((t * stat["sd"] / math.sqrt(stat["n"])) ** 2 + (z * user_se) ** 2)
    return [stat["mean"] - half, stat["mean"] + half]


def summary_value(row: dict[str, Any], figure: str, k: int) -> float | None:
    """One figure of a method's report summary: a top-level figure, ``dominates`` / ``dominated``
    (tasks where the method's point dominates Retrain's / Retrain's dominates it), ``dominated_95``
    (tasks where Retrain's dominates in at least ``SURE`` of the users' bootstrap draws; None without
    the bootstrap) and ``tracking_<metric>`` (its mean |method - Retrain|)."""
    if figure in ("dominates", "dominated"):
        return ((row.get("dominance") or {}).get("counts") or {}).get(figure)
    if figure == "dominated_95":
        shares = (row.get("dominance_share") or {}).get("dominated")
        return None if shares is None else sum(1 for s in shares if s is not None and s >= SURE)
    if figure.startswith("tracking_"):
        metric = f"{figure.removeprefix('tracking_')}@{k}"
        return ((row.get("tracking_error") or {}).get(metric) or {}).get("mean")
    return row.get(figure)


def user_interval(row: dict[str, Any], figure: str, k: int) -> list[float] | None:
    """The run's paired bootstrap interval of a summary figure (``<figure>_ci``; the tracking errors'
    are under ``tracking_error_ci``), None when the report has none."""
    if figure.startswith("tracking_"):
        return (row.get("tracking_error_ci") or {}).get(f"{figure.removeprefix('tracking_')}@{k}")
    return row.get(f"{figure}_ci")


def _figure(per_seed: Sequence[dict[str, Any]], method: str, figure: str) -> dict[str, Any]:
    """``mean_sd`` of one summary figure over the seeds' reports, with ``interval`` (seeds and users)."""
    rows = [rep["summary"].get(method) or {} for rep in per_seed]
    stat = mean_sd([summary_value(r, figure, rep["k"]) for r, rep in zip(rows, per_seed, strict=True)])
    cis = [user_interval(r, figure, rep["k"]) for r, rep in zip(rows, per_seed, strict=True)]
    return {**stat, "interval": interval_over_seeds_and_users(stat, cis)}


def summarise_cells(records: list[dict[str, Any]], meta: dict[str, Any]) -> dict[str, Any]:
    """Read every cell's report and aggregate over seeds, per backbone and method: the ``FIGURES``
    (``summary``), the median response time (``response_time``) and the metrics per grid task
    (``curves``, for Figure 3). Seeds are in ``meta["seeds"]`` order; a figure a seed's report lacks
    is ``None`` for that seed."""
    reports = {(r["backbone"], int(r["seed"])): json.loads(Path(r["report"]).read_text()) for r in records}
    seeds = meta["seeds"]
    first = next(iter(reports.values()))
    k, tasks, utilities = first["k"], first["tasks"], first["utilities"]
    reference = reference_serves(first.get("config"))
    for (backbone, seed), rep in reports.items():
        if rep["tasks"] != tasks or rep["utilities"] != utilities or rep["k"] != k or reference_serves(rep.get("config")) != reference:
            raise PadirecError(f"the report of {backbone} seed {seed} has another task grid, utilities, k or Retrain "
                               "reference than the others: the cells are not comparable")
    methods = list(dict.fromkeys(m for rep in reports.values() for m in rep["summary"]))
    metrics = [f"ndcg@{k}", f"alpha_ndcg@{k}"]
    w_acc = [w[utilities.index("accuracy")] for w in tasks] if "accuracy" in utilities else list(range(len(tasks)))
    summary: dict[str, Any] = {}
    response: dict[str, Any] = {}
    curves: dict[str, Any] = {}
    for backbone in meta["backbones"]:
        per_seed = [reports[(backbone, s)] for s in seeds]
        summary[backbone] = {m: {f: _figure(per_seed, m, f) for f in (*FIGURES, "front_hv")} for m in methods}
        response[backbone] = {m: mean_sd([((rep.get("response_time") or {}).get(m) or {}).get("median_s")
                                          for rep in per_seed]) for m in methods}
        curves[backbone] = {m: {metric: [mean_sd([_cell(rep, m, t, metric) for rep in per_seed])
                                         for t in range(len(tasks))] for metric in metrics} for m in methods}
    return {**meta, "complete": True, "cells": records, "k": k, "utilities": utilities, "tasks": tasks,
            "w_acc": w_acc, "methods": methods, "metrics": metrics, "summary": summary,
            "response_time": response, "curves": curves, "split": first.get("split", "test"),
            "reference": reference, "cell_commits": cell_commits(records)}


def cell_commits(records: list[dict[str, Any]]) -> dict[str, int]:
    """How many cells ran at each commit (their ``run.json``; ``unknown`` without one). A reused cell
    may come from an earlier commit: it is reused only when the padirec sources hash the same."""
    from pipelines.run_local import PROVENANCE

    counts: dict[str, int] = {}
    for r in records:
        try:
            commit = json.loads((Path(r["run_folder"]) / PROVENANCE).read_text()).get("commit") or "unknown"
        except (OSError, ValueError, AttributeError):
            commit = "unknown"
        counts[commit] = counts.get(commit, 0) + 1
    return counts


def _cell(report: dict[str, Any], method: str, task: int, metric: str) -> float | None:
    rows = report["methods"].get(method)
    return rows[task].get(metric) if rows else None


# ----------------------------------------------------------------------------- outputs


def fmt(stat: dict[str, Any], seeds: int, digits: int = 3, scale: Callable[[float], str] | None = None) -> str:
    """``mean ± sd`` (``n/a`` without a value; the mean alone with one seed; ``(n/N)`` when some
    seeds' figure is undefined)."""
    show = scale or (lambda v: f"{v:.{digits}f}")
    if stat["mean"] is None:
        return "n/a"
    text = show(stat["mean"]) if stat["sd"] is None else f"{show(stat['mean'])} ± {show(stat['sd'])}"
    return text if stat["n"] == seeds else f"{text} ({stat['n']}/{seeds})"


def _duration(stat: dict[str, Any], seeds: int) -> str:
    """A time's ``mean ± sd`` in one unit, chosen by the mean (ms below a second)."""
    if stat["mean"] is None:
        return "n/a"
    factor, unit = (1000, "ms") if stat["mean"] < 1 else (1, "s")
    return fmt(stat, seeds, scale=lambda v: f"{v * factor:.2f}") + f" {unit}"


def _header(result: dict[str, Any]) -> list[str]:
    seeds = result["seeds"]
    return [f"Generated by `padirec experiment` (config `{result['config']}`): {result['dataset']}, "
            f"{len(result['tasks'])} grid tasks, {result['split']} split, full ranking, history masked; "
            f"seeds {', '.join(map(str, seeds))} (the adapter bank, the generator, Retrain and the sampling; "
            f"each backbone trained once, seed {result['backbone_seed']}). "
            + ("Cells: mean ± sd over the seeds (sample sd)." if len(seeds) > 1 else "One seed: no sd."), ""]


def render_table1(result: dict[str, Any]) -> str:
    n = len(result["seeds"])
    lines = [f"# Table 1: controllability on {result['dataset']}", "", *_header(result),
             "Reward: mean over tasks of sum_j w_j z_j (each objective on a scale fixed by the run's Retrain: "
             "its worst pure-task value -> 0, its best -> 1); regret: Retrain's reward minus the method's (lower is "
             "better); Avg.HV: the paper's metric; tasks dominated by Retrain: grid tasks where Retrain's point is at "
             "least as good on every objective and better on one (tasks dominating Retrain: the other way round; "
             f"dominated in >= 95% of draws: in at least {SURE:.0%} of the users' paired bootstrap draws); tracking "
             "error: mean over tasks of |method - Retrain|. `[lo, hi]`: a 95% interval of the mean over the seeds "
             "that holds the seeds' noise (t) and the users' (each run's paired bootstrap), where the runs have both."
             + (f" Retrain serves {result['reference']}." if result.get("reference") else ""),
             ""]
    for backbone in result["backbones"]:
        lines += [f"## {display(backbone)}", "",
                  "| method | " + " | ".join(LABELS[f] for f in FIGURES) + " |",
                  "|---|" + "---|" * len(FIGURES)]
        for m in result["methods"]:
            stats = result["summary"][backbone][m]
            lines.append(f"| {m} | " + " | ".join(_with_interval(stats[f], n) for f in FIGURES) + " |")
        lines.append("")
    return "\n".join(lines)


def _with_interval(stat: dict[str, Any], seeds: int) -> str:
    """``mean ± sd [lo, hi]``: the interval over seeds and users (``interval_over_seeds_and_users``)."""
    lo_hi = stat.get("interval")
    return fmt(stat, seeds) + (f" [{lo_hi[0]:.3f}, {lo_hi[1]:.3f}]" if lo_hi else "")


def render_table2(result: dict[str, Any]) -> str:
    n = len(result["seeds"])
    backbones = result["backbones"]
    lines = [f"# Table 2: response time on {result['dataset']}", "", *_header(result),
             "Median time from new task weights to a model that can rank (one process), per run; "
             "then mean ± sd of those medians over the seeds.", "",
             "| method | " + " | ".join(display(b) for b in backbones) + " |",
             "|---|" + "---|" * len(backbones)]
    for m in result["methods"]:
        lines.append(f"| {m} | " + " | ".join(_duration(result["response_time"][b][m], n) for b in backbones) + " |")
    if {"padirec", "retrain"} <= set(result["methods"]):
        # per seed, then over seeds: the speed-up each run measured on its own machine state
        ratios = [mean_sd([r / p if r is not None and p else None for r, p in zip(
            result["response_time"][b]["retrain"]["values"], result["response_time"][b]["padirec"]["values"],
            strict=True)]) for b in backbones]
        lines.append("| Retrain / PaDiRec | " + " | ".join(fmt(r, n, scale=lambda v: f"{v:.0f}x") for r in ratios) + " |")
    return "\n".join(lines + [""])


def plot_fig3(result: dict[str, Any], path: Path) -> None:
    """Rows: backbones; columns: the metrics; one line per method (mean over seeds, ± sd band)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    x = np.asarray(result["w_acc"], dtype=float)
    order = np.argsort(x, kind="stable")
    backbones, metrics = result["backbones"], result["metrics"]
    colors = plt.get_cmap("tab20")
    fig, axes = plt.subplots(len(backbones), len(metrics), figsize=(4.6 * len(metrics), 3.3 * len(backbones)),
                             squeeze=False)
    for row, backbone in zip(axes, backbones, strict=True):
        for ax, metric in zip(row, metrics, strict=True):
            for i, m in enumerate(result["methods"]):
                stats = result["curves"][backbone][m][metric]
                mean = np.array([np.nan if s["mean"] is None else s["mean"] for s in stats])[order]
                sd = np.array([0.0 if s["sd"] is None else s["sd"] for s in stats])[order]
                # 10 distinct hues (tab20's dark half), then their light halves dashed: 11+ methods stay apart
                color = colors((2 * i) % 20 + (i // 10) % 2)
                ax.plot(x[order], mean, marker="o", ms=3, color=color, ls="--" if i >= 10 else "-", label=m)
                ax.fill_between(x[order], mean - sd, mean + sd, color=color, alpha=0.15, linewidth=0)
            ax.set_title(f"{display(backbone)}: {metric}")
            ax.set_xlabel("w_acc")
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"{result['dataset']}: mean over seeds {', '.join(map(str, result['seeds']))} (band: ± sd)", y=1.0)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
    plt.close(fig)


def write_outputs(out: Path, result: dict[str, Any]) -> list[str]:
    """``table1.md``, ``table2.md`` and ``fig3.png`` into ``out``; returns their names."""
    atomic_write_text(out / "table1.md", render_table1(result))
    atomic_write_text(out / "table2.md", render_table2(result))
    plot_fig3(result, out / "fig3.png")
    return ["table1.md", "table2.md", "fig3.png"]


# ----------------------------------------------------------------------------- MLflow


def _open_tracking(base: Config, cells: list[Cell], label: str):
    """The experiment's MLflow run in the config's experiment, or None with tracking off."""
    if base.tracking.uri == "none":
        return None
    from padirec.tracking import MlflowTracker, resolve_tracking_uri
    from padirec.tracking.liveness import RUNNER_TAG, process_token

    uri = resolve_tracking_uri(base.tracking.uri, Path(base.run_dir).resolve())
    meta = _meta(base, cells, label)
    tracker = MlflowTracker.start(uri, base.tracking.experiment, f"experiment-{meta['name']}-{meta['dataset']}",
                                  tags={"padirec.role": ROLE, RUNNER_TAG: process_token()})
    _close_dead_experiments(tracker)
    tracker.log_params({"config": label, "name": meta["name"], "dataset": meta["dataset"],
                        "backbones": ",".join(meta["backbones"]), "seeds": ",".join(map(str, meta["seeds"])),
                        "num_seeds": len(meta["seeds"]), "backbone_seed": meta["backbone_seed"]})
    return tracker


def _close_dead_experiments(tracker) -> None:
    """An experiment killed outright (SIGKILL, OOM) could not end its run: the next one does."""
    from padirec.tracking.core import search_all_runs
    from padirec.tracking.liveness import RUNNER_TAG, is_alive

    exp_id = tracker.client.get_run(tracker.run_id).info.experiment_id
    for run in search_all_runs(tracker.client, exp_id, f"tags.`padirec.role` = '{ROLE}' and attributes.status = 'RUNNING'"):
        token = run.data.tags.get(RUNNER_TAG, "")
        if run.info.run_id != tracker.run_id and token and not is_alive(token):
            log.warning("experiment: MLflow run %s was left RUNNING by a dead process: marking it FAILED", run.info.run_id)
            tracker.client.set_tag(run.info.run_id, "padirec.failure", "padirec experiment died before it finished")
            tracker.client.set_terminated(run.info.run_id, status="FAILED")


def _nest(tracker, record: dict[str, Any]) -> None:
    """Put the cell's pipeline run (found by its KFP run id) under the experiment's run in the UI."""
    if tracker is None:
        return
    from padirec.tracking import PIPELINE_ROLE

    kfp_id = f"local-{Path(record['run_folder']).name}"  # as run_local names it
    exp_id = tracker.client.get_run(tracker.run_id).info.experiment_id
    found = tracker.client.search_runs([exp_id], f"tags.`kfp.run_id` = '{kfp_id}' and tags.`padirec.role` = '{PIPELINE_ROLE}'",
                                       max_results=1)
    if not found:
        log.warning("experiment: no MLflow pipeline run tagged kfp.run_id=%s to nest", kfp_id)
        return
    run_id = found[0].info.run_id
    tracker.client.set_tag(run_id, "mlflow.parentRunId", tracker.run_id)
    tracker.client.set_tag(run_id, "padirec.experiment_cell", f"{record['backbone']}/seed{record['seed']}")


def _log_result(tracker, out: Path, result: dict[str, Any]) -> None:
    if tracker is None:
        return
    metrics: dict[str, float] = {}
    for backbone, methods in result["summary"].items():
        for m, stats in methods.items():
            for f in FIGURES:
                for part in ("mean", "sd"):
                    if stats[f][part] is not None:
                        metrics[f"{backbone}/{m}/{f}_{part}"] = stats[f][part]
            rt = result["response_time"][backbone][m]
            if rt["mean"] is not None:
                metrics[f"{backbone}/{m}/response_median_s_mean"] = rt["mean"]
    tracker.log_metrics(metrics)
    for name in (*result["outputs"], RESULT):
        tracker.log_artifact(out / name)
    tracker.set_tags({"padirec.experiment_folder": str(out)})


def _end_failed(tracker, error: BaseException) -> None:
    try:  # the original error matters more than a failure to record it
        tracker.set_tags({"padirec.failure": f"{type(error).__name__}: {error}"[:500]})
        tracker.end("FAILED")
    except Exception as e:
        log.warning("could not mark the experiment's MLflow run %s FAILED: %s", tracker.run_id, e)


def default_out(cells: list[Cell]) -> Path:
    """``<run_dir>/experiments/<name>-<data>``: the same command finds its earlier cells there."""
    base = cells[0].config
    return Path(base.run_dir) / "experiments" / f"{cells[0].experiment}-{dataset_tag(base)}"
