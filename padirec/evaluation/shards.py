"""The evaluate stage split by users: ``evaluation.shards`` steps, each on a range of the test
users, then one merge into the report.

A shard (``evaluate_shard``) reads the same inputs as the evaluate stage, keeps the test users
``[lo, hi)`` of its range (``shard_features``), builds and fits every method (the same fit in
every shard: methods fit on the training data and seed themselves) and gathers the evidence of
its users (``evidence.gather_evidence``). Its folder (kind ``evaluation_shard``) holds the
per-user figures and the adapters in ``evidence.safetensors`` and the rest in ``shard.json``.
New tasks are timed once, beside the shards, on every test user (``time_responses``: the
pipeline's ``time_responses`` step); a shard may time them itself (``folders.time_responses``, on
its own users only: a method whose per-task work is per user, such as DeepPRL's ranking, then
times a 1/shards slice).

The merge (``merge_shards``) joins the users in shard order, recomputes every per-task figure
from the joined per-user values (``sweep.aggregate``, as the sweep computes them; the coverage
``cv_div@k``/``cv_nov@k``, no mean over users, from the items some user listed: each shard writes
its set per task, ``listed/...`` (T, num_items + 1) bool, and the long tail ``tail`` once, and the
merge ORs the sets) and assembles
the report as the unsharded stage does: the same figures up to float summation order. Methods
must prepare a task the same in every shard; the merge checks the adapters agree and records the
largest difference.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.numpy
import torch

from padirec.adapters.features import EvalSplit, Features
from padirec.config import Config
from padirec.core.tracker import NullTracker, Tracker
from padirec.errors import ArtifactError, ConfigError
from padirec.evaluation.evidence import (
    BandEvidence,
    Evidence,
    assemble_report,
    gather_evidence,
    time_new_tasks,
)
from padirec.evaluation.stage import EvaluationInputs, load_inputs, publish_report
from padirec.evaluation.sweep import SweepResult, aggregate
from padirec.evaluation.uncertainty import CeilingEval
from padirec.runtime.artifacts import atomic_write, atomic_write_json, read_manifest, write_manifest
from padirec.runtime.seeding import seed_everything

log = logging.getLogger("padirec")

SHARD_KIND = "evaluation_shard"
ARRAYS = "evidence.safetensors"
META = "shard.json"
TIMING_KIND = "response_time"
TIMINGS = "timings.json"
ADAPTER_TOLERANCE = 1e-5  # shards' adapters of a task differ by more: a method is not deterministic


def user_range(n_users: int, index: int, count: int) -> tuple[int, int]:
    """The test users ``[lo, hi)`` of shard ``index`` of ``count``: contiguous, sizes within one."""
    if not 0 <= index < count:
        raise ConfigError(f"shard {index} of {count}: expected 0 <= index < evaluation.shards")
    return index * n_users // count, (index + 1) * n_users // count


def shard_features(features: Features, lo: int, hi: int) -> Features:
    """``features`` with the test split cut to its users ``[lo, hi)`` (the rest unchanged)."""
    s = features.test
    keep = (s.mask_rows >= lo) & (s.mask_rows < hi)
    test = EvalSplit(users=s.users[lo:hi], h=s.h[lo:hi], targets=s.targets[lo:hi], mask_rows=s.mask_rows[keep] - lo,
                     mask_cols=s.mask_cols[keep], groups=None if s.groups is None else s.groups[lo:hi])
    out = dataclasses.replace(features, test=test)
    out.topk_cache.update(features.topk_cache)  # not a field replace copies
    return out


# ----------------------------------------------------------------------------- one shard


def evaluate_shard(folders: EvaluationInputs, out_dir: str | Path, cfg: Config, index: int,
                   tracker: Tracker | None = None) -> dict[str, Any]:
    """The evidence of shard ``index``'s users -> its folder. Returns ``shard.json``'s content."""
    started = time.perf_counter()
    tracker = tracker or NullTracker()
    seed_everything(cfg.seed)
    inputs = load_inputs(folders, cfg)
    ctx = inputs.context
    n_users = int(ctx.features.test.users.shape[0])
    lo, hi = user_range(n_users, index, cfg.evaluation.shards)
    ctx = dataclasses.replace(ctx, features=shard_features(ctx.features, lo, hi))
    log.info("evaluate shard %d of %d: test users %d..%d of %d", index, cfg.evaluation.shards, lo, hi, n_users)
    evidence = gather_evidence(ctx, cfg, folders, shard=True)
    meta = {"index": index, "count": cfg.evaluation.shards, "users": [lo, hi], "total_users": n_users,
            "versions": inputs.versions, "backbone": inputs.backbone_name, "seconds": time.perf_counter() - started}
    write_shard(out_dir, evidence, meta, cfg)
    tracker.log_metrics({"shard_users": float(hi - lo)})
    return meta


def write_shard(out_dir: str | Path, evidence: Evidence, meta: dict[str, Any], cfg: Config) -> None:
    arrays: dict[str, np.ndarray] = {}
    keys: dict[str, list[str]] = {}  # each array group's metrics, in the sweep's order (safetensors sorts)
    meta = {**meta, "grid": _put_sweep(arrays, keys, "grid", evidence.sweep), "timings": evidence.timings,
            "keys": keys}
    if evidence.ceiling is not None:
        _put_rows(arrays, keys, "ceiling", evidence.ceiling.users)
        _put_listed(arrays, "listed/ceiling", evidence.ceiling.listed)
        meta["ceiling"] = {"seed": evidence.ceiling.seed}
    if evidence.band is not None:
        band = evidence.band
        meta["band"] = {"skipped": band.skipped, "info": band.info}
        if band.sweep is not None:
            meta["band"]["sweep"] = _put_sweep(arrays, keys, "band", band.sweep)
    if evidence.robustness is not None:
        for m, values in evidence.robustness.items():
            _put_rows(arrays, keys, f"robustness/{m}/clean", values["clean"])
            _put_rows(arrays, keys, f"robustness/{m}/noisy", values["noisy"])
        meta["robustness"] = list(evidence.robustness)
    if evidence.case_study is not None:
        meta["case_study"] = {"study": evidence.case_study, "hit": _hit(evidence.case_study)}
    users = evidence.sweep.user_groups
    if users is not None:
        arrays["groups"] = np.ascontiguousarray(users, dtype=np.int64)
    if evidence.sweep.tail is not None:  # the long tail of every listed set (from the training split)
        arrays["tail"] = np.ascontiguousarray(evidence.sweep.tail, dtype=bool)
    out_dir = Path(out_dir)
    atomic_write(out_dir / ARRAYS, lambda tmp: safetensors.numpy.save_file(arrays, tmp))
    atomic_write_json(out_dir / META, meta)
    write_manifest(out_dir, SHARD_KIND, [ARRAYS, META], cfg.to_dict(), shard={"index": meta["index"],
                                                                               "count": meta["count"]})


def _put_sweep(arrays: dict[str, np.ndarray], keys: dict[str, list[str]], name: str,
               sweep: SweepResult) -> dict[str, Any]:
    """The sweep's per-user values and adapters into ``arrays``; the rest as JSON."""
    for m, rows in sweep.per_user.items():
        _put_rows(arrays, keys, f"{name}/{m}", rows)
    for m, listed in sweep.listed.items():
        _put_listed(arrays, f"listed/{name}/{m}", listed)
    for m, params in sweep.adapters.items():
        arrays[f"adapters/{name}/{m}"] = params.detach().cpu().numpy()
    return {"tasks": sweep.tasks.tolist(), "methods": list(sweep.metrics), "fit_seconds": sweep.fit_seconds,
            "seconds": sweep.seconds, "groups": sweep.user_groups is not None}


