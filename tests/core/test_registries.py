"""Every plug-in package's modules are either plug-ins or listed as not: a helper module added to a
plug-in package without its name in the package's skip list would be imported as a plug-in (its
side effects run at every config load), and a skip list naming a module that is gone hides
nothing. Each module a package imports as a plug-in must register at least one entry."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

PACKAGES = [  # (package, the module holding the skip list and its name, the registry)
    ("padirec.backbones", "padirec.backbones.registry", "_NOT_BACKBONES", "padirec.backbones.base", "BACKBONES"),
    ("padirec.data", "padirec.data.registry", "_NOT_SOURCES", "padirec.data.base", "SOURCES"),
    ("padirec.methods", "padirec.methods.registry", "_NOT_METHODS", "padirec.methods.base", "METHODS"),
    ("padirec.adapters", "padirec.adapters.utilities", "_NOT_UTILITIES", "padirec.core.utilities", "UTILITIES"),
    ("padirec.diffusion.schedulers", "padirec.diffusion.schedulers", "_NOT_SAMPLERS", "padirec.diffusion.schedulers.base",
     "SAMPLERS"),
]


@pytest.mark.parametrize("package, holder, skip_name, registry_module, registry_name", PACKAGES,
                         ids=[p[0] for p in PACKAGES])
def test_a_plugin_package_holds_plugins_and_listed_helpers_only(package, holder, skip_name, registry_module,
                                                                registry_name):
    skip = getattr(importlib.import_module(holder), skip_name)
    registry = getattr(importlib.import_module(registry_module), registry_name)
    modules = {m.name for m in pkgutil.iter_modules(importlib.import_module(package).__path__)}
    assert skip <= modules, f"{holder}.{skip_name} names modules that do not exist: {sorted(skip - modules)}"
    registering = {cls.__module__.rsplit(".", 1)[-1] for cls in registry.values()
                   if cls.__module__.startswith(package + ".")}
    plugins = modules - skip
    assert plugins <= registering, (f"{package}: {sorted(plugins - registering)} register nothing: "
                                    f"add them to {holder}.{skip_name}")
