"""Configuration of the data stage."""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass, field
from typing import Any, Literal

from padirec.core.typed_config import from_dict
from padirec.data.synthetic import generate

# ``data.synthetic``'s keys, types and defaults: those of ``generate``'s keyword arguments
SyntheticSettings = dataclasses.make_dataclass(
    "SyntheticSettings", [(n, type(p.default), p.default) for n, p in inspect.signature(generate).parameters.items()])


def synthetic_settings(raw: Any, where: str) -> dict[str, Any]:
    """The ``synthetic`` section as given (the dataset's name records it), its names and types
    checked at load (their ranges: ``padirec.config.checks``)."""
    from_dict(SyntheticSettings, raw or {}, where)
    return raw or {}


@dataclass
class DataConfig:
    """Where the interactions come from and how they are split.

    ``source``: ``ml-100k`` (embedded default, from the recbole wheel), ``ml-1m`` (``path`` is a
    folder with ratings.dat/movies.dat/users.dat), ``amazon`` (``path`` is a folder with the
    reviews and metadata files), ``tables`` (``interactions``/``items``/``users`` files, CSV or
    Parquet, local or s3://), ``synthetic`` (generated, for tests and smoke runs).
    """

    source: Literal["ml-100k", "ml-1m", "amazon", "tables", "synthetic"] = "ml-100k"
    path: str = ""
    interactions: str = ""
    items: str = ""
    users: str = ""
    min_interactions: int = 5
    max_len: int = 20
    max_category_groups: int = 0  # Amazon: merge rare categories into at most K groups (0 = keep all)
    # kwargs of padirec.data.synthetic.generate
    synthetic: dict = field(default_factory=dict, metadata={"from_dict": synthetic_settings})