def _put_rows(arrays: dict[str, np.ndarray], keys: dict[str, list[str]], prefix: str,
              rows: Sequence[dict[str, np.ndarray]]) -> None:
    """Per-task ``{metric: (U,)}`` as one ``(T, U)`` array per metric."""
    keys[prefix] = list(rows[0]) if rows else []
    for key in keys[prefix]:
        arrays[f"{prefix}/{key}"] = np.stack([np.asarray(r[key], dtype=np.float64) for r in rows])


def _put_listed(arrays: dict[str, np.ndarray], key: str, listed: Sequence[np.ndarray]) -> None:
    """Per task, the items some user of the shard listed, as one ``(T, num_items + 1)`` bool array."""
    if len(listed):
        arrays[key] = np.ascontiguousarray(np.stack([np.asarray(x, dtype=bool) for x in listed]))


def _hit(study: dict[str, Any]) -> bool:
    """Whether the case study's user has its held-out item in the list at the largest ``w_acc``."""
    top = max(study["lists"], key=float)
    return any(entry["item"] == study["target"]["item"] for entry in study["lists"][top])


def time_responses(folders: EvaluationInputs, out_dir: str | Path, cfg: Config,
                   tracker: Tracker | None = None) -> dict[str, Any]:
    """The response-time comparison on every test user -> ``timings.json`` (kind ``response_time``)."""
    inputs = load_inputs(folders, cfg)
    timings = time_new_tasks(inputs.context, cfg)
    atomic_write_json(Path(out_dir) / TIMINGS, {"timings": timings, "versions": inputs.versions})
    write_manifest(out_dir, TIMING_KIND, [TIMINGS], cfg.to_dict())
    (tracker or NullTracker()).log_metrics({"timed_methods": float(len(timings))})
    return timings


