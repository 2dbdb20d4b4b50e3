"""The pipeline's steps as plain functions: what each KFP component calls, and all that it calls.

A component only turns its artifacts into paths and hands them here with the config JSON. Each
step sets up logging and torch's threads, opens its MLflow run, applies the local stage cache
(the key is assembled here, from exactly the settings the stage depends on) and returns its KFP
metadata: numbers, strings and booleans, no NaN or inf.
"""

from __future__ import annotations

import dataclasses
import logging
import resource
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from padirec.adapters.features_stage import features_stage, topk_size
from padirec.adapters.stage import build_adapters_stage, merge_adapter_banks
from padirec.backbones.stage import train_backbone_stage
from padirec.config import Config, config_from_json
from padirec.core.tracker import Tracker
from padirec.data.stage import run_data_stage
from padirec.diffusion.stage import train_generator_stage
from padirec.evaluation.protocols import needs_band_generator
from padirec.evaluation.shards import evaluate_shard, merge_shards, time_responses
from padirec.evaluation.stage import EvaluationInputs, evaluate_stage
from padirec.evaluation.trained_inputs import band_generator_stage, retrain_ceiling_stage
from padirec.evaluation.uncertainty import ceiling_seed
from padirec.methods.registry import method_with_role
from padirec.runtime.cache import cache_key, run_cached
from padirec.runtime.compute import set_torch_threads
from padirec.runtime.finite import finite_metadata
from padirec.runtime.progress import setup_logging
from padirec.tracking import MlflowTracker, finish_pipeline_run, step_tracker
from padirec.tracking.registration import register_and_promote_stage

log = logging.getLogger("padirec")


@contextmanager
def _step(config_json: str, name: str, data: str | None = None, context: str = "training",
          system_metrics: bool = False) -> Iterator[tuple[Config, Tracker]]:
    """``data``: the prepared data folder this step reads, logged as the run's input dataset with
    ``context`` (lineage: the same MLflow dataset as the data step's). ``system_metrics``: CPU,
    memory (and GPU) sampled into the run while the step works."""
    setup_logging()
    started = time.perf_counter()
    cfg = config_from_json(config_json)
    threads = set_torch_threads()
    with step_tracker(cfg, name, system_metrics=system_metrics) as tracker:
        tracker.set_tags(threads)
        if data is not None:
            _log_input(tracker, lambda: tracker.log_dataset(Path(data), context=context))
        yield cfg, tracker
        tracker.log_metrics(step_cost(started))


