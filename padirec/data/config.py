"""Configuration of the data stage."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


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
    synthetic: dict = field(default_factory=dict)  # kwargs of padirec.data.synthetic.generate
