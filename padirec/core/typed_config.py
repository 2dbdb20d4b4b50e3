"""Strict construction of typed settings (dataclasses) from plain mappings (YAML, JSON, manifests).

An unknown key or a value of the wrong type is a ``ConfigError`` that names the key, so a typo
never silently falls back to a default. Used by ``padirec.config`` and by every artifact reader
that stores its settings (backbones, generators).
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from typing import Any

import yaml

from padirec.errors import ConfigError


def from_dict(cls: type, raw: dict[str, Any], where: str) -> Any:
    """Build dataclass ``cls`` from ``raw``, checking keys and types recursively.

    A field whose metadata has ``"from_dict"`` (a function ``(value, where) -> value``) is built
    by that function instead (a section whose shape depends on a registry, e.g. ``methods``).
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping for {cls.__name__}, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(repr(k) for k in unknown)} in {cls.__name__}; "
                          f"valid keys: {', '.join(sorted(fields))}")
    kwargs = {}
    for name, value in raw.items():
        parse = fields[name].metadata.get("from_dict")
        kwargs[name] = parse(value, f"{where}: {name}") if parse else _coerce(hints[name], value, f"{where}: {name}")
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


class _Yaml12Loader(yaml.SafeLoader):
    """PyYAML follows YAML 1.1, where ``1e-3`` is a string; YAML 1.2 (and every user) reads a number."""


_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+$"),  # the exponent forms 1.1 misses
    list("-+0123456789."))


def yaml_load(text: str) -> Any:
    """YAML with YAML 1.2's numbers (``1e-3`` is 0.001), for config files and ``--set`` values."""
    loader = _Yaml12Loader(text)  # a SafeLoader: plain data only (tests/test_safe_loading.py checks it)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()