def step_cost(started: float) -> dict[str, float]:
    """What a step cost its process: ``step_seconds`` since ``started`` (``time.perf_counter``) and
    ``process_peak_rss_mb``, the process's peak resident memory so far (imports included: in a
    pod, what the memory request must cover). ``make bench-scale`` reads both from every step."""
    return {"step_seconds": time.perf_counter() - started,
            "process_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _log_input(tracker: Tracker, log_it: Callable[[], Any]) -> None:
    """Lineage is recorded, never fatal: a step whose input cannot be logged still runs."""
    if not isinstance(tracker, MlflowTracker):
        return
    try:
        log_it()
    except Exception as e:
        log.warning("could not log the input dataset of MLflow run %s: %s", tracker.run_id, e)


def _cached(cfg: Config, stage: str, settings: Any, inputs: list[str], out: str,
            run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    return run_cached(cfg.cache_root(), stage, cache_key(stage, settings, inputs), out, run)


def _metadata(values: dict[str, Any]) -> dict[str, Any]:
    return finite_metadata({k: v for k, v in values.items() if isinstance(v, int | float | str | bool)})


def prepare_data_step(config_json: str, data_version: str, out: str) -> dict[str, Any]:
    """``data_version`` names the source snapshot (else ``data.snapshot``): it fills the data
    locations' ``{snapshot}``, is an input of KFP's cache key, and is recorded on the run."""
    with _step(config_json, "prepare_data") as (cfg, tracker):
        data_cfg = cfg.data.for_snapshot(data_version)
        data_version = data_version or data_cfg.snapshot
        tracker.set_tags({"data_version": data_version or "unversioned"})
        manifest = run_data_stage(data_cfg, out, tracker, eval_k=cfg.evaluation.k)
    return _metadata({**manifest["stats"], "data_checksum": manifest["data_checksum"], "data_version": data_version})


def train_backbone_step(config_json: str, data: str, out: str) -> dict[str, Any]:
    with _step(config_json, "train_backbone", data, system_metrics=True) as (cfg, tracker):
        # the seed it trains with, not how it was given: -1 under seed 0 and 0 share an entry
        seed = cfg.backbone.seed_for(cfg.seed)
        settings = [{k: v for k, v in dataclasses.asdict(cfg.backbone.chosen()).items() if k != "seed"},
                    cfg.data.max_len, seed]
        metrics = _cached(cfg, "train_backbone", settings, [data], out, lambda: train_backbone_stage(
            data, out, cfg.backbone, cfg.data.max_len, seed, cfg.device, tracker))
    return _metadata({"model": cfg.backbone.model, "cache": metrics.get("cache", "off"),
                      **{f"test_{k}": v for k, v in metrics["test"].items()}})


def compute_features_step(config_json: str, data: str, backbone: str, out: str) -> dict[str, Any]:
    """The frozen backbone's features (and top-k lists), once per pipeline, for every later step."""
    with _step(config_json, "compute_features", data, system_metrics=True) as (cfg, tracker):
        a = cfg.adapters
        settings = [cfg.data.max_len, a.feature_stride, topk_size(a)]
        summary = _cached(cfg, "compute_features", settings, [data, backbone], out, lambda: features_stage(
            data, backbone, out, a, cfg.data.max_len, cfg.device, tracker))
    return _metadata(summary)


def plan_shards_step(config_json: str) -> list[int]:
    """The shard indices of the adapter bank, for the pipeline's fan-out."""
    return list(range(config_from_json(config_json).adapters.num_shards))


def build_adapters_step(config_json: str, shard_index: int, data: str, backbone: str, features: str,
                        out: str) -> dict[str, Any]:
    with _step(config_json, f"build_adapters_{shard_index}", data, system_metrics=True) as (cfg, tracker):
        settings = [dataclasses.asdict(cfg.adapters), cfg.data.max_len, cfg.seed, shard_index]
        summary = _cached(cfg, "build_adapters", settings, [data, backbone, features], out, lambda: build_adapters_stage(
            data, backbone, out, cfg.adapters, cfg.data.max_len, cfg.seed, cfg.device, tracker,
            shard_index=shard_index, num_shards=cfg.adapters.num_shards, features_dir=features))
    return _metadata(summary)


def train_generator_step(config_json: str, banks: list[str], bank_out: str, out: str) -> dict[str, Any]:
    """Collect the bank's shards into ``bank_out``, then train the generator into ``out``."""
    with _step(config_json, "train_generator", system_metrics=True) as (cfg, tracker):
        # No data folder here: the dataset the earlier steps of this pipeline run logged.
        _log_input(tracker, lambda: tracker.log_pipeline_dataset("training"))
        merge_adapter_banks(banks, bank_out)
        settings = [dataclasses.asdict(cfg.generator), cfg.seed]
        summary = _cached(cfg, "train_generator", settings, [bank_out], out, lambda: train_generator_stage(
            bank_out, out, cfg.generator, cfg.seed, cfg.device, tracker))
    return _metadata(summary)


def band_generator_step(config_json: str, bank: str, out: str) -> dict[str, Any]:
    """The band protocol's generator: trained on the bank without the band's tasks."""
    with _step(config_json, "band_generator", system_metrics=True) as (cfg, tracker):
        _log_input(tracker, lambda: tracker.log_pipeline_dataset("training"))
        ev = cfg.evaluation
        settings = [dataclasses.asdict(cfg.generator), cfg.seed, ev.band_low, ev.band_high, needs_band_generator(cfg)]
        settings += [ev.band_coordinate] if ev.band_coordinate != "w_acc" else []  # earlier caches stay valid
        summary = _cached(cfg, "band_generator", settings, [bank], out, lambda: band_generator_stage(
            bank, out, cfg, tracker))
    return _metadata(summary)


def retrain_ceiling_step(config_json: str, data: str, backbone: str, features: str, out: str) -> dict[str, Any]:
    """The ceiling's second Retrain: every grid task, trained with another seed."""
    with _step(config_json, "retrain_ceiling", data, system_metrics=True) as (cfg, tracker):
        ev, reference = cfg.evaluation, method_with_role("reference")
        served = getattr(cfg.methods.get(reference), "checkpoints", "mean")
        settings = [dataclasses.asdict(cfg.adapters), cfg.data.max_len, ceiling_seed(cfg), served,
                    ev.retrain_ceiling and reference in ev.methods]
        summary = _cached(cfg, "retrain_ceiling", settings, [data, backbone, features], out,
                          lambda: retrain_ceiling_stage(data, backbone, features, out, cfg, tracker))
    return _metadata(summary)


def evaluate_step(config_json: str, data: str, backbone: str, features: str, bank: str, generator: str,
                  band_generator: str, ceiling: str, out: str) -> dict[str, Any]:
    """Never cached. The response-time comparison first (wall times belong to the machine and the
    moment they were measured on), with the methods it fits; then the sweep reuses them."""
    with _step(config_json, "evaluate", data, "evaluation", system_metrics=True) as (cfg, tracker):
        folders = EvaluationInputs(data, backbone, bank, generator, features, band_generator, ceiling,
                                   time_responses=True)
        evaluate_stage(folders, out, cfg, tracker)
    return {}


def plan_evaluation_step(config_json: str) -> tuple[int, list[int]]:
    """``(evaluation.shards, the shard indices)``: one shard is the single evaluate step."""
    count = config_from_json(config_json).evaluation.shards
    return count, list(range(count))


def evaluate_shard_step(config_json: str, shard_index: int, data: str, backbone: str, features: str, bank: str,
                        generator: str, band_generator: str, ceiling: str, out: str) -> dict[str, Any]:
    """One range of the test users (``padirec.evaluation.shards``); ``time_responses`` times new tasks."""
    with _step(config_json, f"evaluate_shard_{shard_index}", data, "evaluation", system_metrics=True) as (cfg, tracker):
        folders = EvaluationInputs(data, backbone, bank, generator, features, band_generator, ceiling)
        meta = evaluate_shard(folders, out, cfg, shard_index, tracker)
    return {"users": meta["users"][1] - meta["users"][0]}


def time_responses_step(config_json: str, data: str, backbone: str, features: str, bank: str, generator: str,
                        band_generator: str, ceiling: str, out: str) -> dict[str, Any]:
    """Never cached, as ``evaluate``: beside the user shards, the response-time comparison on every user."""
    with _step(config_json, "time_responses", data, "evaluation", system_metrics=True) as (cfg, tracker):
        folders = EvaluationInputs(data, backbone, bank, generator, features, band_generator, ceiling)
        timings = time_responses(folders, out, cfg, tracker)
    return {"methods": len(timings)}


def merge_evaluation_step(config_json: str, parts: list[str], timings: str, out: str) -> dict[str, Any]:
    """The shards' users and the timings joined into the report the single evaluate step writes."""
    with _step(config_json, "merge_evaluation") as (cfg, tracker):
        _log_input(tracker, lambda: tracker.log_pipeline_dataset("evaluation"))
        merge_shards(parts, out, cfg, tracker, timings_dir=timings)
    return {}


def register_and_promote_step(config_json: str, data: str, backbone: str, generator: str, report: str,
                              out: str) -> dict[str, Any]:
    with _step(config_json, "register_and_promote", data) as (cfg, tracker):
        result = register_and_promote_stage(data, backbone, generator, report, out, cfg, tracker)
    return _metadata(result)


def finish_run_step(config_json: str, state: str) -> str | None:
    """The exit handler: close the parent MLflow run by the pipeline's final state."""
    return finish_pipeline_run(config_from_json(config_json), state)
