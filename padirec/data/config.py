"""Configuration of the data stage."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

from padirec.core.typed_config import POSITIVE, from_dict, setting
from padirec.data.base import SOURCES
from padirec.errors import ConfigError

# The placeholder a data location may hold: ``s3://bucket/interactions/{snapshot}/``.
SNAPSHOT = "{snapshot}"
TEMPLATED = ("path", "interactions", "items", "users")
# A snapshot names one folder: a date or a partition, no "/" and no "..".
SNAPSHOT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._=-]{0,127}")



@dataclass
class SyntheticSettings:
    """``data.synthetic``: the keyword arguments of ``padirec.data.synthetic.generate`` (the same
    names and defaults, ``tests/data/test_config.py`` checks), each with its range."""

    num_users: int = setting(200, range=POSITIVE)
    num_items: int = setting(100, range=POSITIVE)
    num_categories: int = setting(6, range=POSITIVE)
    min_len: int = setting(8, range=POSITIVE)
    max_len: int = setting(30, range=POSITIVE)
    noise: float = setting(0.1, range="[0, 1]")
    seed: int = setting(0, range="[0, 4294967295]")


def synthetic_settings(raw: Any, where: str) -> dict[str, Any]:
    """The ``synthetic`` section as given (the dataset's name records it), its names and types
    checked at load (their ranges: ``SyntheticSettings``, read by ``padirec.config.checks``)."""
    from_dict(SyntheticSettings, raw or {}, where)
    return raw or {}


@dataclass
class DataConfig:
    """Where the interactions come from and how they are split.

    ``source``: a registered source (``padirec.data.base``), built in: ``ml-100k`` (embedded default, from the recbole wheel), ``ml-1m`` (``path`` is a
    folder with ratings.dat/movies.dat/users.dat), ``amazon`` (``path`` is a folder with the
    reviews and metadata files), ``tables`` (``interactions``/``items``/``users`` files, CSV or
    Parquet, local or s3://; a folder, or an s3:// URI ending in ``/``, is read as one table of the
    Parquet files under it, partitioned or not: ``padirec.data.parquet_dataset``), ``synthetic`` (generated, for tests and smoke runs).

    Snapshots: ``path``, ``interactions``, ``items`` and ``users`` may hold ``{snapshot}``
    (``s3://bucket/interactions/{snapshot}/``), filled with the run's snapshot: the pipeline's
    ``data_version`` parameter, else ``snapshot`` (``for_snapshot``).
    """

    source: str = setting("ml-100k", choices=SOURCES)  # a registered source (``padirec.data.registry``)
    path: str = ""
    interactions: str = ""
    items: str = ""
    users: str = ""
    min_interactions: int = setting(5, range="[3, inf)")  # leave-one-out holds two out and trains on the rest
    max_len: int = setting(20, range=POSITIVE)
    # Amazon: merge rare categories into at most K groups (0 = keep all)
    max_category_groups: int = setting(0, range="[0, inf)")
    # kwargs of padirec.data.synthetic.generate
    synthetic: dict = field(default_factory=dict, metadata={"from_dict": synthetic_settings})
    snapshot: str = ""  # the snapshot read when the run names none (``padirec submit`` without --data-version)
    # each source's own settings, by name (the ``config_class`` of its file; a plugin's included)
    sources: dict[str, Any] = setting(default_factory=SOURCES.default_settings, from_dict=SOURCES.read_settings)

    def settings_for(self, name: str) -> Any:
        """Source ``name``'s own settings (its defaults where the config has none)."""
        return self.sources.get(name) or SOURCES.settings_class(name)()

    def templated(self) -> list[str]:
        """The locations that hold ``{snapshot}``, by key."""
        return [f"data.{k}" for k in TEMPLATED if SNAPSHOT in getattr(self, k)]

    def for_snapshot(self, data_version: str = "") -> DataConfig:
        """This config with ``{snapshot}`` filled by ``data_version`` (else ``snapshot``). Refused:
        a template with no snapshot, a snapshot that is not one folder name, and a KFP macro left
        unreplaced (``[[ScheduledTime...]]`` is filled only in the runs of a recurring run)."""
        snapshot = data_version or self.snapshot
        if snapshot.startswith("[[") or snapshot.startswith("{{"):
            raise ConfigError(f"data_version {snapshot!r}: KFP did not replace this macro (it does so only in the "
                              "runs of a recurring run); give the snapshot itself, e.g. 20260105")
        templated = self.templated()
        if not templated:
            return self
        if not snapshot:
            raise ConfigError(f"{', '.join(templated)} hold {SNAPSHOT} but no snapshot is given: set data.snapshot "
                              "or the run's data_version (padirec submit --data-version)")
        if not SNAPSHOT_NAME.fullmatch(snapshot):
            raise ConfigError(f"snapshot {snapshot!r}: one folder name of letters, digits, '.', '_', '=', '-' "
                              "(no '/', at most 128 characters)")
        return dataclasses.replace(self, snapshot=snapshot,
                                   **{k: getattr(self, k).replace(SNAPSHOT, snapshot) for k in TEMPLATED})
