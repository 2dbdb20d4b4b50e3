"""Every controllable method by key, and building the ones a config asks for.

``METHODS`` is a dict of classes, filled by importing every module of ``padirec.methods`` (each
method registers itself with ``@register``): a new method is one new file, nothing else. The
order is the proposed method, the reference, then the others by key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from padirec.core.plugins import import_package
from padirec.errors import ConfigError
from padirec.methods.base import METHODS, Method, MethodContext, register

# the modules of this package that define no method (they import this one, or are only read by one)
_NOT_METHODS = {"base", "deepprl_simulator", "registry"}

import_package("padirec.methods", skip=_NOT_METHODS)
_order = sorted(METHODS, key=lambda key: ({"proposed": 0, "reference": 1}.get(METHODS[key].role, 2), key))
METHODS.update({key: METHODS.pop(key) for key in _order})

__all__ = ["METHODS", "Method", "MethodContext", "build_methods", "default_roster", "default_settings", "left_out",
           "method_with_role", "register"]


def default_roster() -> list[str]:
    """The methods a config runs unless it names them (``evaluation.methods``)."""
    return [key for key, cls in METHODS.items() if cls.in_roster]


def left_out() -> dict[str, str]:
    """``{key: note}`` of the registered methods outside the default roster."""
    return {key: cls.roster_note for key, cls in METHODS.items() if not cls.in_roster}


def default_settings() -> dict[str, Any]:
    """``{key: settings}`` with every registered method's default settings (the config's ``methods``)."""
    return METHODS.default_settings()


def method_with_role(role: str, keys: Any = None) -> str | None:
    """The key of the method with ``role`` (among ``keys``, default all registered), or None."""
    return next((k for k in (METHODS if keys is None else keys) if k in METHODS and METHODS[k].role == role), None)


def build_methods(names: list[str], ctx: MethodContext, settings: Mapping[str, Any] | None = None) -> dict[str, Method]:
    """``{key: Method}`` for ``names`` (in that order), not yet fitted; ``settings`` maps a key to its
    settings (the config's ``methods``; a method missing there gets its defaults)."""
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise ConfigError(f"evaluation.methods: unknown method(s) {unknown}; valid: {list(METHODS)}")
    if len(set(names)) != len(names):
        raise ConfigError(f"evaluation.methods: repeated method in {names}")
    settings = settings or {}
    return {name: METHODS[name].build(ctx, settings.get(name) or METHODS[name].config_class()) for name in names}
