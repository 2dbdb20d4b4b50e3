"""Typed configuration, loaded from ``configs/*.yaml``.

Each stage owns its section's dataclass (``padirec/<stage>/config.py``); this module composes
them and loads YAML strictly: an unknown key or a value of the wrong type is an error that names
the key, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from padirec.adapters.config import AdapterConfig
from padirec.backbones.config import BackboneConfig
from padirec.data.config import DataConfig
from padirec.diffusion.config import GeneratorConfig
from padirec.errors import ConfigError
from padirec.evaluation.config import EvaluationConfig


@dataclass
class TrackingConfig:
    """MLflow. Empty ``uri`` -> ``MLFLOW_TRACKING_URI`` or else SQLite under the run folder."""

    uri: str = ""
    experiment: str = "padirec"
    registered_model: str = "padirec-recommender"


@dataclass
class PromotionConfig:
    """The quality gate a registered version must pass to take the ``champion`` alias."""

    min_avg_hv: float = 0.2
    min_pearson_ra: float = 0.5
    min_pearson_rd: float = 0.5


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
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    promotion: PromotionConfig = field(default_factory=PromotionConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> Config:
        """Check every name against what exists, so a typo fails at load time, not after an hour
        of training. Returns ``self``."""
        from padirec.adapters.objectives import UTILITIES
        from padirec.backbones.registry import BACKBONES
        from padirec.baselines.registry import METHODS
        from padirec.diffusion.dit import CONDITIONINGS, DIT_SIZES
        from padirec.diffusion.schedulers import SCHEDULERS

        checks = [
            ("backbone.model", [self.backbone.model], BACKBONES),
            ("adapters.utilities", self.adapters.utilities, UTILITIES),
            ("evaluation.methods", self.evaluation.methods, METHODS),
            ("generator.conditioning", [self.generator.conditioning], CONDITIONINGS),
            ("generator.size", [self.generator.size], DIT_SIZES),
            ("generator.sampler", [self.generator.sampler], SCHEDULERS),
        ]
        for key, names, valid in checks:
            unknown = [n for n in names if n not in valid]
            if unknown:
                raise ConfigError(f"{key}: unknown {', '.join(map(repr, unknown))}; valid: {', '.join(valid)}")
        return self

    def cache_root(self) -> Path | None:
        return Path(self.run_dir) / "cache" if self.cache else None


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> Config:
    """Load a YAML config file; ``overrides`` are dotted keys (``{"backbone.epochs": 2}``)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(raw).__name__}")
    for key, value in (overrides or {}).items():
        _set_dotted(raw, key, value)
    return from_dict(Config, raw, where=str(path)).validate()


def config_from_dict(raw: dict[str, Any]) -> Config:
    return from_dict(Config, raw, where="config").validate()


def _set_dotted(d: dict[str, Any], key: str, value: Any) -> None:
    *parents, last = key.split(".")
    for p in parents:
        d = d.setdefault(p, {})
    d[last] = value


def from_dict(cls: type, raw: dict[str, Any], where: str) -> Any:
    """Build dataclass ``cls`` from ``raw``, checking keys and types recursively."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping for {cls.__name__}, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(repr(k) for k in unknown)} in {cls.__name__}; "
                          f"valid keys: {', '.join(sorted(fields))}")
    kwargs = {name: _coerce(hints[name], value, f"{where}: {name}") for name, value in raw.items()}
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, where: str) -> Any:
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(a, value, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__} ({value!r})")
        return [_coerce(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)] if args else value
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return value
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def config_to_json(cfg: Config) -> str:
    """The whole config as one JSON string: the pipeline's parameter, so every step is hermetic
    and KFP's cache key changes whenever any setting does."""
    import json

    return json.dumps(cfg.to_dict(), sort_keys=True)


def config_from_json(text: str) -> Config:
    import json

    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"config_json is not valid JSON: {e}") from e
    return config_from_dict(raw)
