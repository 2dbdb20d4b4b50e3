"""The interface every data source implements.

A source reads its tables and returns them in one shape, ``(interactions, items, users)``
(``padirec.data.sources``). A source is one file: a ``Source`` subclass with its ``name`` (the
config's ``data.source``), its own settings (``config_class``, a dataclass whose fields carry their
ranges and choices: the config's ``data.sources.<name>``) and the ``register_source`` decorator.
``padirec.data.registry`` imports every source file of this package; a plugin file registers
itself the same way (``plugins`` in the config).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from padirec.core.plugins import NoSettings, Registry

RawTables = tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame | None]


class Source:
    """Base class. Subclasses implement ``load``."""

    name: ClassVar[str] = "source"
    config_class: ClassVar[type] = NoSettings  # its own settings: the config's ``data.sources.<name>``
    folder_files: ClassVar[str] = ""  # the files of a folder it reads, for ``recognises`` and its message

    @staticmethod
    def recognises(folder: Path) -> bool:
        """Whether ``folder`` (local) holds this source's files (``padirec experiment --data FOLDER``)."""
        return False

    @staticmethod
    def load(data: Any, settings: Any) -> RawTables:
        """The raw tables, read as ``data`` (the ``DataConfig``: ``path``, ``interactions``, ...) and
        ``settings`` (this source's own) say."""
        raise NotImplementedError


SOURCES: Registry = Registry("data source")
register_source = SOURCES.register
