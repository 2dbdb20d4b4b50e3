"""A table that is a folder of Parquet files, read through ``pyarrow.dataset``.

Large interaction logs arrive as many files, usually partitioned by day or by a hash of the user
(``interactions/day=2026-12-01/part-0.parquet``). A folder, local or ``s3://bucket/prefix/``, is
read as one table: every ``*.parquet`` file under it, Hive-style ``key=value`` folders read as
columns. From S3 the files are streamed by Arrow's own S3 filesystem (the same endpoint and
credentials as ``padirec.runtime.storage``), not downloaded first. The interactions table is read
with only the three columns the data stage uses, which is most of the memory saved against a CSV.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from padirec.data.columns import schema_problem
from padirec.errors import DataValidationError
from padirec.runtime.storage import arrow_filesystem, is_s3

# What the data stage reads of each table (``prepare``); other columns are left on disk.
USED = {"interactions": ("user_id", "item_id", "timestamp")}


def is_dataset(uri: str) -> bool:
    """A folder: a local directory, or an ``s3://`` URI ending in ``/``."""
    return uri.endswith("/") if is_s3(uri) else Path(uri).is_dir()


def read_dataset(uri: str, what: str) -> pd.DataFrame:
    """The Parquet files under ``uri`` as one DataFrame (see the module docstring)."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    where = f"{what} table {uri}"
    fs, path = arrow_filesystem(uri)
    try:
        dataset = ds.dataset(path, filesystem=fs, format="parquet", partitioning="hive",
                             exclude_invalid_files=False, ignore_prefixes=[".", "_"])
    except FileNotFoundError as e:
        raise DataValidationError(f"{where}: no such folder") from e
    except (pa.ArrowInvalid, OSError) as e:  # access denied, an unreachable endpoint
        raise DataValidationError(f"{where}: not a readable folder of Parquet files ({_first_line(e)})") from e
    if not dataset.files:
        raise DataValidationError(f"{where}: no Parquet files in this folder")
    if problem := schema_problem(dataset.schema, what == "interactions"):
        raise DataValidationError(f"{where}: {problem}")
    # A missing column is left to the column checks of ``prepare``, which name it.
    columns = [c for c in USED.get(what, dataset.schema.names) if c in dataset.schema.names]
    try:
        table = dataset.to_table(columns=columns)
    except (pa.ArrowInvalid, OSError) as e:  # a file that is not Parquet, or of another schema
        raise DataValidationError(f"{where}: {_first_line(e)}") from e
    if table.num_rows == 0:
        raise DataValidationError(f"{where}: no rows")
    return _to_pandas(table)


def _to_pandas(table: Any) -> pd.DataFrame:
    # self_destruct frees each Arrow column as it is converted: the peak is one copy, not two.
    return table.to_pandas(self_destruct=True, split_blocks=True)


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
