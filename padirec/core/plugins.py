"""One pattern for every pluggable kind (method, backbone, sampler): a class in its own file,
registered by name with its settings dataclass.

A kind keeps a ``Registry`` (a dict ``name -> class``); each class names itself (``name``, or
``key`` for methods), carries its settings in ``config_class`` (a dataclass whose fields hold their
range and choices as metadata, ``padirec.core.typed_config.setting``) and registers with the
``Registry.register`` decorator. The kind's package imports each of its modules (``import_package``),
so a new built-in is one new file. Code outside the package, a plugin, is one file too: the config's
``plugins`` list or the ``PADIREC_PLUGINS`` variable names it (``load_plugins``), and importing it
registers its classes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import os
import pkgutil
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from padirec.core.typed_config import from_dict
from padirec.errors import ConfigError

PLUGINS_ENV = "PADIREC_PLUGINS"  # more plugins, os.pathsep-separated: for commands that read no config


@dataclasses.dataclass
class NoSettings:
    """The settings of a class that has none."""


class Registry(dict):
    """The classes of one kind by name, in registration order."""

    def __init__(self, kind: str, name_attribute: str = "name") -> None:
        super().__init__()
        self.kind = kind
        self.name_attribute = name_attribute

    def register(self, cls: type) -> type:
        """Class decorator: make ``cls`` known under its name, with its settings class."""
        name = getattr(cls, self.name_attribute)
        settings = getattr(cls, "config_class", NoSettings)
        if not (isinstance(settings, type) and dataclasses.is_dataclass(settings)):
            raise TypeError(f"{self.kind} {name!r}: config_class {settings!r} is not a dataclass")
        if name in self and self[name] is not cls:
            raise ValueError(f"two {self.kind}s share the name {name!r}: {self[name].__name__} and {cls.__name__}")
        self[name] = cls
        return cls

    def settings_class(self, name: str) -> type:
        return getattr(self[name], "config_class", NoSettings)

    def default_settings(self) -> dict[str, Any]:
        """``{name: default settings}`` of every registered class."""
        return {name: self.settings_class(name)() for name in self}

    def read_settings(self, raw: Any, where: str) -> dict[str, Any]:
        """A config section ``{name: settings}`` (a ``from_dict`` hook): each read with its class's
        dataclass; a name not given gets its defaults, an unknown name is refused."""
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: expected a mapping of {self.kind} -> settings, got {type(raw).__name__}")
        unknown = sorted(set(raw) - set(self))
        if unknown:
            raise ConfigError(f"{where}: unknown {self.kind}(s) {', '.join(map(repr, unknown))}; "
                              f"valid: {', '.join(self)}")
        return {name: _settings(self.settings_class(name), raw.get(name), f"{where}.{name}") for name in self}


def _settings(cls: type, value: Any, where: str) -> Any:
    """A settings object from YAML (a mapping) or as given (already built, e.g. by a test)."""
    return value if isinstance(value, cls) else from_dict(cls, value or {}, where)


def import_package(package: str, skip: Iterable[str] = ()) -> None:
    """Import every module of ``package`` except ``skip``: each registers what it defines."""
    path = importlib.import_module(package).__path__
    for module in sorted(m.name for m in pkgutil.iter_modules(path)):
        if module not in set(skip):
            importlib.import_module(f"{package}.{module}")


def load_plugins(entries: Iterable[str] = ()) -> None:
    """Import each plugin of ``entries`` and of ``PADIREC_PLUGINS``, once per process: a dotted module
    name (``mypackage.toy_backbone``) or the path of a ``.py`` file."""
    extra = [e for e in os.environ.get(PLUGINS_ENV, "").split(os.pathsep) if e.strip()]
    for entry in [*entries, *extra]:
        entry = entry.strip()
        try:
            _import(entry)
        except ConfigError:
            raise
        except Exception as e:  # a plugin's own error: one line naming the plugin
            raise ConfigError(f"plugins: {entry!r} failed to import: {type(e).__name__}: {e}") from e


def _import(entry: str) -> None:
    if not entry.endswith(".py"):
        importlib.import_module(entry)
        return
    path = Path(entry).resolve()
    if not path.is_file():
        raise ConfigError(f"plugins: {entry!r} is not a file")
    # the module's name is fixed by its path, so a file named twice is imported once
    name = f"padirec_plugin_{path.stem}_{hashlib.sha256(str(path).encode()).hexdigest()[:8]}"
    if name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # before running it: dataclasses look their module up by name
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
