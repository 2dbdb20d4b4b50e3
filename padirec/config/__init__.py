"""Typed configuration, loaded from ``configs/*.yaml``.

Each stage below owns its section's dataclass (``padirec/<stage>/config.py``; each method its
own, under ``methods.<key>``); this module composes them, defines the sections of the evaluation,
tracking and promotion, and loads YAML strictly (``padirec.core.typed_config``): an unknown key,
a value of the wrong type or an unknown name is an error that names the key, so a typo never
silently falls back to a default. It sits above the methods (it reads their registry) and below
the evaluation, which reads it.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from padirec.adapters.config import CANDIDATE_LISTS, AdapterConfig
from padirec.backbones.config import BackboneConfig
from padirec.backbones.registry import BACKBONES
from padirec.config.checks import PRODUCTION_MODEL
from padirec.config.checks import check as check_ranges
from padirec.core.typed_config import from_dict, yaml_load
from padirec.core.utilities import UTILITIES
from padirec.data.config import DataConfig
from padirec.diffusion.config import GeneratorConfig
from padirec.diffusion.denoiser import LOSS_WEIGHTINGS, PREDICTIONS
from padirec.diffusion.dit import CONDITIONINGS, DIT_SIZES
from padirec.diffusion.schedulers import SCHEDULERS
from padirec.diffusion.tokenizer import NORMALIZATION_MODES
from padirec.errors import ConfigError
from padirec.methods.registry import METHODS, default_settings


@dataclass
class EvaluationConfig:
    """The method x task sweep, the response-time comparison and the analyses."""

    k: int = 10  # the cutoff of every metric (ndcg@k, alpha_ndcg@k, ndcg_gap@k)
    alpha: float = 0.5  # alpha-NDCG's redundancy penalty
    methods: list[str] = field(default_factory=lambda: list(METHODS))  # which methods run, in order
    sampled: bool = False  # 1 + 99 negatives instead of full ranking (for comparison only)
    response_time_repeats: int = 5
    robustness_noise: float = 0.05
    robustness_repeats: int = 5
    case_study_user: int = 0  # 0 = pick automatically
    bootstrap_resamples: int = 1000  # paired bootstrap over users for every interval; 0 = none
    bootstrap_confidence: float = 0.95
    retrain_ceiling: bool = True  # a second Retrain (another seed) of every grid task: the Pearson ceiling
    ceiling_seed: int = -1  # that Retrain's seed; -1 = seed + 1
    # the protocols of the report (``padirec.evaluation.protocols``): ``grid`` (the paper's, the main
    # summary) and ``band`` (bank tasks with w_acc in [band_low, band_high] unseen by every method)
    protocols: list[str] = field(default_factory=lambda: ["grid", "band"])
    band_low: float = 0.3
    band_high: float = 0.7
    # the pipeline evaluates users in this many parallel steps, then merges them (1: one step)
    shards: int = 1


def method_settings(raw: Any, where: str) -> dict[str, Any]:
    """The ``methods`` section: ``{key: that method's settings}`` for every registered method, read
    with the method's own dataclass (``config_class``); a method not mentioned gets its defaults."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping of method -> settings, got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(METHODS))
    if unknown:
        raise ConfigError(f"{where}: unknown method(s) {', '.join(map(repr, unknown))}; valid: {', '.join(METHODS)}")
    return {key: from_dict(cls.config_class, raw.get(key) or {}, f"{where}.{key}") for key, cls in METHODS.items()}


@dataclass
class TrackingConfig:
    """MLflow. Empty ``uri`` -> ``MLFLOW_TRACKING_URI`` or else SQLite under the run folder."""

    uri: str = ""
    experiment: str = "padirec"
    registered_model: str = PRODUCTION_MODEL


@dataclass
class PromotionConfig:
    """The quality gate a registered version must pass to take the ``champion`` alias."""

    min_avg_hv: float = 0.2
    min_pearson_ra: float = 0.5
    min_pearson_rd: float = 0.5
    # a champion that fails the gate (re-checked at every promotion): keep the alias, keep it and
    # tag the version ``champion_status``, or clear the alias
    on_failing_champion: Literal["keep", "flag", "clear"] = "flag"
    # let a version evaluated on other data (data checksum, task grid) replace the champion
    allow_other_data: bool = False


@dataclass
class Config:
    name: str = "padirec"
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    run_dir: str = "runs"
    cache: bool = True  # reuse finished stage outputs under <run_dir>/cache (local runs; KFP caches on a cluster)
    data: DataConfig = field(default_factory=DataConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    adapters: AdapterConfig = field(default_factory=AdapterConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    # each method's settings, by key (its own dataclass: ``padirec/methods/<key>.py``)
    methods: dict[str, Any] = field(default_factory=default_settings, metadata={"from_dict": method_settings})
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    promotion: PromotionConfig = field(default_factory=PromotionConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> Config:
        """Check every name against what exists, so a typo fails at load time, not after an hour
        of training. Returns ``self``."""
        checks = [
            ("backbone.model", [self.backbone.model], BACKBONES),
            ("adapters.utilities", self.adapters.utilities, UTILITIES),
            ("evaluation.methods", self.evaluation.methods, METHODS),
            ("generator.conditioning", [self.generator.conditioning], CONDITIONINGS),
            ("generator.size", [self.generator.size], DIT_SIZES),
            ("generator.sampler", [self.generator.sampler], SCHEDULERS),
            ("generator.prediction", [self.generator.prediction], PREDICTIONS),
            ("generator.loss_weighting", [self.generator.loss_weighting], LOSS_WEIGHTINGS),
            ("generator.normalization", [self.generator.normalization], NORMALIZATION_MODES),
            ("adapters.candidates", [self.adapters.candidates], CANDIDATE_LISTS),
        ]
        for key, names, valid in checks:
            unknown = [n for n in names if n not in valid]
            if unknown:
                raise ConfigError(f"{key}: unknown {', '.join(map(repr, unknown))}; valid: {', '.join(valid)}")
        check_ranges(self)
        return self

    def cache_root(self) -> Path | None:
        return Path(self.run_dir) / "cache" if self.cache else None


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> Config:
    """Load a YAML config file; ``overrides`` are dotted keys (``{"backbone.epochs": 2}``)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file not found: {path}")
    if path.is_dir():
        raise ConfigError(f"config {path} is a folder, not a YAML file")
    if not path.is_file():  # a device (/dev/zero) or a pipe would be read forever
        raise ConfigError(f"config {path} is not a regular file")
    try:
        raw = yaml_load(path.read_text(encoding="utf-8"), str(path)) or {}
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not a YAML text file (not UTF-8: {e.reason})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(raw).__name__}")
    for key, value in (overrides or {}).items():
        _set_dotted(raw, key, value)
    return from_dict(Config, raw, where=str(path)).validate()


def config_from_dict(raw: dict[str, Any]) -> Config:
    return from_dict(Config, raw, where="config").validate()


def _set_dotted(d: dict[str, Any], key: str, value: Any) -> None:
    *parents, last = key.split(".")
    for i, p in enumerate(parents):
        d = d.setdefault(p, {})
        if not isinstance(d, dict):
            raise ConfigError(f"--set {key}: {'.'.join(parents[:i + 1])} is a value ({d!r}), not a section")
    d[last] = value


def config_to_json(cfg: Config) -> str:
    """The whole config as one JSON string: the pipeline's parameter, so every step is hermetic
    and KFP's cache key changes whenever any setting does."""
    return json.dumps(cfg.to_dict(), sort_keys=True)


def config_from_json(text: str) -> Config:
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"config_json is not valid JSON: {e}") from e
    return config_from_dict(raw)
