"""Typed configuration, loaded from ``configs/*.yaml``.

Each stage below owns its section's dataclass (``padirec/<stage>/config.py``; each method its
own, under ``methods.<key>``); this module composes them, defines the sections of the evaluation,
tracking and promotion, and loads YAML strictly (``padirec.core.typed_config``): an unknown key,
a value of the wrong type or an unknown name is an error that names the key, so a typo never
silently falls back to a default. Ranges and choices are declared with each field
(``padirec.core.typed_config.setting``) and checked by ``padirec.config.checks``. The files named in
``plugins`` are imported first, so the backbones, samplers, methods, data sources and utilities they
register are known
when the rest is read. It sits above the methods (it reads their registry) and below the
evaluation, which reads it.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from padirec.adapters.config import AdapterConfig
from padirec.adapters.utilities import UTILITIES  # noqa: F401 - fills the registry AdapterConfig reads
from padirec.backbones.config import BackboneConfig
from padirec.backbones.registry import BACKBONES  # noqa: F401 - fills the registry BackboneConfig reads
from padirec.config.checks import PRODUCTION_MODEL
from padirec.config.checks import check as check_settings
from padirec.core.plugins import load_plugins
from padirec.core.typed_config import POSITIVE, from_dict, setting, yaml_load
from padirec.data.config import DataConfig
from padirec.data.registry import SOURCES  # noqa: F401 - fills the registry DataConfig reads
from padirec.diffusion.config import GeneratorConfig
from padirec.errors import ConfigError
from padirec.methods.registry import METHODS, default_roster, default_settings


@dataclass
class EvaluationConfig:
    """The method x task sweep, the response-time comparison and the analyses."""

    k: int = setting(10, range=POSITIVE)  # the cutoff of every metric (ndcg@k, alpha_ndcg@k, ndcg_gap@k)
    alpha: float = setting(0.5, range="[0, 1]")  # alpha-NDCG's redundancy penalty
    methods: list[str] = setting(default_factory=default_roster, choices=METHODS)  # which run, in order
    sampled: bool = False  # 1 + 99 negatives instead of full ranking (for comparison only)
    response_time_repeats: int = setting(5, range=POSITIVE)
    robustness_noise: float = setting(0.05, range="[0, inf)")
    robustness_repeats: int = setting(5, range=POSITIVE)
    case_study_user: int = setting(0, range="[0, inf)")  # 0 = pick automatically
    bootstrap_resamples: int = setting(1000, range="[0, inf)")  # paired bootstrap over users for every interval; 0 = none
    bootstrap_confidence: float = setting(0.95, range="(0, 1)")
    retrain_ceiling: bool = True  # a second Retrain (another seed) of every grid task: the Pearson ceiling
    ceiling_seed: int = setting(-1, range="[-1, inf)")  # that Retrain's seed; -1 = seed + 1
    # the protocols of the report (``padirec.evaluation.protocols``): ``grid`` (the paper's, the main
    # summary) and ``band`` (bank tasks with w_acc in [band_low, band_high] unseen by every method)
    protocols: list[str] = field(default_factory=lambda: ["grid", "band"])
    band_low: float = setting(0.3, range="[0, 1]")
    band_high: float = setting(0.7, range="[0, 1]")
    # what the band bounds (``padirec.core.tasks.Band``): w_acc, or (p = 3) the distance to the centroid
    band_coordinate: str = setting("w_acc", choices=("w_acc", "centroid_distance"))
    # the pipeline evaluates users in this many parallel steps, then merges them (1: one step)
    shards: int = setting(1, range=POSITIVE)


@dataclass
class TrackingConfig:
    """MLflow. Empty ``uri`` -> ``MLFLOW_TRACKING_URI`` or else SQLite under the run folder."""

    uri: str = ""
    experiment: str = "padirec"
    registered_model: str = PRODUCTION_MODEL
    # MLflow's HTTP client, per call (MLFLOW_HTTP_REQUEST_*, set from these by every step and the
    # local runner: ``padirec.tracking.core.apply_http_settings``). MLflow's own defaults (7 retries,
    # backoff 2, 120 s) let one call to a server that went down hang for about 4 minutes.
    http_max_retries: int = setting(3, range="[0, 10]")  # 10: MLflow's own ceiling
    http_backoff_factor: int = setting(2, range="[0, 120]")  # seconds; MLflow reads an int, 120 its ceiling
    http_timeout_s: int = setting(30, range="[1, 3600]")  # per attempt


@dataclass
class PromotionConfig:
    """The quality gate a registered version must pass to take the ``champion`` alias."""

    min_avg_hv: float = setting(0.2, range="[0, 1]")
    min_pearson_ra: float = setting(0.5, range="[-1, 1]")
    min_pearson_rd: float = setting(0.5, range="[-1, 1]")
    # a champion that fails the gate (re-checked at every promotion): keep the alias, keep it and
    # tag the version ``champion_status``, or clear the alias
    on_failing_champion: str = setting("flag", choices=("keep", "flag", "clear"))
    # By how much a version's score (mean over tasks of NDCG@k x alpha-NDCG@k) must beat the
    # champion's to take its alias, > 0 so that a tie never does; on other data, the head-to-head's
    # bootstrap lower bound must clear it too (README, "Promotion policy")
    margin: float = setting(0.001, range="(0, 1]")
    confidence: float = setting(0.9, range="(0, 1)")  # the head-to-head's two-sided bootstrap interval (its lower end is judged)
    bootstrap_samples: int = setting(1000, range=POSITIVE)  # resamples of the users in the head-to-head


@dataclass
class Config:
    name: str = "padirec"
    # plugin files (``.py`` paths) or modules that register backbones, samplers or methods of their
    # own (``padirec.core.plugins``): imported before the rest of the config is read
    plugins: list[str] = field(default_factory=list)
    seed: int = setting(0, range="[0, 4294967295]")
    device: str = "auto"  # auto | cpu | cuda
    run_dir: str = "runs"
    cache: bool = True  # reuse finished stage outputs under <run_dir>/cache (local runs; KFP caches on a cluster)
    data: DataConfig = field(default_factory=DataConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    adapters: AdapterConfig = field(default_factory=AdapterConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    # each method's settings, by key (its own dataclass: ``padirec/methods/<key>.py``)
    methods: dict[str, Any] = setting(default_factory=default_settings, from_dict=METHODS.read_settings)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    promotion: PromotionConfig = field(default_factory=PromotionConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> Config:
        """Check every setting against its range and every name against what exists, so a typo
        fails at load time, not after an hour of training. Returns ``self``."""
        check_settings(self)
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
    return config_from_dict(raw, where=str(path))


def config_from_dict(raw: dict[str, Any], where: str = "config") -> Config:
    """The config of ``raw`` (its plugins imported first), checked."""
    plugins = raw.get("plugins", [])
    if not (isinstance(plugins, list) and all(isinstance(p, str) for p in plugins)):
        raise ConfigError(f"{where}: plugins: expected a list of module names or .py files, got {plugins!r}")
    load_plugins(plugins)
    return from_dict(Config, _no_retired_keys(raw, where), where=where).validate()


# keys that meant something once: an old config names them, so it is told what replaced them
RETIRED = {("promotion", "allow_other_data"): "a version evaluated on other data is now compared with the champion "
           "head to head on its own data and promoted only if it beats it by promotion.margin (README, "
           "'Promotion policy'); remove the key"}


def _no_retired_keys(raw: dict[str, Any], where: str) -> dict[str, Any]:
    for (section, key), why in RETIRED.items():
        if isinstance(raw.get(section), dict) and key in raw[section]:
            raise ConfigError(f"{where}: {section}.{key} was retired: {why}")
    return raw


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