# ----------------------------------------------------------------------------- the merge


def merge_shards(shard_dirs: Sequence[str | Path], out_dir: str | Path, cfg: Config,
                 tracker: Tracker | None = None, timings_dir: str | Path | None = None) -> dict[str, Any]:
    """Join the shards' users and write the report folder as ``evaluate_stage`` does. Returns the
    report. ``timings_dir``: the ``time_responses`` folder (else shard 0's own timings, if any)."""
    parts = _read_shards(shard_dirs, cfg)
    metas = [meta for meta, _ in parts]
    evidence, difference = join_evidence(parts, cfg)
    timed_users = metas[0]["users"][1] - metas[0]["users"][0]
    if timings_dir is not None:
        evidence.timings = _read_timings(timings_dir, metas[0]["versions"])
        # as the single step: the fits timed are the fits reported
        evidence.sweep.fit_seconds = {key: t["fit_s"] for key, t in evidence.timings.items()}
        timed_users = metas[0]["total_users"]
    shards = {"count": len(parts), "users": [m["users"][1] - m["users"][0] for m in metas],
              "seconds": [m["seconds"] for m in metas], "timed_users": timed_users,
              "adapter_max_difference": difference}
    report = assemble_report(evidence, cfg, metas[0]["versions"], metas[0]["backbone"], {"shards": shards})
    publish_report(out_dir, report, cfg, tracker)
    return report


def _read_shards(shard_dirs: Sequence[str | Path], cfg: Config) -> list[tuple[dict[str, Any], dict[str, np.ndarray]]]:
    parts = []
    for folder in shard_dirs:
        read_manifest(folder, kind=SHARD_KIND)
        meta = json.loads((Path(folder) / META).read_text())
        parts.append((meta, safetensors.numpy.load_file(str(Path(folder) / ARRAYS))))
    parts.sort(key=lambda p: p[0]["index"])
    count = cfg.evaluation.shards
    if [m["index"] for m, _ in parts] != list(range(count)) or any(m["count"] != count for m, _ in parts):
        raise ArtifactError(f"expected shards 0..{count - 1} of {count} (evaluation.shards), got "
                            f"{[(m['index'], m['count']) for m, _ in parts]}")
    ends = [0] + [m["users"][1] for m, _ in parts]
    if [m["users"][0] for m, _ in parts] != ends[:-1] or ends[-1] != parts[0][0]["total_users"]:
        raise ArtifactError(f"the shards' user ranges {[m['users'] for m, _ in parts]} do not cover the "
                            f"{parts[0][0]['total_users']} test users once")
    if any(m["versions"] != parts[0][0]["versions"] for m, _ in parts):
        raise ArtifactError("the shards evaluated different inputs (their versions differ)")
    return parts


