"""Every number of the config has a range, checked when the config loads, before any work starts.

Ranges are written in interval notation, ``[1, inf)`` or ``(0, 1]``, by dotted key. NaN and
infinity are outside every range. ``tests/test_config_ranges.py`` checks that every number of
every section (each method's included) has one, and that each rejects the values outside it.
The checks that tie two settings together follow the table.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from padirec.data.config import SyntheticSettings
from padirec.diffusion.config import TARGETS
from padirec.errors import ConfigError
from padirec.methods.registry import METHODS

INF = math.inf
_ANY = "[1, inf)"


@dataclass(frozen=True)
class Interval:
    low: float
    high: float
    low_open: bool
    high_open: bool
    text: str

    def __contains__(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below


def interval(text: str) -> Interval:
    m = re.fullmatch(r"([\[(])\s*(-?[\d.e]+|-inf)\s*,\s*(-?[\d.e]+|inf)\s*([\])])", text)
    if not m:
        raise ValueError(f"bad interval {text!r}")
    return Interval(float(m[2]), float(m[3]), m[1] == "(", m[4] == ")", text)


RANGES: dict[str, str] = {
    "seed": "[0, 4294967295]",
    "data.min_interactions": "[3, inf)",  # leave-one-out holds two out and trains on the rest
    "data.max_len": _ANY, "data.max_category_groups": "[0, inf)",
    "backbone.dim": _ANY, "backbone.num_layers": _ANY, "backbone.num_heads": _ANY, "backbone.dropout": "[0, 1)",
    "backbone.num_negatives": _ANY, "backbone.batch_size": _ANY, "backbone.lr": "(0, inf)",
    "backbone.weight_decay": "[0, inf)", "backbone.epochs": _ANY, "backbone.patience": _ANY,
    "backbone.eval_every": _ANY, "backbone.max_time_interval": _ANY, "backbone.eval_batch_size": _ANY,
    "backbone.train_stride": "[0, inf)", "backbone.seed": "[-1, 4294967295]",  # -1 = the run's seed
    "adapters.bottleneck": _ANY, "adapters.num_random_tasks": "[0, inf)", "adapters.grid_size": "[2, inf)",
    "adapters.checkpoints_per_task": _ANY, "adapters.epochs": _ANY, "adapters.steps_per_epoch": _ANY,
    "adapters.lr": "(0, inf)", "adapters.checkpoint_lr": "(0, 1]", "adapters.batch_size": _ANY, "adapters.alpha": "[0, 1]",
    "adapters.temperature": "(0, inf)", "adapters.num_negatives": _ANY, "adapters.topk_candidates": _ANY,
    "adapters.num_shards": _ANY, "adapters.feature_stride": _ANY,
    "generator.token_size": _ANY, "generator.num_train_timesteps": "[2, inf)", "generator.beta_start": "(0, 1)",
    "generator.beta_end": "(0, 1)", "generator.p_uncond": "[0, 1)", "generator.served_fraction": "[0, 1]",
    "generator.guidance_scale": "[0, inf)",
    "generator.samples_per_task": _ANY, "generator.num_inference_steps": _ANY, "generator.train_steps": _ANY,
    "generator.batch_size": _ANY, "generator.lr": "(0, inf)", "generator.warmup_steps": "[0, inf)",
    "generator.weight_decay": "[0, inf)", "generator.grad_clip": "(0, inf)", "generator.ema_decay": "[0, 1)",
    "generator.log_every": _ANY,
    "evaluation.k": _ANY, "evaluation.alpha": "[0, 1]", "evaluation.response_time_repeats": _ANY,
    "evaluation.robustness_noise": "[0, inf)", "evaluation.robustness_repeats": _ANY,
    "evaluation.case_study_user": "[0, inf)", "evaluation.bootstrap_resamples": "[0, inf)",
    "evaluation.bootstrap_confidence": "(0, 1)", "evaluation.ceiling_seed": "[-1, inf)",
    "evaluation.band_low": "[0, 1]", "evaluation.band_high": "[0, 1]", "evaluation.shards": _ANY,
    "promotion.min_avg_hv": "[0, 1]", "promotion.min_pearson_ra": "[-1, 1]", "promotion.min_pearson_rd": "[-1, 1]",
    # each method's ranges live with its settings (``ranges`` of its config class): one file per method
    **{f"methods.{key}.{field}": text for key, cls in METHODS.items()
       for field, text in getattr(cls.config_class, "ranges", {}).items()},
}
INTERVALS = {key: interval(text) for key, text in RANGES.items()}
# ``data.synthetic``: the settings of ``padirec.data.synthetic.generate``, checked where given
SYNTHETIC_RANGES = {"num_users": _ANY, "num_items": _ANY, "num_categories": _ANY, "min_len": _ANY, "max_len": _ANY,
                    "noise": "[0, 1]", "seed": "[0, 4294967295]"}
DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
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


def check(cfg: Any) -> None:
    """Raise ``ConfigError`` naming the first setting out of its range or at odds with another."""
    for key, allowed in INTERVALS.items():
        value = lookup(cfg, key)
        if isinstance(value, bool) or value not in allowed:
            raise ConfigError(f"{key}: {value!r} is outside {allowed.text}")
    for key, value in cfg.data.synthetic.items():
        allowed = interval(SYNTHETIC_RANGES[key])
        if isinstance(value, bool) or value not in allowed:
            raise ConfigError(f"data.synthetic.{key}: {value!r} is outside {allowed.text}")
    b, a, g, ev = cfg.backbone, cfg.adapters, cfg.generator, cfg.evaluation
    synthetic = SyntheticSettings(**cfg.data.synthetic)
    rules = [
        (b.dim % b.num_heads == 0, "backbone.num_heads", f"{b.num_heads} does not divide backbone.dim {b.dim}"),
        (g.beta_start < g.beta_end, "generator.beta_start", f"{g.beta_start} is not below beta_end {g.beta_end}"),
        (g.num_inference_steps <= g.num_train_timesteps, "generator.num_inference_steps",
         f"{g.num_inference_steps} is more than num_train_timesteps {g.num_train_timesteps}"),
        (a.num_shards <= a.grid_size + a.num_random_tasks, "adapters.num_shards",
         f"{a.num_shards} shards for {a.grid_size + a.num_random_tasks} tasks (grid_size + num_random_tasks)"),
        (len(a.utilities) >= 2 and len(set(a.utilities)) == len(a.utilities), "adapters.utilities",
         f"{a.utilities}: at least two different utilities make a trade-off"),
        (g.targets in TARGETS, "generator.targets", f"{g.targets!r} is not one of {', '.join(TARGETS)}"),
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
