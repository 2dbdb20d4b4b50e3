"""Every data source by name.

``SOURCES`` (``padirec.data.base``) is filled by importing every module of this package that
defines sources: each registers itself with ``@register_source``, so a new one is one new file (or
a plugin file, named in the config's ``plugins``).
"""

from __future__ import annotations

from padirec.core.plugins import import_package
from padirec.data.base import SOURCES, Source, register_source

# the modules of this package that define no source (they import this one, or are only read by one)
_NOT_SOURCES = {"base", "columns", "config", "dataset", "movielens100k", "parquet_dataset", "prepare", "registry",
                "stage", "synthetic", "synthetic_ml1m", "validation"}
import_package("padirec.data", skip=_NOT_SOURCES)

__all__ = ["SOURCES", "Source", "register_source"]