def _read_timings(folder: str | Path, versions: dict[str, Any]) -> dict[str, Any]:
    read_manifest(folder, kind=TIMING_KIND)
    timed = json.loads((Path(folder) / TIMINGS).read_text())
    if timed["versions"] != versions:
        raise ArtifactError(f"{folder}: the timings come from other inputs than the shards' (their versions differ)")
    return timed["timings"]


def join_evidence(parts: Sequence[tuple[dict[str, Any], dict[str, np.ndarray]]], cfg: Config,
                  ) -> tuple[Evidence, float]:
    """One ``Evidence`` of every user from the shards' (in order), and the largest difference
    between two shards' adapters of a task (0 when they agree to the bit)."""
    first, k = parts[0][0], cfg.evaluation.k
    groups = np.concatenate([a["groups"] for _, a in parts]) if first["grid"]["groups"] else None
    tail = _tail(parts)
    difference = [0.0]
    sweep = _join_sweep(parts, "grid", first["grid"], groups, tail, k, difference)
    evidence = Evidence(sweep, first["timings"])
    if "ceiling" in first:
        rows = _join_rows(parts, "ceiling", len(sweep.tasks))
        listed = _join_listed(parts, "listed/ceiling")
        evidence.ceiling = CeilingEval(first["ceiling"]["seed"], _aggregate_rows(rows, groups, k, listed, tail), rows,
                                       [] if listed is None else list(listed))
    if "band" in first:
        band = first["band"]
        band_sweep = (_join_sweep(parts, "band", band["sweep"], groups, tail, k, difference) if "sweep" in band
                      else None)
        evidence.band = BandEvidence(band_sweep, band["info"], band["skipped"])
    if "robustness" in first:
        n_tasks = len(sweep.tasks)
        evidence.robustness = {m: {"clean": _join_rows(parts, f"robustness/{m}/clean", n_tasks),
                                   "noisy": _join_rows(parts, f"robustness/{m}/noisy")} for m in first["robustness"]}
    studies = [m["case_study"] for m, _ in parts if "case_study" in m]
    if studies:  # the first shard's hit, as the whole split's first hit; else the first user's
        evidence.case_study = next((s["study"] for s in studies if s["hit"]), studies[0]["study"])
    if difference[0] > ADAPTER_TOLERANCE:
        log.warning("the shards' adapters of a task differ by up to %.3g: a method is not deterministic across "
                    "shards, so its users were ranked by different adapters", difference[0])
    return evidence, difference[0]


def _tail(parts: Sequence[tuple[dict[str, Any], dict[str, np.ndarray]]]) -> np.ndarray | None:
    """The long tail the shards' listed sets are measured against: the same in every shard (it
    comes from the training split), None when the shards carry none."""
    tails = [a.get("tail") for _, a in parts]
    if any(t is None for t in tails):
        return None
    if any(not np.array_equal(t, tails[0]) for t in tails[1:]):
        raise ArtifactError("the shards' long tails differ: they were evaluated on different training data")
    return tails[0].astype(bool)


def _join_listed(parts: Sequence[tuple[dict[str, Any], dict[str, np.ndarray]]], key: str) -> np.ndarray | None:
    """``(T, num_items + 1)`` bool: per task, the items some user of some shard listed (the shards'
    sets OR-ed); None when a shard lacks them."""
    sets = [a.get(key) for _, a in parts]
    if any(x is None for x in sets):
        return None
    return np.logical_or.reduce([x.astype(bool) for x in sets])


