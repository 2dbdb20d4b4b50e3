"""Every setting is checked when the config loads, before any work starts: each number against its
range, each name against its choices, then the rules that tie two settings together.

Ranges and choices are declared where the setting is, as field metadata
(``padirec.core.typed_config.setting``), and read here by one checker, ``allowed_values``: for
every section, every registered backbone's and method's own settings, and plugins alike. NaN and
infinity are outside every range. ``tests/test_config_ranges.py`` checks that every number has a
range and that each rejects the values outside it.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from typing import Any

from padirec.core.typed_config import Interval
from padirec.data.config import SyntheticSettings
from padirec.errors import ConfigError

DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
CPU = re.compile(r"\d+(\.\d+)?|\d+m")  # Kubernetes quantities: cores (4, 0.5) or millicores (500m)
MEMORY = re.compile(r"\d+([KMGTPE]i?)?")
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")  # a namespace
PROTOCOLS = ("grid", "band")  # the evaluation protocols (``padirec.evaluation.protocols``)
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")  # a folder name: never leaves run_dir
PRODUCTION_MODEL = "padirec-recommender"  # the registered model whose ``champion`` is served
REFERENCE_METHOD = "padirec"  # the method the pipeline registers, promotes and compares the others to
URI_SPECIAL = "%?#"  # a run_dir is a path in the SQLite store's URI: these would be read as URI syntax


def lookup(cfg: Any, key: str) -> Any:
    value = cfg
    for part in key.split("."):
        value = value[part] if isinstance(value, dict) else getattr(value, part)
    return value


def allowed_values(settings: Any, prefix: str = "") -> Iterator[tuple[str, Any, Interval | None, Any]]:
    """``(dotted key, value, range, choices)`` of every field of ``settings`` (a dataclass) that
    declares a range or choices, nested sections and each registered class's settings included."""
    for f in dataclasses.fields(settings):
        key, value = prefix + f.name, getattr(settings, f.name)
        allowed = f.metadata.get("range")
        choices = f.metadata.get("choices")
        if allowed is not None or choices is not None:
            yield key, value, allowed, choices
        if dataclasses.is_dataclass(value):
            yield from allowed_values(value, f"{key}.")
        elif isinstance(value, dict):  # a section by registered name: ``methods``, ``backbone.models``, ...
            for name, section in value.items():
                if dataclasses.is_dataclass(section):
                    yield from allowed_values(section, f"{key}.{name}.")


def every_value(cfg: Any) -> Iterator[tuple[str, Any, Interval | None, Any]]:
    """``allowed_values`` of the whole config, ``data.synthetic`` (the keyword arguments given to
    ``padirec.data.synthetic.generate``, read with ``SyntheticSettings``) included."""
    yield from allowed_values(cfg)
    given = set(cfg.data.synthetic)
    for key, value, allowed, choices in allowed_values(SyntheticSettings(**cfg.data.synthetic), "data.synthetic."):
        if key.rpartition(".")[2] in given:
            yield key, value, allowed, choices


def ranges(cfg: Any) -> dict[str, Interval]:
    """Every ranged setting of ``cfg`` by dotted key."""
    return {key: allowed for key, _, allowed, _ in allowed_values(cfg) if allowed is not None}


