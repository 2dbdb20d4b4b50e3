"""Strict construction of typed settings (dataclasses) from plain mappings (YAML, JSON, manifests).

An unknown key or a value of the wrong type is a ``ConfigError`` that names the key, so a typo
never silently falls back to a default. Used by ``padirec.config`` and by every artifact reader
that stores its settings (backbones, generators).

A field declares what values it allows with ``setting``: its range in interval notation
(``[1, inf)``, ``(0, 1]``) or its choices (a tuple, or a registry, whose names are read when the
config is checked). ``padirec.config.checks`` reads them, for every section and every plugin alike.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
import types
import typing
from typing import Any

import yaml

from padirec.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Interval:
    low: float
    high: float
    low_open: bool
    high_open: bool
    text: str

    def __contains__(self, value: float) -> bool:
        if not math.isfinite(value):  # NaN and infinity are outside every range
            return False
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below


def interval(text: str) -> Interval:
    """``"[0, 1)"`` -> the interval; ``inf`` and ``-inf`` for the open ends."""
    m = re.fullmatch(r"([\[(])\s*(-?[\d.e]+|-inf)\s*,\s*(-?[\d.e]+|inf)\s*([\])])", text)
    if not m:
        raise ValueError(f"bad interval {text!r}")
    return Interval(float(m[2]), float(m[3]), m[1] == "(", m[4] == ")", text)


POSITIVE = "[1, inf)"  # the range of most counts


def setting(default: Any = dataclasses.MISSING, *, range: str | None = None, choices: Any = None,
            default_factory: Any = dataclasses.MISSING, **metadata: Any) -> Any:
    """A dataclass field that carries its allowed values: ``range`` (interval notation, parsed here so
    a typo fails at import) or ``choices`` (any container: a tuple, a registry). A list field's
    choices apply to each element."""
    if range is not None:
        metadata["range"] = interval(range)
    if choices is not None:
        metadata["choices"] = choices
    return dataclasses.field(default=default, default_factory=default_factory, metadata=metadata)


def from_dict(cls: type, raw: dict[str, Any], where: str) -> Any:
    """Build dataclass ``cls`` from ``raw``, checking keys and types recursively.

    A field whose metadata has ``"from_dict"`` (a function ``(value, where) -> value``) is built
    by that function instead (a section whose shape depends on a registry, e.g. ``methods``). A key
    that moved (``cls.moved``: old key -> its dotted place in the section) is still read there, so
    configs and artifacts written before the move still load.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping for {cls.__name__}, got {type(raw).__name__}")
    raw = _moved(cls, raw, where)
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


def _moved(cls: type, raw: dict[str, Any], where: str) -> dict[str, Any]:
    moved = {old: new for old, new in getattr(cls, "moved", {}).items() if old in raw}
    if not moved:
        return raw
    raw = copy.deepcopy(raw)  # never write into the caller's mapping
    for old, new in moved.items():
        *parents, last = new.split(".")
        section = raw
        for p in parents:
            section = section.setdefault(p, {})
            if not isinstance(section, dict):
                raise ConfigError(f"{where}: {p} is a value ({section!r}), not a section")
        if last in section:
            raise ConfigError(f"{where}: {old!r} moved to {new!r}; give {new!r} alone")
        section[last] = raw.pop(old)
    return raw


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
    """PyYAML follows YAML 1.1, where ``1e-3`` is a string; YAML 1.2 (and every user) reads a number.
    A key given twice is refused: YAML keeps the last one silently, and which was meant?"""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node)
            if not isinstance(key, typing.Hashable):
                continue  # SafeLoader refuses it below, naming it
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"the key {key!r} is given twice",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+$"),  # the exponent forms 1.1 misses
    list("-+0123456789."))

MAX_YAML_NODES = 100_000  # a config has hundreds; aliases of aliases (a "billion laughs") have billions


def yaml_load(text: str, where: str = "YAML") -> Any:
    """YAML with YAML 1.2's numbers (``1e-3`` is 0.001), for config files and ``--set`` values.
    Invalid YAML is a ``ConfigError`` of one line naming ``where`` and the line of the problem."""
    loader = _Yaml12Loader(text)  # a SafeLoader: plain data only (tests/test_safe_loading.py checks it)
    try:
        node = loader.get_single_node()
        if node is not None and _expanded_size(node, {}) > MAX_YAML_NODES:
            raise ConfigError(f"{where}: its aliases expand to more than {MAX_YAML_NODES:,} values")
        return None if node is None else loader.construct_document(node)
    except yaml.YAMLError as e:
        raise ConfigError(f"{where}: not valid YAML: {_one_line(e)}") from None
    except RecursionError:
        raise ConfigError(f"{where}: nested too deeply") from None
    finally:
        loader.dispose()


def _expanded_size(node: yaml.Node, sizes: dict[int, int]) -> int:
    """How many values ``node`` holds once every alias is copied out (each shared node counted once
    per use, computed once)."""
    if id(node) not in sizes:
        children = [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else \
            node.value if isinstance(node, yaml.SequenceNode) else []
        sizes[id(node)] = 1 + sum(_expanded_size(child, sizes) for child in children)
    return sizes[id(node)]


def _one_line(error: yaml.YAMLError) -> str:
    """PyYAML's problem and where it is, without the quoted source lines it adds."""
    if not isinstance(error, yaml.MarkedYAMLError):
        return str(error).splitlines()[0]
    problem = error.problem or error.context or "invalid"
    if error.problem and "constructor for the tag" in error.problem:
        problem += " (tags such as !!python are never run; plain values only)"
    mark = error.problem_mark or error.context_mark
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark else problem