def _join_sweep(parts: Sequence[tuple[dict[str, Any], dict[str, np.ndarray]]], name: str, info: dict[str, Any],
                groups: np.ndarray | None, tail: np.ndarray | None, k: int, difference: list[float]) -> SweepResult:
    tasks = np.asarray(info["tasks"], dtype=np.float64).reshape(len(info["tasks"]), -1)
    infos = [meta["grid"] if name == "grid" else meta["band"]["sweep"] for meta, _ in parts]
    out = SweepResult(tasks=tasks, metrics={}, user_groups=groups, tail=tail,
                      fit_seconds=dict(info["fit_seconds"]),  # each shard fits alike: the first's
                      seconds={m: sum(i["seconds"][m] for i in infos) for m in info["seconds"]})  # the work
    for m in info["methods"]:
        rows = _join_rows(parts, f"{name}/{m}", len(tasks))
        listed = _join_listed(parts, f"listed/{name}/{m}")
        out.per_user[m] = rows
        if listed is not None:
            out.listed[m] = list(listed)
        out.metrics[m] = _aggregate_rows(rows, groups, k, listed, tail)
        key = f"adapters/{name}/{m}"
        if key in parts[0][1]:
            params = [a[key] for _, a in parts]
            difference[0] = max([difference[0]] + [float(np.abs(p - params[0]).max()) for p in params[1:]])
            out.adapters[m] = torch.from_numpy(params[0].copy())
    return out


def _join_rows(parts: Sequence[tuple[dict[str, Any], dict[str, np.ndarray]]], prefix: str,
               n_rows: int | None = None) -> list[dict[str, np.ndarray]]:
    """Per row (task), ``{metric: (U,)}`` with the shards' users joined in order."""
    keys = parts[0][0]["keys"][prefix]
    if not keys:
        return [{} for _ in range(n_rows or 0)]
    joined = {key: np.concatenate([a[f"{prefix}/{key}"] for _, a in parts], axis=1) for key in keys}
    return [{key: joined[key][t] for key in keys} for t in range(joined[keys[0]].shape[0])]


def _aggregate_rows(rows: Sequence[dict[str, np.ndarray]], groups: np.ndarray | None, k: int,
                    listed: np.ndarray | None, tail: np.ndarray | None) -> list[dict[str, float]]:
    """``_aggregate`` of every task's row, with its listed items when the shards carry them."""
    if listed is not None and len(listed) != len(rows):
        raise ArtifactError(f"the shards list items for {len(listed)} tasks, not the {len(rows)} of their values")
    return [_aggregate(r, groups, k, None if listed is None else listed[t], tail) for t, r in enumerate(rows)]


def _aggregate(row: dict[str, np.ndarray], groups: np.ndarray | None, k: int, listed: np.ndarray | None = None,
               tail: np.ndarray | None = None) -> dict[str, float]:
    """The sweep's per-task figures of joined per-user values (``SplitEvaluator.aggregate``), and
    the coverage of the items the joined users listed (``listed``, against the long tail ``tail``)."""
    return aggregate({key: torch.from_numpy(v) for key, v in row.items()},
                     None if groups is None else torch.from_numpy(groups), k,
                     None if listed is None else torch.from_numpy(listed),
                     None if tail is None else torch.from_numpy(tail))


# ----------------------------------------------------------------------------- comparing reports

CLOCK_KEYS = ("created_utc", "response_time", "shards")  # what the clock or the sharding decides


def figure_differences(a: Any, b: Any, rtol: float = 1e-9, atol: float = 1e-12, where: str = "") -> list[str]:
    """Every place two reports differ: integers, strings and flags exactly, floats to ``rtol``
    (absolute ``atol``); durations (keys with ``seconds``, or ending ``_s``) and ``CLOCK_KEYS`` skipped."""
    if isinstance(a, dict) and isinstance(b, dict):
        keys = [k for k in set(a) | set(b) if k not in CLOCK_KEYS and "seconds" not in k and not k.endswith("_s")]
        return [d for k in sorted(keys) for d in figure_differences(a.get(k), b.get(k), rtol, atol, f"{where}.{k}")]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{where}: {len(a)} items against {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True))
                for d in figure_differences(x, y, rtol, atol, f"{where}[{i}]")]
    if isinstance(a, float) and isinstance(b, float):
        same = (math.isnan(a) and math.isnan(b)) or abs(a - b) <= atol + rtol * abs(b)
        return [] if same else [f"{where}: {a!r} != {b!r}"]
    return [] if a == b and type(a) is type(b) else [f"{where}: {a!r} != {b!r}"]