def check(cfg: Any) -> None:
    """Raise ``ConfigError`` naming the first setting out of its range, not among its choices, or at
    odds with another."""
    for key, value, allowed, choices in every_value(cfg):
        if allowed is not None and (isinstance(value, bool) or value not in allowed):
            raise ConfigError(f"{key}: {value!r} is outside {allowed.text}")
        unknown = [v for v in (value if isinstance(value, list) else [value]) if choices is not None and v not in choices]
        if unknown:
            raise ConfigError(f"{key}: unknown {', '.join(map(repr, unknown))}; valid: {', '.join(map(str, choices))}")
    b, a, g, ev = cfg.backbone, cfg.adapters, cfg.generator, cfg.evaluation
    synthetic = SyntheticSettings(**cfg.data.synthetic)
    rules = [
        (b.dim % b.num_heads == 0, "backbone.num_heads", f"{b.num_heads} does not divide backbone.dim {b.dim}"),
        (b.launcher != "trainjob" or b.trainjob.staging.startswith("s3://"), "backbone.trainjob.staging",
         f"{b.trainjob.staging!r}: the TrainJob's pods reach the data through the object store; give s3://bucket/prefix"),
        (bool(CPU.fullmatch(b.trainjob.cpu)), "backbone.trainjob.cpu",
         f"{b.trainjob.cpu!r}: cores (4, 0.5) or millicores (500m)"),
        (bool(MEMORY.fullmatch(b.trainjob.memory)), "backbone.trainjob.memory",
         f"{b.trainjob.memory!r}: bytes with K, M, G, T, P, E or Ki, Mi, Gi, ... (e.g. 16Gi)"),
        (not b.trainjob.namespace or bool(DNS_LABEL.fullmatch(b.trainjob.namespace)), "backbone.trainjob.namespace",
         f"{b.trainjob.namespace!r} is not a Kubernetes namespace name"),
        (g.beta_start < g.beta_end, "generator.beta_start", f"{g.beta_start} is not below beta_end {g.beta_end}"),
        (g.num_inference_steps <= g.num_train_timesteps, "generator.num_inference_steps",
         f"{g.num_inference_steps} is more than num_train_timesteps {g.num_train_timesteps}"),
        (a.num_shards <= a.grid_size + a.num_random_tasks, "adapters.num_shards",
         f"{a.num_shards} shards for {a.grid_size + a.num_random_tasks} tasks (grid_size + num_random_tasks)"),
        (len(a.utilities) >= 2 and len(set(a.utilities)) == len(a.utilities), "adapters.utilities",
         f"{a.utilities}: at least two different utilities make a trade-off"),
        (set(ev.protocols) <= set(PROTOCOLS) and "grid" in ev.protocols, "evaluation.protocols",
         f"{ev.protocols}: 'grid' (the main summary) plus optionally 'band'; valid: {list(PROTOCOLS)}"),
        (ev.band_low < ev.band_high, "evaluation.band_low", f"{ev.band_low} is not below band_high {ev.band_high}"),
        (synthetic.min_len <= synthetic.max_len, "data.synthetic.min_len",
         f"{synthetic.min_len} is more than max_len {synthetic.max_len}"),
        ("band" not in ev.protocols or "accuracy" in a.utilities, "evaluation.protocols",
         "the band protocol holds out a band of w_acc: adapters.utilities needs 'accuracy'"),
        (bool(DEVICE.fullmatch(cfg.device)), "device", f"{cfg.device!r} is not auto, cpu, mps, cuda or cuda:N"),
        (bool(NAME.fullmatch(cfg.name)) and ".." not in cfg.name, "name",
         f"{cfg.name!r} must be a plain folder name (letters, digits, '.', '_', '-'; no '/' or '..')"),
        (bool(cfg.tracking.experiment.strip()), "tracking.experiment", "must not be empty"),
        (bool(NAME.fullmatch(cfg.tracking.registered_model)), "tracking.registered_model",
         f"{cfg.tracking.registered_model!r} must be a plain name (letters, digits, '.', '_', '-'): MLflow's "
         "search filters quote it"),
        (REFERENCE_METHOD in ev.methods, "evaluation.methods",
         f"{ev.methods} lacks {REFERENCE_METHOD!r}, the method the last step registers and promotes"),
        (not set(URI_SPECIAL) & set(cfg.run_dir), "run_dir",
         f"{cfg.run_dir!r} holds one of {' '.join(URI_SPECIAL)}, which the tracking store's URI would misread"),
    ]
    for ok, key, problem in rules:
        if not ok:
            raise ConfigError(f"{key}: {problem}")
    check_model_name(cfg)


def check_model_name(cfg: Any) -> None:
    """Synthetic data (the smoke and test configurations) never registers under the production
    model name, whose ``champion`` is what is served."""
    if cfg.data.source == "synthetic" and cfg.tracking.registered_model == PRODUCTION_MODEL:
        raise ConfigError(f"tracking.registered_model: {PRODUCTION_MODEL!r} is the production model; a run on "
                          "synthetic data registers under its own name (configs/smoke.yaml: padirec-smoke)")
