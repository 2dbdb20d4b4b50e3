"""The types an id or a timestamp column may have: one rule for every source.

Ids (``user_id``, ``item_id``) are integers or strings (``prepare`` compares them as text);
timestamps are numbers (seconds), dates and datetimes, or ISO-8601 strings. The rule is stated on
Arrow types: a Parquet file's schema gives them exactly (``read_table`` checks it before reading, so
the error names the file); a table in memory (CSV, the MovieLens and Amazon files, a caller's
DataFrame) has each column converted (``frame_problem``, which ``prepare`` runs on every source's
tables). Anything else (a boolean, a record, a list, a map) would become a string id or a number
of seconds silently, so it is refused, naming the column and its type.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

# Timestamps (seconds) stay below 2^62: the backbones hold them in int64 tensors and take
# differences of them; serving refuses the same values (``padirec.serving``).
MAX_TIMESTAMP = 2**62
ID_COLUMNS = ("user_id", "item_id")
TIME_COLUMN = "timestamp"
MUST = {"id": "ids must be integers or strings",
        "time": "timestamps must be numbers, dates or datetimes, or ISO-8601 strings"}


def _allowed(kind: str, t: pa.DataType | None) -> bool:
    if t is None:  # a value Arrow has no type for (an arbitrary object)
        return False
    if pa.types.is_dictionary(t):  # a pandas category column, or a dictionary-encoded Parquet one
        return _allowed(kind, t.value_type)
    if pa.types.is_null(t) or pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return True  # an all-null column is left to the not-null check, which names the rows
    if kind == "id":
        return pa.types.is_integer(t)
    return (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)
            or pa.types.is_timestamp(t) or pa.types.is_date(t))


def _kinds(columns: list[str], interactions: bool) -> dict[str, str]:
    kinds = {c: "id" for c in ID_COLUMNS if c in columns}
    if interactions and TIME_COLUMN in columns:  # only the interactions' timestamp is read
        kinds[TIME_COLUMN] = "time"
    return kinds


def _phrase(column: str, kind: str, t: pa.DataType | None, name: str, whole: bool) -> str:
    hint = ""
    if kind == "id" and t is not None and pa.types.is_floating(t):
        hint = " (pandas writes integers with missing values as floats: fill or drop them)"
    return f"column {column!r} {'is' if whole else 'holds values'} of type {name}; {MUST[kind]}{hint}"


def schema_problem(schema: pa.Schema, interactions: bool) -> str | None:
    """The first id or timestamp column of ``schema`` of a type the rule refuses, as a phrase."""
    for column, kind in _kinds(schema.names, interactions).items():
        t = schema.field(column).type
        if not _allowed(kind, t):
            return _phrase(column, kind, t, str(t), True)
    return None


def frame_problem(df: pd.DataFrame, interactions: bool) -> str | None:
    """As ``schema_problem``, for a table in memory: each column's Arrow type, or where its
    values are of several types (object columns), the type of each."""
    for column, kind in _kinds(list(df.columns), interactions).items():
        for t, name, whole in _types(df[column]):
            if kind == "id" and whole and pa.types.is_floating(t) and (df[column].dropna() % 1 == 0).all():
                continue  # integers with missing values, as pandas holds them: the not-null check names the rows
            if not _allowed(kind, t):
                return _phrase(column, kind, t, name, whole)
    return None


_NO_ARROW = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError)


def _types(col: pd.Series) -> list[tuple[pa.DataType | None, str, bool]]:
    """``(Arrow type or None, its name, whether it is the whole column's)``."""
    if isinstance(col.dtype, pd.DatetimeTZDtype):  # the same kind to the rule; pyarrow's read of it warns
        col = col.dt.tz_convert(None)
    try:
        t = pa.Array.from_pandas(col).type
        return [(t, str(t), True)]
    except (*_NO_ARROW, OverflowError):  # values of several types, or integers past 64 bits: each type once
        pass
    firsts: dict[type, object] = {}
    for v in col.dropna():
        firsts.setdefault(type(v), v)
    types = []
    for python_type, v in firsts.items():
        try:
            t = pa.array([v]).type
            types.append((t, str(t), False))
        except OverflowError:  # an integer past 64 bits is a number still: the value checks bound it
            types.append((pa.int64(), python_type.__name__, False))
        except _NO_ARROW:
            types.append((None, python_type.__name__, False))
    return types
